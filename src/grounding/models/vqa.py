"""Visual question answering: the question's tokens, from the text tower, attend over the
image's tokens, from the image tower, through layers of cross-attention; the fused state at the
question's end token predicts the answer, as a classification over the answer vocabulary.
With `blind=True` the same model never sees the image: the question-only baseline.

Where the data knows it, a relation question's true relation ("left of", ...) is a second
target read from the same state (`relations`). Without it, "is A left of B?" asked with the true
relation or its opposite is not learned: the answer is the exclusive-or of the word and the
objects' places, and neither alone carries a gradient (docs/tasks.md)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import ModelConfig, TaskConfig
from ..errors import BadInput
from .clip import CLIP
from .fusion import FusionBlock, ImageTokens
from .transformer import pooled_rows, positions_through


@dataclass
class VQAConfig(TaskConfig):
    towers: ModelConfig
    answers: list[str] = field(default_factory=list)
    width: int = 256
    layers: int = 2
    heads: int = 4
    blind: bool = False
    grid_stage: int = 4  # ResNet towers: the stage whose grid cells are the image tokens
    relations: list[str] = field(default_factory=list)  # the auxiliary relation target's classes; none: no such head
    final_grid: bool = False  # ResNet towers: the final stage's cells too, as more tokens
    task: str = "vqa"


def text_width(tower: nn.Module) -> int:
    if hasattr(tower, "lstm"):
        return tower.ln_final.normalized_shape[0]
    return tower.config.width


class VQAModel(nn.Module):
    def __init__(self, config: VQAConfig):
        super().__init__()
        if not config.answers:
            raise BadInput("a VQA model needs an answer vocabulary")
        self.config = config
        towers = CLIP(config.towers)
        self.visual, self.text = towers.visual, towers.text
        self.image_in = ImageTokens(self.visual, config.towers.vision, config.width, config.grid_stage,
                                     config.final_grid)
        self.text_in = nn.Linear(text_width(self.text), config.width)
        self.blocks = nn.ModuleList(FusionBlock(config.width, config.heads) for _ in range(config.layers))
        self.ln = nn.LayerNorm(config.width)
        self.head = nn.Sequential(nn.Linear(config.width, config.width), nn.GELU(),
                                  nn.Linear(config.width, len(config.answers)))
        self.relation_head = nn.Linear(config.width, len(config.relations)) if config.relations else None
        self.tokenizer = None  # attached when built or loaded
        self.preprocess = None

    def forward(self, pixels: torch.Tensor | None, ids: torch.Tensor) -> torch.Tensor:
        """Answer logits, (batch, answers)."""
        return self.head(self.fuse(pixels, ids))

    def fuse(self, pixels: torch.Tensor | None, ids: torch.Tensor) -> torch.Tensor:
        """The fused state at each question's end token, (batch, width): what the heads read."""
        states, eot = self.text.forward_tokens(ids)
        x = self.text_in(states)
        keep = positions_through(eot, x.shape[1])
        image = None if self.config.blind else self.image_in(self.visual, pixels)
        for block in self.blocks:
            x = block(x, None if image is None else block.image_keys_values(image), keep)
        return self.ln(pooled_rows(x, eot)[:, 0])
