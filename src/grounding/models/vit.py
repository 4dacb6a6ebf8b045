"""Vision Transformer over flattened patches: a strided convolution embeds each patch, a class
token and learned positions are added, pre-norm blocks mix them, and the class token is projected."""
from __future__ import annotations

import torch
from torch import nn

from ..config import VisionConfig
from ..errors import BadInput
from .transformer import Transformer


class VisionTransformer(nn.Module):
    def __init__(self, config: VisionConfig, embed_dim: int):
        super().__init__()
        if config.image_size % config.patch_size:
            raise BadInput(f"image size {config.image_size} is not a multiple of patch {config.patch_size}")
        width = config.width
        grid = config.image_size // config.patch_size
        scale = width ** -0.5
        self.conv1 = nn.Conv2d(3, width, config.patch_size, config.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, config.layers, config.heads, config.mlp_ratio, config.activation)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, embed_dim))

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.conv1(pixels).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        return self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype))

    def forward_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """All tokens after the last block and final norm: (batch, 1 + patches, width), class token first."""
        return self.ln_post(self.transformer(self._embed(pixels)))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self._embed(pixels)
        cls = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return self.ln_post(self.transformer(x, pool_at=cls)[:, 0]) @ self.proj
