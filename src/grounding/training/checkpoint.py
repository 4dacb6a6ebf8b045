"""A training run's folder. Everything in it is written atomically, so a run killed at any
instant (SIGKILL included) resumes from its newest complete checkpoint.

    OUT/config.json, tokenizer.json   the model, written once at the start
    OUT/train.json                    the training options
    OUT/model.safetensors             the latest weights: OUT is itself a loadable model
    OUT/metrics.jsonl                 one line per step
    OUT/checkpoints/step-NNNNNNN/     weights and optimizer state after step N
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from ..factory import WEIGHTS_FILE, load_weights, save_weights
from ..io import atomic_path, write_text_atomic

STATE_FILE = "state.pt"


class RunFolder:
    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.checkpoints = self.out / "checkpoints"
        self.metrics = self.out / "metrics.jsonl"

    def latest(self) -> tuple[int, Path] | None:
        """The newest complete checkpoint, as (step, folder)."""
        if not self.checkpoints.is_dir():
            return None
        done = sorted(p for p in self.checkpoints.glob("step-*") if (p / STATE_FILE).is_file())
        return (int(done[-1].name.split("-")[1]), done[-1]) if done else None

    def save(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, keep: int = 2) -> None:
        final = self.checkpoints / f"step-{step:07d}"
        staging = self.checkpoints / f".step-{step:07d}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        save_weights(model, staging / WEIGHTS_FILE)
        with atomic_path(staging / STATE_FILE) as tmp:
            torch.save({"step": step, "optimizer": optimizer.state_dict()}, tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)  # the checkpoint appears whole or not at all
        with atomic_path(self.out / WEIGHTS_FILE) as tmp:
            tmp.unlink()
            os.link(final / WEIGHTS_FILE, tmp)
        for old in sorted(self.checkpoints.glob("step-*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
        """Loads the newest checkpoint into model and optimizer and returns its step (0 if none).
        Metrics logged after that step, by the run that died, are dropped."""
        found = self.latest()
        if found is None:
            step = 0
        else:
            step, folder = found
            load_weights(model, folder / WEIGHTS_FILE)
            state = torch.load(folder / STATE_FILE, weights_only=True)
            optimizer.load_state_dict(state["optimizer"])
        if self.metrics.exists():
            lines = [line for line in self.metrics.read_text().splitlines()
                     if line.strip() and json.loads(line)["step"] <= step]
            write_text_atomic(self.metrics, "".join(line + "\n" for line in lines))
        for stale in self.checkpoints.glob(".step-*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        return step
