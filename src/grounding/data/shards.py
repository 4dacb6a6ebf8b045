"""Webdataset shards from any training SPEC that lists its images (`grounding data shard`), for
training at scale from a few large files instead of many small ones:

    OUT/shard-00000.tar      KEY.EXT (the image's own bytes, checked to decode), KEY.txt (its
                             captions, one a line), KEY.json ({"source", "path"})
    OUT/manifest.json        the spec, samples and bytes per shard, and every file left out, with why

Each shard is written under a temporary name and renamed when whole. `train --data
tar:OUT/shard-{00000..NNNNN}.tar` reads them (the manifest gives the pattern)."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import BadInput, need
from ..files import folder_lock, refuse_foreign, write_json_atomic
from ..progress import Progress
from .images import BadImageError, load_image
from .pairs import listed_pairs

MANIFEST = "manifest.json"


def write_shards(spec: str, out: str | Path, shard_size: int = 1000, show_progress: bool = True) -> dict:
    """Writes the pairs of `spec` into shards of `shard_size` samples in `out` (a new or empty
    folder, locked while it runs); returns the manifest."""
    wds = need("webdataset", "shards", "grounding data shard")
    if shard_size < 1:
        raise BadInput(f"--shard-size {shard_size}: a shard holds at least 1 sample")
    out = Path(out)
    refuse_foreign(out, False, set(), "shards go into a new or empty folder of their own")
    pairs = listed_pairs(spec)
    shards, skipped, written = [], [], 0
    with folder_lock(out, "grounding data shard"), Progress("shard", len(pairs), show=show_progress) as progress:
        sink, count = None, 0
        for pair in pairs:
            progress.advance()
            try:
                load_image(pair.image)  # only images that decode go in
            except BadImageError as e:
                skipped.append({"path": str(pair.image), "reason": str(e)})
                continue
            if sink is None:
                path = out / f"shard-{len(shards):05d}.tar"
                tmp = path.with_name(f".{path.name}.tmp")
                sink, count = wds.TarWriter(str(tmp)), 0
            sink.write({"__key__": f"{written:09d}", pair.image.suffix.lower().lstrip("."): pair.image.read_bytes(),
                        "txt": "\n".join(pair.captions), "json": {"source": pair.source, "path": str(pair.image)}})
            written, count = written + 1, count + 1
            if count == shard_size:
                shards.append(_finish(sink, tmp, path, count))
                sink = None
        if sink is not None:
            shards.append(_finish(sink, tmp, path, count))
    if not shards:
        raise BadInput(f"{spec}: no image could be read, so no shard was written")
    last = len(shards) - 1
    manifest = {"spec": spec, "samples": written, "shard_size": shard_size, "shards": shards, "skipped": skipped,
                "bytes": sum(s["bytes"] for s in shards),
                "train_with": f"tar:{out}/shard-{{00000..{last:05d}}}.tar" if last else f"tar:{out}/shard-00000.tar"}
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


def _finish(sink, tmp: Path, path: Path, count: int) -> dict:
    """Closes a shard, syncs it and gives it its name: a shard appears whole or not at all."""
    sink.close()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return {"name": path.name, "samples": count, "bytes": path.stat().st_size}
