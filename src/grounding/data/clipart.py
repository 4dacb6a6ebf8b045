"""Real image-text pairs from installed packages: the public-domain clip art of Debian's
openclipart-png / openclipart-svg (each SVG holds a `dc:title` and `dc:subject` keywords), the
named emoji and icons of data/emoji.py, the stamps of Debian's tuxpaint-stamps-default,
each with an English caption in a .txt file beside it, and the named photos inside the Qt
resource files of Debian's gcompris-qt-data (Tux Paint and GCompris are GPL: train on them to
evaluate, and do not ship weights trained on them)."""
from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .. import cache as grounding_cache
from ..files import atomic_path

from .datasets import open_dataset
from .emoji import training_examples
from .examples import Pair
from .rcc import read_rcc
from .sources import SOURCES

# The GCompris activities whose photos are named by their file (and folder): resource file, the
# part of the path before the photos, and what the folder under it says (a category, or nothing).
GCOMPRIS_PHOTOS = (("lang", "/words_sample/", None), ("categorization", "/images/", "category"),
                   ("explore_monuments", "/resource/", None), ("explore_world_animals", "/animals/", None),
                   ("explore_farm_animals", "/animals/", None), ("erase", "/resource/", None),
                   ("solar_system", "/resource/", None))
GCOMPRIS_CATEGORIES = {"tools": "tools", "renewable": "renewable energy sources", "fishes": "fishes",
                       "monuments": "monuments"}
_NS = {"dc": "http://purl.org/dc/elements/1.1/", "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
       "cc": "http://web.resource.org/cc/"}
# Keywords that say nothing about the picture.
_NOISE = {"", "unsorted", "clip art", "clipart", "image", "media", "png", "svg", "public domain", "externalsource",
          "remix", "openclipart", "drawing", "color", "colour", "icon", "symbol", "cartoon"}


def svg_text(svg: Path) -> tuple[str, list[str]]:
    """The title and the keywords of an openclipart SVG (its first cc:Work); empty if unreadable."""
    try:
        work = ET.parse(svg).getroot().find(".//cc:Work", _NS)
    except (ET.ParseError, OSError):
        return "", []
    if work is None:
        return "", []
    title = " ".join((work.findtext("dc:title", "", _NS) or "").split())
    keywords = [" ".join((li.text or "").split()).lower() for li in work.findall("dc:subject//rdf:li", _NS)]
    return title, [k for k in dict.fromkeys(keywords) if k not in _NOISE and k != title.lower()]


def clipart_pairs(root: Path | None = None) -> list[Pair]:
    """A pair per PNG whose SVG has a title: captions are the title, and the title with keywords."""
    root = SOURCES["openclipart"].require("png", "svg", root=root)
    png_root, svg_root = root / "png", root / "svg"
    pairs = []
    for png in sorted(png_root.rglob("*.png")):
        title, keywords = svg_text(svg_root / png.relative_to(png_root).with_suffix(".svg"))
        if not title:
            continue
        captions = [title] + ([f"{title}: {', '.join(keywords[:6])}"] if keywords else [])
        pairs.append(Pair(png, captions, "openclipart"))
    return pairs


def emoji_pairs(spec: str) -> list[Pair]:
    """A pair per emoji or icon of a training concept (data/emoji.py): its name, and the name as
    an emoji (or an icon); a flag as the flag of its country."""
    data = open_dataset(spec)
    forms = ("the flag of {}", "{} flag") if data.templates == "flags" else \
        ("{}", "an emoji of {}" if "emoji" in spec else "an icon of {}")
    return [Pair(data.images[i].path, [form.format(data.classes[i]) for form in forms], spec)
            for i in training_examples(data)]


def tuxpaint_pairs(root: Path | None = None) -> list[Pair]:
    """Each stamp PNG with the first (English) line of the .txt beside it."""
    root = SOURCES["tuxpaint"].require(root=root)
    pairs = []
    for text in sorted(root.rglob("*.txt")):
        png = text.with_suffix(".png")
        lines = text.read_text(encoding="utf-8", errors="replace").splitlines()
        if png.is_file() and lines and lines[0].strip():
            pairs.append(Pair(png, [lines[0].strip()], "tuxpaint"))
    return pairs


def gcompris_pairs(root: Path | None = None, cache: Path | None = None) -> list[Pair]:
    """A pair per named photo of GCompris's vocabulary, categorisation, monument, animal and
    planet activities (about 370): the name from the file (`lincolnMemorial2.webp`: "lincoln
    memorial"), as itself and as a photo (and with its category). The photos are copied out of
    the resource files once, into the cache (grounding/cache.py)."""
    root = SOURCES["gcompris"].require("lang.rcc", root=root)
    cache = cache or grounding_cache.folder("gcompris")
    pairs = []
    for activity, marker, folder in GCOMPRIS_PHOTOS:
        rcc = root / f"{activity}.rcc"
        if not rcc.is_file():
            continue
        for inside, data in read_rcc(rcc):
            if not inside.endswith(".webp") or marker not in inside:
                continue
            relative = inside.split(marker, 1)[1]
            name = _readable(Path(relative).stem)
            if not name:
                continue
            captions = [name, f"a photo of {name}"]
            category = GCOMPRIS_CATEGORIES.get(relative.split("/")[0]) if folder == "category" else None
            if category:
                captions.append(f"{name}, one of the {category}")
            path = cache / hashlib.sha256(data).hexdigest()[:16] / Path(relative).name
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(path) as tmp:
                    tmp.write_bytes(data)
            pairs.append(Pair(path, captions, "gcompris"))
    return pairs


def _readable(stem: str) -> str:
    """`lincolnMemorial_2` -> "lincoln memorial": camel case and underscores split, digits dropped."""
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", stem).replace("_", " ").replace("-", " ")
    return " ".join(w for w in re.sub(r"\d+", " ", words).lower().split())
