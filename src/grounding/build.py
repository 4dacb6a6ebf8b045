"""Building models from configs: a randomly initialised CLIP model, and the tokenizer and
preprocessing every model (CLIP or task) carries."""
from __future__ import annotations

import dataclasses

import torch

from .config import ModelConfig, VisionConfig
from .data.images import Preprocess
from .errors import BadInput
from .models import CLIP
from .models.pretrained import EfficientNetTower, digest
from .tokenizer import Tokenizer
from .vocabulary import build_tokenizer


def create_model(config: ModelConfig, tokenizer: Tokenizer | None = None) -> CLIP:
    """A randomly initialised model with its tokenizer and preprocessing."""
    tokenizer = tokenizer or build_tokenizer(config)
    return attach(CLIP(config), tokenizer)


def attach(model: torch.nn.Module, tokenizer: Tokenizer) -> torch.nn.Module:
    """Gives a model its tokenizer and preprocessing, once the tokenizer is known to fit its text
    tower: a CLIP model, or a task model, whose config keeps its towers' under `towers`."""
    towers = getattr(model.config, "towers", model.config)
    if len(tokenizer) > towers.text.vocab_size:
        raise BadInput(f"the tokenizer has {len(tokenizer)} tokens but the text tower only "
                       f"{towers.text.vocab_size}; raise text.vocab_size")
    model.tokenizer = tokenizer
    model.preprocess = preprocess_for(towers.vision)
    return model


def preprocess_for(vision: VisionConfig) -> Preprocess:
    return Preprocess(vision.image_size, tuple(vision.mean), tuple(vision.std), vision.resize)


@torch.no_grad()
def join_heads(members: list[CLIP]) -> CLIP:
    """One model whose image head is the ensemble of the members' (models/pretrained.py
    HeadEnsemble): models of one config, trained apart over the same image backbone and the
    same text tower (locked ones). The temperature (and SigLIP's bias) is the members' mean."""
    first = members[0]
    if not isinstance(first.visual, EfficientNetTower) or first.config.vision.imagenet_route or \
            first.config.vision.head_ensemble != 1:
        raise BadInput("join_heads joins the single heads of EfficientNet towers, before the ImageNet route is added")
    for model in members[1:]:
        if model.config != first.config or digest(model.text) != digest(first.text) or \
                digest(model.visual.backbone) != digest(first.visual.backbone):
            raise BadInput("join_heads needs models of one config over the same image backbone and text tower "
                           "(both locked while the heads trained); these differ")
    vision = dataclasses.replace(first.config.vision, head_ensemble=len(members))
    joined = create_model(dataclasses.replace(first.config, vision=vision), first.tokenizer)
    joined.text.load_state_dict(first.text.state_dict())
    joined.visual.backbone.load_state_dict(first.visual.backbone.state_dict())
    for head, model in zip(joined.visual.head.members, members):
        head.load_state_dict(model.visual.head.state_dict())
    joined.logit_scale.copy_(torch.stack([m.logit_scale for m in members]).mean())
    if joined.logit_bias is not None:
        joined.logit_bias.copy_(torch.stack([m.logit_bias for m in members]).mean())
    return joined

