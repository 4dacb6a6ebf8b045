"""Prompt templates: sets written for this project, and the sets OpenAI published with CLIP for
the standard benchmarks (data/clip_paper.json: `imagenet`'s 80, `cars`, `country211`, `cifar`).
A label goes where `{}` stands; a classifier averages a label's embeddings over its set's
templates."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..errors import BadInput
from ..files import read_lines

CLIP_PAPER = Path(__file__).parent.parent / "data" / "clip_paper.json"
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "default": ("a photo of a {}.", "a picture of a {}.", "an image showing a {}.", "a drawing of a {}.", "a {}."),
    "synthetic": ("a {}.", "a small {}.", "a large {}.", "a photo of a {}."),
    "fashion": ("a photo of a {}, a piece of clothing.", "a black and white photo of a {}.",
                "a low resolution photo of a {}.", "a product photo of a {}."),
    "flags": ("the flag of {}.", "the national flag of {}.", "a flag of the country {}.", "{} flag."),
    "emoji": ("an emoji of {}.", "the {} emoji.", "an icon of {}.", "a cartoon of {}."),
    **{name: tuple(templates) for name, templates in json.loads(CLIP_PAPER.read_text())["templates"].items()},
}


def read_templates(path: str | Path) -> tuple[str, ...]:
    """One template per line, each with `{}`; blank lines and lines starting with # are skipped."""
    if not Path(path).exists():
        raise BadInput(f"{path}: no such template file, nor a built-in set ({', '.join(TEMPLATE_SETS)})")
    lines = read_lines(path, "one template a line")
    templates = tuple(line for line in lines if line and not line.startswith("#"))
    bad = [t for t in templates if not fits(t)]
    if not templates or bad:
        raise BadInput(f"{path}: every template needs one '{{}}' where the label goes, and no other braces"
                       + (f"; these do not: {bad[:3]}" if bad else "; the file has none"))
    return templates


def fits(template: str) -> bool:
    """One `{}` for the label, and no other replacement field."""
    try:
        return template.count("{}") == 1 and template.format("x") != template
    except (IndexError, KeyError, ValueError):
        return False


def prompts(labels: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every label in every template, label by label: the texts a zero-shot classifier encodes.
    ValueError for no labels, or for a template without exactly one `{}`."""
    if not labels:
        raise BadInput("no labels given")
    if not templates or not all(fits(t) for t in templates):
        raise BadInput("every template needs one '{}' where the label goes, and no other braces")
    return [t.format(label) for label in labels for t in templates]


def resolve_templates(name_or_path: str | None, default: str | Sequence[str] = "default") -> tuple[str, ...]:
    """A built-in set's name or a file; None gives `default` (a set's name, or templates that
    came with a dataset)."""
    if name_or_path is None:
        return TEMPLATE_SETS[default] if isinstance(default, str) else tuple(default)
    if name_or_path in TEMPLATE_SETS:
        return TEMPLATE_SETS[name_or_path]
    return read_templates(name_or_path)
