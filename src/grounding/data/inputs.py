"""Image collections to embed: a folder (searched recursively), a CSV with an `image` column (and
optionally `caption`), or webdataset tar shards (`shards-{000..099}.tar`: members sharing a
basename form a sample, `KEY.jpg` with `KEY.txt` as its caption)."""
from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..errors import BadInput, NotFound
from ..files import read_csv_rows
from .images import decode_image, listed, load_image


@dataclass(frozen=True)
class Item:
    key: str  # the path, or SHARD:KEY inside a tar
    path: str  # the file, or the tar holding it
    member: str | None = None  # the image's name inside the tar,
    offset: int = 0  # where its bytes start in the tar,
    size: int = 0  # and how many there are
    caption: str | None = None


def expand_braces(pattern: str) -> list[str]:
    """`a-{000..002}.tar` -> a-000.tar a-001.tar a-002.tar; `{x,y}` -> x y; nested and repeated."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    body, head, tail = match.group(1), pattern[:match.start()], pattern[match.end():]
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        lo, hi = numeric.groups()
        width = len(lo) if lo.startswith("0") else 0
        options = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        options = body.split(",")
    return [expanded for option in options for expanded in expand_braces(head + option + tail)]


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Image paths from command-line inputs: a folder gives its images (searched recursively), a
    pattern with * ? or [ its matches (`**` crosses folders), anything else itself (a missing
    file is reported when it is read). Order is kept; a path named twice is used once."""
    import glob

    paths: list[Path] = []
    for given in inputs:
        if Path(given).is_dir():
            found = sorted(p for p in Path(given).rglob("*") if listed(p))
            if not found:
                raise NotFound(f"{given}: a folder with no images in it")
            paths += found
        elif any(ch in given for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(given, recursive=True))
            if not matches:
                raise NotFound(f"{given}: no file matches this pattern")
            paths += [m for m in matches if not m.is_dir() and listed(m)]
        else:
            paths.append(Path(given))
    return list(dict.fromkeys(paths))


def list_items(spec: str) -> list[Item]:
    kind, _, rest = spec.partition(":")
    if kind == "folder" or (not rest and Path(spec).is_dir()):
        root = Path(rest or spec)
        if not root.is_dir():
            raise NotFound(f"{root}: no such folder")
        return [Item(str(p), str(p)) for p in sorted(root.rglob("*")) if listed(p)]
    if kind == "csv":
        path = Path(rest)
        rows = read_csv_rows(path, {"image"}, "csv:PATH wants an 'image' column, and optionally 'caption'")
        return [Item(str(path.parent / r["image"]), str(path.parent / r["image"]), caption=r.get("caption"))
                for r in rows]
    if kind == "tar" or spec.endswith(".tar"):
        return [item for shard in expand_braces(rest if kind == "tar" else spec) for item in _tar_items(Path(shard))]
    raise BadInput(f"unknown collection {spec!r}: use a folder, folder:PATH, csv:PATH or tar:SHARDS-{{000..009}}.tar")


def _tar_items(shard: Path) -> list[Item]:
    if not shard.is_file():
        raise NotFound(f"{shard}: no such tar shard")
    with tarfile.open(shard) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        captions = {m.name.rsplit(".", 1)[0]: tar.extractfile(m).read().decode("utf-8").strip()
                    for m in members if m.name.endswith(".txt")}
    return [Item(f"{shard}:{m.name}", str(shard), m.name, m.offset_data, m.size, captions.get(m.name.rsplit(".", 1)[0]))
            for m in members if listed(m.name)]


def read_image(item: Item) -> Image.Image:
    if item.member is None:
        return load_image(item.path)
    with open(item.path, "rb") as f:
        f.seek(item.offset)
        return decode_image(f.read(item.size), item.key)
