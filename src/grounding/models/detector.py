"""Open-vocabulary detection in OWL-ViT's manner, over this project's towers: the image tower's
patch tokens are not pooled; each, scaled by the class token and normalised, predicts one box
(an MLP's offset from the patch's own place, through a sigmoid) and one embedding, scored
against the text tower's embedding of each query with a learned per-patch shift and scale.
A query is any text, so the classes are whatever the user names."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, TaskConfig
from ..errors import BadInput
from .clip import CLIP


@dataclass
class DetectorConfig(TaskConfig):
    towers: ModelConfig
    task: str = "detect"


def box_bias(grid: int) -> torch.Tensor:
    """(grid * grid, 4) logits of each patch's prior box (cx, cy, w, h), row by row: OWL-ViT's
    priors, whose centre is the patch's lower-right corner, (i + 1) / grid, and whose size is one
    patch (kept exactly, so that OWL-ViT's weights give its boxes here)."""
    steps = torch.arange(1, grid + 1, dtype=torch.float32) / grid
    cy, cx = torch.meshgrid(steps, steps, indexing="ij")
    size = torch.full_like(cx, 1 / grid)
    prior = torch.stack([cx, cy, size, size], dim=-1).reshape(-1, 4)
    return torch.log(prior + 1e-4) - torch.log1p(-prior + 1e-4)


class Detector(nn.Module):
    def __init__(self, config: DetectorConfig):
        super().__init__()
        if config.towers.vision.kind != "vit":
            raise BadInput(f"a detector needs a ViT image tower (its patch tokens are the candidate boxes), not "
                           f"{config.towers.vision.kind!r}: use --towers with a ViT, or --init a ViT CLIP model")
        self.config = config
        towers = CLIP(config.towers)
        self.visual, self.text = towers.visual, towers.text
        width, dim = config.towers.vision.width, config.towers.embed_dim
        self.ln = nn.LayerNorm(width)
        self.class_head = nn.Linear(width, dim)
        self.logit_shift, self.logit_scale = nn.Linear(width, 1), nn.Linear(width, 1)
        self.box_head = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width), nn.GELU(),
                                      nn.Linear(width, 4))
        grid = config.towers.vision.image_size // config.towers.vision.patch_size
        self.register_buffer("box_bias", box_bias(grid), persistent=False)
        self.tokenizer = None  # attached when built or loaded
        self.preprocess = None

    def queries(self, ids: torch.Tensor) -> torch.Tensor:
        """Unit embeddings of the queries' token ids, (queries, embed_dim)."""
        return F.normalize(self.text(ids).float(), dim=-1)

    def encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per patch of preprocessed images: its state (batch, patches, width), its unit embedding
        (batch, patches, dim) and its box (batch, patches, 4) as cx, cy, w, h in [0, 1]."""
        tokens = self.visual.forward_tokens(pixels)
        patches = self.ln(tokens[:, 1:] * tokens[:, :1])
        boxes = torch.sigmoid(self.box_head(patches) + self.box_bias)
        return patches, F.normalize(self.class_head(patches), dim=-1), boxes

    def score(self, patches: torch.Tensor, embeds: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """(batch, patches, queries) logits of unit query embeddings: (queries, dim) asked of every
        image, or (batch, queries, dim), each image its own."""
        queries = queries.to(embeds.dtype)
        logits = embeds @ queries.t() if queries.dim() == 2 else torch.einsum("bpd,bqd->bpq", embeds, queries)
        return (logits + self.logit_shift(patches)) * (F.elu(self.logit_scale(patches)) + 1)

    def example_queries(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unit query embeddings (len(pixels), dim) of example images, picked as OWL-ViT's
        image-guided detection picks them: of the patches whose box overlaps the whole example
        most (IoU at least 0.8 of the best; generalised IoU where none overlaps), the one least
        like the example's average patch, which is the object rather than its background."""
        _, embeds, boxes = self.encode(pixels)
        whole = torch.tensor([[0.0, 0.0, 1.0, 1.0]], device=boxes.device)
        picked = []
        for image_embeds, image_boxes in zip(embeds, corners(boxes)):
            overlap = box_iou(whole, image_boxes)[0][0]
            if not overlap.any():
                overlap = generalized_iou(whole, image_boxes)[0]
            near = (overlap >= overlap.max() - 0.2 * overlap.max().abs()).nonzero()[:, 0]
            picked.append(image_embeds[near[(image_embeds[near] @ image_embeds.mean(0)).argmin()]])
        return torch.stack(picked)

    def forward(self, pixels: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (batch, patches, queries), boxes (batch, patches, 4)), as `score` and `encode`."""
        patches, embeds, boxes = self.encode(pixels)
        return self.score(patches, embeds, queries), boxes


def corners(boxes: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) -> (x0, y0, x1, y1)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(len(a), len(b)) IoU of corner boxes, and their unions."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    low, high = torch.max(a[:, None, :2], b[None, :, :2]), torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (high - low).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None] - inter
    return inter / union.clamp(min=1e-9), union


def generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(len(a), len(b)) generalised IoU of corner boxes (Rezatofighi et al., 2019): IoU less the
    share of the enclosing box that neither covers. (torchvision has it, but its PyPI build does
    not import beside PyTorch's CPU build.)"""
    iou, union = box_iou(a, b)
    hull = (torch.max(a[:, None, 2:], b[None, :, 2:]) - torch.min(a[:, None, :2], b[None, :, :2])).clamp(min=0).prod(-1)
    return iou - (hull - union) / hull.clamp(min=1e-9)
