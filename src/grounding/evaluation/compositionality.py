"""The compositionality score: how often the model prefers a scene's true caption to every
caption made of the same words in a wrong arrangement (colours or shapes swapped between two
objects, the relation reversed). A model that reads captions as bags of words scores about
1 / (1 + negatives) per scene, however good its zero-shot accuracy."""
from __future__ import annotations

import numpy as np
import torch

from ..data.synthetic import World
from ..inference.encode import encode_texts
from ..models import CLIP


@torch.no_grad()
def compositionality_score(model: CLIP, world: World, n_scenes: int = 200, seed: int = 5,
                           split: str = "any") -> dict[str, float]:
    """The share of two-object scenes whose true caption outscores all its hard negatives, and
    the rate a caption-blind (random) scorer would reach."""
    rng = np.random.default_rng([seed, 9])
    size = model.config.vision.image_size
    wins, chance = [], []
    for _ in range(n_scenes):
        scene = world.sample(rng, split, n_objects=2)
        negatives = scene.hard_negatives()
        if not negatives:
            continue
        image = model.encode_image(model.preprocess(scene.render(size))[None], normalize=True)
        texts = encode_texts(model, [scene.caption(), *negatives])
        scores = (image @ texts.t())[0]
        wins.append(bool(scores[0] > scores[1:].max()))
        chance.append(1 / (1 + len(negatives)))
    return {"score": float(np.mean(wins)), "chance": float(np.mean(chance)), "scenes": len(wins)}
