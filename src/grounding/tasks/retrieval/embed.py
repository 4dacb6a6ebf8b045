"""`grounding embed`: encode a collection into a sharded embedding store. Decoding runs in worker
processes; each finished shard is on disk, so a killed run resumes by skipping them, and memory
holds one shard at a time whatever the collection's size."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ...data.images import BATCH_SIZE, WORKERS, ImageList
from ...data.inputs import list_items
from ...errors import BadInput
from ...files import folder_lock, read_lines
from ...inference.encode import encode_images, encode_texts
from ...models import CLIP
from ...progress import Progress
from ...saved import fingerprint, reference
from .store import Store, items_manifest


def embed_images(model: CLIP, spec: str, out: Path, model_name: str, shard_size: int = 4096,
                 batch_size: int = BATCH_SIZE, workers: int = WORKERS, show_progress: bool = True) -> Store:
    """Encodes the collection SPEC into the store OUT (locked while it runs)."""
    items, left_out = list_items(spec)
    if not items:
        raise BadInput(f"{spec}: no images found" + (f" ({left_out[0]})" if left_out else ""))
    Store(Path(out)).check_out()
    with folder_lock(out, "grounding embed"):
        return _embed_images(model, items, left_out, spec, Path(out), model_name, shard_size, batch_size, workers,
                             show_progress)


@torch.no_grad()
def _embed_images(model: CLIP, items: list, left_out: list[str], spec: str, out: Path, model_name: str,
                  shard_size: int, batch_size: int, workers: int, show_progress: bool) -> Store:
    """`left_out`: what listing the collection skipped, kept with the first shard's skipped files."""
    store = Store(Path(out))
    store.begin({"kind": "image", "source": spec, "model": reference(model_name), "model_fingerprint": fingerprint(model),
                 "embed_dim": model.config.embed_dim, "shard_size": shard_size, **items_manifest([i.key for i in items])})
    starts = range(0, len(items), shard_size)
    todo = [s for s in starts if not store.done(s // shard_size)]
    done = len(items) - sum(min(shard_size, len(items) - s) for s in todo)
    with Progress("embed", len(items), done, show_progress) as progress:
        began, count = time.perf_counter(), 0
        for start in todo:
            shard = items[start:start + shard_size]
            vectors, keep, skipped = [], [], left_out if start == 0 else []
            for features, index, errors in encode_images(model, ImageList([i.ref for i in shard]), batch_size, workers):
                if features is not None:
                    vectors.append(features.cpu().numpy())
                    keep += index.tolist()
                skipped += errors
                count += len(index) + len(errors)
                progress.advance(len(index) + len(errors), f"{count / (time.perf_counter() - began):.1f} items/s")
            dim = model.config.embed_dim
            store.write_shard(start // shard_size, np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32),
                              [shard[i].key for i in keep], [shard[i].caption for i in keep], skipped)
    return store


def embed_texts(model: CLIP, texts_file: Path, out: Path, model_name: str, shard_size: int = 4096,
                batch_size: int = 256, show_progress: bool = True) -> Store:
    """One text per line of `texts_file`; each row's key is the text itself. OUT is locked while it runs."""
    texts = read_lines(texts_file, "--texts wants one text a line")
    if not texts:
        raise BadInput(f"{texts_file}: no texts in it (one text a line)")
    Store(Path(out)).check_out()
    with folder_lock(out, "grounding embed"):
        return _embed_texts(model, texts, texts_file, Path(out), model_name, shard_size, batch_size, show_progress)


@torch.no_grad()
def _embed_texts(model: CLIP, texts: list[str], texts_file: Path, out: Path, model_name: str, shard_size: int,
                 batch_size: int, show_progress: bool) -> Store:
    store = Store(Path(out))
    store.begin({"kind": "text", "source": str(texts_file), "model": reference(model_name),
                 "model_fingerprint": fingerprint(model), "embed_dim": model.config.embed_dim,
                 "shard_size": shard_size, **items_manifest(texts)})
    with Progress("embed", len(texts), show=show_progress) as progress:
        for start in range(0, len(texts), shard_size):
            shard = texts[start:start + shard_size]
            if not store.done(start // shard_size):
                vectors = encode_texts(model, shard, batch_size).cpu().numpy()
                store.write_shard(start // shard_size, vectors, shard, list(shard), [])
            progress.advance(len(shard))
    return store
