"""Image collections to embed: a folder (searched recursively), a CSV with an `image` column (and
optionally `caption`), or webdataset tar shards (`shards-{000..099}.tar`: members sharing a
basename form a sample, `KEY.jpg` with `KEY.txt` as its caption)."""
from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import NotFound
from ..files import read_csv_rows
from .images import ImageRef, listed
from .pairs import listed_pairs
from .specs import expand_braces, parse_spec


@dataclass(frozen=True)
class Item:
    """An image of a collection, and its caption if the collection has one."""

    ref: ImageRef
    caption: str | None = None

    @property
    def key(self) -> str:
        return self.ref.key


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


def list_items(text: str) -> tuple[list[Item], list[str]]:
    """The images of a collection (data/specs.py, role `images`): a folder's images, searched
    recursively; a CSV's `image` column (with `caption` if it has one); webdataset shards'
    images; or the images of any listed training data, each with its first caption. Also what was
    left out, a line each: tar shards that cannot be read (or not to the end) and keys that
    appear twice in a shard, as training skips and lists them."""
    spec = parse_spec(text, "images")
    if spec.kind == "folder":
        root = Path(spec.argument)
        if not root.is_dir():
            raise NotFound(f"{root}: no such folder")
        return [Item(ImageRef(p)) for p in sorted(root.rglob("*")) if listed(p)], []
    if spec.kind == "csv":
        path = Path(spec.argument)
        rows = read_csv_rows(path, {"image"}, "csv:PATH wants an 'image' column, and optionally 'caption'")
        return [Item(ImageRef(path.parent / r["image"]), r.get("caption")) for r in rows], []
    if spec.kind == "tar":
        items, left_out = [], []
        for shard in expand_braces(spec.argument):
            found, problems = _tar_items(Path(shard))
            items, left_out = items + found, left_out + problems
        return items, left_out
    return [Item(ImageRef(p.image), (p.captions or [None])[0]) for p in listed_pairs(text)], []


def _tar_items(shard: Path) -> tuple[list[Item], list[str]]:
    """The shard's images with their captions, read up to where the tar breaks off; a key seen
    again is left out (the first sample with it is kept)."""
    if not shard.is_file():
        raise NotFound(f"{shard}: no such tar shard")
    members, problems, packed = [], [], not shard.name.endswith((".gz", ".tgz"))
    try:
        with tarfile.open(shard, "r:" if packed else "r:gz") as tar:
            for member in tar:
                if member.isfile():
                    members.append((member, tar.extractfile(member).read() if member.name.endswith(".txt") else None))
            end = tar.offset
        # A cut download: tarfile stops without a word where the data ends, so check that the end
        # marker (two zero blocks, which every tar writer adds) is there.
        if packed and shard.stat().st_size < end + 2 * tarfile.BLOCKSIZE:
            raise tarfile.ReadError("cut short: the file ends before the tar's end marker")
    except (OSError, tarfile.TarError, EOFError) as e:
        size = shard.stat().st_size
        members = [m for m in members if not packed or m[0].offset_data + m[0].size <= size]
        where = f" after {len(members)} members" if members else ""
        problems.append(f"{shard}: unreadable{where} ({e}); make it again (grounding data shard) or leave it out "
                        "of the pattern")
    captions, images = {}, {}
    for member, text in members:
        key = member.name.rsplit(".", 1)[0]
        if text is None and not listed(member.name):
            continue
        if key in (images if text is None else captions):
            problems.append(f"{shard}:{key}: this key appears twice ({member.name} again); the first sample is "
                            "kept: give each sample its own key")
        elif text is None:
            images[key] = member
        else:
            captions[key] = text.decode("utf-8", "replace").strip()
    return [Item(ImageRef.of_member(shard, m), captions.get(key)) for key, m in images.items()], problems
