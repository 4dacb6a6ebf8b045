"""Classification metrics over a score matrix (examples x labels). Ties in ranks are counted in
the correct label's favour everywhere (only strictly higher scores rank above it)."""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence

import numpy as np


def topk_accuracy(scores, targets, k: int = 1) -> float:
    """Share of examples whose correct label ranks k-th or better (arrays or CPU tensors)."""
    scores, targets = np.asarray(scores), np.asarray(targets)
    if len(targets) == 0:
        return float("nan")
    return float(np.mean(ranks(scores, targets) <= k))


def ranks(scores, targets) -> np.ndarray:
    """1-based rank of each row's correct column (arrays or CPU tensors); ties count in its
    favour: only strictly higher scores rank above it."""
    scores, targets = np.asarray(scores), np.asarray(targets, dtype=np.int64)
    correct = np.take_along_axis(scores, targets[:, None], axis=1)
    return (scores > correct).sum(axis=1) + 1


def retrieval_ranks(similarity: np.ndarray, owner: np.ndarray | None = None) -> np.ndarray:
    """For each row of a queries x items matrix, the rank of the best placed of its own items:
    item j belongs to row owner[j] (by default, item i to row i)."""
    if owner is None:
        return ranks(similarity, np.arange(len(similarity)))
    best = np.full(len(similarity), -np.inf)
    np.maximum.at(best, owner, similarity[owner, np.arange(len(owner))])
    return 1 + (similarity > best[:, None]).sum(axis=1)


def rank_summary(ranks: np.ndarray) -> dict:
    return {**{f"recall@{k}": float(np.mean(ranks <= k)) for k in (1, 5, 10)},
            "mean_rank": float(ranks.mean()), "median_rank": float(np.median(ranks))}


def bootstrap_interval(correct: np.ndarray, n_resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of a 0/1 vector."""
    if len(correct) == 0 or n_resamples == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), size=(n_resamples, len(correct)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def per_class_recall(predictions: np.ndarray, targets: np.ndarray, num_classes: int) -> np.ndarray:
    """Recall of each class; NaN for a class with no examples."""
    recall = np.full(num_classes, np.nan)
    for c in range(num_classes):
        mask = targets == c
        if mask.any():
            recall[c] = float(np.mean(predictions[mask] == c))
    return recall


def mean_per_class_recall(predictions: np.ndarray, targets: np.ndarray, num_classes: int) -> float:
    """Mean recall over the classes that have examples (empty classes are left out)."""
    recall = per_class_recall(predictions, targets, num_classes)
    return float(np.nanmean(recall)) if np.isfinite(recall).any() else float("nan")


def confusion_matrix(predictions: np.ndarray, targets: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, rows the true class and columns the predicted one."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (targets, predictions), 1)
    return matrix


def most_confused(matrix: np.ndarray, labels: list[str], n: int = 10) -> list[tuple[str, str, int]]:
    """The off-diagonal cells with the most examples: (true label, predicted label, count)."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:n]
    pairs = [np.unravel_index(i, off.shape) for i in order]
    return [(labels[t], labels[p], int(off[t, p])) for t, p in pairs if off[t, p] > 0]


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> dict:
    """Expected calibration error over equal-width confidence bins, and the bins themselves
    (mean confidence, accuracy and count per bin) for a reliability plot."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    table = []
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            conf, acc = float(confidence[mask].mean()), float(correct[mask].mean())
            ece += mask.mean() * abs(conf - acc)
            table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "confidence": conf,
                          "accuracy": acc, "count": int(mask.sum())})
    return {"ece": float(ece), "bins": table}


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Area under the precision-recall curve as a step function (the mean of precision at each
    relevant example), scoring tied examples together. NaN when nothing is relevant."""
    relevant = relevant.astype(bool)
    if not relevant.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    s, r = scores[order], relevant[order]
    # the last index of each run of tied scores: precision is taken there
    ends = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    hits = np.cumsum(r)[ends]
    seen = ends + 1
    new_hits = np.diff(np.r_[0, hits])
    return float(np.sum(new_hits * hits / seen) / relevant.sum())


def mean_average_precision(scores: np.ndarray, relevant: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean over labels with at least one relevant example, and the per-label APs (NaN where none)."""
    per_label = np.array([average_precision(scores[:, j], relevant[:, j]) for j in range(scores.shape[1])])
    return (float(np.nanmean(per_label)) if np.isfinite(per_label).any() else float("nan")), per_label


def vqa_soft_scores(annotations: list[str]) -> dict[str, float]:
    """VQA's rule: an answer given by 3 or more of the annotators scores 1, fewer score n/3. With a
    single annotator, the answer scores 1."""
    counts = Counter(a.strip().lower() for a in annotations if a.strip())
    if len(annotations) == 1:
        return {a: 1.0 for a in counts}
    return {a: min(1.0, n / 3) for a, n in counts.items()}


def accuracy_by_type(scores: list[float], types: list[str], order: Sequence[str] = ()) -> dict[str, float]:
    """The mean score overall and per type (VQA accuracy), types in `order` first."""
    by_type: dict[str, list[float]] = defaultdict(list)
    for s, t in zip(scores, types):
        by_type[t].append(s)
    result = {"overall": sum(scores) / max(1, len(scores))}
    result.update({t: sum(v) / len(v) for t in [*order, *sorted(by_type)] if (v := by_type.get(t))})
    return result
