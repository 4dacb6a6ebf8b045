"""Text towers. Both pool at the end-of-text token, found as the first occurrence of the
tokenizer's end id in each row (never the argmax of the ids, which breaks once a vocabulary
gains tokens after it)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..config import TextConfig
from ..errors import BadInput
from .transformer import Transformer, exporting


def end_of_text_positions(ids: torch.Tensor, eot_token_id: int) -> torch.Tensor:
    """The index of the first end-of-text token in each row; a row without one is an error."""
    is_eot = ids == eot_token_id
    found = is_eot.any(dim=1)
    if not exporting() and not bool(found.all()):
        rows = torch.nonzero(~found).flatten().tolist()[:5]
        raise BadInput(f"token rows {rows} have no end-of-text token ({eot_token_id}): "
                       "encode text with the model's own tokenizer")
    return is_eot.int().argmax(dim=1)


class TextTransformer(nn.Module):
    def __init__(self, config: TextConfig, embed_dim: int):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(config.context_length, config.width))
        self.transformer = Transformer(config.width, config.layers, config.heads, config.mlp_ratio, config.activation)
        self.ln_final = nn.LayerNorm(config.width)
        self.text_projection = nn.Parameter(config.width ** -0.5 * torch.randn(config.width, embed_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        # Cut the padding after the batch's last end token. Exact (see forward_tokens); off
        # only to measure what it saves.
        self.trim_padding = True

    def forward_tokens(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states after the final norm, cut after the batch's last end-of-text token, and
        the end positions. The mask is causal, so what follows a row's end never reaches it and
        cutting the padding changes no result."""
        x, eot = self._embed(ids)
        return self.ln_final(self.transformer(x, causal=True)), eot

    def _embed(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        eot = end_of_text_positions(ids, self.config.eot_token_id)
        length = int(eot.max()) + 1 if self.trim_padding and not exporting() else ids.shape[1]
        return self.token_embedding(ids[:, :length]) + self.positional_embedding[:length], eot

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x, eot = self._embed(ids)
        return self.ln_final(self.transformer(x, causal=True, pool_at=eot)[:, 0]) @ self.text_projection


class TextLSTM(nn.Module):
    """An LSTM over the tokens up to the end-of-text token; optionally bidirectional, in which
    case the forward state at the end and the backward state at the start are joined."""

    def __init__(self, config: TextConfig, embed_dim: int):
        super().__init__()
        self.config = config
        directions = 2 if config.bidirectional else 1
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.lstm = nn.LSTM(config.width, config.width, num_layers=config.layers, batch_first=True,
                            bidirectional=config.bidirectional)
        self.ln_final = nn.LayerNorm(directions * config.width)
        self.text_projection = nn.Parameter(
            (directions * config.width) ** -0.5 * torch.randn(directions * config.width, embed_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def _run(self, ids: torch.Tensor):
        eot = end_of_text_positions(ids, self.config.eot_token_id)
        packed = pack_padded_sequence(self.token_embedding(ids), (eot + 1).cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, (h, _) = self.lstm(packed)
        return out, h, eot

    def forward_tokens(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token LSTM outputs (zero past each row's end) and the end positions."""
        out, _, eot = self._run(ids)
        return pad_packed_sequence(out, batch_first=True)[0], eot

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        _, h, _ = self._run(ids)
        last = h[-2:] if self.config.bidirectional else h[-1:]  # the top layer's direction(s)
        return self.ln_final(torch.cat(list(last), dim=-1)) @ self.text_projection
