"""Batches from a fixed list of examples, walked in seeded permutations (batch `step` is always
the same, so a resumed run sees what an uninterrupted one would), and the seeded split of such
a list into training and held-out examples."""
from __future__ import annotations

from typing import Generic, Sequence, TypeVar

import numpy as np

from ..errors import BadInput

T = TypeVar("T")


class ListStream(Generic[T]):
    def __init__(self, examples: Sequence[T], seed: int = 0):
        if not examples:
            raise BadInput("no examples to train on")
        self.examples, self.seed = list(examples), seed
        self._orders: dict[int, np.ndarray] = {}

    def order(self, epoch: int) -> np.ndarray:
        """The seeded permutation of an epoch (kept: consecutive steps mostly share one)."""
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))}
        return self._orders[epoch]

    def batch(self, step: int, size: int) -> list[T]:
        n = len(self.examples)
        epoch, offset = divmod(step * size, n)
        order = self.order(epoch)
        return [self.examples[order[(offset + i) % n]] for i in range(size)]


def split_off(examples: Sequence[T], seed: int, share: float) -> tuple[list[T], list[T]]:
    """(kept, held out): a seeded `share` of the examples, at least one, held out."""
    order = np.random.default_rng(seed).permutation(len(examples))
    cut = max(1, int(len(examples) * share))
    return [examples[i] for i in order[cut:]], [examples[i] for i in order[:cut]]
