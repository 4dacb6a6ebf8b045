"""Named recipes: the model config and training options that make a known model, trained by the
one training path, and what is done once training ends.

    demo       `grounding demo`'s model: the small preset with a ResNet image tower, 300 steps on
               the synthetic world with hard negatives (from scratch on little data, the ResNet
               learns shape far sooner than the ViT: docs/models.md)
    lit-real   the built-in lit-minilm-effnet: an image head over the locked EfficientNet-Lite0,
               trained into the locked MiniLM's own sentence space (LiT) on cached features of
               openclipart drawings, emoji in six styles, icons and round flags (LIT_DATA), then
               the ImageNet route (models/pretrained.py) filled in
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import ModelConfig, TextConfig, VisionConfig, resolve_config
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
                          batch_size=512, lr=1e-3, weight_decay=0.1, warmup=50, grad_clip=0, save_every=100,
                          precision="bf16")
    return config, options


def finish_lit_real(model: CLIP) -> CLIP:
    model.visual.add_route(IMAGENET_ROUTE)
    fill_imagenet_route(model, model.tokenizer)
    return model


RECIPES = {"demo": (demo, None), "lit-real": (lit_real, finish_lit_real)}


def run_recipe(name: str, out: str | Path, changes: dict | None = None, show_progress: bool = True) -> CLIP:
    """Trains recipe `name` into `out` with `changes` to its options (or resumes it there), then
    finishes the model and saves it in `out`. A finished folder is left as it is."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: the recipes are {', '.join(RECIPES)}")
    make, finish = RECIPES[name]
    out = Path(out)
    if (out / "recipe.done").is_file():
        return load(out)
    run = RunFolder(out)
    if run.latest() is not None:
        resumable = {k: v for k, v in (changes or {}).items() if k in RESUMABLE}  # (--steps: train longer)
        model = train(None, None, out, resume=True, show_progress=show_progress, changes=resumable)
    else:
        config, options = make()
        model = train(config, dataclasses.replace(options, **(changes or {})), out, show_progress=show_progress)
    if finish is None:
        return model
    model = finish(model.eval())
    save_model(model, out)
    (out / "recipe.done").write_text(name + "\n")
    return model
