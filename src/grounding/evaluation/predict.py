"""Scoring a whole dataset against a zero-shot classifier, streamed: worker processes decode
and preprocess batches while the main process encodes, and only the score matrix is kept."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..data.examples import Dataset
from ..data.images import BATCH_SIZE, WORKERS
from ..inference.encode import cached_text_classifier, encode_images, encode_texts, logits, text_classifier
from ..inference.scores import probabilities
from ..inference.templates import resolve_templates
from ..models import CLIP
from .metrics import ranks, retrieval_ranks


@dataclass
class Predictions:
    """Scores of the examples that could be read, in dataset order, and what was skipped."""

    logits: np.ndarray  # (examples, labels): scale * cosine similarity (+ bias)
    indices: np.ndarray  # each row's index into the dataset
    skipped: list[str]
    activation: str = "softmax"

    @property
    def probs(self) -> np.ndarray:
        return probabilities(self.logits, self.activation)


@torch.no_grad()
def predict(model: CLIP, dataset: Dataset, classifier: torch.Tensor, batch_size: int = BATCH_SIZE,
            workers: int = WORKERS, show_progress: bool = True) -> Predictions:
    rows, indices, skipped = [], [], []
    for features, index, errors in encode_images(model, dataset, batch_size, workers, show_progress):
        skipped += errors
        if features is not None:
            rows.append(logits(model, features, classifier).cpu().numpy())
            indices.append(index)
    n_labels = classifier.shape[1]
    return Predictions(np.concatenate(rows) if rows else np.zeros((0, n_labels), np.float32),
                       np.concatenate(indices) if indices else np.zeros(0, np.int64), skipped, model.activation)


def predict_zero_shot(model: CLIP, dataset: Dataset, templates: Sequence[str] | None = None, cache: bool = False,
              batch_size: int = BATCH_SIZE, workers: int = WORKERS, show_progress: bool = True) -> Predictions:
    """The dataset scored against a classifier from its labels, in the given templates or its
    own set (`cache`: the classifier kept on disk for the next use)."""
    templates = templates or resolve_templates(None, dataset.templates)
    classifier = (cached_text_classifier if cache else text_classifier)(model, dataset.classes, templates)
    return predict(model, dataset, classifier, batch_size, workers, show_progress)


@torch.no_grad()
def pair_ranks(model: CLIP, images, captions: list[str], workers: int = WORKERS, show_progress: bool = False
               ) -> tuple[list[int], np.ndarray, np.ndarray, list[str]]:
    """Retrieval over images (anything with .image(i)), image i with the captions captions[i] (a
    text or a list of them): the rows whose images could be read; each one's image-to-text rank
    (of the best placed of its captions among all captions); each of their captions'
    text-to-image rank among those images, in order; and the messages of the images skipped."""
    rows, features, skipped = [], [], []
    for batch, index, errors in encode_images(model, images, workers=workers, show_progress=show_progress):
        skipped += errors
        if batch is not None:
            features.append(batch.float().cpu().numpy())
            rows += index.tolist()
    if not rows:
        return rows, np.zeros(0, np.int64), np.zeros(0, np.int64), skipped
    own = [[captions[i]] if isinstance(captions[i], str) else list(captions[i]) for i in rows]
    owner = np.repeat(np.arange(len(rows)), [len(texts) for texts in own])
    texts = encode_texts(model, [text for texts in own for text in texts]).cpu().numpy()
    similarity = np.concatenate(features) @ texts.T  # rows: images, columns: every caption, image by image
    return rows, retrieval_ranks(similarity, owner), ranks(similarity.T, owner), skipped
