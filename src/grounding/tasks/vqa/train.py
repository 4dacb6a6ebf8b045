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
from .data import QAExample, open_qa, to_tensors


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the answer scores normalised to a distribution; rows with no known
    answer are left out."""
    total = targets.sum(dim=1)
    known = total > 0
    target = targets[known] / total[known, None]
    return -(target * F.log_softmax(logits[known], dim=-1)).sum(dim=1).mean()


def relation_loss(model: VQAModel, state: torch.Tensor, examples: list[QAExample]) -> torch.Tensor:
    """The relation target's cross-entropy (models/vqa.py) on the questions that name a relation
    the model has a class for; zero where none does."""
    relations = model.config.relations
    named = [i for i, e in enumerate(examples) if e.relation in relations]
    if not named:
        return state.new_zeros(())
    truth = torch.tensor([relations.index(examples[i].relation) for i in named], device=state.device)
    return F.cross_entropy(model.relation_head(state[named]), truth)


def new_model(options: VQAOptions, data, blind: bool) -> VQAModel:
    torch.manual_seed(options.loop.seed)
    towers, tokenizer, clip = towers_for(options)
    config = VQAConfig(towers, list(data.answers), options.width, options.layers, options.heads, blind,
                       options.grid_stage, list(data.relations) if options.relation_target else [], options.final_grid)
    model = attach(VQAModel(config), tokenizer)
    if clip is not None:
        copy_towers(model, clip)
    return model


def train_vqa(options: VQAOptions, out: str | Path, data=None, blind: bool = False,
              show_progress: bool = True) -> VQAModel:
    """Trains on `data` (a source with .batch(step, size), .answers and .relations), by default
    `options.data`'s."""
    out = Path(out)
    data = data or open_qa(options.data, options.loop.seed, relation_share=options.relation_share)[0]
    model = run_model(out, "vqa", lambda: new_model(options, data, blind), options.loop.seed)
    if options.freeze:
        freeze_towers(model)
    answers = model.config.answers

    def backward_at(step: int) -> float:
        examples = data.batch(step, options.loop.batch_size)
        pixels, ids, targets = to_tensors(model, examples, answers)
        state = model.fuse(pixels, ids)
        loss = soft_cross_entropy(model.head(state), targets) + relation_loss(model, state, examples)
        loss.backward()
        return loss.item()

    label = "train-vqa (blind)" if blind else "train-vqa"
    return fit(model, backward_at, options.loop, out, label, show_progress=show_progress)
