"""Zero-shot classification: a classifier made from label text alone, and the per-example
record the CLIP paper's figures show (correct label, its rank among all labels, its probability)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ..data.sources import CACHE
from ..files import cached_array
from ..models import CLIP
from ..runtime import dtype_of
from .metrics import ranks
from .templates import TEMPLATE_SETS, prompts

DEFAULT_TEMPLATES = TEMPLATE_SETS["default"]
SYNTHETIC_TEMPLATES = TEMPLATE_SETS["synthetic"]


@torch.no_grad()
def build_classifier(model: CLIP, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                     batch_size: int = 256) -> torch.Tensor:
    """(embed_dim, labels) unit columns: per label, the normalised mean of its normalised
    template embeddings."""
    texts = prompts(labels, templates)
    device = next(model.parameters()).device
    embeddings = torch.cat([
        model.encode_text(model.tokenizer(texts[i:i + batch_size], truncate=True).to(device), normalize=True)
        for i in range(0, len(texts), batch_size)
    ])
    per_label = embeddings.view(len(labels), len(templates), -1).mean(dim=1)
    return F.normalize(per_label, dim=-1).t()


def cached_classifier(model: CLIP, labels: Sequence[str], templates: Sequence[str],
                      cache_dir: Path | None = None) -> torch.Tensor:
    """`build_classifier`, kept on disk under a key of the model's text side, the labels and the
    templates, so a second evaluation with the same labels encodes nothing."""
    from ..saved import fingerprint

    precision = str(dtype_of(model.text))  # a bf16 model's classifier is its own
    key = hashlib.sha256(json.dumps([fingerprint(model, 'text'), list(labels), list(templates), precision]
                                    ).encode()).hexdigest()
    path = (cache_dir or CACHE / "classifiers") / f"{key[:32]}.safetensors"
    classifier = cached_array(path, (model.config.embed_dim, len(labels)),
                              lambda: build_classifier(model, labels, templates).cpu().numpy(), "classifier")
    return torch.from_numpy(classifier).to(next(model.parameters()).device)


@torch.no_grad()
def classify(model: CLIP, classifier: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Probabilities over labels, (images, labels), at the model's learned temperature."""
    image = model.encode_image(pixels.to(classifier.device), normalize=True)
    return (model.logit_scale.exp() * image @ classifier).softmax(dim=-1)


@dataclass
class Example:
    """One example's zero-shot result, as printed and drawn on a card."""

    label: str
    rank: int
    num_labels: int
    probability: float
    top: list[tuple[str, float]]

    def summary(self) -> str:
        return (f"correct label: {self.label}    correct rank: {self.rank}/{self.num_labels}    "
                f"correct probability: {self.probability:.2%}")


def examples(probs: torch.Tensor, targets: torch.Tensor, labels: Sequence[str], k: int = 5) -> list[Example]:
    correct = ranks(probs.cpu(), targets.cpu())
    top_p, top_i = probs.topk(min(k, probs.shape[1]), dim=1)
    return [
        Example(labels[int(t)], int(r), len(labels), float(p[t]),
                [(labels[int(i)], float(q)) for q, i in zip(tp, ti)])
        for p, t, r, tp, ti in zip(probs, targets, correct, top_p, top_i)
    ]
