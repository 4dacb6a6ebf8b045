"""From image-label similarities to probabilities, and where a label set's classifier is kept:
the same for both engines, and free of PyTorch (the onnxruntime path imports this)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import cache

ACTIVATIONS = ("softmax", "sigmoid")


def probabilities(logits: np.ndarray, activation: str = "softmax") -> np.ndarray:
    """Each row's label probabilities: a softmax over the labels (CLIP: they compete and sum to 1),
    or each label's own sigmoid (SigLIP: trained label by label, so they need not sum to 1)."""
    logits = np.asarray(logits)
    if activation == "sigmoid":
        return np.exp(-np.logaddexp(0, -logits)).astype(logits.dtype)
    if activation != "softmax":
        raise ValueError(f"unknown activation {activation!r}: use one of {ACTIVATIONS}")
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def classifier_path(model_identity: str, texts: Sequence[str], templates: int, precision: str) -> Path:
    """Where the classifier of these prompt texts (labels x templates, label-major) is kept: one
    key scheme for both engines, from what the classifier depends on (the text side's identity,
    the texts as the tokenizer sees them, the template count and the precision it ran in)."""
    key = hashlib.sha256(json.dumps([model_identity, list(texts), templates, precision]).encode()).hexdigest()
    path = cache.folder("classifiers") / f"{key[:32]}.safetensors"
    if path.exists():
        cache.touch(path)
    else:  # about to be made: the least recently used go first, past the limit
        cache.evict("classifiers")
    return path
