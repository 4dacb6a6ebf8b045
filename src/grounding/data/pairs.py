"""Sources of image-text training pairs. A source is asked for the batch of a given step, and
answers the same for the same step: that is what makes the data order seeded and resumable."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..tokenizer import Tokenizer
from .images import TrainTransform
from .synthetic import World


@dataclass
class SyntheticPairs:
    """Scenes of the built-in world with their captions; held-out combinations never appear."""

    world: World
    tokenizer: Tokenizer
    transform: TrainTransform
    seed: int = 0
    hard_negatives: bool = False

    def batch(self, step: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Pixels, caption ids and, with `hard_negatives`, one near-miss caption per image."""
        scenes = self.world.batch(self.seed, step, size, split="train")
        rng = np.random.default_rng([self.seed, step, 7])
        pixels = torch.stack([self.transform(s.render(self.transform.image_size), rng) for s in scenes])
        negatives = self.tokenizer([s.near_miss(rng) for s in scenes]) if self.hard_negatives else None
        return pixels, self.tokenizer([s.caption() for s in scenes]), negatives

