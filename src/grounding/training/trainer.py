"""CLIP training on any --data SPEC (data/pairs.py): batches built in worker processes, bf16
autocast, gradient accumulation that keeps the full contrastive batch, fine-tuning from any
loadable model, locked towers, bad examples skipped and counted, and validation while it trains.
The schedule, checkpoints and exact resume are the shared loop's (loop.py)."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import torch

from ..config import ModelConfig, resolve_config
from ..data.batches import Batch, PairBatches, batch_loader
from ..data.images import TrainTransform
from ..data.pairs import Mixture, StreamPosition, SyntheticSource, open_pairs
from ..factory import build_tokenizer, create_model, load, read_config, save_model, synthetic_corpus
from ..losses import contrastive_loss
from ..models import CLIP
from ..runtime import Runtime, autocast
from ..tokenizer import Tokenizer
from .checkpoint import RunFolder
from .lock import lock_tower
from .loop import TRAIN_FILE, fit
from .options import TrainConfig
from .validation import Validation

# Captions read from a tar stream to train a vocabulary on; list sources give all of theirs.
VOCABULARY_SAMPLE = 20_000


class BadDataError(ValueError):
    """Too much of the training data is unusable; the message says how much and where it is listed."""


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
    device = pixels.device.type
    if accum == 1:
        with autocast(device, precision):
            loss = contrastive_loss(model, *_features(model, pixels, ids, negatives))
        loss.backward()
        return loss.item()
    parts = [pixels.chunk(accum), ids.chunk(accum), negatives.chunk(accum) if negatives is not None else [None] * accum]
    chunks = list(zip(*parts))
    with torch.no_grad(), autocast(device, precision):
        cached = [_features(model, *chunk) for chunk in chunks]
    for j, chunk in enumerate(chunks):
        with autocast(device, precision):
            fresh = _features(model, *chunk)
            joined = [None if fresh[i] is None else torch.cat([fresh[i] if k == j else c[i] for k, c in enumerate(cached)])
                      for i in range(3)]
            loss = contrastive_loss(model, *joined, learn_scale=j == 0)
        loss.backward()
    return loss.item()


class PairFeed:
    """The training batches of a run, from a given step on, with the bookkeeping a checkpoint
    keeps: tar streams' positions, and counts of examples drawn, skipped and truncated."""

    def __init__(self, mixture: Mixture, model: CLIP, cfg: TrainConfig, run: RunFolder, runtime: Runtime):
        self.mixture, self.model, self.cfg, self.run, self.runtime = mixture, model, cfg, run, runtime
        self.positions: dict[str, dict] = {}
        self.counts = {"drawn": 0, "skipped": 0, "truncated": 0}
        self.iterator = None
        self.logged = {json.loads(line)["key"] for line in _lines(run.skipped)}  # each bad file listed once
        left_out = [dict(r, step=0) for s in mixture.sources for r in s.left_out]
        self._log(left_out)
        if left_out:
            print(f"left out {len(left_out)} file(s) of {cfg.data}, each listed with its reason in {run.skipped} "
                  f"(first: {left_out[0]['reason']})", file=sys.stderr)

    def state(self) -> dict:
        return {"positions": self.positions, "counts": dict(self.counts), "workers": self.cfg.workers}

    def load_state(self, state: dict) -> None:
        self.positions = state.get("positions", {})
        self.counts.update(state.get("counts", {}))
        if self.mixture.streaming and state.get("workers", self.cfg.workers) != self.cfg.workers:
            raise ValueError(f"{self.run.out} was trained with --workers {state['workers']}; a tar stream resumes "
                             "exactly only with the same number, so pass that")

    def batch(self, step: int) -> Batch:
        if self.iterator is None:
            v = self.model.config.vision
            batches = PairBatches(self.mixture, self.model.tokenizer, TrainTransform(v.image_size, v.mean, v.std),
                                  self.cfg.batch_size, self.cfg.seed, step, self.cfg.steps, max(1, self.cfg.workers),
                                  self.positions, self.cfg.hard_negatives)
            self.iterator = iter(batch_loader(batches, self.cfg.workers))
        batch = next(self.iterator)
        assert batch.step == step, f"data for step {batch.step} arrived at step {step}"
        self.positions.update(batch.positions)
        self.counts["drawn"] += batch.drawn
        self.counts["skipped"] += len(batch.skipped)
        self.counts["truncated"] += batch.truncated
        self._log(batch.skipped)
        self._check_quality()
        return batch

    def _log(self, records: list[dict]) -> None:
        new = [r for r in records if r["key"] not in self.logged]
        if new:
            self.logged.update(r["key"] for r in new)
            with open(self.run.skipped, "a") as log:
                log.writelines(json.dumps(record) + "\n" for record in new)

    def _check_quality(self) -> None:
        drawn, skipped = self.counts["drawn"], self.counts["skipped"]
        if drawn >= max(100, self.cfg.batch_size) and skipped > self.cfg.max_bad_fraction * drawn:
            raise BadDataError(
                f"{skipped} of the {drawn} training examples drawn so far ({skipped / drawn:.1%}) were unusable, over "
                f"--max-bad-fraction {self.cfg.max_bad_fraction:g}; each is listed with its reason in "
                f"{self.run.skipped}. Fix or remove them, or raise --max-bad-fraction")


# Options a resumed run may change: none of them changes what it computes.
RESUMABLE = ("steps", "workers", "device", "log_every", "save_every", "keep", "tensorboard")


def train(model_config: ModelConfig | None, train_config: TrainConfig | None, out: str | Path,
          resume: bool = False, show_progress: bool = True, changes: dict | None = None) -> CLIP:
    """Trains into `out`. A new run builds its model from `model_config` (or else from the
    options' `model` or `init`). With `resume=True` the model and options are read from `out`,
    `changes` may set the RESUMABLE ones (a higher `steps` trains longer), and training continues
    from the newest checkpoint; the result equals an uninterrupted run's."""
    run = RunFolder(out)
    if resume:
        if not (run.out / TRAIN_FILE).is_file():
            raise FileNotFoundError(f"{run.out}: no {TRAIN_FILE}; it is not a training run folder")
        fixed = sorted(set(changes or {}) - set(RESUMABLE))
        if fixed:
            raise ValueError(f"a resumed run keeps its options; only {', '.join(RESUMABLE)} can change "
                             f"(asked to change {', '.join(fixed)})")
        cfg = dataclasses.replace(TrainConfig.from_json(run.out / TRAIN_FILE), **(changes or {}))
    else:
        if run.latest() is not None:
            raise FileExistsError(f"{run.out} already holds a training run: pass --resume {run.out} "
                                  "to continue it, or choose another --out")
        cfg = train_config or TrainConfig()
    if cfg.hard_negatives and cfg.data != "synthetic":
        raise ValueError("--hard-negatives needs --data synthetic: near-miss captions come from the built-in world")
    runtime = Runtime.resolve(cfg.device, cfg.precision)
    mixture = open_pairs(cfg.data, cfg.shuffle_buffer)
    if mixture.streaming and cfg.workers > 1:
        for source in mixture.sources:
            if source.streaming and len(source.urls) < cfg.workers:
                raise ValueError(f"{source.name} has {len(source.urls)} shard(s) for --workers {cfg.workers}: each "
                                 "worker streams whole shards; use fewer workers or more shards")
    held_out = [s.hold_out(cfg.seed, cfg.eval_pairs if cfg.eval_every else 0) for s in mixture.sources]
    torch.manual_seed(cfg.seed)
    if resume:
        model = _resume_model(run, cfg)
    else:
        model = _new_model(model_config, cfg, mixture)
        save_model(model, run.out, weights=False)  # checkpoints publish the weights
    model.to(runtime.device)
    if cfg.lock_image:
        lock_tower(model.visual, cfg.lock_image_unlocked_layers)
    if cfg.lock_text:
        lock_tower(model.text, cfg.lock_text_unlocked_layers)
    feed = PairFeed(mixture, model, cfg, run, runtime)
    validation = Validation(model, cfg, held_out, runtime, run) if cfg.eval_every else None

    def backward_at(step: int) -> float:
        batch = feed.batch(step)
        if len(batch.ids) < 2:  # nothing to contrast: every example of the batch was unusable
            return float("nan")
        move = lambda t: None if t is None else t.to(runtime.device, non_blocking=True)  # noqa: E731
        return train_step(model, move(batch.pixels), move(batch.ids), cfg.accum, cfg.precision, move(batch.negatives))

    def after_step(done: int) -> dict:
        model.clamp_logit_scale()
        row = {"temperature": round(float(model.logit_scale.detach().exp().reciprocal()), 5),
               "skipped": feed.counts["skipped"], "truncated": feed.counts["truncated"]}
        if validation and (done % cfg.eval_every == 0 or done == cfg.steps):
            row.update(validation.run(done))
        return row

    return fit(model, backward_at, cfg, run.out, "train", "pairs", after_step, show_progress, data=feed,
               resume_hint=f"grounding train --resume {run.out}")


def _new_model(model_config: ModelConfig | None, cfg: TrainConfig, mixture: Mixture) -> CLIP:
    if cfg.init:
        model = load(cfg.init)
        if cfg.tokenizer and cfg.tokenizer != model.config.tokenizer:
            raise ValueError(f"--init keeps the model's own tokenizer; drop --tokenizer {cfg.tokenizer}")
        return model.train()
    config = model_config or resolve_config(cfg.model, cfg.image_tower, cfg.text_tower)
    if cfg.loss:
        config.loss = cfg.loss
    return create_model(config, make_tokenizer(config, cfg.tokenizer, mixture))


def make_tokenizer(config: ModelConfig, choice: str | None, mixture: Mixture) -> Tokenizer:
    """The tokenizer `choice` names (or the config's own), with the text tower sized to it. A
    trained BPE learns from the training captions: data comes before the vocabulary."""
    if choice:
        config.tokenizer = choice
    if config.tokenizer == "train":
        return build_tokenizer(config, training_texts(mixture))
    tokenizer = build_tokenizer(config)
    if config.text.kind != "minilm":
        config.text.vocab_size = len(tokenizer)
        config.text.eot_token_id, config.text.pad_token_id = tokenizer.eot_token_id, tokenizer.pad_token_id
    return tokenizer


def training_texts(mixture: Mixture) -> list[str]:
    """The captions a new vocabulary is learned from: every caption of the list sources, the
    built-in world's text, and the first VOCABULARY_SAMPLE captions of each tar stream."""
    texts: list[str] = []
    for source in mixture.sources:
        if isinstance(source, SyntheticSource):
            texts += synthetic_corpus()
        elif source.streaming:
            problems: list[dict] = []
            stream = source.samples(0, 0, 1, StreamPosition(), problems)
            for _, (sample, _) in zip(range(VOCABULARY_SAMPLE), stream):
                texts += sample.captions
        else:
            texts += [c for p in source.pairs for c in p.captions]
    return texts


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _resume_model(run: RunFolder, cfg: TrainConfig) -> CLIP:
    """The run's model before its checkpoint is loaded into it: the --init model's weights, or
    fresh ones from the run's seed."""
    if cfg.init and run.latest() is None:
        return load(cfg.init).train()
    return create_model(*read_config(run.out))
