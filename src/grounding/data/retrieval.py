"""`retrieval-eval --pairs SPEC` (data/specs.py, role `pairs`): images each with their captions.

    synthetic[:n=500,seed=2,size=64]   scenes of the built-in world with distinct captions
    any listed training data           csv:PATH, folder:PATH, openclipart, ...: each image with
                                       its first caption
    coco:JSON[:SPLIT], flickr30k:JSON[:SPLIT], wds:DIR[:SPLIT]
                                       the standard retrieval benchmarks, every caption of each
                                       image (data/benchmarks.py)
"""
from __future__ import annotations

import numpy as np

from . import benchmarks
from .examples import CaptionedImages
from .images import ImageRef
from .pairs import clean_captions, listed_pairs
from .specs import parse_spec
from .synthetic import World


def open_retrieval(text: str) -> CaptionedImages:
    spec = parse_spec(text, "pairs")
    if spec.kind in ("coco", "flickr30k"):
        return benchmarks.captions_file(spec)
    if spec.kind == "wds":
        return benchmarks.wds_captions(spec)
    if spec.kind == "synthetic":
        n, seed = spec.option("n", 500), spec.option("seed", 2)
        rng, world, scenes, seen = np.random.default_rng([seed, 6]), World(), [], set()
        while len(scenes) < n:
            scene = world.sample(rng, "any")
            if scene.caption() not in seen:  # a caption shared by two images has no single right answer
                seen.add(scene.caption())
                scenes.append(scene)
        return CaptionedImages("synthetic", [f"synthetic/{seed}/{i:05d}" for i in range(n)],
                               [[s.caption()] for s in scenes], [ImageRef(scene=s) for s in scenes],
                               size=spec.option("size", 64))
    pairs = [p for p in listed_pairs(text) if clean_captions(p.captions)]
    return CaptionedImages(text, [str(p.image) for p in pairs], [clean_captions(p.captions)[:1] for p in pairs],
                           [ImageRef(p.image) for p in pairs])
