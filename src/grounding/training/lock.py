"""Locked-tower training (LiT), the way open_clip's --lock-image / --lock-text work: a locked
tower's parameters are frozen (and its BatchNorm statistics kept), except, optionally, its last
N layers and everything after them (final norm, pooling, projection)."""
from __future__ import annotations

from torch import nn

from ..models import CLIP, ModifiedResNet, TextLSTM
from ..models.bert import MiniLM
from ..models.pretrained import PackagedBackbone


def _layers_and_head(tower: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """The tower's layers in order, and the modules after the last one."""
    if isinstance(tower, PackagedBackbone):
        backbone = tower.backbone
        layers = list(backbone.layers) if isinstance(backbone, MiniLM) else [*backbone.blocks, backbone.head]
        return layers, [module for name, module in tower.named_children() if name != "backbone"]
    if isinstance(tower, ModifiedResNet):
        layers = [block for stage in (tower.layer1, tower.layer2, tower.layer3, tower.layer4) for block in stage]
        return layers, [tower.attnpool]
    if isinstance(tower, TextLSTM):
        return [], [tower.ln_final]
    return list(tower.transformer.resblocks), [tower.ln_post if hasattr(tower, "ln_post") else tower.ln_final]


def lock_tower(tower: nn.Module, unlocked_layers: int = 0) -> None:
    """Freezes the tower but its last `unlocked_layers` layers. A packaged tower's projection
    head is never locked: it is new, and what LiT trains over the locked backbone."""
    for p in tower.parameters():
        p.requires_grad_(False)
    if isinstance(tower, PackagedBackbone):
        for module in _layers_and_head(tower)[1]:
            module.requires_grad_(True)
    if unlocked_layers <= 0:
        return
    layers, head = _layers_and_head(tower)
    for module in layers[-unlocked_layers:] + head:
        for p in module.parameters():
            p.requires_grad_(True)
    for name in ("proj", "text_projection"):  # the projection matrices are bare parameters
        if isinstance(getattr(tower, name, None), nn.Parameter):
            getattr(tower, name).requires_grad_(True)


def freeze_locked_batch_norms(model: CLIP) -> None:
    """Keeps BatchNorm layers whose parameters are all frozen in eval mode (call after .train())."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and not any(p.requires_grad for p in module.parameters()):
            module.eval()
