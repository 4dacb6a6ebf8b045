"""SigLIP's towers (Zhai et al., 2023), as Hugging Face's `SiglipModel` holds them. The image
tower is a ViT without a class token, pooled by one learned query attending over the patch tokens
(a "MAP" head); the text tower attends in both directions, over the padding too, and is pooled at
the last position, so SigLIP's texts are always padded to the full context. Neither tower has a
projection matrix: the embedding is the pooled width (the text's through a linear head)."""
from __future__ import annotations

import torch
from torch import nn

from ..config import TextConfig, VisionConfig
from ..errors import BadInput
from .transformer import MLP, Transformer


def _check_width(width: int, embed_dim: int, tower: str) -> None:
    if width != embed_dim:
        raise BadInput(f"a SigLIP {tower} tower embeds at its width ({width}), not at embed_dim {embed_dim}")


class SiglipVision(nn.Module):
    def __init__(self, config: VisionConfig, embed_dim: int):
        super().__init__()
        if config.image_size % config.patch_size:
            raise BadInput(f"image size {config.image_size} is not a multiple of patch {config.patch_size}")
        _check_width(config.width, embed_dim, "image")
        width, grid = config.width, config.image_size // config.patch_size
        self.conv1 = nn.Conv2d(3, width, config.patch_size, config.patch_size)
        self.positional_embedding = nn.Parameter(width ** -0.5 * torch.randn(grid * grid, width))
        self.transformer = Transformer(width, config.layers, config.heads, config.mlp_ratio, config.activation,
                                       config.norm_eps)
        self.ln_post = nn.LayerNorm(width, config.norm_eps)
        self.probe = nn.Parameter(torch.randn(1, 1, width))
        self.pool = nn.MultiheadAttention(width, config.heads, batch_first=True)
        self.ln_pool = nn.LayerNorm(width, config.norm_eps)
        self.mlp_pool = MLP(width, int(width * config.mlp_ratio), config.activation)

    def forward_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """The patch tokens after the last block and the final norm: (batch, patches, width)."""
        x = self.conv1(pixels).flatten(2).transpose(1, 2) + self.positional_embedding.to(pixels.dtype)
        return self.ln_post(self.transformer(x))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = self.forward_tokens(pixels)
        pooled = self.pool(self.probe.expand(len(tokens), -1, -1), tokens, tokens, need_weights=False)[0]
        return (pooled + self.mlp_pool(self.ln_pool(pooled)))[:, 0]


class SiglipText(nn.Module):
    def __init__(self, config: TextConfig, embed_dim: int):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(config.context_length, config.width))
        self.transformer = Transformer(config.width, config.layers, config.heads, config.mlp_ratio,
                                       config.activation, config.norm_eps)
        self.ln_final = nn.LayerNorm(config.width, config.norm_eps)
        self.head = nn.Linear(config.width, embed_dim)

    def forward_tokens(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states after the final norm, and the pooled position of each row (the last)."""
        x, last = self._embed(ids)
        return self.ln_final(self.transformer(x)), last

    def _embed(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        last = torch.full((len(ids),), ids.shape[1] - 1, device=ids.device)
        return self.token_embedding(ids) + self.positional_embedding[:ids.shape[1]], last

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x, last = self._embed(ids)
        return self.head(self.ln_final(self.transformer(x, pool_at=last)[:, 0]))
