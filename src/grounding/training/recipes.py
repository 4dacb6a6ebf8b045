"""Named recipes: the model config and training options that make a known model, trained by the
one training path, and what is done once training ends.

    demo       `grounding demo`'s model: the small preset with a ResNet image tower, 300 steps on
               the synthetic world with hard negatives (from scratch on little data, the ResNet
               learns shape far sooner than the ViT: docs/models.md)
    lit-real   the built-in lit-minilm-effnet: image heads over the locked EfficientNet-Lite0,
               trained into the locked MiniLM's own sentence space (LiT) on cached features of
               openclipart drawings, emoji in six styles, icons and round flags (LIT_DATA), three
               runs from seeds seed, seed+1, seed+2 in OUT/members, their heads joined into an
               ensemble, then the ImageNet route (models/pretrained.py) filled in
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..build import join_heads
from ..config import ModelConfig, TextConfig, VisionConfig, resolve_config
from ..errors import BadInput
from ..models import CLIP, bert, efficientnet
from ..models.pretrained import fill_imagenet_route
from ..saved import load, save_model
from .checkpoint import RunFolder
from .options import RESUMABLE, TrainConfig
from .trainer import train

IMAGENET_ROUTE = 0.3  # the route's weight, chosen on validation data (docs/builtin-model.md)
# The built-in model's training pairs: only packages whose licences let the weights ship (Apple's
# and Facebook's emoji, Tux Paint and GCompris stay out). Each npm package is found in the working
# folder as the .tgz of `npm pack` (data/emoji.py); circle-flags are round flags, so the flags test
# (rectangular) and its validation set (@iconify-json/flag) are never trained on.
LIT_DATA = "+".join(["openclipart", "emoji:google", "emoji:fluent-3d"] + [f"iconify:{name}" for name in (
    "fluent-emoji-flat", "fluent-emoji", "fxemoji", "emojione", "streamline-emojis", "flat-color-icons",
    "circle-flags")])


def demo() -> tuple[ModelConfig, TrainConfig]:
    options = TrainConfig(data="synthetic", steps=300, batch_size=64, lr=5e-4, warmup=30, save_every=100,
                          hard_negatives=True)
    return resolve_config("small", image_tower="resnet"), options


def lit_real() -> tuple[ModelConfig, TrainConfig]:
    config = ModelConfig(
        embed_dim=bert.WIDTH,  # texts keep MiniLM's own space: only the image head learns (docs/builtin-model.md)
        vision=VisionConfig(kind="efficientnet_lite0", image_size=224, mean=efficientnet.MEAN, std=efficientnet.STD,
                            head_width=1024),
        text=TextConfig(kind="minilm", context_length=64, vocab_size=30522, projection_head=False),
        tokenizer="minilm",
    )
    options = TrainConfig(data=LIT_DATA, lock_image=True, lock_text=True, cache_features=True, epochs=40,
                          batch_size=1024, lr=2e-3, weight_decay=0.1, warmup=25, grad_clip=0, save_every=100,
                          precision="bf16")
    return config, options


@torch.no_grad()
def finish_lit_real(model: CLIP) -> CLIP:
    """The ImageNet route added, and the image head's biases rounded to float16 values, which
    saving stores in half the bytes (saved.compact); its matrices and the route's label
    embeddings are stored as int8 (Recipe.int8). No validation score moved (docs/builtin-model.md)."""
    model.visual.add_route(IMAGENET_ROUTE)
    fill_imagenet_route(model, model.tokenizer)
    for tensor in model.visual.head.parameters():
        if tensor.dim() == 1:
            tensor.copy_(tensor.half().float())
    return model


@dataclass(frozen=True)
class Recipe:
    make: Callable[[], tuple[ModelConfig, TrainConfig]]
    finish: Callable[[CLIP], CLIP] | None = None
    # More than 1: that many runs, from seeds seed, seed+1, ..., whose heads are joined into an
    # ensemble (build.join_heads): the ensemble beat every one of its members on validation.
    members: int = 1
    int8: tuple[str, ...] = ()  # the finished model's weight matrices stored as int8 (saved.int8_rows)


RECIPES = {"demo": Recipe(demo),
           "lit-real": Recipe(lit_real, finish_lit_real, members=3,
                       int8=("visual.head.", "visual.label_embeddings"))}


def run_recipe(name: str, out: str | Path, changes: dict | None = None, show_progress: bool = True) -> CLIP:
    """Trains recipe `name` into `out` with `changes` to its options (or resumes it there), then
    finishes the model and saves it in `out`; returns it as saved. A finished folder is left as
    it is."""
    if name not in RECIPES:
        raise BadInput(f"unknown recipe {name!r}: the recipes are {', '.join(RECIPES)}")
    recipe, out, changes = RECIPES[name], Path(out), changes or {}
    if (out / "recipe.done").is_file():
        return load(out)
    if recipe.members == 1:
        model = _train_or_resume(recipe, out, changes, show_progress)
    else:
        seed = changes.get("seed", recipe.make()[1].seed)
        model = join_heads([_train_or_resume(recipe, out / "members" / str(k), {**changes, "seed": seed + k},
                                             show_progress).eval() for k in range(recipe.members)])
    if recipe.finish is None:
        return model
    save_model(recipe.finish(model.eval()), out, int8=recipe.int8)
    (out / "recipe.done").write_text(name + "\n")
    return load(out)  # as saved: int8 storage rounds


def _train_or_resume(recipe: Recipe, out: Path, changes: dict, show_progress: bool) -> CLIP:
    if RunFolder(out).latest() is not None:
        resumable = {k: v for k, v in changes.items() if k in RESUMABLE}  # (--steps: train longer)
        return train(None, None, out, resume=True, show_progress=show_progress, changes=resumable)
    config, options = recipe.make()
    return train(config, dataclasses.replace(options, **changes), out, show_progress=show_progress)
