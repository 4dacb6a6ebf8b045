"""`grounding retrieval-eval`: text-to-image and image-to-text retrieval over images with their
captions (data/retrieval.py), with recall@1/5/10, mean and median rank, and a record per image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...data.images import WORKERS
from ...data.retrieval import open_retrieval
from ...evaluation.metrics import rank_summary
from ...evaluation.predict import pair_ranks
from ...files import refuse_foreign, write_json_atomic, write_jsonl_atomic
from ...models import CLIP


@torch.no_grad()
def retrieval_eval(model: CLIP, spec: str, out: Path, workers: int = WORKERS, show_progress: bool = True) -> dict:
    """Writes OUT/summary.json (recall@1/5/10, mean and median rank, both ways) and
    OUT/ranks.jsonl (each image's captions and ranks)."""
    refuse_foreign(out, False, {"summary.json", "ranks.jsonl"},
                   "choose a new or empty --out (or one an earlier retrieval-eval wrote)")
    pairs = open_retrieval(spec)
    image_rows, i2t, t2i, skipped = pair_ranks(model, pairs, pairs.captions, workers, show_progress)
    n, texts = len(image_rows), len(t2i)
    summary = {"pairs": spec, "examples": n, "captions": texts, "skipped": skipped,
               "text_to_image": rank_summary(t2i), "image_to_text": rank_summary(i2t), "chance_recall@1": 1 / max(n, 1)}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "summary.json", summary)
    starts = np.cumsum([0] + [len(pairs.captions[row]) for row in image_rows])
    write_jsonl_atomic(out / "ranks.jsonl", (
        {"path": pairs.keys[row], "captions": pairs.captions[row], "image_to_text_rank": f"{int(i2t[k])}/{texts}",
         "text_to_image_ranks": [f"{int(r)}/{n}" for r in t2i[starts[k]:starts[k + 1]]]}
        for k, row in enumerate(image_rows)))
    return summary
