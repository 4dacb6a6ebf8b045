"""Hard-negative captions made by rule, for training on data that brings none (NegCLIP's
swaps, without a parser): the same words in a wrong arrangement, which a bag-of-words model
cannot tell from the truth.

What it swaps, in a caption with two noun phrases joined by an asymmetric relation ("a red cup
on a blue table", "a dog chasing a cat", "the circle left of the square") or by "and":
- the two phrases around the relation: "a blue table on a red cup";
- their head nouns, taken as each phrase's last word: "a red table on a blue cup";
- the first two different attribute words (colours, sizes, materials, a few others) of two
  phrases: "a blue cup on a red table".
What it cannot: a caption with one noun phrase, symmetric relations ("next to", "near": their
swap is no negative), head nouns that are not last ("a cup of tea"), passives and clauses,
counts and negation. Such captions get no negative (training leaves them out of the extra
columns); each metrics.jsonl row gives the share of examples so far that had one
(`with_negative`)."""
from __future__ import annotations

import re

from .colourless import COLOUR_WORDS
from .relations import RELATION_WORDS, SIZE_WORDS

ASYMMETRIC = (*RELATION_WORDS, "on", "in", "inside", "behind", "in front of", "holding", "riding", "wearing",
              "carrying", "eating", "chasing", "pushing", "pulling", "watching", "under")
ATTRIBUTES = {*SIZE_WORDS, *COLOUR_WORDS, "wooden", "metal", "plastic", "glass", "old", "young", "new", "tall",
              "short", "long", "open", "closed", "empty", "full", "wet", "dry", "hot", "cold"}
_JOIN = re.compile(r"\s(" + "|".join(sorted(map(re.escape, (*ASYMMETRIC, "and")), key=len, reverse=True)) + r")\s")


def swapped(caption: str) -> list[str]:
    """The caption's rule-made negatives (module doc), none equal to it; [] when it allows none."""
    text = " ".join(caption.split())
    found = _JOIN.search(text)
    if not found:
        return []
    left, join, right = text[:found.start()], found.group(1), text[found.end():].rstrip(" .")
    a, b = left.split(), right.split()
    if not a or not b:
        return []
    made = []
    if join != "and":  # "a and b" is "b and a": no negative
        first_part, second_part = " ".join(_with_article(b, a)), " ".join(_with_article(a, b)).lower()
        made.append(f"{_capitalised(first_part, text)} {join} {second_part}")
    made.append(" ".join([*a[:-1], b[-1], join, *b[:-1], a[-1]]))
    first = next((i for i, w in enumerate(a) if w.lower() in ATTRIBUTES), None)
    second = next((i for i, w in enumerate(b) if w.lower() in ATTRIBUTES), None)
    if first is not None and second is not None and a[first].lower() != b[second].lower():
        a2, b2 = list(a), list(b)
        a2[first], b2[second] = b[second], a[first]
        made.append(" ".join([*a2, join, *b2]))
    made = [_ARTICLE.sub(_agreeing, m) for m in made]
    return list(dict.fromkeys(m for m in made if m.lower() != text.rstrip(" .").lower()))


_ARTICLE = re.compile(r"\b([Aa]n?) (\w)")


def _agreeing(found: re.Match) -> str:
    """"a" or "an" as the next word's first letter wants (by letter: "an hour" is not known)."""
    article = "an" if found.group(2).lower() in "aeiou" else "a"
    return f"{article.capitalize() if found.group(1)[0] == 'A' else article} {found.group(2)}"


def _with_article(phrase: list[str], other: list[str]) -> list[str]:
    """`phrase` moved to where `other` stood, keeping the article that place had ("A cup on the
    table" -> "A table on the cup")."""
    articles = ("a", "an", "the")
    if phrase[0].lower() not in articles or other[0].lower() not in articles or len(phrase) < 2:
        return phrase
    return [other[0].lower(), *phrase[1:]]


def _capitalised(text: str, like: str) -> str:
    return text[:1].upper() + text[1:] if like[:1].isupper() else text
