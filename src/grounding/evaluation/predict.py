"""Scoring a whole dataset against a zero-shot classifier, streamed: worker processes decode
and preprocess batches while the main process encodes, and only the score matrix is kept."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..data.datasets import Dataset
from ..data.images import BATCH_SIZE, WORKERS, ImageList, image_loader
from ..models import CLIP


@dataclass
class Predictions:
    """Scores of the examples that could be read, in dataset order, and what was skipped."""

    logits: np.ndarray  # (examples, labels): scale * cosine similarity
    indices: np.ndarray  # each row's index into the dataset
    skipped: list[str]

    @property
    def probs(self) -> np.ndarray:
        z = self.logits - self.logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


@torch.no_grad()
def encode_images(model: CLIP, dataset: Dataset, batch_size: int = BATCH_SIZE, workers: int = WORKERS,
                  show_progress: bool = True):
    """Yields (unit features, dataset indices, skipped messages) batch by batch."""
    loader = image_loader(dataset, model.preprocess, batch_size, workers)
    columns = [TextColumn("[bold]encode"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    device = next(model.parameters()).device
    with Progress(*columns, disable=not show_progress) as progress:
        task = progress.add_task("encode", total=len(dataset))
        for pixels, index, errors in loader:
            ok = torch.tensor([not e for e in errors], dtype=torch.bool)
            features = model.encode_image(pixels[ok].to(device), normalize=True) if ok.any() else None
            yield features, index[ok].numpy(), [e for e in errors if e]
            progress.advance(task, len(index))


@torch.no_grad()
def classify_files(model: CLIP, paths: list, classifier: torch.Tensor, batch_size: int = BATCH_SIZE, workers: int = WORKERS
                   ) -> Iterator[tuple[object, np.ndarray | None, str]]:
    """(path, probabilities over the classifier's labels, "") per image, in order, or (path,
    None, why) for an image that cannot be read; decoded in workers while the model encodes."""
    scale = model.logit_scale.exp().float()
    device = next(model.parameters()).device
    for pixels, index, errors in image_loader(ImageList(paths), model.preprocess, batch_size, workers):
        ok = torch.tensor([not e for e in errors], dtype=torch.bool)
        probs = iter([])
        if ok.any():
            features = model.encode_image(pixels[ok].to(device), normalize=True)
            probs = iter((scale * features @ classifier).softmax(dim=-1).cpu().numpy())
        for i, error in zip(index.tolist(), errors):
            yield paths[i], None if error else next(probs), error


@torch.no_grad()
def predict(model: CLIP, dataset: Dataset, classifier: torch.Tensor, batch_size: int = BATCH_SIZE, workers: int = WORKERS,
            show_progress: bool = True) -> Predictions:
    logits, indices, skipped = [], [], []
    scale = model.logit_scale.exp()
    for features, index, errors in encode_images(model, dataset, batch_size, workers, show_progress):
        skipped += errors
        if features is not None:
            logits.append((scale * features @ classifier).float().cpu().numpy())
            indices.append(index)
    n_labels = classifier.shape[1]
    return Predictions(np.concatenate(logits) if logits else np.zeros((0, n_labels), np.float32),
                       np.concatenate(indices) if indices else np.zeros(0, np.int64), skipped)


@torch.no_grad()
def pair_ranks(model: CLIP, images, captions: list[str], workers: int = WORKERS, show_progress: bool = False
               ) -> tuple[list[int], np.ndarray, np.ndarray, list[str]]:
    """Retrieval over images (a dataset with .image(i)) paired with captions[i]: the rows whose
    images could be read, each one's image-to-text and text-to-image rank among those rows, and
    the messages of the images skipped."""
    from .metrics import retrieval_ranks

    rows, features, skipped = [], [], []
    for batch, index, errors in encode_images(model, images, workers=workers, show_progress=show_progress):
        skipped += errors
        if batch is not None:
            features.append(batch.float().cpu().numpy())
            rows += index.tolist()
    if not rows:
        return rows, np.zeros(0, np.int64), np.zeros(0, np.int64), skipped
    kept = [captions[i] for i in rows]
    device = next(model.parameters()).device
    texts = np.concatenate([model.encode_text(model.tokenizer(kept[i:i + 256], truncate=True).to(device),
                                              normalize=True).float().cpu().numpy() for i in range(0, len(kept), 256)])
    similarity = np.concatenate(features) @ texts.T  # rows: images, columns: their captions, same order
    return rows, retrieval_ranks(similarity), retrieval_ranks(similarity.T), skipped
