"""Result cards: the image beside a bar chart of its top labels, the correct one marked, under
the line "correct label · correct rank · correct probability" (the lecture's slide, made real)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from ..files import save_figure  # noqa: E402
from .zeroshot import Example  # noqa: E402

CORRECT, OTHER = "#2e7d32", "#90a4ae"


def save_card(image: Image.Image, example: Example, path: str | Path) -> Path:
    fig, (ax_image, ax_bars) = plt.subplots(1, 2, figsize=(8, 3.2), gridspec_kw={"width_ratios": [1, 1.4]})
    ax_image.imshow(image)
    ax_image.axis("off")
    names = [name for name, _ in example.top][::-1]
    probs = [p for _, p in example.top][::-1]
    colours = [CORRECT if name == example.label else OTHER for name in names]
    ax_bars.barh(range(len(names)), probs, color=colours)
    ax_bars.set_yticks(range(len(names)), names)
    ax_bars.set_xlim(0, 1)
    ax_bars.set_xlabel("probability")
    for y, p in enumerate(probs):
        ax_bars.text(min(p + 0.02, 0.8), y, f"{p:.1%}", va="center", fontsize=8)
    fig.suptitle(f"correct label: {example.label}\ncorrect rank: {example.rank}/{example.num_labels}"
                 f" · correct probability: {example.probability:.2%}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
