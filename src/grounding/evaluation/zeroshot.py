"""Zero-shot results as the CLIP paper's figures show them: per example, the correct label, its
rank among all labels and its probability (the classifier itself: inference/encode.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .metrics import ranks


@dataclass
class Example:
    """One example's zero-shot result, as printed and drawn on a card."""

    label: str
    rank: int
    num_labels: int
    probability: float
    top: list[tuple[str, float]]

    def summary(self) -> str:
        return (f"correct label: {self.label}    correct rank: {self.rank}/{self.num_labels}    "
                f"correct probability: {self.probability:.2%}")


def examples(probs: torch.Tensor, targets: torch.Tensor, labels: Sequence[str], k: int = 5) -> list[Example]:
    correct = ranks(probs.cpu(), targets.cpu())
    top_p, top_i = probs.topk(min(k, probs.shape[1]), dim=1)
    return [
        Example(labels[int(t)], int(r), len(labels), float(p[t]),
                [(labels[int(i)], float(q)) for q, i in zip(tp, ti)])
        for p, t, r, tp, ti in zip(probs, targets, correct, top_p, top_i)
    ]
