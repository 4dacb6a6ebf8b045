"""Named emoji and icons in many styles, from npm packages, as labelled datasets:

    emoji:VENDOR[:PATH]   emoji-datasource-VENDOR (google, twitter, apple, facebook): 64-px PNGs
                          named and grouped by the package's emoji.json
    emoji:fluent-3d[:PATH]  @lobehub/fluent-emoji-3d: Microsoft's 3D renders, named by codepoint
                          (names and groups from the emoji.json of any emoji-datasource package)
    iconify:SET[:PATH]    @iconify-json/SET (fluent-emoji-flat, fxemoji, emojione, ...): SVG icons
                          named by their keys, rendered once into the cache with resvg; a set of
                          national flags named by ISO code (flag, flagpack, cif, circle-flags)
                          is named by country, as the flags dataset is

PATH is an `npm pack` .tgz or a folder; without it, ./node_modules and earlier unpackings in the
cache are tried. Every example has a category, mapped onto emoji.json's groups, so that the held-
out groups can be left out of training in every style alike (`training_examples`); the validation
group is `data.only_categories((VALIDATION,))`.
"""
from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path

from .. import cache
from ..errors import BadInput, need
from ..files import atomic_path
from .examples import Dataset
from .images import ImageRef
from .sources import country_names, npm_package

VENDORS = ("google", "twitter", "apple", "facebook")
# Emoji groups kept out of training in every style: the held-out zero-shot test, the validation
# group the design is chosen on (a whole group too, as the test is), and flags (the flags test).
HELD_OUT = ("Animals & Nature", "Food & Drink")
VALIDATION = "Travel & Places"
EXCLUDED = HELD_OUT + (VALIDATION, "Flags")
# Iconify's own group names for the excluded groups.
_GROUPS = {"nature": "Animals & Nature", "animalsnature": "Animals & Nature", "food": "Food & Drink",
           "fooddrink": "Food & Drink", "flags": "Flags", "travel": VALIDATION, "places": VALIDATION,
           "travelplaces": VALIDATION}
_SKIN_TONE = re.compile(r"-(light|medium-light|medium|medium-dark|dark)$")
_FLAG_SHAPE = re.compile(r"-(1x1|4x3)$")


def key(name: str) -> str:
    """What two spellings of one emoji name share: `alarm-clock`, `ALARM CLOCK`, `alarmclock`."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def open_emoji(rest: str) -> Dataset:
    vendor, _, where = rest.partition(":")
    if vendor == "fluent-3d":
        return _fluent_3d(where)
    if vendor not in VENDORS:
        raise BadInput(f"emoji:{vendor}: the styles are {', '.join(VENDORS)} (npm emoji-datasource-VENDOR) "
                       "and fluent-3d (npm @lobehub/fluent-emoji-3d)")
    root = npm_package(f"emoji-datasource-{vendor}", where, "emoji.json")
    images = root / "img" / vendor / "64"
    # Skin-tone variants live under each entry's skin_variations: only the base image is used.
    entries = [e for e in _entries(root) if e.get(f"has_img_{vendor}") and (images / e["image"]).is_file()]
    return _dataset(f"emoji:{vendor}", [(images / e["image"], e["name"].lower(), e["category"]) for e in entries])


def _fluent_3d(where: str) -> Dataset:
    assets = npm_package("@lobehub/fluent-emoji-3d", where, "assets") / "assets"
    by_image = {e["image"].removesuffix(".png"): e for e in _entries(_any_emoji_json())}
    found = sorted(((by_image[p.stem], p) for p in assets.glob("*.webp") if p.stem in by_image),
                   key=lambda item: item[0].get("sort_order", 0))
    return _dataset("emoji:fluent-3d", [(p, e["name"].lower(), e["category"]) for e, p in found])


def open_iconify(rest: str) -> Dataset:
    name, _, where = rest.partition(":")
    root = npm_package(f"@iconify-json/{name}", where, "icons.json")
    icons = json.loads((root / "icons.json").read_text(encoding="utf-8"))
    groups = {}
    if (root / "metadata.json").is_file():
        for group, members in json.loads((root / "metadata.json").read_text()).get("categories", {}).items():
            groups.update({member: _GROUPS.get(key(group), group) for member in members})
    by_name = _emoji_groups()
    countries = _countries(icons["icons"])
    folder = cache.folder("iconify") / f"{name}-{hashlib.sha256((root / 'icons.json').read_bytes()).hexdigest()[:12]}"
    if not folder.is_dir():
        cache.evict("iconify")
    examples = []
    for icon, body in sorted(icons["icons"].items()):
        if _SKIN_TONE.sub("", icon) in icons["icons"] and _SKIN_TONE.search(icon):
            continue  # a skin-tone variant: the base image is used, as for emoji-datasource
        code = _FLAG_SHAPE.sub("", icon)
        if countries and code not in countries:
            continue  # a flag set's regions and organisations, as in the flags dataset
        path = folder / f"{icon}.png"
        if not path.is_file():
            _render(body, icons, path)
        if countries:
            examples.append((path, countries[code], ""))
            continue
        # An excluded group by either account wins: a held-out concept stays out in every style.
        own, named = groups.get(icon, ""), by_name.get(key(icon), "")
        label = re.sub(r"-\d+$", "", icon).replace("-", " ")
        examples.append((path, label, next((g for g in (named, own) if g in EXCLUDED), named or own)))
    return _dataset(f"iconify:{name}", examples, "flags" if countries else "emoji")


def _countries(icons: dict) -> dict[str, str]:
    """For a set of national flags named by ISO 3166-1 code (`ca`, `ca-4x3`): the country names
    by code; for any other set, nothing."""
    codes = {_FLAG_SHAPE.sub("", icon) for icon in icons}
    if sum(len(c) == 2 for c in codes) < 100:
        return {}
    try:
        names = country_names()
    except FileNotFoundError:
        return {}
    return names if len(codes & names.keys()) >= min(100, len(codes) / 2) else {}


def _render(body: dict, icons: dict, path: Path, size: int = 128) -> None:
    resvg_py = need("resvg_py", "icons", "rendering Iconify's SVG icons")
    width, height = body.get("width", icons.get("width", 16)), body.get("height", icons.get("height", 16))
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
           f'viewBox="{body.get("left", 0)} {body.get("top", 0)} {width} {height}" width="{size}" '
           f'height="{size * height // width}">{body["body"]}</svg>')
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(bytes(resvg_py.svg_to_bytes(svg_string=svg)))


def _dataset(name: str, examples: list[tuple[Path, str, str]], templates: str = "emoji") -> Dataset:
    examples = list({label: (path, label, group) for path, label, group in examples}.values())  # one per name
    paths = [path for path, _, _ in examples]
    return Dataset(name, [label for _, label, _ in examples], [str(p) for p in paths],
                   [(i,) for i in range(len(examples))], templates=templates, images=[ImageRef(p) for p in paths],
                   categories=[group for _, _, group in examples])


def training_examples(data: Dataset) -> list[int]:
    """The examples to train on: those outside the excluded groups."""
    return [i for i, group in enumerate(data.categories) if group not in EXCLUDED]


def _entries(root: Path) -> list[dict]:
    entries = json.loads((root / "emoji.json").read_text(encoding="utf-8"))
    return sorted((e for e in entries if e.get("name")), key=lambda e: e.get("sort_order", 0))


@lru_cache(maxsize=1)
def _any_emoji_json() -> Path:
    """The first emoji-datasource package found: any one has the names of all emoji."""
    errors = []
    for package in ("emoji-datasource", *(f"emoji-datasource-{v}" for v in VENDORS)):
        try:
            return npm_package(package, "", "emoji.json")
        except FileNotFoundError as e:
            errors.append(e)
    raise errors[0]


@lru_cache(maxsize=1)
def _emoji_groups() -> dict[str, str]:
    """emoji.json's group of every emoji name and short name, by `key` (none without a package)."""
    try:
        root = _any_emoji_json()
    except FileNotFoundError:
        return {}
    groups = {}
    for entry in _entries(root):
        for name in [entry["name"], *entry.get("short_names", [])]:
            groups.setdefault(key(name), entry["category"])
    return groups
