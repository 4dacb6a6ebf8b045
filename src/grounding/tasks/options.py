"""Every option of the task trainers (train-vqa, train-caption, train-detect), with its default
and the help the command line shows: one home for each, importable without torch."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import BadInput
from ..training.options import LoopConfig, option


@dataclass
class TaskOptions:
    """What the task trainers share: the loop, the data, and where the towers come from. The
    command line reads each option's default and help here."""

    loop: LoopConfig = field(default_factory=LoopConfig)
    data: str = option("synthetic", "synthetic, or csv:PATH.")
    towers: str = option("small", "The towers' preset or JSON config (a ViT at 64 px uses 8-px patches).")
    image_tower: str | None = option(None, "vit or resnet, overriding the preset's.")
    text_tower: str | None = option(None, "transformer or lstm, overriding the preset's.")
    init: str | None = option(None, "Start the towers (and the tokenizer) from this CLIP model instead.")
    freeze: bool = option(False, "With --init: keep the towers fixed, train only what is new.")


@dataclass
class FusionOptions(TaskOptions):
    """The trainers whose new part is layers over both towers' tokens (VQA, captioning)."""

    width: int = option(256, "Width of the cross-attention layers (or the decoder).")
    layers: int = option(2, "How many cross-attention (or decoder) layers.")
    heads: int = option(4, "Attention heads of those layers.")
    grid_stage: int = option(3, "ResNet towers: image tokens from this stage's grid (models/fusion.py).")

    def __post_init__(self) -> None:
        for name, low in (("width", 1), ("layers", 1), ("heads", 1), ("grid_stage", 1)):
            if getattr(self, name) < low:
                raise BadInput(f"--{name.replace('_', '-')} {getattr(self, name)}: give {low} or more", f"--{name}")
        if self.width % self.heads:
            raise BadInput(f"--width {self.width} is not divisible by {self.heads} heads", "--width")


@dataclass
class VQAOptions(FusionOptions):
    data: str = option("synthetic", "synthetic, or csv:PATH with columns image,question,answer[,type] (answers "
                       "'a|b|c' from several annotators give VQA soft scores).")
    relation_target: bool = option(False, "Also train a head on each relation question's true relation, where the "
                                   "data knows it (synthetic): the gradient that 'is A left of B?' alone lacks "
                                   "(docs/tasks.md).")
    relation_share: float = option(0.0, "synthetic: this share of each training batch asks a relation question "
                                   "about a two-object scene (the world's own mix: about 1 in 20; evaluation keeps it).")
    final_grid: bool = option(False, "ResNet towers: the final stage's coarser grid cells too, as more image tokens "
                              "beside the finer grid's (relations are learned sooner from them; docs/tasks.md).")


@dataclass
class CaptionOptions(FusionOptions):
    data: str = option("synthetic", "synthetic, csv:PATH (columns image,caption), or tuxpaint (Debian "
                       "tuxpaint-stamps-default; GPL, so do not ship what it trains).")
    decoder: str = option("transformer", "transformer (cross-attention, KV cache) or lstm (with attention).")


@dataclass
class DetectOptions(TaskOptions):
    data: str = option("synthetic", "synthetic: the built-in world's scenes and boxes (the seen colour-shape pairs "
                       "only; the held-out pairs are left for evaluation); or coco:JSON, COCO instances with the "
                       "images beside the JSON (a fifth of them kept out for evaluation).")
