"""The CLIP training loop: seeded batches, AdamW with a cosine schedule, gradient clipping,
optional bf16 autocast, gradient accumulation that keeps the full contrastive batch, atomic
checkpoints and exact resume."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..config import ModelConfig
from ..data.images import TrainTransform
from ..data.pairs import SyntheticPairs
from ..data.synthetic import World
from ..factory import CONFIG_FILE, TOKENIZER_FILE, build_tokenizer, create_model, save_model
from ..io import write_json_atomic
from ..losses import contrastive_loss
from ..models import CLIP
from ..tokenizer import Tokenizer
from .checkpoint import RunFolder
from .lock import freeze_locked_batch_norms, lock_tower
from .optim import cosine_lr, make_optimizer

TRAIN_FILE = "train.json"


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.2
    warmup: int = 50
    grad_clip: float = 1.0
    accum: int = 1  # micro-batches per step; the contrastive batch stays `batch_size` pairs
    precision: Literal["fp32", "bf16"] = "fp32"
    seed: int = 0
    save_every: int = 100
    keep: int = 2  # checkpoints kept on disk
    data: str = "synthetic"
    hard_negatives: bool = False  # one near-miss caption per image joins the captions it chooses among
    lock_image: bool = False  # freeze the image tower (LiT)...
    lock_image_unlocked_layers: int = 0  # ...except its last N layers
    lock_text: bool = False
    lock_text_unlocked_layers: int = 0
    tensorboard: bool = False

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
    write_json_atomic(run.out / TRAIN_FILE, dataclasses.asdict(cfg))
    if cfg.lock_image:
        lock_tower(model.visual, cfg.lock_image_unlocked_layers)
    if cfg.lock_text:
        lock_tower(model.text, cfg.lock_text_unlocked_layers)
    model.train()
    freeze_locked_batch_norms(model)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    start = run.restore(model, optimizer)
    source = make_source(cfg.data, model, cfg.seed, cfg.hard_negatives)
    writer = _tensorboard(run.out) if cfg.tensorboard else None

    columns = [TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
               TimeRemainingColumn()]
    with Progress(*columns, disable=not show_progress) as progress, open(run.metrics, "a") as log:
        task = progress.add_task("train", total=cfg.steps, completed=start, stats="")
        for step in range(start, cfg.steps):
            began = time.perf_counter()
            pixels, ids, negatives = source.batch(step, cfg.batch_size)
            lr = cosine_lr(step, cfg.lr, cfg.warmup, cfg.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss = train_step(model, pixels, ids, cfg.accum, cfg.precision, negatives)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            model.clamp_logit_scale()
            elapsed = time.perf_counter() - began
            row = {"step": step + 1, "loss": round(loss, 5), "lr": lr,
                   "temperature": round(float(model.logit_scale.detach().exp().reciprocal()), 5),
                   "pairs_per_s": round(cfg.batch_size / elapsed, 1)}
            log.write(json.dumps(row) + "\n")
            log.flush()
            if writer:
                for key in ("loss", "lr", "temperature", "pairs_per_s"):
                    writer.add_scalar(key, row[key], row["step"])
            progress.update(task, completed=step + 1, stats=(
                f"loss {loss:.3f}  lr {lr:.2e}  T {row['temperature']:.4f}  {row['pairs_per_s']:.0f} pairs/s"))
            if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
                run.save(model, optimizer, step + 1, cfg.keep)
    if writer:
        writer.close()
    return model.eval()


def _reload_untrained(folder: Path) -> CLIP:
    """The run's model with fresh weights from the run's seed (checkpoints overwrite them)."""
    config = ModelConfig.from_json(folder / CONFIG_FILE)
    tokenizer = Tokenizer.from_file(folder / TOKENIZER_FILE, config.text.context_length)
    return create_model(config, tokenizer)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SystemExit("TensorBoard logging needs the tensorboard package: pip install 'grounding[tensorboard]'")
    return SummaryWriter(str(out / "tensorboard"))
