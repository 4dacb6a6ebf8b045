"""The one batched encoder for texts and the one for images, and zero-shot classifiers made with
them. Images are decoded in worker processes while the model encodes; an unreadable image is
skipped and reported, never fatal."""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.images import BATCH_SIZE, WORKERS, image_loader
from .templates import TEMPLATE_SETS, prompts
from ..files import cached_array
from ..models import CLIP
from ..progress import Progress
from ..runtime import device_of, dtype_of
from .scores import classifier_path, probabilities

TEXT_BATCH_SIZE = 256


@torch.no_grad()
def encode_texts(model: CLIP, texts: Sequence[str], batch_size: int = TEXT_BATCH_SIZE) -> torch.Tensor:
    """Unit text embeddings (texts, embed_dim) in fp32 on the model's device; texts longer than
    the context are cut."""
    device = device_of(model)
    if not texts:
        return torch.zeros(0, model.config.embed_dim, device=device)
    return torch.cat([model.encode_text(model.tokenizer(list(texts[i:i + batch_size]), truncate=True).to(device),
                                        normalize=True) for i in range(0, len(texts), batch_size)])


@torch.no_grad()
def encode_images(model: CLIP, images, batch_size: int = BATCH_SIZE, workers: int = WORKERS,
                  show_progress: bool = False) -> Iterator[tuple[torch.Tensor | None, np.ndarray, list[str]]]:
    """Batch by batch over `images` (anything with `len` and `.image(i)`: a dataset, an
    ImageList): the unit features of the readable images (None if none were), their indices, and
    the messages of the unreadable ones."""
    device = device_of(model)
    with Progress("encode", len(images), show=show_progress) as progress:
        for pixels, index, errors in image_loader(images, model.preprocess, batch_size, workers):
            ok = torch.tensor([not e for e in errors], dtype=torch.bool)
            features = model.encode_image(pixels[ok].to(device), normalize=True) if ok.any() else None
            yield features, index[ok].numpy(), [e for e in errors if e]
            progress.advance(len(index))


def logits(model: CLIP, image_features: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """(images, labels) logits of unit image features against a classifier's unit columns, at the
    model's learned scale (plus its bias, for a SigLIP model): what `scores.probabilities` takes."""
    scale = model.logit_scale.detach().float().exp()
    out = scale * image_features.float() @ classifier.float()
    return out if model.logit_bias is None else out + model.logit_bias.detach().float()


@torch.no_grad()
def text_classifier(model: CLIP, labels: Sequence[str], templates: Sequence[str] = TEMPLATE_SETS["default"]
                    ) -> torch.Tensor:
    """(embed_dim, labels) unit columns: per label, the normalised mean of its normalised
    template embeddings."""
    embeddings = encode_texts(model, prompts(labels, templates))
    per_label = embeddings.view(len(labels), len(templates), -1).mean(dim=1)
    return F.normalize(per_label, dim=-1).t()


def cached_text_classifier(model: CLIP, labels: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """`text_classifier`, kept on disk (scores.classifier_path), so that a second use of the same
    labels encodes nothing; a damaged entry is made again."""
    from ..saved import fingerprint

    path = classifier_path(fingerprint(model, "text"), prompts(labels, templates), len(templates),
                           str(dtype_of(model.text)))  # a bf16 model's classifier is its own
    classifier = cached_array(path, (model.config.embed_dim, len(labels)),
                              lambda: text_classifier(model, labels, templates).cpu().numpy(), "classifier")
    return torch.from_numpy(classifier).to(device_of(model))


@torch.no_grad()
def classify(model: CLIP, classifier: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Probabilities over the classifier's labels (images, labels) of preprocessed pixels."""
    features = model.encode_image(pixels.to(device_of(model)), normalize=True)
    return torch.from_numpy(probabilities(logits(model, features, classifier).cpu().numpy(), model.activation))
