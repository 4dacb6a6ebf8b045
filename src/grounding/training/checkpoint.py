"""A training run's folder. Everything in it is written atomically, so a run killed at any
instant (SIGKILL included) resumes from its newest complete checkpoint.

    OUT/config.json, tokenizer.json   the model, written once at the start
    OUT/train.json                    the training options
    OUT/model.safetensors             the latest weights: OUT is itself a loadable model
    OUT/metrics.jsonl                 one line per step
    OUT/skipped.jsonl                 one line per training example left out, with the reason
    OUT/checkpoints/step-NNNNNNN/     weights and optimizer state after step N, and manifest.json
                                      with each file's size and SHA-256, checked before any use
    OUT/eval/step-NNNNNNN.json        validation results, and best.json naming the best step

A damaged checkpoint (a disk error, a file cut short by someone) is never used: resuming falls
back to the newest intact one, says so, and moves the damaged one aside as damaged-step-N.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from ..errors import BadInput, GroundingError
from ..files import atomic_path, folder_lock, refuse_foreign, write_json_atomic, write_text_atomic
from ..saved import WEIGHTS_FILE, load_weights, save_weights

STATE_FILE, MANIFEST_FILE, TRAIN_FILE = "state.pt", "manifest.json", "train.json"
# What a run writes before its options and first checkpoint: a folder holding only these is a run just begun.
RUN_START_FILES = {"config.json", "tokenizer.json"}


def _digest(path: Path) -> dict:
    with open(path, "rb") as f:
        return {"bytes": path.stat().st_size, "sha256": hashlib.file_digest(f, "sha256").hexdigest()}


def verify(folder: Path) -> str | None:
    """What is wrong with a checkpoint folder (a file missing, cut short or changed), or None."""
    manifest = folder / MANIFEST_FILE
    if not manifest.is_file():  # a checkpoint from before manifests: only its loading can tell
        return None if (folder / STATE_FILE).is_file() else f"{MANIFEST_FILE} is missing"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        return f"{MANIFEST_FILE} is not readable"
    for name, want in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != want["bytes"]:
            return f"{name} has {path.stat().st_size:,} bytes, not {want['bytes']:,} (cut short?)"
        if _digest(path)["sha256"] != want["sha256"]:
            return f"{name} does not match its checksum"
    return None


class RunFolder:
    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.checkpoints = self.out / "checkpoints"
        self.metrics = self.out / "metrics.jsonl"
        self.skipped = self.out / "skipped.jsonl"

    def check_out(self, overwrite: bool = False) -> None:
        """Refuses an OUT that is a file, or a folder holding files but no training run (a saved
        model, someone's data), unless `overwrite`: a run writes model.safetensors and config.json."""
        refuse_foreign(self.out, overwrite or (self.out / TRAIN_FILE).is_file(), RUN_START_FILES,
                       "it is not a training run: pass --overwrite to write into it anyway, or choose another --out")

    @contextmanager
    def claimed(self, what: str) -> Iterator[None]:
        """The folder locked for a job (`what` names it to a second writer). A folder this job
        made and left as a job leaves it on beginning (the lock, the config, the tokenizer) when
        the job is refused is removed again: a refused run leaves nothing behind."""
        new = not self.out.exists()
        try:
            with folder_lock(self.out, what):
                yield
        except GroundingError:
            if new and self.out.is_dir() and all(p.name in RUN_START_FILES | {".lock"} for p in self.out.iterdir()):
                shutil.rmtree(self.out, ignore_errors=True)
            raise

    def candidates(self) -> list[tuple[int, Path]]:
        """The finished checkpoints, newest first, as (step, folder)."""
        if not self.checkpoints.is_dir():
            return []
        done = [p for p in self.checkpoints.glob("step-*") if (p / MANIFEST_FILE).is_file() or (p / STATE_FILE).is_file()]
        return sorted(((int(p.name.split("-")[1]), p) for p in done), reverse=True)

    def latest(self) -> tuple[int, Path] | None:
        """The newest finished checkpoint, as (step, folder), before it is verified."""
        found = self.candidates()
        return found[0] if found else None

    def save(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, keep: int = 2,
             data: dict | None = None) -> None:
        """A checkpoint of the weights, the optimizer and `data` (what the data source must
        remember, such as a stream's position)."""
        final = self.checkpoints / f"step-{step:07d}"
        staging = self.checkpoints / f".step-{step:07d}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir(parents=True)
            save_weights(model, staging / WEIGHTS_FILE)
            with atomic_path(staging / STATE_FILE) as tmp:
                torch.save({"step": step, "optimizer": optimizer.state_dict(), "data": data or {}}, tmp)
            # digests of the bytes read back from disk: the weights are published only once they read whole
            files = {name: _digest(staging / name) for name in (WEIGHTS_FILE, STATE_FILE)}
            write_json_atomic(staging / MANIFEST_FILE, {"step": step, "files": files})
        except BaseException:  # a full disk, a kill: the half-written checkpoint would only hold space
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)  # the checkpoint appears whole or not at all
        self._publish(final)
        best = self.out / "eval" / "best.json"
        kept = {f"step-{json.loads(best.read_text())['step']:07d}"} if best.is_file() else set()
        for old in sorted(self.checkpoints.glob("step-*"))[:-keep]:
            if old.name not in kept:  # the best validated checkpoint stays
                shutil.rmtree(old, ignore_errors=True)

    def _publish(self, checkpoint: Path) -> None:
        """OUT/model.safetensors becomes (a hard link to) the checkpoint's weights."""
        with atomic_path(self.out / WEIGHTS_FILE) as tmp:
            tmp.unlink()
            os.link(checkpoint / WEIGHTS_FILE, tmp)

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, dict]:
        """Loads the newest intact checkpoint into model and optimizer; returns its step (0 if none)
        and its data state. Damaged newer ones are moved aside, with a warning naming them; if none
        is intact, a ValueError says so and leaves them all in place. Log lines written after the
        step, by the run that died, are dropped."""
        step, data, damaged = 0, {}, []
        for candidate, folder in self.candidates():
            try:
                data = self.load(model, optimizer, candidate)
                step = candidate
                break
            except ValueError as e:
                damaged.append((folder, str(e)))
        if damaged and step == 0:
            listed = "; ".join(f"{folder}: {problem}" for folder, problem in damaged)
            raise BadInput(f"no intact checkpoint in {self.checkpoints} ({listed}); delete them to start over")
        for folder, problem in damaged:
            aside = folder.with_name(f"damaged-{folder.name}")
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(folder, aside)
            warnings.warn(f"{folder} is damaged ({problem}): moved it to {aside.name} and resumed from step {step}")
        if damaged:
            self._publish(self.checkpoints / f"step-{step:07d}")
        for log in (self.metrics, self.skipped):
            if log.exists():
                write_text_atomic(log, "".join(line + "\n" for line in _rows_up_to(log, step)))
        for stale in self.checkpoints.glob(".step-*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        return step, data


    def load(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int) -> dict:
        """Loads the checkpoint of `step`, once verified; returns its data state. A ValueError
        says what is wrong with it."""
        folder = self.checkpoints / f"step-{step:07d}"
        problem = verify(folder) if folder.is_dir() else "it is missing"
        if problem:
            raise BadInput(problem)
        load_weights(model, folder / WEIGHTS_FILE)
        state = _read_state(folder / STATE_FILE)
        optimizer.load_state_dict(state["optimizer"])
        return state.get("data", {})


def _read_state(path: Path) -> dict:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # a truncated zip, or pickled objects weights_only refuses
        raise BadInput(f"{path}: the optimizer state cannot be read ({type(e).__name__}: {str(e)[:160]})") from None


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
