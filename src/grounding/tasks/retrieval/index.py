"""faiss indexes over an embedding store. Exact inner-product search up to EXACT_LIMIT vectors;
above it HNSW (a graph, about 1.3x the vectors' memory, no training) by default, or IVF-PQ
(compressed codes, re-ranked exactly) with `kind='ivfpq'` when memory is short.

    DIR/index/index.faiss  the faiss index
    DIR/index/meta.json    kind, count, embed_dim, the store's manifest (model identity)
    DIR/index/items.json   keys and captions of the rows

The three files are written into a fresh folder that then replaces DIR/index by renames, so a
reader finds the old index or the new one, never a mix.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ...errors import BadInput, NotFound, need
from ...files import folder_lock, reading, write_json_atomic
from .store import Store

EXACT_LIMIT = 100_000
IVFPQ_MIN = 256  # its product quantiser learns 256 codes per sub-vector, from at least as many vectors
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 160


def choose_kind(count: int) -> str:
    return "flat" if count <= EXACT_LIMIT else "hnsw"


def _faiss():
    return need("faiss", "search", "a vector index")


def make_index(vectors: np.ndarray, kind: str):
    faiss = _faiss()
    dim = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind == "ivfpq":
        if len(vectors) < IVFPQ_MIN:
            raise BadInput(f"an ivfpq index learns 256 codes per sub-vector, so it needs at least {IVFPQ_MIN} vectors; "
                           f"the store has {len(vectors):,}: use --kind flat (exact) or hnsw")
        nlist = max(1, min(4096, int(4 * np.sqrt(len(vectors)))))
        m = next(m for m in (64, 32, 16, 8, 4, 2, 1) if dim % m == 0)
        coarse = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFPQ(coarse, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        sample = vectors[np.random.default_rng(0).permutation(len(vectors))[:max(nlist * 40, 10_000)]]
        ivf.train(sample)
        ivf.nprobe = min(nlist, 64)
        index = faiss.IndexRefineFlat(ivf)
        index.k_factor = 8
    else:
        raise BadInput(f"unknown index kind {kind!r}: use flat, hnsw or ivfpq")
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def build_index(folder: Path, kind: str | None = None) -> dict:
    """Builds the store's index (the store is locked while it runs)."""
    _faiss()  # a missing extra is said before any work
    Store(Path(folder)).manifest  # a folder that is not a store: say so before locking (which makes it)
    with folder_lock(folder, "grounding index build"):
        return _build_index(Path(folder), kind)


def _build_index(folder: Path, kind: str | None) -> dict:
    store = Store(Path(folder))
    manifest = store.manifest
    vectors, keys, captions, _ = store.read()
    if len(vectors) == 0:
        raise BadInput(f"{folder}: the store holds no embeddings")
    kind = kind or choose_kind(len(vectors))
    index = make_index(vectors, kind)
    final, staging, old = store.folder / "index", store.folder / ".index-new", store.folder / ".index-old"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    _faiss().write_index(index, str(staging / "index.faiss"))
    write_json_atomic(staging / "items.json", {"keys": keys, "captions": captions})
    meta = {"kind": kind, "count": len(keys), "embed_dim": int(vectors.shape[1]), "store": manifest}
    write_json_atomic(staging / "meta.json", meta)
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
    return meta


class Index:
    """A built index, searched with unit query vectors."""

    def __init__(self, path: Path):
        path = Path(path)
        folder = path / "index" if (path / "index" / "meta.json").is_file() else path
        if not (folder / "meta.json").is_file():
            raise NotFound(f"{path}: no index here; build one with `grounding index build {path}`")
        fix = f"build it again: grounding index build {path}"
        with reading(folder / "meta.json", fix):
            self.meta = json.loads((folder / "meta.json").read_text())
            self.meta["kind"]
        with reading(folder / "items.json", fix):
            items = json.loads((folder / "items.json").read_text())
            self.keys, self.captions = items["keys"], items["captions"]
        faiss = _faiss()
        with reading(folder / "index.faiss", fix):
            self.index = faiss.read_index(str(folder / "index.faiss"))
        if self.index.ntotal != len(self.keys):
            raise BadInput(f"{folder / 'index.faiss'}: {self.index.ntotal} vectors for {len(self.keys)} items; {fix}")
        if self.meta["kind"] == "hnsw":
            faiss.downcast_index(self.index).hnsw.efSearch = HNSW_EF_SEARCH

    @property
    def kind(self) -> str:
        """What the rows are: 'image' or 'text'."""
        return self.meta["store"]["kind"]

    def check_model(self, model_fingerprint: str, embed_dim: int) -> None:
        store = self.meta["store"]
        if store["model_fingerprint"] != model_fingerprint or store["embed_dim"] != embed_dim:
            raise BadInput(f"this index was built with another model ({store['model']}, {store['embed_dim']}-d); "
                           f"query it with that model (--model {store['model']})")

    def search_rows(self, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Top-k (row, cosine) per query."""
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(self.keys)))
        return [[(int(r), float(s)) for s, r in zip(srow, rrow) if r >= 0] for srow, rrow in zip(scores, rows)]

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Top-k (key, cosine) per query."""
        return [[(self.keys[r], s) for r, s in hits] for hits in self.search_rows(queries, k)]
