"""The one training loop: AdamW with a cosine schedule, gradient clipping, a progress bar,
metrics.jsonl (and TensorBoard), and atomic checkpoints that a killed run resumes from. The
batches are a pure function of the step, so a resumed run equals an uninterrupted one. CLIP
(trainer.py) and the task models (VQA, captioning) each bring only their forward and backward."""
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
    keep: int = 2  # checkpoints kept on disk
    tensorboard: bool = False


def fit(model: nn.Module, backward_at: Callable[[int], float], cfg: LoopConfig, out: str | Path,
        label: str = "train", unit: str = "examples", after_step: Callable[[], dict] | None = None,
        show_progress: bool = True) -> nn.Module:
    """Trains `model` for cfg.steps, resuming from OUT's newest checkpoint. `backward_at(step)`
    runs that step's forward and backward passes and returns its loss; `after_step()`, run after
    each optimizer step, may adjust the model and returns extra columns for the log."""
    run = RunFolder(out)
    write_json_atomic(run.out / TRAIN_FILE, asdict(cfg))
    model.train()
    freeze_locked_batch_norms(model)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    start = run.restore(model, optimizer)
    writer = _tensorboard(run.out) if cfg.tensorboard else None
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
            loss = backward_at(step)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            extra = after_step() if after_step else {}
            rate = round(cfg.batch_size / (time.perf_counter() - began), 1)
            row = {"step": step + 1, "loss": round(loss, 5), "lr": lr, **extra, f"{unit}_per_s": rate}
            log.write(json.dumps(row) + "\n")
            log.flush()
            if writer:
                for key, value in row.items():
                    if key != "step":
                        writer.add_scalar(key, value, row["step"])
            shown = [f"loss {loss:.3f}", f"lr {lr:.2e}", *(f"{k} {v:.4g}" for k, v in extra.items()), f"{rate:.0f} {unit}/s"]
            progress.update(task, completed=step + 1, stats="  ".join(shown))
            if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
                run.save(model, optimizer, step + 1, cfg.keep)
    if writer:
        writer.close()
    return model.eval()


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SystemExit("TensorBoard logging needs the tensorboard package: pip install 'grounding[tensorboard]'")
    return SummaryWriter(str(out / "tensorboard"))
