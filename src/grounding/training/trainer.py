"""CLIP training on any --data SPEC (data/pairs.py): batches built in worker processes, bf16
autocast, gradient accumulation that keeps the full contrastive batch, fine-tuning from any
loadable model, locked towers, bad examples skipped and counted, and validation while it trains.
The schedule, checkpoints and exact resume are the shared loop's (loop.py)."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..build import create_model
from ..config import ModelConfig, resolve_config
from ..data.pairs import ListSource, Mixture, StreamPosition, SyntheticSource, open_pairs
from ..data.synthetic import synthetic_corpus
from ..errors import AlreadyExists, BadInput, NotFound
from ..losses import contrastive_loss
from ..models import CLIP
from ..runtime import Runtime, autocast, device_of
from ..saved import load, read_config, save_model
from ..tokenizer import Tokenizer
from ..vocabulary import build_tokenizer, tie_tokenizer
from . import distributed
from .checkpoint import TRAIN_FILE, RunFolder
from .distributed import World
from .feed import CachedFeed, PairFeed
from .lock import lock_tower
from .loop import fit
from .options import RESUMABLE, TrainConfig
from .validation import Validation

# Captions read from a tar stream to train a vocabulary on; list sources give all of theirs.
VOCABULARY_SAMPLE = 20_000


class Features(nn.Module):
    """The unit features of a batch as one module call: what DistributedDataParallel wraps (it
    averages the gradients of what its forward computed)."""

    def __init__(self, model: CLIP):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor, negatives: torch.Tensor | None = None,
                have: torch.Tensor | None = None):
        """`have` (one flag an example) says which rows of `negatives` are real: the others (an
        example with no negative to give) come out as zero vectors, which the losses leave out.
        The captions and the real negatives go through the text tower as one batch."""
        image = self.model.encode_image(pixels, normalize=True)
        if negatives is None:
            return image, self.model.encode_text(ids, normalize=True), None
        real = negatives if have is None else negatives[have]
        texts = self.model.encode_text(torch.cat([ids, real]), normalize=True)
        text, found = texts[:len(ids)], texts[len(ids):]
        if have is None:
            return image, text, found
        return image, text, found.new_zeros(len(negatives), found.shape[1]).index_put((have,), found)


def head_step(model: CLIP, image_features: torch.Tensor, text_features: torch.Tensor, runtime: Runtime) -> float:
    """Forward and backward of the heads alone, over cached backbone features."""
    with runtime.autocast():
        image = F.normalize(model.visual.from_features(image_features), dim=-1)
        text = F.normalize(model.text.from_features(text_features), dim=-1)
        loss = contrastive_loss(model, image, text)
    loss.backward()
    return loss.item()


class ContrastiveStep:
    """Forward and backward for one contrastive batch, returning its loss: on one process, or as
    one rank of a data-parallel run (distributed.py says how the loss is shared)."""

    def __init__(self, model: CLIP, precision: str = "fp32", accum: int = 1, world: World = World(),
                 gather_with_grad: bool = False, local_loss: bool = False):
        self.model, self.precision, self.accum, self.world = model, precision, accum, world
        self.gather_with_grad, self.local_loss = gather_with_grad, local_loss
        self.features = Features(model)
        if world.distributed:
            device = device_of(model)
            gpus = [device] if device.type == "cuda" else None
            self.features = DistributedDataParallel(self.features, device_ids=gpus)

    def __call__(self, pixels: torch.Tensor, ids: torch.Tensor, negatives: torch.Tensor | None = None,
                 have: torch.Tensor | None = None) -> float:
        device = pixels.device.type
        if self.accum == 1:
            with autocast(device, self.precision):
                image, text, negative = self.features(pixels, ids, negatives, have)
                loss = distributed.contrastive_loss(self.model, image, text, negative, self.world,
                                                    self.gather_with_grad, self.local_loss)
            loss.backward()
            return loss.item()
        return self._accumulated(pixels, ids, negatives, have)

    def _accumulated(self, pixels: torch.Tensor, ids: torch.Tensor, negatives: torch.Tensor | None,
                     have: torch.Tensor | None) -> float:
        """With accum > 1 the features of all micro-batches are computed first without gradients,
        then each micro-batch is recomputed with gradients and its loss taken against the whole
        cached batch, so the summed gradient equals the full batch's (BatchNorm aside, whose
        statistics are per call)."""
        device, accum = pixels.device.type, self.accum
        parts = [t.chunk(accum) if t is not None else [None] * accum for t in (pixels, ids, negatives, have)]
        chunks = list(zip(*parts))
        with torch.no_grad(), autocast(device, self.precision):
            cached = [self.features(*chunk) for chunk in chunks]
        for j, chunk in enumerate(chunks):
            with autocast(device, self.precision):
                fresh = self.features(*chunk)
                joined = [None if fresh[i] is None else torch.cat([fresh[i] if k == j else c[i] for k, c in enumerate(cached)])
                          for i in range(3)]
                loss = contrastive_loss(self.model, *joined, learn_scale=j == 0)
            loss.backward()
        return loss.item()


def train(model_config: ModelConfig | None, train_config: TrainConfig | None, out: str | Path,
          resume: bool = False, show_progress: bool = True, changes: dict | None = None,
          overwrite: bool = False) -> CLIP:
    """Trains into `out`. A new run builds its model from `model_config` (or else from the
    options' `model` or `init`). With `resume=True` the model and options are read from `out`,
    `changes` may set the RESUMABLE ones (a higher `steps` trains longer), and training continues
    from the newest intact checkpoint; the result equals an uninterrupted run's. A new run refuses
    an `out` that holds other files, unless `overwrite`. Under torchrun every process calls this:
    rank 0 writes `out`, and a group that torchrun restarts (--max-restarts) resumes there."""
    run = RunFolder(out)
    if not resume and distributed.restarted() and (run.out / TRAIN_FILE).is_file():
        resume, changes = True, None  # the same command, run again by torchrun after a failure
    if resume:
        if not (run.out / TRAIN_FILE).is_file():
            raise NotFound(f"{run.out}: no {TRAIN_FILE}; it is not a training run folder")
        fixed = sorted(set(changes or {}) - set(RESUMABLE))
        if fixed:
            raise BadInput(f"a resumed run keeps its options; only {', '.join(RESUMABLE)} can change "
                           f"(asked to change {', '.join(fixed)})")
        cfg = dataclasses.replace(TrainConfig.from_json(run.out / TRAIN_FILE), **(changes or {}))
    else:
        cfg = train_config or TrainConfig()
        if model_config is not None:  # train.json then describes the run whole
            cfg = dataclasses.replace(cfg, architecture=model_config.to_dict())
    world = distributed.start(cfg.device)
    if not resume:
        world.first(lambda: _check_new_out(run, overwrite))
    cfg.check()
    distributed.check_options(cfg.loss or "clip", cfg.gather_with_grad, cfg.local_loss)  # again once the model is known
    _check_world(cfg, world)
    runtime = Runtime.resolve(cfg.device, cfg.precision)
    if world.distributed and runtime.device.type == "cuda":
        runtime = dataclasses.replace(runtime, device=torch.device("cuda", world.local_rank))
    mixture = open_pairs(cfg.data, cfg.shuffle_buffer, cfg.resampled)
    if cfg.image_negatives:
        worlds = [source for source in mixture.sources if isinstance(source, SyntheticSource)]
        if not worlds:
            raise BadInput("--image-negatives needs the built-in world in --data (synthetic): its scenes are the "
                           "ones that can be drawn again with their objects rearranged")
        for source in worlds:
            source.twins = True
    if mixture.streaming and not cfg.resampled:
        streams = max(1, cfg.workers) * world.size
        for source in mixture.sources:
            if source.streaming and len(source.urls) < streams:
                raise BadInput(f"{source.name} has {len(source.urls)} shard(s) for {streams} data streams (--workers "
                               f"{cfg.workers} on each of {world.size} processes): each stream reads whole shards; "
                               "use fewer workers, more shards, or --resampled")
    held_out = [s.hold_out(cfg.seed, cfg.eval_pairs if cfg.eval_every else 0) for s in mixture.sources]
    if cfg.epochs or cfg.samples:
        cfg = dataclasses.replace(cfg, steps=steps_for(mixture, cfg))
    if not world.main:
        return _run(run, cfg, model_config, mixture, held_out, runtime, resume, False, world)
    with run.claimed("grounding train"):  # nothing is written before this
        return _run(run, cfg, model_config, mixture, held_out, runtime, resume, show_progress, world)


def _check_new_out(run: RunFolder, overwrite: bool) -> None:
    run.check_out(overwrite)
    if run.latest() is not None:
        raise AlreadyExists(f"{run.out} already holds a training run: pass --resume {run.out} "
                            "to continue it, or choose another --out")


def _check_world(cfg: TrainConfig, world: World) -> None:
    if not world.distributed:
        return
    if cfg.batch_size % world.size:
        raise BadInput(f"--batch-size {cfg.batch_size} is the global batch, shared by {world.size} processes: "
                       "give a multiple of that number")
    if cfg.accum > 1:
        raise BadInput("--accum splits a batch on one process; with many processes the global batch is already "
                       "shared out: drop --accum (or use --local-loss --gather-with-grad to save memory)")
    if cfg.cache_features:
        raise BadInput("--cache-features trains heads on one process: run it without torchrun")


def _run(run: RunFolder, cfg: TrainConfig, model_config: ModelConfig | None, mixture: Mixture, held_out: list,
         runtime: Runtime, resume: bool, show_progress: bool, world: World = World()) -> CLIP:
    torch.manual_seed(cfg.seed)

    made: list[CLIP] = []

    def prepare() -> None:  # rank 0 of a new run: write the model's config and tokenizer
        if resume:
            return
        model = _new_model(model_config, cfg, mixture)
        distributed.check_options(model.config.loss, cfg.gather_with_grad, cfg.local_loss)
        save_model(model, run.out, weights=False)  # checkpoints publish the weights
        made.append(model)

    world.first(prepare)
    # resumed, or another rank: the model rank 0 wrote (its weights come from the checkpoint, or from rank 0)
    model = made[0] if made else _resume_model(run, cfg)
    model.to(runtime.device)
    if cfg.lock_image:
        lock_tower(model.visual, cfg.lock_image_unlocked_layers)
    if cfg.lock_text:
        lock_tower(model.text, cfg.lock_text_unlocked_layers)
    model.set_grad_checkpointing(cfg.grad_checkpointing)
    feed = CachedFeed(mixture, model, cfg, run, runtime) if cfg.cache_features else \
        PairFeed(mixture, model, cfg, run, runtime, world)
    validation = Validation(model, cfg, held_out, runtime, run) if cfg.eval_every and world.main else None
    step = ContrastiveStep(model, cfg.precision, cfg.accum, world, cfg.gather_with_grad, cfg.local_loss)

    def backward_at(n: int) -> float:
        batch = feed.batch(n)
        move = lambda t: None if t is None else t.to(runtime.device, non_blocking=True)  # noqa: E731
        if batch.image_features is not None:
            if len(batch.image_features) < 2:
                return float("nan")
            return head_step(model, move(batch.image_features), move(batch.text_features), runtime)
        if not world.distributed and len(batch.ids) < 2:  # nothing to contrast: every example was unusable
            return float("nan")
        return step(move(batch.pixels), move(batch.ids), move(batch.negatives), move(batch.have_negative))

    def after_step(done: int) -> dict:
        model.clamp_logit_scale()
        row = {"temperature": round(float(model.logit_scale.detach().exp().reciprocal()), 5),
               "skipped": feed.counts["skipped"], "truncated": feed.counts["truncated"]}
        if cfg.hard_negatives:  # the share of the examples trained on so far that had a negative to give
            used = feed.counts["drawn"] - feed.counts["skipped"]
            row["with_negative"] = round(feed.counts["negatives"] / max(1, used), 3)
        if validation and (done % cfg.eval_every == 0 or done == cfg.steps):
            row.update(validation.run(done))
        return row

    return fit(model, backward_at, cfg, run.out, "train", "pairs", after_step, show_progress, data=feed,
               resume_hint=("the same torchrun command with " if world.distributed else "")
               + f"grounding train --resume {run.out}", world=world)


def steps_for(mixture: Mixture, cfg: TrainConfig) -> int:
    """The steps that --samples examples, or --epochs passes over listed data, take."""
    samples = cfg.samples
    if not samples:
        if not all(isinstance(s, ListSource) for s in mixture.sources):
            raise BadInput("--epochs needs data that lists its images; give --steps for synthetic or tar data")
        samples = cfg.epochs * sum(len(s) for s in mixture.sources)
    return max(1, math.ceil(samples / cfg.batch_size))


def _new_model(model_config: ModelConfig | None, cfg: TrainConfig, mixture: Mixture) -> CLIP:
    if cfg.init:
        model = load(cfg.init, activation=cfg.init_activation)
        if cfg.tokenizer and cfg.tokenizer != model.config.tokenizer:
            raise BadInput(f"--init keeps the model's own tokenizer; drop --tokenizer {cfg.tokenizer}")
        return model.train()
    config = model_config or resolve_config(cfg.architecture, cfg.image_tower, cfg.text_tower)
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
        tie_tokenizer(config, tokenizer)
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


def _resume_model(run: RunFolder, cfg: TrainConfig) -> CLIP:
    """The run's model before its checkpoint is loaded into it: the --init model's weights, or
    fresh ones from the run's seed."""
    if cfg.init and run.latest() is None:
        return load(cfg.init, activation=cfg.init_activation).train()
    return create_model(*read_config(run.out))
