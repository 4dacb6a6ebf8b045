"""Colourless examples: a caption without its colour words ("a red cup on a blue table" -> "a cup
on a table"), its image drawn in greyscale (`train --grey`) or left in colour (`train
--drop-colour-words`). Trained beside the coloured examples, they ask the image tower for shapes
that do not depend on the colours they came in, which is what zero-shot on colour-shape pairs
never seen together needs (docs/tasks.md, "Held-out pairs")."""
from __future__ import annotations

from PIL import Image

COLOUR_WORDS = frozenset({"red", "green", "blue", "yellow", "purple", "orange", "black", "white", "grey", "gray",
                          "brown", "pink"})


def colourless(caption: str) -> str:
    """The caption without its colour words (whole words, in any case, with any punctuation that
    clings to them)."""
    return " ".join(word for word in caption.split() if word.lower().strip(".,;:!?") not in COLOUR_WORDS)


def greyscale(image: Image.Image) -> Image.Image:
    """The image in grey (ITU-R 601 luma), still with three channels for the image tower."""
    return image.convert("L").convert("RGB")
