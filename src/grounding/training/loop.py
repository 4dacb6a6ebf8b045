"""The one training loop: AdamW with a cosine schedule, gradient clipping, progress (a live bar
on a terminal, a plain line every few seconds elsewhere), metrics.jsonl (and TensorBoard), and
atomic checkpoints that a killed run resumes from; Ctrl-C (or SIGTERM) saves one before it
stops. The batches are a pure function of the step, so a resumed run equals an uninterrupted
one. CLIP (trainer.py) and the task models (VQA, captioning) each bring only their forward and
backward. In a data-parallel run (distributed.py) every rank runs this loop; rank 0 alone writes
the run folder."""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Protocol

import torch
from torch import nn

from ..errors import GroundingError, MissingDependency
from ..files import write_json_atomic
from ..progress import Progress
from .checkpoint import TRAIN_FILE, RunFolder
from .distributed import World
from .lock import freeze_locked_batch_norms
from .optim import cosine_lr, make_optimizer
from .options import LoopConfig

# Every run checkpoints at least this many times (and at its end), whatever its --save-every.
MIN_CHECKPOINTS = 4


class DataState(Protocol):
    """What a data source must remember across a restart, beside the step (a stream's position)."""

    def state(self) -> dict: ...

    def load_state(self, state: dict) -> None: ...


def fit(model: nn.Module, backward_at: Callable[[int], float], cfg: LoopConfig, out: str | Path,
        label: str = "train", unit: str = "examples", after_step: Callable[[int], dict] | None = None,
        show_progress: bool = True, data: DataState | None = None, resume_hint: str = "",
        world: World = World()) -> nn.Module:
    """Trains `model` for cfg.steps, resuming from OUT's newest checkpoint. `backward_at(step)`
    runs that step's forward and backward passes and returns its loss; `after_step(done)`, run
    after each optimizer step with the number of steps done, may adjust the model and returns
    extra columns for the log. `data`, if given, is saved in each checkpoint and restored."""
    run = RunFolder(out)
    if world.main:
        write_json_atomic(run.out / TRAIN_FILE, asdict(cfg))
    model.train()
    freeze_locked_batch_norms(model)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    start, data_state = _restore(run, model, optimizer, world)
    if start and world.main:
        print(f"{run.out} has finished its {cfg.steps} steps" if start >= cfg.steps else
              f"resuming {run.out} from its checkpoint of step {start}", file=sys.stderr)
    if data is not None and data_state:
        data.load_state(data_state)
    writer = _tensorboard(run.out) if cfg.tensorboard and world.main else None
    report = Progress(f"{label} step", cfg.steps, start, show_progress and world.main, cfg.log_every,
                      stream=sys.stdout, always_end=True)
    stop = _StopOnInterrupt()
    step, saved = start, start
    save_every = min(cfg.save_every, max(1, cfg.steps // MIN_CHECKPOINTS))
    try:
        with report, open(run.metrics if world.main else os.devnull, "a") as log:
            for step in range(start, cfg.steps):
                began = time.perf_counter()
                lr = cosine_lr(step, cfg.lr, cfg.warmup, cfg.steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                loss = backward_at(step)
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                extra = after_step(step + 1) if after_step else {}
                validated = any(key.startswith("eval/") for key in extra)
                # the ranks' mean loss is the global batch's; any rank's Ctrl-C or validation stops or saves all
                loss, stopping, validated = world.sum([loss, bool(stop.requested), validated])
                loss /= world.size
                # A step with too few usable examples trains nothing and reports no loss (NaN); one whose
                # weights stopped being numbers stops the run, nothing of it logged or saved.
                if not math.isfinite(loss) and not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                    raise Diverged(f"the weights stopped being numbers at step {step + 1} (loss {loss}, learning rate "
                                   f"{lr:.3g}), so the run stops here; {run.out} keeps its checkpoint of step "
                                   f"{saved}; start again with a lower --lr (or more --warmup)")
                rate = round(cfg.batch_size / (time.perf_counter() - began), 1)
                row = {"step": step + 1, "loss": round(loss, 5) if math.isfinite(loss) else None, "lr": lr, **extra,
                       f"{unit}_per_s": rate}
                log.write(json.dumps(row) + "\n")
                log.flush()
                if writer:
                    for key, value in row.items():
                        if key != "step" and isinstance(value, (int, float)):
                            writer.add_scalar(key, value, row["step"])
                numbers = (f"{k} {v:.4g}" for k, v in extra.items() if isinstance(v, (int, float)))
                report.update(step + 1, "  ".join([f"loss {loss:.3f}", f"lr {lr:.2e}", *numbers, f"{rate:.0f} {unit}/s"]))
                if (step + 1) % save_every == 0 or step + 1 == cfg.steps or stopping or validated:
                    state = data.state() if data else None  # every rank: a data state may gather all ranks'
                    if world.main:
                        run.save(model, optimizer, step + 1, cfg.keep, state)
                    saved = step + 1
                if stopping:
                    hint = resume_hint or f"run the same command again (or `grounding train --resume {run.out}`)"
                    if world.main:
                        print(f"\ninterrupted: checkpoint saved at step {saved} of {cfg.steps} in {run.out}; "
                              f"to continue, {hint}", file=sys.stderr)
                    raise SystemExit(128 + (stop.requested or signal.SIGINT))  # 130 for Ctrl-C, 143 for SIGTERM
    finally:
        stop.restore()
        if writer:
            writer.close()
    return model.eval()


def _restore(run: RunFolder, model: nn.Module, optimizer: torch.optim.Optimizer, world: World) -> tuple[int, dict]:
    """The step to go on from, the same on every rank: rank 0 finds the newest intact checkpoint
    (moving damaged ones aside), then every other rank reads that one; a rank that cannot read
    it stops them all with a message naming it."""
    step, data = world.first(lambda: run.restore(model, optimizer))
    problem = None
    if not world.main and step:
        try:
            data = run.load(model, optimizer, step)
        except ValueError as e:
            problem = (f"cannot read the checkpoint of step {step} in {run.checkpoints} ({e}): every rank reads "
                       "it, so OUT must be on a filesystem all the machines share")
    world.agree(problem)
    return step, data


class Diverged(GroundingError):
    """The loss stopped being a number; the run stops with its last good checkpoint."""

    exit_code = 1  # the run began, and stopped
    heading = "stopped"


class _StopOnInterrupt:
    """The first Ctrl-C, or SIGTERM (what torchrun sends its workers when it is stopped, and what
    schedulers send before they preempt a job), asks the loop to checkpoint and stop after the
    step under way; a second one interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = 0  # the signal asked for, or 0
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def _handle(self, signum, _frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signum
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{name}: saving a checkpoint after this step (again to stop at once)", file=sys.stderr)

    def restore(self) -> None:
        for sig, previous in self.previous.items():
            signal.signal(sig, previous)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MissingDependency("TensorBoard logging needs the tensorboard package: pip install "
                                "'grounding[tensorboard]'", "--tensorboard") from None
    return SummaryWriter(str(out / "tensorboard"))
