"""Images with boxes: the built-in world's scenes, each object's box and its colour-shape phrase
known exactly. A detector trains on the seen colour-shape pairs only; the held-out pairs stay
unseen as queries too, so that finding them measures composition, not memory."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...data.images import ImageRef
from ...data.synthetic import COLOURS, SHAPES, SPLITS, World


@dataclass
class BoxedImage:
    ref: ImageRef
    boxes: np.ndarray  # (objects, 4) corners x0, y0, x1, y1 as shares of the side, in [0, 1]
    labels: list[str]  # each object's class, a query text


def phrase(colour: str, shape: str) -> str:
    return f"{colour} {shape}"


class SyntheticBoxes:
    """A seeded stream of scenes with their boxes: batch `step` is always the same."""

    def __init__(self, world: World | None = None, seed: int = 0, split: str = "train"):
        self.world, self.seed, self.split = world or World(), seed, split
        held = set(self.world.held_out)
        every = [(c, s) for c in COLOURS for s in SHAPES]
        self.seen = [phrase(c, s) for c, s in every if (c, s) not in held]
        self.unseen = [phrase(c, s) for c, s in every if (c, s) in held]

    @property
    def classes(self) -> list[str]:
        """The queries of this split: the seen pairs in training, every pair otherwise."""
        return self.seen if self.split == "train" else self.seen + self.unseen

    def batch(self, step: int, size: int) -> list[BoxedImage]:
        rng = np.random.default_rng([self.seed, step, SPLITS[self.split], 11])
        examples = []
        for _ in range(size):
            scene = self.world.sample(rng, self.split)
            boxes = np.array([obj.box(1) for obj in scene.objects], dtype=np.float32).clip(0, 1)
            examples.append(BoxedImage(ImageRef(scene=scene), boxes, [phrase(o.colour, o.shape) for o in scene.objects]))
        return examples


def targets(examples: list[BoxedImage], classes: list[str], device: torch.device) -> list[dict[str, torch.Tensor]]:
    """Per image, its boxes (cx, cy, w, h) and their class indices among `classes`; objects of
    other classes are left out."""
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for e in examples:
        keep = [i for i, label in enumerate(e.labels) if label in index]
        corners = torch.as_tensor(e.boxes[keep], dtype=torch.float32, device=device).reshape(-1, 4)
        centred = torch.cat([(corners[:, :2] + corners[:, 2:]) / 2, corners[:, 2:] - corners[:, :2]], dim=1)
        out.append({"boxes": centred, "labels": torch.tensor([index[e.labels[i]] for i in keep], device=device,
                                                             dtype=torch.long)})
    return out
