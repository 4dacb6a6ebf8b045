"""Where in the image a phrase is, as a heat map over the image and a box around its strongest
region. Two methods:

- `occlusion` (the default): blank each window of the image in turn (with the image's median
  colour) and measure how much the image's similarity to the phrase drops. It asks the only
  embedding contrastive training aligns with text, the pooled one, and works for any tower.
- `similarity`: project every patch token (ViT) or grid cell (ResNet, through the attention
  pool's value path) into the shared embedding and compare it with the phrase. CLIP-style
  training never aligns these tokens with text, and in this project's models the map comes out
  inverted (docs/tasks.md: Phrase grounding), the "opposite visualisation" reported for CLIP itself.

On the synthetic world, where every object's box is known, the pointing game (evaluate.py)
scores a method: is the heat map's maximum inside the named object?"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from ...errors import BadInput  # noqa: E402
from ...files import save_figure  # noqa: E402
from ...inference.encode import encode_texts  # noqa: E402
from ...models import CLIP, ModifiedResNet  # noqa: E402
from ...runtime import device_of, dtype_of  # noqa: E402


@torch.no_grad()
def patch_embeddings(model: CLIP, pixels: torch.Tensor) -> torch.Tensor:
    """(batch, grid, grid, embed_dim) unit vectors, one per patch (ViT) or grid cell (ResNet,
    through the attention pool's value and output projections)."""
    visual = model.visual
    tokens = visual.forward_tokens(pixels.to(dtype_of(visual)))[:, 1:]
    if isinstance(visual, ModifiedResNet):
        projected = visual.attnpool.c_proj(visual.attnpool.v_proj(tokens))
    else:
        projected = tokens @ visual.proj
    projected = projected.float()
    side = int(round(projected.shape[1] ** 0.5))
    return F.normalize(projected, dim=-1).view(projected.shape[0], side, side, -1)


def default_window(model: CLIP) -> int:
    """Half a ViT patch, or an eighth of the image for a ResNet."""
    v = model.config.vision
    return max(1, v.patch_size // 2) if v.kind == "vit" else max(1, v.image_size // 8)


@torch.no_grad()
def occlusion_grid(model: CLIP, pixels: torch.Tensor, text: torch.Tensor, window: int,
                   batch_size: int = 64) -> torch.Tensor:
    """(phrases, grid, grid): the drop in image-phrase similarity when each window is blanked.
    `pixels` is one image (3, size, size); `text` holds the phrases' unit embeddings."""
    size = pixels.shape[-1]
    grid = size // window
    fill = pixels.flatten(1).median(dim=1).values[:, None, None]
    occluded = pixels.repeat(grid * grid, 1, 1, 1)
    for n in range(grid * grid):
        i, j = divmod(n, grid)
        occluded[n, :, i * window:(i + 1) * window, j * window:(j + 1) * window] = fill
    images = torch.cat([model.encode_image(chunk, normalize=True)
                        for chunk in torch.cat([pixels[None], occluded]).split(batch_size)])
    similarity = images @ text.t()  # (1 + grid², phrases)
    return (similarity[:1] - similarity[1:]).t().reshape(len(text), grid, grid)


@torch.no_grad()
def heat_maps(model: CLIP, pixels: torch.Tensor, phrases: list[str], method: str = "occlusion",
              window: int | None = None) -> torch.Tensor:
    """(phrases, size, size) heat maps of one image (3, size, size) or of one image per phrase
    (phrases, 3, size, size), bilinearly upsampled from the method's grid to the image size."""
    device = device_of(model)
    text = encode_texts(model, phrases)
    pixels = pixels.to(device)
    images = pixels if pixels.dim() == 4 else pixels[None].expand(len(phrases), -1, -1, -1)
    if method == "similarity":
        grid = torch.einsum("bhwd,bd->bhw", patch_embeddings(model, images), text)
    elif method == "occlusion":
        window = window or default_window(model)
        if not 1 <= window <= images.shape[-1] // 2:
            raise BadInput(f"--window {window}: give 1 to {images.shape[-1] // 2} pixels (half the model's "
                           f"{images.shape[-1]}-pixel view at most, so that there are windows to compare)", "--window")
        if pixels.dim() == 3 or bool((images == images[:1]).all()):
            grid = occlusion_grid(model, images[0], text, window)
        else:
            grid = torch.cat([occlusion_grid(model, image, t[None], window) for image, t in zip(images, text)])
    else:
        raise BadInput(f"unknown grounding method {method!r}: use occlusion or similarity")
    size = images.shape[-1]
    return F.interpolate(grid[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0].cpu()


def strongest_box(heat: np.ndarray, fraction: float = 0.5) -> tuple[int, int, int, int]:
    """The bounding box (x0, y0, x1, y1) of the region connected to the maximum whose values lie
    above min + fraction * (max - min)."""
    threshold = heat.min() + fraction * (heat.max() - heat.min())
    mask = heat >= threshold
    start = np.unravel_index(int(heat.argmax()), heat.shape)
    seen = np.zeros_like(mask)
    stack = [start]
    seen[start] = True
    while stack:
        y, x = stack.pop()
        for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= ny < heat.shape[0] and 0 <= nx < heat.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                seen[ny, nx] = True
                stack.append((ny, nx))
    ys, xs = np.nonzero(seen)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def ground(model: CLIP, image: Image.Image, phrase: str, method: str = "occlusion",
           window: int | None = None) -> tuple[np.ndarray, tuple[int, int, int, int], Image.Image]:
    """The heat map over the model's view of the image, the box, and that view (resized, cropped)."""
    if not phrase.strip():
        raise BadInput("an empty phrase: say what to look for, e.g. 'the red circle'")
    pixels = model.preprocess(image)
    heat = heat_maps(model, pixels, [phrase], method, window)[0].numpy()
    mean, std = np.array(model.preprocess.mean), np.array(model.preprocess.std)
    view = ((pixels.permute(1, 2, 0).numpy() * std + mean).clip(0, 1) * 255).astype(np.uint8)
    return heat, strongest_box(heat), Image.fromarray(view)


def overlay(view: Image.Image, heat: np.ndarray, box: tuple[int, int, int, int]) -> Image.Image:
    """The model's view with the heat map over it (inferno colours, min to max) and the box in green."""
    span = heat.max() - heat.min()
    scaled = (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
    colours = Image.fromarray((colormaps["inferno"](scaled)[..., :3] * 255).astype(np.uint8))
    blended = Image.blend(view.convert("RGB"), colours.resize(view.size, Image.BICUBIC), 0.55)
    ImageDraw.Draw(blended).rectangle(box, outline=(0, 255, 0), width=2)
    return blended


def save_overlay(view: Image.Image, heat: np.ndarray, box: tuple[int, int, int, int], phrase: str,
                 path: str | Path) -> Path:
    """The view beside its overlay, with the heat map's scale."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    axes[0].imshow(view)
    axes[0].set_title(f'"{phrase}"')
    axes[1].imshow(overlay(view, heat, box))
    scale = plt.cm.ScalarMappable(Normalize(float(heat.min()), float(heat.max())), "inferno")
    fig.colorbar(scale, ax=axes[1], fraction=0.046)
    axes[1].set_title("where the phrase is (heat)")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)
