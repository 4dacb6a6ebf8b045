"""An embedding store: a folder of shards, each a float32 matrix of unit vectors and a JSON list
of what each row is, plus a manifest naming the model that made them.

    DIR/manifest.json      kind (image or text), model path and fingerprint, embed_dim, shard size,
                           the number of items and a hash of their ordered keys
    DIR/shard-00000.npy    (rows, embed_dim) float32
    DIR/shard-00000.json   {"keys": [...], "captions": [...], "skipped": [...]}, written last:
                           a shard is finished when its JSON exists
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import BadInput, NotFound
from ...files import atomic_path, reading, refuse_foreign, write_json_atomic

MANIFEST = "manifest.json"


def items_manifest(keys: list[str]) -> dict:
    """What a resumed store checks its input against: the count and a hash of the ordered keys."""
    digest = hashlib.sha256("\n".join(keys).encode("utf-8", "surrogateescape")).hexdigest()
    return {"items": len(keys), "items_sha256": digest}


@dataclass
class Store:
    folder: Path

    @property
    def manifest(self) -> dict:
        path = self.folder / MANIFEST
        if not path.is_file():
            raise NotFound(f"{self.folder}: no {MANIFEST}; make one with `grounding embed`")
        with reading(path, "embed into a new --out (this store cannot be resumed)"):
            return json.loads(path.read_text())

    def begin(self, manifest: dict) -> None:
        """Starts a store, or checks that a resumed one was made the same way."""
        path = self.folder / MANIFEST
        if path.is_file():
            old = json.loads(path.read_text())
            differ = [k for k in ("kind", "source", "model_fingerprint", "shard_size") if old.get(k) != manifest.get(k)]
            if differ:
                raise BadInput(f"{self.folder} holds embeddings made differently ({', '.join(differ)} differ); "
                               "choose another --out or delete it")
            if old.get("items_sha256", manifest["items_sha256"]) != manifest["items_sha256"] or \
                    old["items"] != manifest["items"]:
                raise BadInput(f"{self.folder}: the input changed since this store was begun ({old['items']} items "
                               f"then, {manifest['items']} now, or other files); resuming would mix the two, so "
                               "embed into a new --out, or delete this one to start over")
            return
        self.check_out()
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, manifest)

    def check_out(self) -> None:
        """Refuses a folder that is a file or holds other files but no store (before it is locked)."""
        refuse_foreign(self.folder, (self.folder / MANIFEST).is_file(), set(),
                       f"it is not an embedding store (no {MANIFEST}): choose an empty or new --out")

    def shard_path(self, index: int) -> Path:
        return self.folder / f"shard-{index:05d}"

    def done(self, index: int) -> bool:
        return self.shard_path(index).with_suffix(".json").is_file()

    def write_shard(self, index: int, vectors: np.ndarray, keys: list[str], captions: list[str | None],
                    skipped: list[str]) -> None:
        base = self.shard_path(index)
        with atomic_path(base.with_suffix(".npy")) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, vectors.astype(np.float32))
        write_json_atomic(base.with_suffix(".json"), {"keys": keys, "captions": captions, "skipped": skipped})

    def shards(self) -> list[int]:
        return sorted(int(p.stem.split("-")[1]) for p in self.folder.glob("shard-*.json"))

    def read(self) -> tuple[np.ndarray, list[str], list[str | None], list[str]]:
        """All vectors, keys, captions and skipped messages, in shard order."""
        vectors, keys, captions, skipped = [], [], [], []
        for index in self.shards():
            base = self.shard_path(index)
            fix = (f"delete {base.name}.json and {base.name}.npy and run the same `grounding embed` again: "
                   "it makes that shard anew and keeps the others")
            with reading(base.with_suffix(".json"), fix):
                meta = json.loads(base.with_suffix(".json").read_text())
                keys += meta["keys"]
                captions += meta["captions"]
                skipped += meta["skipped"]
            with reading(base.with_suffix(".npy"), fix):
                vectors.append(np.load(base.with_suffix(".npy"), allow_pickle=False))
        dim = self.manifest["embed_dim"]
        return (np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)), keys, captions, skipped
