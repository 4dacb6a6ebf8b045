"""`grounding retrieval-eval`: text-to-image and image-to-text retrieval over paired data, with
recall@1/5/10, mean and median rank, and a rank record per example."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...data.images import WORKERS, ImageList, ImageRef
from ...data.pairs import clean_captions, listed_pairs
from ...data.specs import parse_spec
from ...data.synthetic import World
from ...evaluation.metrics import rank_summary
from ...evaluation.predict import pair_ranks
from ...files import write_json_atomic, write_jsonl_atomic
from ...models import CLIP


class Pairs(ImageList):
    """Images with one caption each, read lazily by worker processes."""

    def __init__(self, keys: list[str], captions: list[str], refs: list[ImageRef], size: int = 224):
        super().__init__(refs, size)
        self.keys, self.captions = keys, captions


def retrieval_pairs(spec: str) -> Pairs:
    """`synthetic[:n=500,seed=2,size=64]` (scenes with distinct captions), or any training-pairs
    SPEC that lists its images (csv:PATH with image,caption, folder:PATH, ...): each image with
    its first caption."""
    parsed = parse_spec(spec, "pairs")
    if parsed.kind == "synthetic":
        n, seed = parsed.option("n", 500), parsed.option("seed", 2)
        rng, world, scenes, seen = np.random.default_rng([seed, 6]), World(), [], set()
        while len(scenes) < n:
            scene = world.sample(rng, "any")
            if scene.caption() not in seen:  # a caption shared by two images has no single right answer
                seen.add(scene.caption())
                scenes.append(scene)
        return Pairs([f"synthetic/{seed}/{i:05d}" for i in range(n)], [s.caption() for s in scenes],
                     [ImageRef(scene=s) for s in scenes], size=parsed.option("size", 64))
    pairs = [p for p in listed_pairs(spec) if clean_captions(p.captions)]
    return Pairs([str(p.image) for p in pairs], [clean_captions(p.captions)[0] for p in pairs],
                 [ImageRef(p.image) for p in pairs])


@torch.no_grad()
def retrieval_eval(model: CLIP, spec: str, out: Path, workers: int = WORKERS, show_progress: bool = True) -> dict:
    pairs = retrieval_pairs(spec)
    image_rows, i2t, t2i, skipped = pair_ranks(model, pairs, pairs.captions, workers, show_progress)
    n = len(image_rows)
    summary = {"pairs": spec, "examples": n, "skipped": skipped, "text_to_image": rank_summary(t2i),
               "image_to_text": rank_summary(i2t), "chance_recall@1": 1 / n}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "summary.json", summary)
    write_jsonl_atomic(out / "ranks.jsonl", (
        {"path": pairs.keys[row], "caption": pairs.captions[row], "text_to_image_rank": f"{int(a)}/{n}",
         "image_to_text_rank": f"{int(b)}/{n}"} for row, a, b in zip(image_rows, t2i, i2t)))
    return summary
