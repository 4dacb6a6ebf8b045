"""Pre-norm Transformer blocks shared by the image and text towers.

Attention goes through `attention`: `scaled_dot_product_attention`, which picks the fused
kernel for the device and dtype, except where training in bf16 on a CPU (see `attention`); a
causal mask is passed as `is_causal` rather than materialised (the pooled path's single query
per row takes a (batch, 1, 1, length) mask instead). Four modules
attend, and share `split_heads`/`merge_heads`; their projections differ because each holds the
weights it loads in their own layout: the towers' one fused q-k-v (OpenAI's and open_clip's),
MiniLM's separate query, key and value (its package's), fusion's q apart from k-v (the image's
keys and values are computed once and cached while decoding), and the ResNet's attention pool
(OpenAI's, with the grid's mean as the only query).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..errors import BadInput
from .layers import Layer


def exporting() -> bool:
    """Whether the forward pass is being captured as a graph (ONNX, TorchScript, torch.export):
    then nothing may depend on one batch's values, such as cutting its padding."""
    return torch.compiler.is_exporting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


class QuickGELU(nn.Module):
    """The sigmoid approximation of GELU that OpenAI's CLIP weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def activation(name: str) -> nn.Module:
    if name == "gelu":
        return nn.GELU()
    if name == "gelu_tanh":  # SigLIP's
        return nn.GELU(approximate="tanh")
    if name == "quick_gelu":
        return QuickGELU()
    raise BadInput(f"unknown activation {name!r}: use 'gelu', 'gelu_tanh' or 'quick_gelu'")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              causal: bool = False) -> torch.Tensor:
    """Scaled dot-product attention over (batch, heads, length, d). Where a gradient will flow
    through bf16 on a CPU, the plain composition (softmax(q k^T / sqrt(d)) v, PyTorch's math
    kernel) is used: there the fused kernel's backward is 2-4x slower than autograd through the
    plain one, at every shape of the presets; forward alone the fused kernel is faster, and
    stays (docs/benchmarks.md: where the time goes)."""
    if q.dtype == torch.bfloat16 and q.device.type == "cpu" and torch.is_grad_enabled() and q.requires_grad:
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, length, width) -> (batch, heads, length, width / heads)."""
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


def merge_heads(y: torch.Tensor) -> torch.Tensor:
    """`split_heads`'s inverse: (batch, heads, length, d) -> (batch, length, heads * d)."""
    batch, heads, length, d = y.shape
    return y.transpose(1, 2).reshape(batch, length, heads * d)


def pooled_rows(x: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """(batch, length, width) -> (batch, 1, width): row i's token at position at[i]."""
    return x[torch.arange(x.shape[0], device=x.device), at].unsqueeze(1)


def positions_through(at: torch.Tensor, length: int) -> torch.Tensor:
    """(batch, length) booleans: which of `length` positions come at or before row i's at[i]."""
    return torch.arange(length, device=at.device)[None] <= at[:, None]


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise BadInput(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj = nn.Linear(width, 3 * width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, causal: bool = False, pool_at: torch.Tensor | None = None) -> torch.Tensor:
        """With `pool_at` (one position per row), only those positions ask: (batch, 1, width) out."""
        batch, length, width = x.shape
        if pool_at is None:
            qkv = self.in_proj(x).view(batch, length, 3, self.heads, width // self.heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            return self.out_proj(merge_heads(attention(q, k, v, causal=causal)))
        w_q, w_kv = self.in_proj.weight.split([width, 2 * width])
        b_q, b_kv = self.in_proj.bias.split([width, 2 * width])
        q = split_heads(F.linear(pooled_rows(x, pool_at), w_q, b_q), self.heads)
        k, v = F.linear(x, w_kv, b_kv).view(batch, length, 2, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        # causal from the asking position: it sees itself and what comes before it
        mask = positions_through(pool_at, length)[:, None, None, :] if causal else None
        return self.out_proj(merge_heads(attention(q, k, v, mask=mask)))


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int, act: str):
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.act = activation(act)
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class Block(Layer):
    def __init__(self, width: int, heads: int, mlp_ratio: float, act: str, eps: float = 1e-5):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps)
        self.mlp = MLP(width, int(width * mlp_ratio), act)

    def forward(self, x: torch.Tensor, causal: bool = False, pool_at: torch.Tensor | None = None) -> torch.Tensor:
        asked = x if pool_at is None else pooled_rows(x, pool_at)
        x = asked + self.attn(self.ln_1(x), causal=causal, pool_at=pool_at)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float = 4.0, act: str = "gelu",
                 eps: float = 1e-5):
        super().__init__()
        self.resblocks = nn.ModuleList(Block(width, heads, mlp_ratio, act, eps) for _ in range(layers))

    def forward(self, x: torch.Tensor, causal: bool = False, pool_at: torch.Tensor | None = None) -> torch.Tensor:
        """Every token's state after the last block, or with `pool_at` (one position per row, the
        token a tower pools) that token's alone, (batch, 1, width): the last block then computes
        keys and values for every token but queries, the output projection and the MLP for that
        one, which is most of the block's work (exact: no other token's state reaches the pool)."""
        for i, block in enumerate(self.resblocks):
            x = block(x, causal=causal, pool_at=pool_at if i == len(self.resblocks) - 1 else None)
        return x
