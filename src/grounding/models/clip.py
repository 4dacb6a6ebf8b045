"""The contrastive image-text model: any image tower beside any text tower, each projected to a
shared embedding, with a learnable temperature."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..errors import BadInput
from ..runtime import dtype_of
from .layers import set_checkpointing
from .pretrained import EfficientNetTower, MiniLMTower
from .resnet import ModifiedResNet
from .siglip import SiglipText, SiglipVision
from .text import TextLSTM, TextTransformer
from .vit import VisionTransformer

IMAGE_TOWERS = {"vit": VisionTransformer, "resnet": ModifiedResNet, "efficientnet_lite0": EfficientNetTower,
                "efficientnet_lite2": EfficientNetTower, "siglip_vit": SiglipVision}
TEXT_TOWERS = {"transformer": TextTransformer, "lstm": TextLSTM, "minilm": MiniLMTower, "siglip": SiglipText}


class CLIP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        if config.vision.kind not in IMAGE_TOWERS:
            raise BadInput(f"unknown image tower {config.vision.kind!r}: use one of {list(IMAGE_TOWERS)}")
        if config.text.kind not in TEXT_TOWERS:
            raise BadInput(f"unknown text tower {config.text.kind!r}: use one of {list(TEXT_TOWERS)}")
        self.visual = IMAGE_TOWERS[config.vision.kind](config.vision, config.embed_dim)
        self.text = TEXT_TOWERS[config.text.kind](config.text, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(config.init_logit_scale))
        # SigLIP learns a bias beside the scale; it starts low so that the many negatives
        # do not swamp the first steps.
        self.logit_bias = nn.Parameter(torch.tensor(-10.0)) if config.loss == "siglip" else None
        # Set by `grounding.load`, so that paths and strings go in and embeddings come out.
        self.tokenizer = None
        self.preprocess = None
        self.random_weights = False  # `grounding.load` of a preset name: said in the repr and warned of

    def __repr__(self) -> str:
        note = "# random weights (a preset): train it or load a trained model\n" if self.random_weights else ""
        return note + super().__repr__()

    @property
    def activation(self) -> str:
        """How label logits become probabilities: a SigLIP model scores each label on its own
        (sigmoid), a CLIP model's labels compete (softmax); inference/scores.py."""
        return "sigmoid" if self.logit_bias is not None else "softmax"

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Features of preprocessed images, in fp32 whatever the weights' type (bf16 inference)."""
        features = self.visual(pixels.to(dtype_of(self.visual))).float()
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, ids: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Features of token ids, in fp32 whatever the weights' type."""
        features = self.text(ids).float()
        return F.normalize(features, dim=-1) if normalize else features

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each tower layer's activations in the backward pass instead of keeping them
        (models/layers.py); the LSTM text tower has no layers to do it for."""
        set_checkpointing(self, enabled)

    def clamp_logit_scale(self) -> None:
        """Keep the temperature at or above 1/100; the trainer calls this after each step."""
        with torch.no_grad():
            self.logit_scale.clamp_(0, self.config.max_logit_scale)

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits per image (images x texts) and per text (texts x images)."""
        image = self.encode_image(pixels, normalize=True)
        text = self.encode_text(ids, normalize=True)
        logits_per_image = self.logit_scale.exp() * image @ text.t()
        if self.logit_bias is not None:
            logits_per_image = logits_per_image + self.logit_bias
        return logits_per_image, logits_per_image.t()
