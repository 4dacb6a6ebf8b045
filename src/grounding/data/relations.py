"""Spatial relation words and what they mean in an image: one home for the phrases a referring
expression or a caption may use ("left of", "to the right of", "above", "under", ...), the four
relations they come to, and the geometry behind each (the axis that separates two things most
decides, as in the built-in world). Used to split a referring expression at its relation word
(`grounding locate`) and to check a relation between two boxes."""
from __future__ import annotations

import re
from dataclasses import dataclass

RELATION_WORDS = {
    "to the left of": "left of", "on the left of": "left of", "left of": "left of",
    "to the right of": "right of", "on the right of": "right of", "right of": "right of",
    "above": "above", "over": "above", "on top of": "above",
    "below": "below", "under": "below", "underneath": "below", "beneath": "below",
}
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
AXIS = {"left of": "horizontal", "right of": "horizontal", "above": "vertical", "below": "vertical"}
SIZE_WORDS = {"small": "small", "little": "small", "tiny": "small", "smaller": "small", "smallest": "small",
              "large": "large", "big": "large", "larger": "large", "bigger": "large", "largest": "large",
              "biggest": "large"}
ARTICLES = ("the", "a", "an")

# Longest phrases first, so that "to the left of" wins over "left of".
_RELATION = re.compile(r"\b(" + "|".join(sorted(map(re.escape, RELATION_WORDS), key=len, reverse=True)) + r")\b")


def where(dx: float, dy: float) -> str:
    """Where a thing stands relative to another that is (dx, dy) away from it in image
    coordinates (y grows downward), along the axis that separates them most."""
    return next(name for name in OPPOSITE if holds(name, dx, dy))


def holds(relation: str, dx, dy):
    """Whether `relation` holds of a thing (dx, dy) away from its anchor: `where`'s rule, for
    numbers or, element by element, for tensors."""
    horizontal, vertical = abs(dx) >= abs(dy), abs(dy) > abs(dx)
    return {"left of": horizontal & (dx < 0), "right of": horizontal & (dx >= 0),
            "above": vertical & (dy < 0), "below": vertical & (dy >= 0)}[relation]


def strip_article(text: str) -> str:
    words = text.strip().split()
    return " ".join(words[1:] if words and words[0].lower() in ARTICLES else words)


@dataclass(frozen=True)
class Expression:
    """A referring expression taken apart: what the referent is ("red circle"), a size word that
    singles it out among its kind ("small"), and a relation to an anchor ("left of", "blue
    square"), which may have a size word of its own."""
    subject: str
    size: str | None = None
    relation: str | None = None
    anchor: str | None = None
    anchor_size: str | None = None


def sized(phrase: str) -> tuple[str, str | None]:
    """A noun phrase without its article and leading size word, and that size ("small", "large")."""
    words = strip_article(phrase).split()
    size = SIZE_WORDS.get(words[0]) if len(words) > 1 else None
    return " ".join(words[1:] if size else words), size


def parse_expression(text: str) -> Expression:
    """Split at the first relation word of RELATION_WORDS and take the leading article and size
    word off each side. A phrase with no relation word (or nothing on one side of it) is one subject."""
    text = " ".join(text.lower().split())
    found = _RELATION.search(text)
    if found and text[:found.start()].strip() and text[found.end():].strip():
        (subject, size), (anchor, anchor_size) = sized(text[:found.start()]), sized(text[found.end():])
        return Expression(subject, size, RELATION_WORDS[found.group(1)], anchor, anchor_size)
    return Expression(*sized(text))
