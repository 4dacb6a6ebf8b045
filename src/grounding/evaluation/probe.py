"""Linear probes: multinomial logistic regression on frozen, normalised image features, the
comparison the CLIP paper drew against zero-shot. The L2 strength is chosen on a validation
split from a grid, then the probe is refitted on the training examples."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.examples import Dataset
from ..data.images import BATCH_SIZE, WORKERS
from ..inference.encode import encode_images
from ..models import CLIP

L2_GRID = tuple(10.0 ** e for e in range(-6, 2))


def features(model: CLIP, dataset: Dataset, batch_size: int = BATCH_SIZE, workers: int = WORKERS) -> tuple[np.ndarray, np.ndarray]:
    """Unit image features and labels of the readable examples."""
    feats, labels = [], []
    for batch, index, _ in encode_images(model, dataset, batch_size, workers, show_progress=False):
        if batch is not None:
            feats.append(batch.float().cpu().numpy())
            labels.append(np.array([dataset.targets[i][0] for i in index]))
    return np.concatenate(feats), np.concatenate(labels)


def fit(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float, steps: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias minimising mean cross-entropy + l2 * ||W||^2, by L-BFGS (convex, so exact
    up to tolerance)."""
    xt, yt = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.long)
    w = torch.zeros(x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=steps, tolerance_grad=1e-9, tolerance_change=1e-14,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach(), b.detach()


def accuracy(w: torch.Tensor, b: torch.Tensor, x: np.ndarray, y: np.ndarray) -> float:
    pred = (torch.as_tensor(x, dtype=torch.float64) @ w + b).argmax(dim=1).numpy()
    return float((pred == y).mean())


def k_shot(y: np.ndarray, k: int | None, seed: int) -> np.ndarray:
    """Indices of k examples per class (all of them for k=None), seeded."""
    rng = np.random.default_rng(seed)
    if k is None:
        return np.arange(len(y))
    picks = [rng.permutation(np.nonzero(y == c)[0])[:k] for c in np.unique(y)]
    return np.sort(np.concatenate(picks))


def probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, num_classes: int,
          shots: int | None, seed: int = 0) -> dict:
    """Fits on `shots` examples per class of the training pool; the L2 strength is chosen on a
    validation split: a fifth of the pool, kept out of the shots."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train_y))
    n_val = max(1, len(order) // 5)
    val, pool = order[:n_val], order[n_val:]
    chosen = pool[k_shot(train_y[pool], shots, seed)]
    scores = {l2: accuracy(*fit(train_x[chosen], train_y[chosen], num_classes, l2), train_x[val], train_y[val])
              for l2 in L2_GRID}
    best = max(scores, key=lambda l2: (scores[l2], l2))  # ties: the stronger regulariser
    w, b = fit(train_x[chosen], train_y[chosen], num_classes, best)
    return {"shots": shots or "all", "train_examples": int(len(chosen)), "l2": best,
            "validation_accuracy": scores[best], "test_accuracy": accuracy(w, b, test_x, test_y)}
