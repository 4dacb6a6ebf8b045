"""The Qt resource reader on files written here to the documented layout (versions 1 and 2,
nested folders, zlib-compressed and stored files, damage), and on GCompris's own when Debian's
gcompris-qt-data is installed."""
from __future__ import annotations

import struct
import zlib

import pytest
from PIL import Image

from grounding.data.clipart import gcompris_pairs
from grounding.data.rcc import RccError, read_rcc
from grounding.data.sources import SOURCES


def _rcc(files: dict[str, bytes], version: int = 2, compress: tuple[str, ...] = ()) -> bytes:
    """A resource file as Qt's rcc lays it out: the tree breadth first, each folder's children
    in a consecutive run."""
    tree_of: dict = {}
    for path, data in files.items():
        node = tree_of
        *folders, name = path.split("/")
        for folder in folders:
            node = node.setdefault(folder, {})
        node[name] = data
    names, data_blob, records = bytearray(), bytearray(), []
    name_offset: dict[str, int] = {}

    def name(text: str) -> int:
        if text not in name_offset:
            name_offset[text] = len(names)
            names.extend(struct.pack(">HI", len(text), 0) + text.encode("utf-16-be"))
        return name_offset[text]

    records.append(None)  # the root, filled in when its children are placed
    pending = [(0, tree_of, "")]
    while pending:
        index, folder, prefix = pending.pop(0)
        first = len(records)
        children = sorted(folder.items())
        records.extend([None] * len(children))
        label = prefix.rsplit("/", 1)[-1]
        records[index] = ("dir", name(label) if index else 0, len(children), first)
        for offset, (child, value) in enumerate(children):
            where = f"{prefix}/{child}" if prefix else child
            if isinstance(value, dict):
                records[first + offset] = ("dir", name(child), 0, 0)
                pending.append((first + offset, value, where))
            else:
                flags = 1 if where in compress else 0
                stored = struct.pack(">I", len(value)) + zlib.compress(value) if flags else value
                records[first + offset] = ("file", name(child), flags, len(data_blob))
                data_blob.extend(struct.pack(">I", len(stored)) + stored)
    tail = b"\0" * 8 if version >= 2 else b""
    tree = bytearray()
    for kind, name_at, a, b in records:
        if kind == "dir":
            tree += struct.pack(">IHII", name_at, 2, a, b) + tail
        else:
            tree += struct.pack(">IHHHI", name_at, a, 0, 0, b) + tail
    header = 20
    return (b"qres" + struct.pack(">4I", version, header, header + len(tree), header + len(tree) + len(data_blob))
            + bytes(tree) + bytes(data_blob) + bytes(names))


@pytest.mark.parametrize("version", [1, 2])
def test_files_read_back_from_the_documented_layout(tmp_path, version):
    files = {"gcompris/lang/words/giraffe.webp": b"giraffe bytes" * 50, "gcompris/lang/words/ox.webp": b"ox",
             "gcompris/readme.txt": "héllo".encode(), "top.json": b"{}"}
    path = tmp_path / "made.rcc"
    path.write_bytes(_rcc(files, version, compress=("gcompris/lang/words/giraffe.webp",)))
    assert dict(read_rcc(path)) == files


def test_damaged_and_foreign_files_are_one_error_naming_the_file(tmp_path):
    good = _rcc({"a/b.webp": b"x" * 100}, compress=("a/b.webp",))
    (tmp_path / "cut.rcc").write_bytes(good[:40])
    (tmp_path / "other.rcc").write_bytes(b"PK\3\4 a zip file")
    with pytest.raises(RccError, match="cut.rcc: a damaged Qt resource file"):
        list(read_rcc(tmp_path / "cut.rcc"))
    with pytest.raises(RccError, match="other.rcc: not a Qt resource file"):
        list(read_rcc(tmp_path / "other.rcc"))


@pytest.mark.skipif(not (SOURCES["gcompris"].root() / "lang.rcc").is_file(), reason="gcompris-qt-data is not installed")
def test_gcompris_photos_are_named_pairs(tmp_path):
    pairs = gcompris_pairs(cache=tmp_path)
    assert len(pairs) >= 300
    names = {p.captions[0] for p in pairs}
    assert {"giraffe", "statue of liberty", "scissors", "jupiter"} <= names
    with Image.open(pairs[0].image) as image:
        assert min(image.size) >= 64
    assert gcompris_pairs(cache=tmp_path)[0].image == pairs[0].image  # copied out once
