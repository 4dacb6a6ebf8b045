"""The pointing game: does a phrase's heat map peak inside the named object's box?"""
from __future__ import annotations

import numpy as np

from ...data.synthetic import World
from ...models import CLIP
from .locate import heat_maps


def pointing_game(model: CLIP, n_scenes: int = 200, seed: int = 3, world: World | None = None,
                  method: str = "occlusion", window: int | None = None) -> dict:
    """Scenes of 2 to 3 objects; each object whose colour-shape pair is unique in its scene is
    named ("the red circle") and the heat map's maximum must fall inside its box. A model that
    ignores location hits the box as often as a random point: the box's share of the image."""
    world = world or World(held_out=())
    rng = np.random.default_rng([seed, 8])
    size = model.config.vision.image_size
    hits, shares = [], []
    for _ in range(n_scenes):
        scene = world.sample(rng, "any", n_objects=int(rng.integers(2, 4)))
        pairs = [(o.colour, o.shape) for o in scene.objects]
        named = [o for o in scene.objects if pairs.count((o.colour, o.shape)) == 1]
        if not named:
            continue
        pixels = model.preprocess(scene.render(size))
        heat = heat_maps(model, pixels, [f"the {o.colour} {o.shape}" for o in named], method, window).numpy()
        for obj, h in zip(named, heat):
            y, x = np.unravel_index(int(h.argmax()), h.shape)
            x0, y0, x1, y1 = obj.box(size)
            hits.append(x0 <= x + 0.5 <= x1 and y0 <= y + 0.5 <= y1)
            shares.append(min(x1 - x0, size) * min(y1 - y0, size) / size ** 2)
    return {"method": method, "accuracy": float(np.mean(hits)), "chance": float(np.mean(shares)),
            "phrases": len(hits)}
