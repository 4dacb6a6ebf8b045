"""CLIP's modified ResNet: a three-convolution stem with average pooling, bottlenecks that
downsample by average pooling before the strided step (anti-aliasing), and attention pooling
in place of global average pooling."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import VisionConfig
from ..errors import BadInput
from .layers import Layer
from .transformer import attention, merge_heads, split_heads


def _conv_bn(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class Bottleneck(Layer):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, planes, 1)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3, self.bn3 = _conv_bn(planes, planes * self.expansion, 1)
        self.downsample = None
        if stride > 1 or cin != planes * self.expansion:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(stride) if stride > 1 else nn.Identity(),
                *_conv_bn(cin, planes * self.expansion, 1),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place: a fresh tensor for each ReLU and sum cost RN50 a tenth of its CPU inference
        # time. Batch norm's backward does not need its output, so training is unchanged.
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(self.avgpool(out)))
        out += x if self.downsample is None else self.downsample(x)
        return F.relu(out, inplace=True)


class AttentionPool2d(nn.Module):
    """Multi-head attention in which the mean of the grid, as a query, attends over the grid."""

    def __init__(self, spatial: int, width: int, heads: int, out_dim: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spatial * spatial + 1, width) / width ** 0.5)
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.c_proj = nn.Linear(width, out_dim)
        self.heads = heads

    def forward_tokens(self, grid: torch.Tensor) -> torch.Tensor:
        """(batch, 1 + h*w, width): the grid's mean first, then the grid cells, with positions."""
        x = grid.flatten(2).transpose(1, 2)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)
        return x + self.positional_embedding.to(x.dtype)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        x = self.forward_tokens(grid)
        q, k, v = (split_heads(proj(t), self.heads) for proj, t in
                   ((self.q_proj, x[:, :1]), (self.k_proj, x), (self.v_proj, x)))
        return self.c_proj(merge_heads(attention(q, k, v))[:, 0])


class ModifiedResNet(nn.Module):
    def __init__(self, config: VisionConfig, embed_dim: int):
        super().__init__()
        if isinstance(config.layers, int) or len(config.layers) != 4:
            raise BadInput(f"a ResNet needs four stage depths, got layers={config.layers!r}")
        if config.image_size % 32:
            raise BadInput(f"a ResNet's image size must be a multiple of 32, got {config.image_size}")
        width = config.width
        self.conv1, self.bn1 = _conv_bn(3, width // 2, 3)
        self.conv1.stride = (2, 2)
        self.conv2, self.bn2 = _conv_bn(width // 2, width // 2, 3)
        self.conv3, self.bn3 = _conv_bn(width // 2, width, 3)
        self.avgpool = nn.AvgPool2d(2)
        stages, cin = [], width
        for i, depth in enumerate(config.layers):
            planes = width * 2 ** i
            blocks = [Bottleneck(cin, planes, stride=1 if i == 0 else 2)]
            cin = planes * Bottleneck.expansion
            blocks += [Bottleneck(cin, planes) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.attnpool = AttentionPool2d(config.image_size // 32, width * 32, config.heads, embed_dim)

    def forward_grid(self, pixels: torch.Tensor, stages: int = 4) -> torch.Tensor:
        """The feature grid after the first `stages` stages; after all four, (batch, width * 32,
        size / 32, size / 32). Each earlier stage halves the channels and doubles the grid."""
        x = F.relu(self.bn1(self.conv1(pixels)), inplace=True)
        x = F.relu(self.bn2(self.conv2(x)), inplace=True)
        x = self.avgpool(F.relu(self.bn3(self.conv3(x)), inplace=True))
        return self.finish_grid(x, 0, stages)

    def finish_grid(self, grid: torch.Tensor, done: int, stages: int = 4) -> torch.Tensor:
        """The grid after the first `stages` stages, from `grid`, the one after the first `done`."""
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4)[done:stages]:
            grid = stage(grid)
        return grid

    def forward_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """The pooled-query token and the grid cells as tokens, (batch, 1 + cells, width * 32)."""
        return self.attnpool.forward_tokens(self.forward_grid(pixels))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.attnpool(self.forward_grid(pixels))
