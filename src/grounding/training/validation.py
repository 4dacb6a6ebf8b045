"""Validation while CLIP trains: zero-shot top-1/top-5 on a labelled dataset (--eval-data) and
image-text recall@1/5 both ways on training pairs held out of training. Each result is a row of
metrics.jsonl (and TensorBoard), shown in the progress line, and kept beside the checkpoint of
its step (OUT/eval/step-N.json). A validated step is always checkpointed, and OUT/eval/best.json
names the best one so far, whose checkpoint is kept however many newer ones come."""
from __future__ import annotations

import json

import numpy as np
import torch

from ..data.datasets import open_dataset
from ..data.images import ImageList, ImageRef
from ..data.examples import Pair
from ..errors import BadInput
from ..evaluation.metrics import rank_summary, topk_accuracy
from ..evaluation.predict import pair_ranks, predict_zero_shot
from ..files import write_json_atomic
from ..models import CLIP
from ..runtime import Runtime
from .checkpoint import RunFolder
from .lock import freeze_locked_batch_norms


class Validation:
    def __init__(self, model: CLIP, cfg, held_out: list[list], runtime: Runtime, run: RunFolder):
        self.model, self.runtime, self.folder, self.workers = model, runtime, run, cfg.workers
        self.dataset = None
        if cfg.eval_data:
            dataset = open_dataset(cfg.eval_data)
            if len(dataset) > cfg.eval_limit:
                pick = np.sort(np.random.default_rng(cfg.seed).choice(len(dataset), cfg.eval_limit, replace=False))
                dataset = dataset.subset(pick)
            if len(dataset) == 0:
                raise BadInput(f"--eval-data {cfg.eval_data}: no examples")
            self.dataset = dataset
        held = [example for part in held_out for example in part]
        refs = [ImageRef(e.image) if isinstance(e, Pair) else ImageRef(scene=e) for e in held]
        self.pairs = ImageList(refs, model.config.vision.image_size) if len(held) >= 2 else None
        self.captions = [e.captions[0] if isinstance(e, Pair) else e.caption() for e in held]

    @torch.no_grad()
    def run(self, step: int) -> dict:
        self.model.eval()
        row = {}
        try:
            if self.dataset is not None:
                row.update(self._zero_shot())
            if self.pairs is not None:
                row.update(self._recall())
        finally:
            self.model.train()
            freeze_locked_batch_norms(self.model)
        write_json_atomic(self.folder.out / "eval" / f"step-{step:07d}.json", {"step": step, **row})
        self._remember_best(step, row)
        return row

    def _remember_best(self, step: int, row: dict) -> None:
        metric = "eval/zeroshot_top1" if "eval/zeroshot_top1" in row else "eval/text_to_image_r1"
        if metric not in row:
            return
        path = self.folder.out / "eval" / "best.json"
        best = json.loads(path.read_text()) if path.is_file() else None
        if best is None or row[metric] > best["value"]:
            write_json_atomic(path, {"metric": metric, "step": step, "value": row[metric]})

    def _zero_shot(self) -> dict:
        data = self.dataset
        with self.runtime.autocast():
            scores = predict_zero_shot(self.model, data, workers=self.workers, show_progress=False)
        targets = np.array([data.targets[i][0] for i in scores.indices])
        return {"eval/zeroshot_top1": round(topk_accuracy(scores.logits, targets), 4),
                "eval/zeroshot_top5": round(topk_accuracy(scores.logits, targets, 5), 4)}

    def _recall(self) -> dict:
        with self.runtime.autocast():
            rows, i2t, t2i, _ = pair_ranks(self.model, self.pairs, self.captions, self.workers)
        if len(rows) < 2:
            return {}
        i2t, t2i = rank_summary(i2t), rank_summary(t2i)
        return {"eval/image_to_text_r1": round(i2t["recall@1"], 4), "eval/image_to_text_r5": round(i2t["recall@5"], 4),
                "eval/text_to_image_r1": round(t2i["recall@1"], 4), "eval/text_to_image_r5": round(t2i["recall@5"], 4)}
