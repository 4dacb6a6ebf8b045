"""The training loop the task models (VQA, captioning) share: AdamW with a cosine schedule,
gradient clipping, a progress bar, metrics.jsonl, and atomic checkpoints that a killed run
resumes from (the batches are a pure function of the step, so the resumed run equals an
uninterrupted one)."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from ..io import write_json_atomic
from .checkpoint import RunFolder
from .lock import freeze_locked_batch_norms
from .optim import cosine_lr, make_optimizer

TRAIN_FILE = "train.json"


@dataclass
class LoopConfig:
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 100
    grad_clip: float = 1.0
    seed: int = 0
    save_every: int = 250


def fit(model: nn.Module, loss_at: Callable[[int], torch.Tensor], cfg: LoopConfig, out: str | Path,
        label: str = "train", show_progress: bool = True) -> nn.Module:
    """Trains `model` on `loss_at(step)` for cfg.steps, resuming from OUT's newest checkpoint."""
    run = RunFolder(out)
    write_json_atomic(run.out / TRAIN_FILE, asdict(cfg))
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    start = run.restore(model, optimizer)
    model.train()
    freeze_locked_batch_norms(model)
    columns = [TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
               TimeRemainingColumn()]
    with Progress(*columns, disable=not show_progress) as progress, open(run.metrics, "a") as log:
        task = progress.add_task(label, total=cfg.steps, completed=start, stats="")
        for step in range(start, cfg.steps):
            began = time.perf_counter()
            lr = cosine_lr(step, cfg.lr, cfg.warmup, cfg.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss = loss_at(step)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            row = {"step": step + 1, "loss": round(loss.item(), 5), "lr": lr,
                   "examples_per_s": round(cfg.batch_size / (time.perf_counter() - began), 1)}
            log.write(json.dumps(row) + "\n")
            log.flush()
            progress.update(task, completed=step + 1, stats=f"loss {row['loss']:.3f}  {row['examples_per_s']:.0f}/s")
            if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
                run.save(model, optimizer, step + 1)
    return model.eval()
