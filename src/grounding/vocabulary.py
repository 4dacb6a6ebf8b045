"""Where a model's tokenizer comes from: OpenAI's vocabulary, MiniLM's (shipped in its package),
a model folder's own files, or a BPE learned from text (by default the synthetic world's, the
tiny and small presets' vocabulary). The one place a config's end and pad ids are set."""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from .config import ModelConfig
from .errors import BadInput
from .tokenizer import MissingVocabulary, Tokenizer


def build_tokenizer(config: ModelConfig, texts: Iterable[str] | None = None) -> Tokenizer:
    """The tokenizer a config names: OpenAI's vocabulary, MiniLM's, or a BPE trained on `texts`
    (by default the synthetic world's text) with the text tower's vocabulary size."""
    if config.tokenizer == "openai":
        return Tokenizer.from_openai_merges(context_length=config.text.context_length)
    if config.tokenizer == "minilm":
        from .models.bert import packaged_folder

        return tie_tokenizer(config, Tokenizer.from_file(packaged_folder() / "tokenizer.json",
                                                         config.text.context_length))
    if config.tokenizer == "train":
        if texts is None:
            tokenizer = Tokenizer.from_string(_world_vocabulary(config.text.vocab_size, config.text.context_length),
                                              config.text.context_length)
        else:
            tokenizer = Tokenizer.train(texts, config.text.vocab_size, config.text.context_length)
        return tie_tokenizer(config, tokenizer)
    raise BadInput(f"unknown tokenizer {config.tokenizer!r}: use 'openai', 'train', 'minilm' or a saved model folder")


@lru_cache(maxsize=4)
def _world_vocabulary(vocab_size: int, context_length: int) -> str:
    """The BPE learned from the synthetic world's text. Drawing that text takes seconds and
    gives the same vocabulary every time, so it is learned once and kept in the cache, under a
    hash of the code that makes it (the world and the tokenizer) and the sizes."""
    from . import tokenizer
    from .data import synthetic
    from . import cache
    from .files import write_text_atomic

    code = b"".join(Path(module.__file__).read_bytes() for module in (synthetic, tokenizer))
    key = hashlib.sha256(code + f"{vocab_size},{context_length}".encode()).hexdigest()[:16]
    path = cache.folder("vocabularies") / f"synthetic-world-{key}.json"
    try:
        text = path.read_text(encoding="utf-8")
        Tokenizer.from_string(text, context_length)  # a damaged file is learned again
        return text
    except Exception:
        pass
    text = Tokenizer.train(synthetic.synthetic_corpus(), vocab_size, context_length).to_string()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    except OSError:  # a read-only cache costs only the time
        pass
    return text


def tie_tokenizer(config: ModelConfig, tokenizer: Tokenizer) -> Tokenizer:
    """The config's end and pad ids become the tokenizer's (the text tower pools at the end
    token and trims padding). Returns the tokenizer."""
    config.text.eot_token_id, config.text.pad_token_id = tokenizer.eot_token_id, tokenizer.pad_token_id
    return tokenizer


def folder_tokenizer(folder: Path, config: ModelConfig, eot_token_id: int) -> Tokenizer:
    """A peer's model folder's vocab.json and merges.txt, else OpenAI's vocabulary."""
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return tie_tokenizer(config, Tokenizer.from_hf_files(folder / "vocab.json", folder / "merges.txt",
                                                             config.text.context_length))
    return openai_vocabulary(config, eot_token_id, f"{folder} has no vocab.json and merges.txt, so")


def openai_vocabulary(config: ModelConfig, eot_token_id: int, why: str) -> Tokenizer:
    """OpenAI's vocabulary; where it is not on this machine, a stand-in that lets images encode
    and says, once text is used, what is missing (`why`) and where to get it. The config's end
    and pad ids follow the tokenizer (`eot_token_id` where there is none)."""
    try:
        tokenizer = Tokenizer.from_openai_merges(context_length=config.text.context_length)
    except FileNotFoundError as e:
        config.text.eot_token_id = eot_token_id
        return MissingVocabulary(f"{why} its text side needs OpenAI's vocabulary, and {e}", config.text.vocab_size,
                                 config.text.context_length)
    return tie_tokenizer(config, tokenizer)
