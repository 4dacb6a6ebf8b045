"""Image collections to embed: a folder (searched recursively), a CSV with an `image` column (and
optionally `caption`), or webdataset tar shards (`shards-{000..099}.tar`: members sharing a
basename form a sample, `KEY.jpg` with `KEY.txt` as its caption)."""
from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput, NotFound
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


def list_items(text: str) -> list[Item]:
    """The images of a collection (data/specs.py, role `images`): a folder's images, searched
    recursively; a CSV's `image` column (with `caption` if it has one); webdataset shards'
    images; or the images of any listed training data, each with its first caption."""
    spec = parse_spec(text, "images")
    if spec.kind == "folder":
        root = Path(spec.argument)
        if not root.is_dir():
            raise NotFound(f"{root}: no such folder")
        return [Item(ImageRef(p)) for p in sorted(root.rglob("*")) if listed(p)]
    if spec.kind == "csv":
        path = Path(spec.argument)
        rows = read_csv_rows(path, {"image"}, "csv:PATH wants an 'image' column, and optionally 'caption'")
        return [Item(ImageRef(path.parent / r["image"]), r.get("caption")) for r in rows]
    if spec.kind == "tar":
        return [item for shard in expand_braces(spec.argument) for item in _tar_items(Path(shard))]
    return [Item(ImageRef(p.image), (p.captions or [None])[0]) for p in listed_pairs(text)]


def _tar_items(shard: Path) -> list[Item]:
    if not shard.is_file():
        raise NotFound(f"{shard}: no such tar shard")
    try:
        with tarfile.open(shard) as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            captions = {m.name.rsplit(".", 1)[0]: tar.extractfile(m).read().decode("utf-8", "replace").strip()
                        for m in members if m.name.endswith(".txt")}
    except (OSError, tarfile.TarError) as e:
        raise BadInput(f"{shard}: not a readable tar shard ({e}); make it again (grounding data shard) or leave it "
                       "out of the pattern") from None
    return [Item(ImageRef.of_member(shard, m), captions.get(m.name.rsplit(".", 1)[0])) for m in members
            if listed(m.name)]
