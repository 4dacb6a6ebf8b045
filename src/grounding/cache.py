"""Everything grounding keeps between runs, under one root (GROUNDING_CACHE, by default
~/.cache/grounding, read at each use), one folder per kind. Each kind has a size limit: after a
new entry is written, the entries used least recently go until the kind fits (an entry is a file
or a folder directly under the kind's folder). `grounding cache info` shows them, `grounding
cache clear` empties them. Every cache that reads an entry verifies it and makes a damaged one
again, so removing anything here costs only time."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

GIB = 2 ** 30


@dataclass(frozen=True)
class Kind:
    name: str
    holds: str
    limit: int  # bytes kept at most


KINDS = {kind.name: kind for kind in (
    Kind("classifiers", "zero-shot classifiers of label sets (inference/)", GIB // 4),
    Kind("features", "backbone features of training images, for locked towers (training/feed.py)", 20 * GIB),
    Kind("exported", "the built-in model's onnxruntime copy (inference/onnx.py)", 2 * GIB),
    Kind("vocabularies", "the synthetic world's learned vocabulary (vocabulary.py)", GIB // 16),
    Kind("iconify", "Iconify icons rendered to PNG (data/emoji.py)", 4 * GIB),
    Kind("gcompris", "GCompris's photos read out of its resource files (data/clipart.py)", GIB),
    Kind("npm", "npm packages unpacked from their `npm pack` .tgz files (data/sources.py)", 4 * GIB),
)}


def root() -> Path:
    return Path(os.environ.get("GROUNDING_CACHE") or Path.home() / ".cache" / "grounding")


def folder(kind: str) -> Path:
    """Where entries of `kind` live (not made here)."""
    return root() / KINDS[kind].name


def touch(entry: Path) -> None:
    """Marks an entry as just used (eviction keeps the recently used)."""
    try:
        os.utime(entry)
    except OSError:  # a read-only cache still serves
        pass


def _size(entry: Path) -> int:
    if entry.is_dir() and not entry.is_symlink():
        return sum(f.stat().st_size for f in entry.rglob("*") if f.is_file() and not f.is_symlink())
    try:
        return entry.lstat().st_size
    except OSError:
        return 0


def entries(kind: str) -> list[Path]:
    """The kind's entries, most recently used first; scratch files of writes under way aside."""
    base = folder(kind)
    if not base.is_dir():
        return []
    found = [p for p in base.iterdir() if not p.name.startswith(".")]
    return sorted(found, key=lambda p: p.lstat().st_mtime, reverse=True)


def evict(kind: str, keep: Path | None = None) -> int:
    """Removes the least recently used entries of `kind` past its limit (never `keep`); the bytes
    freed."""
    limit, total, freed = KINDS[kind].limit, 0, 0
    for entry in entries(kind):
        size = _size(entry)
        total += size
        if total > limit and entry != keep:
            freed += size
            _remove(entry)
    return freed


def info() -> list[tuple[Kind, int, int]]:
    """(kind, entries, bytes) for every kind."""
    return [(kind, len(found := entries(kind.name)), sum(_size(e) for e in found)) for kind in KINDS.values()]


def clear(kinds: list[str] | None = None) -> int:
    """Empties the kinds named (all, by default); the bytes freed."""
    freed = 0
    for kind in kinds or list(KINDS):
        for entry in entries(kind):
            freed += _size(entry)
            _remove(entry)
    return freed


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)
