"""Real image-text pairs from installed packages: the public-domain clip art of Debian's
openclipart-png / openclipart-svg (each SVG holds a `dc:title` and `dc:subject` keywords), the
named emoji of npm's emoji-datasource-VENDOR, and the stamps of Debian's tuxpaint-stamps-default,
each with an English caption in a .txt file beside it (GPL: train on it to evaluate, and do not
ship weights trained on it)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from .datasets import MissingPackageError, open_dataset
from .pairs import Pair

OPENCLIPART = Path("/usr/share/openclipart")
TUXPAINT = Path("/usr/share/tuxpaint/stamps")
_NS = {"dc": "http://purl.org/dc/elements/1.1/", "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
       "cc": "http://web.resource.org/cc/"}
# Keywords that say nothing about the picture.
_NOISE = {"", "unsorted", "clip art", "clipart", "image", "media", "png", "svg", "public domain", "externalsource",
          "remix", "openclipart", "drawing", "color", "colour", "icon", "symbol", "cartoon"}
# Emoji categories kept out of training: the held-out zero-shot test, and flags (the flags test).
HELD_OUT_EMOJI = ("Animals & Nature", "Food & Drink")
EXCLUDED_EMOJI = HELD_OUT_EMOJI + ("Flags",)


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


def clipart_pairs(root: Path = OPENCLIPART) -> list[Pair]:
    """A pair per PNG whose SVG has a title: captions are the title, and the title with keywords."""
    png_root, svg_root = root / "png", root / "svg"
    if not png_root.is_dir() or not svg_root.is_dir():
        raise MissingPackageError(f"{root}: no openclipart here; install it with "
                                  "`apt-get install openclipart-png openclipart-svg`")
    pairs = []
    for png in sorted(png_root.rglob("*.png")):
        title, keywords = svg_text(svg_root / png.relative_to(png_root).with_suffix(".svg"))
        if not title:
            continue
        captions = [title] + ([f"{title}: {', '.join(keywords[:6])}"] if keywords else [])
        pairs.append(Pair(png, captions, "openclipart"))
    return pairs


def emoji_pairs(spec: str = "emoji:google", exclude: tuple[str, ...] = EXCLUDED_EMOJI) -> list[Pair]:
    """A pair per emoji outside the `exclude` categories: its name, and the name as an emoji."""
    data = open_dataset(spec)
    return [Pair(path, [name, f"an emoji of {name}"], spec)
            for path, name, category in zip(data.paths, data.classes, data.categories) if category not in exclude]


def tuxpaint_pairs(root: Path = TUXPAINT) -> list[Pair]:
    """Each stamp PNG with the first (English) line of the .txt beside it."""
    if not root.is_dir():
        raise MissingPackageError(f"{root}: no Tux Paint stamps; install them with "
                                  "`apt-get install tuxpaint-stamps-default`")
    pairs = []
    for text in sorted(root.rglob("*.txt")):
        png = text.with_suffix(".png")
        lines = text.read_text(encoding="utf-8", errors="replace").splitlines()
        if png.is_file() and lines and lines[0].strip():
            pairs.append(Pair(png, [lines[0].strip()], "tuxpaint"))
    return pairs
