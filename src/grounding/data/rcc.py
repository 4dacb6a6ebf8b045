"""A reader for Qt's compiled resource files (`.rcc`, what `rcc -binary` writes), so that the
pictures GCompris ships inside them can be read without Qt. The layout, from Qt's rcc.cpp:

    header     "qres", format version, then the offsets of the tree, the data and the names
               (and, from version 3, feature flags), each a 4-byte big-endian integer
    tree       one fixed-size record per node, the root first: name offset, flags, then a
               directory's child count and first child, or a file's locale and data offset;
               from version 2, each record ends with an 8-byte modification time
    names      2-byte length, 4-byte hash, the name in UTF-16 big-endian
    data       4-byte length, the bytes; compressed files (flag 1, zlib) begin with their
               4-byte uncompressed length; flag 4 is zstd (refused: Python has no reader for it)
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Iterator

from ..errors import BadInput

COMPRESSED, DIRECTORY, COMPRESSED_ZSTD = 1, 2, 4


class RccError(BadInput):
    """The file is not a Qt resource file this reader understands; the message says why."""


def read_rcc(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """Every file inside a Qt resource file, as (its path inside, its bytes), depth first."""
    path = Path(path)
    blob = path.read_bytes()
    if blob[:4] != b"qres":
        raise RccError(f"{path}: not a Qt resource file (no 'qres' header)")
    version, tree, data, names = struct.unpack_from(">4I", blob, 4)
    if version not in (1, 2, 3):
        raise RccError(f"{path}: Qt resource format version {version}, not 1 to 3")
    record = 14 if version == 1 else 22

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", blob, names + offset)
        start = names + offset + 6  # length, then a 4-byte hash
        return blob[start:start + 2 * length].decode("utf-16-be")

    def walk(node: int, prefix: str) -> Iterator[tuple[str, bytes]]:
        at = tree + node * record
        name_offset, flags = struct.unpack_from(">IH", blob, at)
        name = name_at(name_offset) if node else ""
        where = f"{prefix}/{name}" if prefix else name
        if flags & DIRECTORY:
            count, first = struct.unpack_from(">II", blob, at + 6)
            for child in range(first, first + count):
                yield from walk(child, where)
            return
        (offset,) = struct.unpack_from(">I", blob, at + 10)
        (length,) = struct.unpack_from(">I", blob, data + offset)
        payload = blob[data + offset + 4:data + offset + 4 + length]
        if flags & COMPRESSED_ZSTD:
            raise RccError(f"{path}: {where} is zstd-compressed, which this reader does not decode")
        if flags & COMPRESSED:
            payload = zlib.decompress(payload[4:])
        yield where, payload

    try:
        yield from walk(0, "")
    except (struct.error, zlib.error, UnicodeDecodeError) as e:
        raise RccError(f"{path}: a damaged Qt resource file ({e})") from None
