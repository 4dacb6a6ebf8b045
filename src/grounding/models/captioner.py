"""Image captioning: an image tower's tokens feed a decoder that writes the caption a token at a
time. Two decoders, either over any image tower:

- "transformer": causal self-attention and cross-attention to the image tokens (fusion.py). A
  decoding state caches each layer's keys and values, and the image's cross-attention keys and
  values are computed once, so a step costs one token's work.
- "lstm": the seed's alternative, an LSTM whose every step attends over the image tokens
  (Show, Attend and Tell); its state is naturally incremental.

Both expose the same three calls that decoding (tasks/captioning/decode.py) uses: `start`
(a state from image tokens), `step` (logits for new tokens, updating the state) and `reorder`
(for beam search)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, TaskConfig
from ..errors import BadInput
from .clip import IMAGE_TOWERS
from .fusion import FusionBlock, ImageTokens


@dataclass
class CaptionerConfig(TaskConfig):
    towers: ModelConfig  # the image tower, and the tokenizer's ids (text.vocab_size, eot/pad)
    decoder: Literal["transformer", "lstm"] = "transformer"
    width: int = 256
    layers: int = 2
    heads: int = 4
    vocab_size: int = 0  # the tokenizer's, so that no id without a token is ever written
    grid_stage: int = 4  # ResNet towers: the stage whose grid cells are the image tokens
    task: str = "caption"


class TransformerDecoder(nn.Module):
    def __init__(self, config: CaptionerConfig):
        super().__init__()
        vocab, width = config.vocab_size or config.towers.text.vocab_size, config.width
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(config.towers.text.context_length, width))
        self.blocks = nn.ModuleList(FusionBlock(width, config.heads) for _ in range(config.layers))
        self.ln = nn.LayerNorm(width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def start(self, image: torch.Tensor, cache: bool = True) -> dict:
        return {"image": [block.image_keys_values(image) for block in self.blocks],
                "caches": [{} for _ in self.blocks] if cache else None, "position": 0}

    def step(self, tokens: torch.Tensor, state: dict) -> torch.Tensor:
        """Logits for every position of `tokens`, which continue the state's sequence."""
        position = state["position"]
        x = self.token_embedding(tokens) + self.positional_embedding[position:position + tokens.shape[1]]
        caches = state["caches"] or [None] * len(self.blocks)
        for block, image, cache in zip(self.blocks, state["image"], caches):
            x = block(x, image, causal=True, cache=cache)
        state["position"] = position + tokens.shape[1]
        return self.ln(x) @ self.token_embedding.weight.t()

    def reorder(self, state: dict, index: torch.Tensor) -> dict:
        state["image"] = [(k[index], v[index]) for k, v in state["image"]]
        if state["caches"]:
            state["caches"] = [{"k": c["k"][index], "v": c["v"][index]} if c else c for c in state["caches"]]
        return state


class LSTMDecoder(nn.Module):
    def __init__(self, config: CaptionerConfig):
        super().__init__()
        vocab, width = config.vocab_size or config.towers.text.vocab_size, config.width
        self.token_embedding = nn.Embedding(vocab, width)
        self.init_state = nn.Linear(width, 2 * width)
        self.cell = nn.LSTMCell(2 * width, width)
        self.query = nn.Linear(width, width)
        self.out = nn.Linear(2 * width, width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def start(self, image: torch.Tensor, cache: bool = True) -> dict:
        h, c = torch.tanh(self.init_state(image.mean(dim=1))).chunk(2, dim=-1)
        return {"image": image, "h": h.contiguous(), "c": c.contiguous(), "context": image.mean(dim=1)}

    def step(self, tokens: torch.Tensor, state: dict) -> torch.Tensor:
        image, outputs = state["image"], []
        for t in range(tokens.shape[1]):
            inputs = torch.cat([self.token_embedding(tokens[:, t]), state["context"]], dim=-1)
            state["h"], state["c"] = self.cell(inputs, (state["h"], state["c"]))
            weights = torch.einsum("bw,bnw->bn", self.query(state["h"]), image) / image.shape[-1] ** 0.5
            state["context"] = torch.einsum("bn,bnw->bw", weights.softmax(dim=-1), image)
            outputs.append(torch.tanh(self.out(torch.cat([state["h"], state["context"]], dim=-1))))
        return torch.stack(outputs, dim=1) @ self.token_embedding.weight.t()

    def reorder(self, state: dict, index: torch.Tensor) -> dict:
        return {key: value[index] for key, value in state.items()}


DECODERS = {"transformer": TransformerDecoder, "lstm": LSTMDecoder}


class Captioner(nn.Module):
    def __init__(self, config: CaptionerConfig):
        super().__init__()
        if config.decoder not in DECODERS:
            raise BadInput(f"unknown decoder {config.decoder!r}: use one of {list(DECODERS)}")
        self.config = config
        vision = config.towers.vision
        self.visual = IMAGE_TOWERS[vision.kind](vision, config.towers.embed_dim)
        self.image_in = ImageTokens(self.visual, vision, config.width, config.grid_stage)
        self.decoder = DECODERS[config.decoder](config)
        self.tokenizer = None  # attached when built or loaded
        self.preprocess = None

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """The image tokens the decoder attends over, (batch, tokens, width)."""
        return self.image_in(self.visual, pixels)

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: the logits that predict ids[:, 1:] from ids[:, :-1]."""
        state = self.decoder.start(self.encode(pixels), cache=False)
        return self.decoder.step(ids[:, :-1], state)

    def loss(self, pixels: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over each caption's tokens up to and including its end token."""
        logits = self.forward(pixels, ids)
        targets = ids[:, 1:].clone()
        eot = self.config.towers.text.eot_token_id
        after_end = (targets == eot).int().cumsum(dim=1) - (targets == eot).int() > 0
        targets[after_end] = -100
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
