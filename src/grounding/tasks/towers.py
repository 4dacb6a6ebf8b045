"""The image and text towers of a task model: a preset's (optionally with other tower kinds), or
those of a trained CLIP model, copied in and optionally frozen."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..config import ModelConfig, resolve_config
from ..runtime import device_of
from ..saved import load
from ..tokenizer import Tokenizer
from ..training.lock import lock_tower
from ..vocabulary import build_tokenizer
from .options import TaskOptions


def tower_config(spec: str, image_tower: str | None = None, text_tower: str | None = None
                 ) -> tuple[ModelConfig, Tokenizer]:
    """A preset or JSON config; a ViT keeps 8-pixel patches at 64 px, since counting and
    relations need a finer grid than 16 tokens."""
    config = resolve_config(spec, image_tower, text_tower, "--towers")
    if config.vision.kind == "vit" and config.vision.image_size <= 64:
        config.vision.patch_size = min(config.vision.patch_size, 8)
    return config, build_tokenizer(config)


def towers_for(options: TaskOptions) -> tuple[ModelConfig, Tokenizer, nn.Module | None]:
    """The towers' config and tokenizer, and the CLIP model to copy them from (None: fresh)."""
    if options.init:
        clip = load(options.init)
        return clip.config, clip.tokenizer, clip
    return *tower_config(options.towers, options.image_tower, options.text_tower), None


def pixels_of(model: nn.Module, examples: Sequence) -> torch.Tensor:
    """The examples' images (each example's `ref`, an ImageRef) at the model's size,
    preprocessed, as one batch."""
    size = model.config.towers.vision.image_size
    return torch.stack([model.preprocess(e.ref.read(size)) for e in examples]).to(device_of(model))


def copy_towers(model: nn.Module, clip: nn.Module) -> None:
    model.visual.load_state_dict(clip.visual.state_dict())
    if hasattr(model, "text"):
        model.text.load_state_dict(clip.text.state_dict())


def freeze_towers(model: nn.Module) -> None:
    """Fixes the towers' weights (and BatchNorm statistics, once in train mode: see lock.py)."""
    lock_tower(model.visual)
    if hasattr(model, "text"):
        lock_tower(model.text)
