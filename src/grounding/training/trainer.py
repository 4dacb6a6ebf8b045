"""CLIP training: seeded batches, optional bf16 autocast, gradient accumulation that keeps the
full contrastive batch, locked towers, and the learnable temperature's clamp. The schedule,
checkpoints and exact resume are the shared loop's (loop.py)."""
from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ..config import ModelConfig
from ..data.images import TrainTransform
from ..data.pairs import SyntheticPairs
from ..data.synthetic import World
from ..factory import build_tokenizer, create_model, read_config, save_model
from ..losses import contrastive_loss
from ..models import CLIP
from .checkpoint import RunFolder
from .lock import lock_tower
from .loop import TRAIN_FILE, LoopConfig, fit


@dataclass
class TrainConfig(LoopConfig):
    steps: int = 1000
    lr: float = 5e-4
    weight_decay: float = 0.2
    warmup: int = 50
    save_every: int = 100
    accum: int = 1  # micro-batches per step; the contrastive batch stays `batch_size` pairs
    precision: Literal["fp32", "bf16"] = "fp32"
    data: str = "synthetic"
    hard_negatives: bool = False  # one near-miss caption per image joins the captions it chooses among
    lock_image: bool = False  # freeze the image tower (LiT)...
    lock_image_unlocked_layers: int = 0  # ...except its last N layers
    lock_text: bool = False
    lock_text_unlocked_layers: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**d)


def autocast(precision: str):
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _features(model: CLIP, pixels: torch.Tensor, ids: torch.Tensor, negatives: torch.Tensor | None):
    image = model.encode_image(pixels, normalize=True)
    text = model.encode_text(ids, normalize=True)
    return image, text, None if negatives is None else model.encode_text(negatives, normalize=True)


def train_step(model: CLIP, pixels: torch.Tensor, ids: torch.Tensor, accum: int, precision: str,
               negatives: torch.Tensor | None = None) -> float:
    """Forward and backward for one contrastive batch; returns the loss. With accum > 1 the
    features of all micro-batches are computed first without gradients, then each micro-batch
    is recomputed with gradients and its loss taken against the whole cached batch, so the
    summed gradient equals the full batch's (BatchNorm aside, whose statistics are per call)."""
    if accum == 1:
        with autocast(precision):
            loss = contrastive_loss(model, *_features(model, pixels, ids, negatives))
        loss.backward()
        return loss.item()
    parts = [pixels.chunk(accum), ids.chunk(accum), negatives.chunk(accum) if negatives is not None else [None] * accum]
    chunks = list(zip(*parts))
    with torch.no_grad(), autocast(precision):
        cached = [_features(model, *chunk) for chunk in chunks]
    for j, chunk in enumerate(chunks):
        with autocast(precision):
            fresh = _features(model, *chunk)
            joined = [None if fresh[i] is None else torch.cat([fresh[i] if k == j else c[i] for k, c in enumerate(cached)])
                      for i in range(3)]
            loss = contrastive_loss(model, *joined, learn_scale=j == 0)
        loss.backward()
    return loss.item()


def make_source(name: str, model: CLIP, seed: int, hard_negatives: bool = False) -> SyntheticPairs:
    if name != "synthetic":
        raise ValueError(f"unknown --data {name!r}: this version trains on 'synthetic'")
    v = model.config.vision
    return SyntheticPairs(World(), model.tokenizer, TrainTransform(v.image_size, v.mean, v.std), seed,
                          hard_negatives=hard_negatives)


def train(model_config: ModelConfig | None, train_config: TrainConfig | None, out: str | Path,
          resume: bool = False, show_progress: bool = True) -> CLIP:
    """Trains into `out`. With `resume=True` the model and options are read from `out` (the
    total step count may be raised through `train_config.steps`) and training continues from
    the newest checkpoint; the result equals an uninterrupted run's."""
    run = RunFolder(out)
    if resume:
        if not (run.out / TRAIN_FILE).is_file():
            raise FileNotFoundError(f"{run.out}: no {TRAIN_FILE}; it is not a training run folder")
        saved = TrainConfig.from_dict(json.loads((run.out / TRAIN_FILE).read_text()))
        cfg = dataclasses.replace(saved, steps=train_config.steps) if train_config else saved
        torch.manual_seed(cfg.seed)
        model = _reload_untrained(run.out)
    else:
        if run.latest() is not None:
            raise FileExistsError(f"{run.out} already holds a training run: pass --resume {run.out} "
                                  "to continue it, or choose another --out")
        cfg = train_config or TrainConfig()
        torch.manual_seed(cfg.seed)
        model = create_model(model_config, build_tokenizer(model_config))
        save_model(model, run.out, weights=False)  # checkpoints publish the weights
    if cfg.lock_image:
        lock_tower(model.visual, cfg.lock_image_unlocked_layers)
    if cfg.lock_text:
        lock_tower(model.text, cfg.lock_text_unlocked_layers)
    source = make_source(cfg.data, model, cfg.seed, cfg.hard_negatives)

    def backward_at(step: int) -> float:
        pixels, ids, negatives = source.batch(step, cfg.batch_size)
        return train_step(model, pixels, ids, cfg.accum, cfg.precision, negatives)

    def after_step() -> dict:
        model.clamp_logit_scale()
        return {"temperature": round(float(model.logit_scale.detach().exp().reciprocal()), 5)}

    return fit(model, backward_at, cfg, run.out, "train", "pairs", after_step, show_progress)


def _reload_untrained(folder: Path) -> CLIP:
    """The run's model with fresh weights from the run's seed (checkpoints overwrite them)."""
    return create_model(*read_config(folder))

