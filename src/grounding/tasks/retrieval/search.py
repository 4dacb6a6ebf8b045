"""Queries against an index: text to image, image to image, image to text, in batches, and a
contact sheet of the hits."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps

from ...data.images import ImageRef, load_image
from ...errors import BadInput
from ...files import atomic_path
from ...inference.encode import encode_texts
from ...models import CLIP
from ...runtime import device_of
from ...saved import fingerprint
from .index import Index


@torch.no_grad()
def encode_queries(model: CLIP, texts: list[str] | None = None, images: list[Path] | None = None) -> np.ndarray:
    if texts:
        if any(not t.strip() for t in texts):
            raise BadInput("an empty query: give some words to search for")
        return encode_texts(model, texts).cpu().numpy()
    pixels = torch.stack([model.preprocess(load_image(p)) for p in images]).to(device_of(model))
    return model.encode_image(pixels, normalize=True).float().cpu().numpy()


def search(model: CLIP, index: Index, k: int, texts: list[str] | None = None,
           images: list[Path] | None = None) -> list[list[tuple[str, float]]]:
    """Top-k (key, cosine) per query, refusing a model other than the index's."""
    index.check_model(fingerprint(model), model.config.embed_dim)
    return index.search(encode_queries(model, texts, images), k)


def contact_sheet(hits: list[tuple[str, float]], query: str, path: Path, kind: str = "image",
                  thumb: int = 160, columns: int = 5) -> Path:
    """The hits in a grid, each captioned with its rank and score (texts drawn as cards)."""
    rows = max(1, math.ceil(len(hits) / columns))
    label_h, head_h = 34, 30
    sheet = Image.new("RGB", (columns * thumb, head_h + rows * (thumb + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 8), f"query: {query}"[:150], fill="black")
    for n, (key, score) in enumerate(hits):
        x, y = (n % columns) * thumb, head_h + (n // columns) * (thumb + label_h)
        if kind == "image":
            image = ImageOps.contain(ImageRef.from_key(key).read(), (thumb - 8, thumb - 8))
            sheet.paste(image, (x + (thumb - image.width) // 2, y + (thumb - image.height) // 2))
        else:
            draw.rectangle((x + 4, y + 4, x + thumb - 4, y + thumb - 4), outline="grey")
            draw.multiline_text((x + 10, y + 10), "\n".join(textwrap.wrap(key, 22)[:8]), fill="black")
        draw.text((x + 6, y + thumb + 2), f"#{n + 1}  {score:.3f}", fill="black")
        draw.text((x + 6, y + thumb + 16), Path(key).name[:26], fill="grey")
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path
