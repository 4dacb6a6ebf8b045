"""Training a VQA model (or its question-only baseline) into a run folder; running the same
command again resumes it."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ...build import attach
from ...models.vqa import VQAConfig, VQAModel
from ...training.loop import fit
from ..options import VQAOptions
from ..saved import run_model
from ..towers import copy_towers, freeze_towers, towers_for
from .data import open_qa, to_tensors


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the answer scores normalised to a distribution; rows with no known
    answer are left out."""
    total = targets.sum(dim=1)
    known = total > 0
    target = targets[known] / total[known, None]
    return -(target * F.log_softmax(logits[known], dim=-1)).sum(dim=1).mean()


def new_model(options: VQAOptions, answers: list[str], blind: bool) -> VQAModel:
    torch.manual_seed(options.loop.seed)
    towers, tokenizer, clip = towers_for(options)
    config = VQAConfig(towers, list(answers), options.width, options.layers, options.heads, blind,
                       options.grid_stage)
    model = attach(VQAModel(config), tokenizer)
    if clip is not None:
        copy_towers(model, clip)
    return model


def train_vqa(options: VQAOptions, out: str | Path, data=None, blind: bool = False,
              show_progress: bool = True) -> VQAModel:
    """Trains on `data` (a source with .batch(step, size) and .answers), by default `options.data`'s."""
    out = Path(out)
    data = data or open_qa(options.data, options.loop.seed)[0]
    model = run_model(out, "vqa", lambda: new_model(options, data.answers, blind), options.loop.seed)
    if options.freeze:
        freeze_towers(model)
    answers = model.config.answers

    def backward_at(step: int) -> float:
        pixels, ids, targets = to_tensors(model, data.batch(step, options.loop.batch_size), answers)
        loss = soft_cross_entropy(model(pixels, ids), targets)
        loss.backward()
        return loss.item()

    label = "train-vqa (blind)" if blind else "train-vqa"
    return fit(model, backward_at, options.loop, out, label, show_progress=show_progress)
