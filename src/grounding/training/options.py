"""Every training option, with its default and the help the command line shows for it: one home
for each. `LoopConfig` is what every trainer shares (loop.py); `TrainConfig` adds CLIP's, and a
run's train.json is one of them (`grounding train --config train.json`)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadInput


MAX_STEPS, MAX_BATCH = 10 ** 9, 10 ** 7  # beyond these a run cannot end on any machine


def option(default, help: str):
    """A config field with the help text the command line shows for it."""
    return field(default=default, metadata={"help": help})


@dataclass
class LoopConfig:
    steps: int = option(2000, "Total optimizer steps.")
    batch_size: int = option(64, "Examples per step.")
    lr: float = option(1e-3, "Peak learning rate, reached after the warmup steps, then cosine-decayed to zero.")
    weight_decay: float = option(0.05, "AdamW weight decay, on weight matrices only.")
    warmup: int = option(100, "Linear warmup steps.")
    grad_clip: float = option(1.0, "Clip the gradient's global norm to this (0: no clipping).")
    seed: int = option(0, "Seeds the weights and the data order.")
    save_every: int = option(250, "Write a checkpoint every this many steps (and at least 4 times a run, and at "
                             "its end).")
    keep: int = option(2, "Checkpoints kept on disk.")
    tensorboard: bool = option(False, "Also log to OUT/tensorboard (needs grounding[tensorboard]).")
    log_every: float = option(30.0, "Seconds between plain progress lines when the output is not a terminal.")

    def check(self) -> None:
        """A one-line error naming the first option whose value cannot work."""
        for name, ok, want in self._rules():
            if not ok(getattr(self, name)):
                value = getattr(self, name)
                raise BadInput(f"--{name.replace('_', '-')} {value}: {want}")

    def _rules(self) -> list:
        return [("steps", lambda v: 1 <= v <= MAX_STEPS, f"train for at least 1 step and at most {MAX_STEPS:,}"),
                ("batch_size", lambda v: 1 <= v <= MAX_BATCH, f"a batch holds 1 to {MAX_BATCH:,} examples"),
                ("lr", lambda v: 0 < v < 1e3, "the learning rate must be positive and finite (below 1,000)"),
                ("seed", lambda v: v >= 0, "seeds are 0 or more"),
                ("weight_decay", lambda v: v >= 0, "weight decay cannot be negative"),
                ("warmup", lambda v: v >= 0, "warmup steps cannot be negative"),
                ("grad_clip", lambda v: v >= 0, "give a positive norm, or 0 for no clipping"),
                ("save_every", lambda v: v >= 1, "checkpoint every 1 step or more"),
                ("keep", lambda v: v >= 1, "keep at least 1 checkpoint"),
                ("log_every", lambda v: v >= 0, "seconds cannot be negative")]


@dataclass
class TaskLoopOptions:
    """The loop options train-vqa and train-caption take: their runs are shorter than CLIP's,
    and the learning rate depends on where the towers start."""

    steps: int = option(1500, "Total optimizer steps.")
    batch_size: int = option(64, "Examples per step.")
    lr: float | None = option(None, "Peak learning rate, reached after warmup, then cosine-decayed; by default "
                              "5e-4 with --init, else 1e-3 (the rates docs/tasks.md's runs measured).")
    seed: int = option(0, "Seeds the weights and the data.")
    save_every: int = option(250, "Write a checkpoint every this many steps (and at least 4 times a run, and at "
                             "its end); run the same command again to resume.")

    def loop(self, init: bool) -> LoopConfig:
        lr = self.lr if self.lr is not None else 5e-4 if init else 1e-3
        loop = LoopConfig(steps=self.steps, batch_size=self.batch_size, lr=lr, seed=self.seed,
                          warmup=min(100, max(1, self.steps // 10)), save_every=self.save_every)
        loop.check()
        return loop


@dataclass
class TrainConfig(LoopConfig):
    """Every option of a CLIP training run: `grounding train` reads its defaults and help here,
    and a run's train.json is one of these (`grounding train --config train.json`)."""

    architecture: str | dict = option("small", "The model to build and train from scratch: a preset (tiny, small, "
                                      "ViT-B-32, ViT-B-16, RN50) or a JSON model config (in train.json: also the "
                                      "config itself).")
    init: str | None = option(None, "Fine-tune this model instead: anything grounding.load reads (a run or saved "
                              "folder, a Hugging Face CLIP folder, an OpenAI or open_clip checkpoint, "
                              "lit-minilm-effnet); its tokenizer and preprocessing are kept.")
    init_activation: str | None = option(None, "With --init an OpenAI or open_clip state dict, which carries no "
                                         "config: quick_gelu (OpenAI's weights) or gelu.")
    image_tower: str | None = option(None, "vit or resnet, overriding the preset's image tower.")
    text_tower: str | None = option(None, "transformer or lstm, overriding the preset's text tower.")
    loss: str | None = option(None, "clip (softmax InfoNCE) or siglip (sigmoid); by default the model config's.")
    tokenizer: str | None = option(None, "openai (OpenAI's vocabulary), minilm (MiniLM's WordPiece) or train (a BPE "
                                   "learned from the training captions); by default the model config's.")
    data: str = option("synthetic", "Training pairs: synthetic, csv:PATH, folder:PATH, tar:PATTERN, openclipart, "
                       "emoji:STYLE[:PATH], iconify:SET[:PATH], tuxpaint, gcompris; join with +, weigh with @W (README: Train on your "
                       "own data).")
    workers: int = option(2, "Processes that decode and crop images beside the training one (0: none).")
    shuffle_buffer: int = option(1000, "tar data: samples in the shuffle buffer of each worker's stream.")
    max_bad_fraction: float = option(0.01, "Stop when more than this share of the examples drawn is unusable "
                                     "(unreadable images, empty captions); all are listed in OUT/skipped.jsonl.")
    device: str = option("auto", "cpu, cuda (or cuda:N), or auto: a GPU when PyTorch sees one.")
    cache_features: bool = option(False, "With both packaged towers' backbones locked (LiT): compute every image's "
                                  "and caption's backbone features once, keep them in OUT/features, and train the "
                                  "heads on them (no random crops).")
    epochs: float = option(0, "Train for this many passes over the data, instead of --steps (data that lists its "
                           "images only).")
    samples: int = option(0, "Train on this many examples in all, instead of --steps (any data; with tar shards, "
                          "see --resampled).")
    resampled: bool = option(False, "tar data: each data stream draws shards at random, with replacement, instead "
                             "of reading each shard once per epoch: no epochs, any number of shards per stream.")
    gather_with_grad: bool = option(False, "Many processes: the features gathered from the other ranks carry "
                                    "gradient back to them (docs/training.md).")
    local_loss: bool = option(False, "Many processes, with --gather-with-grad: each rank computes only its own "
                              "rows of the global similarity matrix (less memory, the same gradient).")
    grad_checkpointing: bool = option(False, "Recompute each tower layer's activations in the backward pass instead "
                                      "of keeping them: less memory, more time (docs/training.md).")
    eval_data: str | None = option(None, "A labelled dataset (as zeroshot --dataset takes) for zero-shot top-1/top-5 "
                                   "during training.")
    eval_every: int = option(0, "Validate every this many steps (and at the end); 0: never.")
    eval_pairs: int = option(256, "With --eval-every: training pairs held out of training for image-text "
                             "recall@1/5 (list sources and synthetic; tar streams hold none out).")
    eval_limit: int = option(1000, "Validate zero-shot on at most this many --eval-data examples (a seeded sample).")
    steps: int = option(1000, "Total optimizer steps.")
    lr: float = option(5e-4, "Peak learning rate, reached after the warmup steps, then cosine-decayed to zero.")
    weight_decay: float = option(0.2, "AdamW weight decay, on weight matrices only.")
    warmup: int = option(50, "Linear warmup steps.")
    save_every: int = option(100, "Write a checkpoint every this many steps (and at least 4 times a run, and at "
                             "its end).")
    accum: int = option(1, "Split each batch into this many micro-batches; the loss still sees the whole batch.")
    precision: str = option("fp32", "fp32, or bf16 autocast (weights and optimizer state stay fp32).")
    hard_negatives: bool = option(False, "add one wrong caption per image among the captions it chooses from "
                                         "(NegCLIP): the built-in world's near misses, a CSV's negatives column "
                                         "(|-separated), or else the caption's words swapped by rule.")
    image_negatives: bool = option(False, "synthetic data: train each scene beside the same objects in another "
                                          "arrangement (colours, shapes or places exchanged), so each caption "
                                          "must tell the two images apart.")
    grey: float = option(0.0, "This share of the examples drawn in greyscale, with the colour words taken out of "
                              "their captions: shapes learned apart from the colours they came in (zero-shot on "
                              "colour-shape pairs never seen together).")
    drop_colour_words: float = option(0.0, "This share of the examples (a further one, beside --grey's) kept in "
                                           "colour, with the colour words taken out of their captions: a caption "
                                           "that names only the shape must still find it in colour.")
    lock_image: bool = option(False, "Freeze the image tower (LiT: only the text side learns).")
    lock_image_unlocked_layers: int = option(0, "With --lock-image, still train its last N layers.")
    lock_text: bool = option(False, "Freeze the text tower.")
    lock_text_unlocked_layers: int = option(0, "With --lock-text, still train its last N layers.")

    def _rules(self) -> list:
        return super()._rules() + [
            ("batch_size", lambda v: v >= 2, "a contrastive batch needs at least 2 pairs (each one's negatives are "
                                             "the others)"),
            ("accum", lambda v: 1 <= v <= self.batch_size, "split a batch into 1 to --batch-size micro-batches"),
            ("workers", lambda v: v >= 0, "give 0 or more data workers"),
            ("max_bad_fraction", lambda v: 0 <= v <= 1, "a share between 0 and 1"),
            ("grey", lambda v: 0 <= v < 1, "a share of the examples from 0 up to (not including) 1"),
            ("drop_colour_words", lambda v: 0 <= v and self.grey + v < 1,
             "a share of the examples from 0, under 1 with --grey's"),
            ("epochs", lambda v: v >= 0, "epochs cannot be negative"),
            ("samples", lambda v: v >= 0 and not (v and self.epochs), "give 0 or more samples, and not with --epochs"),
            ("eval_every", lambda v: v >= 0, "validate every N >= 1 steps, or 0 for never"),
            ("eval_pairs", lambda v: v >= 0, "hold out 0 or more pairs"),
            ("shuffle_buffer", lambda v: v >= 1, "the shuffle buffer holds at least 1 sample"),
            ("lock_image_unlocked_layers", lambda v: v >= 0, "0 or more of the locked tower's last layers"),
            ("lock_text_unlocked_layers", lambda v: v >= 0, "0 or more of the locked tower's last layers")]

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if "model" in d and "architecture" not in d:  # a train.json written before the option's rename
            d = {("architecture" if k == "model" else k): v for k, v in d.items()}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise BadInput(f"unknown training options {unknown}; the known ones are the fields of TrainConfig")
        return cls(**d)

    @classmethod
    def from_json(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError, ValueError, TypeError) as e:
            raise BadInput(f"{path}: not a training config ({e})") from None


# Options a resumed run may change: a higher --steps trains longer (the schedule stretches from the
# checkpoint on); the others leave what it computes as it was.
RESUMABLE = ("steps", "workers", "device", "log_every", "save_every", "keep", "tensorboard")
