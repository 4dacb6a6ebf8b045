"""Cross-attention fusion, the seed's joint language-vision layer: text tokens attend over image
tokens (ViT patches or ResNet grid cells). A block is self-attention (bidirectional with a
padding mask for questions, or causal with a key/value cache for decoding), cross-attention to
the image, and an MLP, each pre-norm with a residual."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import BadInput
from .transformer import MLP, attention, merge_heads, split_heads


class MultiHeadAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise BadInput(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(source).chunk(2, dim=-1)
        return split_heads(k, self.heads), split_heads(v, self.heads)

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
               causal: bool = False) -> torch.Tensor:
        y = attention(split_heads(self.q(x), self.heads), k, v, mask, causal)
        return self.out(merge_heads(y))


class FusionBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.ln_self, self.self_attn = nn.LayerNorm(width), MultiHeadAttention(width, heads)
        self.ln_cross, self.cross_attn = nn.LayerNorm(width), MultiHeadAttention(width, heads)
        self.ln_mlp, self.mlp = nn.LayerNorm(width), MLP(width, int(width * mlp_ratio), "gelu")

    def forward(self, x: torch.Tensor, image: tuple[torch.Tensor, torch.Tensor] | None,
                keep: torch.Tensor | None = None, causal: bool = False,
                cache: dict | None = None) -> torch.Tensor:
        """`image` is the cross-attention's (keys, values) of the image tokens, or None for a
        model that does not see the image. `keep` (batch, length) masks padding keys. With a
        `cache` dict, the new tokens' keys and values join those of earlier calls, so decoding
        one token costs one token's work."""
        h = self.ln_self(x)
        k, v = self.self_attn.keys_values(h)
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        mask = None if keep is None else keep[:, None, None, :]
        # A cached step's single query sees every earlier key, so it needs no causal mask.
        x = x + self.self_attn.attend(h, k, v, mask, causal=causal and x.shape[1] > 1)
        if image is not None:
            x = x + self.cross_attn.attend(self.ln_cross(x), *image)
        return x + self.mlp(self.ln_mlp(x))

    def image_keys_values(self, image_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Computed once per image and reused at every decoding step."""
        return self.cross_attn.keys_values(image_tokens)


class ImageTokens(nn.Module):
    """An image tower's tokens, projected to the fusion width: a ViT's class token and patches,
    or the cells of a ResNet's grid after `grid_stage` stages (stage 3 doubles the final grid,
    which counting and relations need at small image sizes), with learned positions. With
    `final_grid`, the cells of the ResNet's final, coarser grid follow as more tokens, with
    positions of their own (relations are learned sooner from them; docs/tasks.md)."""

    def __init__(self, tower: nn.Module, config, width: int, grid_stage: int = 4, final_grid: bool = False):
        super().__init__()
        self.grid_stage = grid_stage
        self.final = None
        if hasattr(tower, "attnpool"):
            if not 1 <= grid_stage <= 4:
                raise BadInput(f"a ResNet has grid stages 1 to 4, not {grid_stage}")
            channels = config.width * 4 * 2 ** (grid_stage - 1)
            cells = (config.image_size // 2 ** (grid_stage + 1)) ** 2
            self.positions = nn.Parameter(0.02 * torch.randn(cells, width))
            if final_grid:
                if grid_stage == 4:
                    raise BadInput("--final-grid adds the final stage's grid beside an earlier one, and grid stage 4 "
                                   "is the final one", "--final-grid")
                self.final = nn.Linear(config.width * 32, width)
                self.final_positions = nn.Parameter(0.02 * torch.randn((config.image_size // 32) ** 2, width))
        elif final_grid:
            raise BadInput("--final-grid is for ResNet image towers; a ViT's tokens are its patches already",
                           "--final-grid")
        else:
            channels = tower.ln_post.normalized_shape[0]
            self.positions = None  # the ViT's tokens carry their positions
        self.proj = nn.Linear(channels, width)

    def forward(self, tower: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """`tower` is the model's own image tower (not a submodule here, so its weights are
        saved once)."""
        if self.positions is None:
            return self.proj(tower.forward_tokens(pixels))
        grid = tower.forward_grid(pixels, self.grid_stage)
        tokens = self.proj(grid.flatten(2).transpose(1, 2)) + self.positions
        if self.final is None:
            return tokens
        final = tower.finish_grid(grid, self.grid_stage)
        return torch.cat([tokens, self.final(final.flatten(2).transpose(1, 2)) + self.final_positions], dim=1)
