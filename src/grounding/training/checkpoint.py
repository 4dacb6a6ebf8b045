"""A training run's folder. Everything in it is written atomically, so a run killed at any
instant (SIGKILL included) resumes from its newest complete checkpoint.

    OUT/config.json, tokenizer.json   the model, written once at the start
    OUT/train.json                    the training options
    OUT/model.safetensors             the latest weights: OUT is itself a loadable model
    OUT/metrics.jsonl                 one line per step
    OUT/skipped.jsonl                 one line per training example left out, with the reason
    OUT/checkpoints/step-NNNNNNN/     weights and optimizer state after step N
    OUT/eval/step-NNNNNNN.json        validation results, and best.json naming the best step
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
        self.skipped = self.out / "skipped.jsonl"

    def latest(self) -> tuple[int, Path] | None:
        """The newest complete checkpoint, as (step, folder)."""
        if not self.checkpoints.is_dir():
            return None
        done = sorted(p for p in self.checkpoints.glob("step-*") if (p / STATE_FILE).is_file())
        return (int(done[-1].name.split("-")[1]), done[-1]) if done else None

    def save(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, keep: int = 2,
             data: dict | None = None) -> None:
        """A checkpoint of the weights, the optimizer and `data` (what the data source must
        remember, such as a stream's position)."""
        final = self.checkpoints / f"step-{step:07d}"
        staging = self.checkpoints / f".step-{step:07d}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        save_weights(model, staging / WEIGHTS_FILE)
        with atomic_path(staging / STATE_FILE) as tmp:
            torch.save({"step": step, "optimizer": optimizer.state_dict(), "data": data or {}}, tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)  # the checkpoint appears whole or not at all
        with atomic_path(self.out / WEIGHTS_FILE) as tmp:
            tmp.unlink()
            os.link(final / WEIGHTS_FILE, tmp)
        best = self.out / "eval" / "best.json"
        kept = {f"step-{json.loads(best.read_text())['step']:07d}"} if best.is_file() else set()
        for old in sorted(self.checkpoints.glob("step-*"))[:-keep]:
            if old.name not in kept:  # the best validated checkpoint stays
                shutil.rmtree(old, ignore_errors=True)

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, dict]:
        """Loads the newest checkpoint into model and optimizer; returns its step (0 if none) and
        its data state. Log lines written after that step, by the run that died, are dropped."""
        found = self.latest()
        step, data = 0, {}
        if found is not None:
            step, folder = found
            load_weights(model, folder / WEIGHTS_FILE)
            state = torch.load(folder / STATE_FILE, weights_only=True, map_location="cpu")
            optimizer.load_state_dict(state["optimizer"])
            data = state.get("data", {})
        for log in (self.metrics, self.skipped):
            if log.exists():
                write_text_atomic(log, "".join(line + "\n" for line in _rows_up_to(log, step)))
        for stale in self.checkpoints.glob(".step-*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        return step, data


def _rows_up_to(log: Path, step: int) -> list[str]:
    """The lines of a JSON-lines log whose step is at most `step`; a line cut short by a crash is dropped."""
    kept = []
    for line in log.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return kept
