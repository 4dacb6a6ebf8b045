"""Building models from configs: a randomly initialised CLIP model, and the tokenizer and
preprocessing every model (CLIP or task) carries."""
from __future__ import annotations

import torch

from .config import ModelConfig, VisionConfig
from .data.images import Preprocess
from .models import CLIP
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
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the text tower only "
                         f"{towers.text.vocab_size}; raise text.vocab_size")
    model.tokenizer = tokenizer
    model.preprocess = preprocess_for(towers.vision)
    return model


def preprocess_for(vision: VisionConfig) -> Preprocess:
    return Preprocess(vision.image_size, tuple(vision.mean), tuple(vision.std))
