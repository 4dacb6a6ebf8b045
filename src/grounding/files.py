"""Atomic file writes: a reader, or a run killed at any instant, sees the old file or the new
one, never half of one; arrays kept on disk between runs (`cached_array`); and the stamp by
which a cache tells a changed file (`stamp`)."""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .errors import AlreadyExists, BadInput, NotFound


def _umask() -> int:
    """The process's umask, read without changing it (Linux reports it in /proc; elsewhere it can
    only be read by setting it and setting it back)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside `path`; on success it is synced and renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes 0600, and some writers (safetensors) make the file anew: give it the usual mode
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cached_array(path: Path, shape: tuple[int, ...], make: Callable[[], np.ndarray], what: str) -> np.ndarray:
    """The array kept at `path` (a safetensors file, under the name `what`, with the SHA-256 of
    its bytes) when it is there, of `shape` and its bytes match the digest; else `make()`, kept
    there. A damaged entry (cut short, or a bit flipped) is said in a warning and made again."""
    from safetensors import SafetensorError, safe_open
    from safetensors.numpy import save_file

    if path.is_file():
        damaged = True
        try:
            with safe_open(str(path), framework="np") as f:
                digest, kept = (f.metadata() or {}).get("sha256"), f.get_tensor(what)
            if digest is None:  # written before entries carried a digest: made again, quietly
                damaged = False
            elif kept.shape == shape and hashlib.sha256(kept.tobytes()).hexdigest() == digest:
                return kept
        except (SafetensorError, OSError, KeyError):
            pass
        if damaged:
            warnings.warn(f"{path}: a damaged {what} cache entry; made it again", stacklevel=2)
    array = np.ascontiguousarray(make(), dtype=np.float32)
    try:
        with atomic_path(path) as tmp:
            save_file({what: array}, str(tmp), metadata={"sha256": hashlib.sha256(array.tobytes()).hexdigest()})
    except OSError as e:  # a read-only or full cache: the answer is still right, only not kept
        warnings.warn(f"{path.parent}: cannot keep the {what} there ({e.strerror or e}); it is made anew each "
                      "time: set GROUNDING_CACHE to a folder you can write", stacklevel=2)
    return array


def stamp(path: str | Path) -> str:
    """A file's size and modification time, "missing" for no file: a changed file, a new stamp."""
    try:
        stat = Path(path).stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        return "missing"


def write_text_atomic(path: str | Path, text: str) -> None:
    """UTF-8; a file name that was not UTF-8 (held as surrogates) is written back as its own bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")


def write_json_atomic(path: str | Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_jsonl_atomic(path: str | Path, records: Iterable[dict]) -> None:
    """One JSON object a line (predictions.jsonl, ranks.jsonl)."""
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """A matplotlib figure as a PNG, atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path


def read_lines(path: str | Path, what: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file (a byte-order mark ignored), stripped; `what` says
    what the file holds, in the errors: a missing file, a folder, or bytes that are not UTF-8."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{path}: a folder, not a file ({what})")
    if not path.is_file():
        raise NotFound(f"{path}: no such file ({what})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise BadInput(f"{path}: line {line} is not UTF-8 text (byte 0x{e.object[e.start]:02x}); save the file "
                       "as UTF-8") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_csv_rows(path: str | Path, required: set[str], usage: str) -> list[dict[str, str]]:
    """A CSV's rows as dicts; the file must exist and its header name every `required` column.
    Every CSV in the project names its image files in an `image` column (relative to the CSV);
    `path`, the name earlier versions used, is read as `image`. A byte-order mark is ignored."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path}: no such file ({usage})")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows, header = list(reader), reader.fieldnames or []
    except UnicodeDecodeError as e:
        raise BadInput(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x}); save it as UTF-8 ({usage})") from None
    header = ["image" if name == "path" and "image" not in header else name for name in header]
    rows = [dict(zip(header, row.values())) for row in rows]
    if not required <= set(header):
        raise BadInput(f"{path}: needs a header with the column(s) {', '.join(sorted(required))} ({usage})")
    if not rows:
        raise BadInput(f"{path}: a header and no rows; add a row per image ({usage})")
    return rows


class FolderError(BadInput):
    """An output folder that cannot be used (a file, not writable, someone else's files)."""


@contextmanager
def reading(path: str | Path, fix: str) -> Iterator[None]:
    """Any failure to read or parse `path` inside the block becomes one BadInput naming the
    file, what went wrong, and `fix` (a damaged store, index or run file)."""
    try:
        yield
    except (OSError, ValueError, RuntimeError, EOFError, KeyError, TypeError) as e:
        if not Path(path).exists():
            raise NotFound(f"{path}: missing; {fix}") from None
        reason = (str(e).strip().splitlines() or [type(e).__name__])[-1].rpartition("failed: ")[2]  # faiss: the gist
        raise BadInput(f"{path}: damaged or cut short ({reason}); {fix}") from None


def writable_folder(folder: str | Path) -> Path:
    """Makes `folder` if needed; a FolderError naming it if it is a file or cannot be written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FolderError(f"{folder}: a file, not a folder; choose a folder for the output")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise FolderError(f"{folder}: cannot write here ({e.strerror}); choose a folder you can write to") from None
    return folder


def refuse_foreign(folder: str | Path, ours: bool, allowed: set[str], fix: str) -> None:
    """The one rule for a command's output folder: a FolderError if `folder` is a file, or if it
    is not `ours` (a run's, a store's, or the user passed --overwrite) and holds files other than
    `allowed` (names or shell patterns: what the command itself writes; the lock always is, and
    so are the temporaries of `atomic_path` that a killed job leaves);
    `fix` says what to do instead. Nothing is written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FolderError(f"{folder}: a file, not a folder; choose a folder for the output")
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise FolderError(f"{folder}: {existing} is a file, so no folder can be made there; choose another output "
                          "folder")
    if not os.access(existing, os.W_OK):
        raise FolderError(f"{folder}: cannot write in {existing} (read-only); choose a folder you can write to")
    if ours or not folder.is_dir():
        return
    others = sorted(p.name for p in folder.iterdir()
                    if not any(fnmatch.fnmatchcase(p.name, pattern) for pattern in allowed | {".lock", ".*.tmp"}))
    if others:
        raise FolderError(f"{folder} holds {len(others)} file(s) ({', '.join(others[:3])}) of something else; {fix}")


class FolderInUseError(AlreadyExists):
    """Another process holds the folder's lock; the message names it."""


_HELD: set[Path] = set()  # folders this process holds (POSIX locks do not stop the process itself)


@contextmanager
def folder_lock(folder: str | Path, what: str) -> Iterator[None]:
    """Holds FOLDER/.lock for the life of a job that writes into the folder (a training run, an
    embedding store, an index), so that a second writer is refused instead of mixing its files
    in. A POSIX record lock (lockf): it dies with the process, even after SIGKILL, and, unlike
    flock, is not inherited by forked data workers that may outlive a killed run for a moment."""
    import fcntl
    import socket

    folder = writable_folder(folder)
    path = folder / ".lock"
    if path.resolve() in _HELD:  # checked before opening: closing any handle drops this process's lock
        raise FolderInUseError(f"{folder} is in use by this process ({what}); wait for it to finish, or choose "
                               "another folder")
    handle = open(path, "a+")
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise FolderInUseError(f"{folder} is in use by {holder}; wait for it to finish, or choose another "
                               "folder") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()} ({what})\n")
    handle.flush()
    _HELD.add(path.resolve())
    try:
        yield
    finally:
        _HELD.discard(path.resolve())
        handle.close()
