"""CLIP's byte-level BPE tokenizer.

Text is cleaned the way OpenAI's tokenizer cleans it (ftfy repairs broken unicode, HTML entities
are unescaped, whitespace is collapsed, everything is lowercased), split into words, numbers and
punctuation runs, mapped to bytes, and merged with BPE whose word-final pieces end in `</w>`. The
merge step runs in the Rust `tokenizers` library; this module only builds it from the usual
vocabulary files, or trains a new one on a caption corpus.
"""
from __future__ import annotations

import gzip
import heapq
import html
import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import regex
from tokenizers import Regex, Tokenizer as _Tokenizer, models, pre_tokenizers

from .errors import BadInput, NotFound

if TYPE_CHECKING:
    import torch

START, END, PAD = "<|startoftext|>", "<|endoftext|>", "<|pad|>"
# Contractions, letter runs, single digits, and runs of other non-space characters.
WORD_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_WHITESPACE = regex.compile(r"\s+")


def clean(text: str) -> str:
    """The text as the model reads it. ftfy (a tenth of a second to import, which the PyTorch-free
    classify path keeps out) is loaded only for text it could change: printable ASCII without `&`
    has no broken unicode, control characters or HTML entities to repair."""
    if not (text.isascii() and text.isprintable() and "&" not in text):
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return _WHITESPACE.sub(" ", text).strip().lower()


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def _byte_order() -> list[int]:
    """The 256 bytes in OpenAI's vocabulary order: those that print as themselves, then the rest."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    return printable + [b for b in range(256) if b not in printable]


def _byte_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the bytes, in that order; the rest map from 256 on."""
    return [chr(b) if i < 188 else chr(256 + i - 188) for i, b in enumerate(_byte_order())]


_STAND_IN_TO_BYTE = dict(zip(_byte_alphabet(), _byte_order()))


def find_openai_vocab() -> Path:
    """OpenAI's merges file: $GROUNDING_OPENAI_BPE, or the copy inside an installed open_clip."""
    candidates = []
    if os.environ.get("GROUNDING_OPENAI_BPE"):
        candidates.append(Path(os.environ["GROUNDING_OPENAI_BPE"]))
    try:
        import importlib.util

        spec = importlib.util.find_spec("open_clip")
        if spec and spec.origin:
            candidates.append(Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz")
    except (ImportError, ValueError):
        pass
    for path in candidates:
        if path.is_file():
            return path
    raise NotFound(
        "OpenAI's BPE vocabulary (bpe_simple_vocab_16e6.txt.gz) was not found: run "
        "`pip download --no-deps open_clip_torch -d /tmp/oc && unzip -j /tmp/oc/*.whl "
        "'open_clip/bpe_simple_vocab_16e6.txt.gz' -d ~/.cache/grounding` and set "
        "GROUNDING_OPENAI_BPE=~/.cache/grounding/bpe_simple_vocab_16e6.txt.gz")


def learn_merges(words: Counter[tuple[str, ...]], num_merges: int, min_count: int = 2) -> list[tuple[str, str]]:
    """BPE training: repeatedly merge the most frequent adjacent pair, ties broken by the pair's
    own order so the result never depends on hashing (the `tokenizers` trainer's does).
    Pair counts are updated only in the words a merge touches; stale heap entries are skipped."""
    symbols = [list(w) for w in words]
    counts = list(words.values())
    pair_count: Counter[tuple[str, str]] = Counter()
    where: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for i, w in enumerate(symbols):
        for pair in zip(w, w[1:]):
            pair_count[pair] += counts[i]
            where[pair].add(i)
    heap = [(-c, pair) for pair, c in pair_count.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while heap and len(merges) < num_merges:
        neg, pair = heapq.heappop(heap)
        if -neg != pair_count[pair]:
            continue  # stale entry
        if -neg < min_count:
            break
        merges.append(pair)
        merged, touched = pair[0] + pair[1], set()
        for i in sorted(where.pop(pair)):
            w, c = symbols[i], counts[i]
            for old in zip(w, w[1:]):
                pair_count[old] -= c
                touched.add(old)
            j, out = 0, []
            while j < len(w):
                if j + 1 < len(w) and (w[j], w[j + 1]) == pair:
                    out.append(merged)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            symbols[i] = out
            for new in zip(out, out[1:]):
                pair_count[new] += c
                where[new].add(i)
                touched.add(new)
        for p in touched:
            if pair_count[p] > 0:
                heapq.heappush(heap, (-pair_count[p], p))
    return merges


class MissingVocabulary:
    """Stands in for a tokenizer whose vocabulary file is not on this machine (a Hugging Face
    folder saved without one needs OpenAI's): the model still encodes images, and any use of
    text raises FileNotFoundError saying where to get the vocabulary."""

    byte_level = True

    def __init__(self, message: str, size: int, context_length: int):
        self.message, self.size, self.context_length = message, size, context_length

    def __len__(self) -> int:
        return self.size

    def __getattr__(self, name: str):
        raise NotFound(self.message)

    def __call__(self, *args, **kwargs):
        raise NotFound(self.message)


class Tokenizer:
    """Turns strings into (batch, context_length) id tensors: start token, BPE ids, end token,
    then padding. Over-long text is an error unless `truncate=True`, which keeps the end token.
    A BERT WordPiece `tokenizer.json` works too ([CLS] and [SEP] play start and end), and SigLIP's
    SentencePiece one (no start token; `</s>` ends the text and pads it, as SigLIP was trained;
    its own normalizer cleans the text, so `clean` is not applied)."""

    def __init__(self, bpe: _Tokenizer, context_length: int = 77):
        self.bpe = bpe
        self.context_length = context_length
        self.kind = "bpe" if bpe.token_to_id(START) is not None else \
            "wordpiece" if bpe.token_to_id("[CLS]") is not None else "sentencepiece"
        start, end, pad = {"bpe": (START, END, PAD), "wordpiece": ("[CLS]", "[SEP]", "[PAD]"),
                           "sentencepiece": (None, "</s>", "</s>")}[self.kind]
        self.sot_token_id = None if start is None else bpe.token_to_id(start)
        self.eot_token_id = bpe.token_to_id(end)
        if self.eot_token_id is None:
            raise BadInput(f"the tokenizer has neither {START}/{END}, [CLS]/[SEP] nor SentencePiece's </s>")
        pad = bpe.token_to_id(pad)
        # OpenAI's vocabulary has no pad token and pads with id 0; padding is never read.
        self.pad_token_id = 0 if pad is None else pad

    @property
    def byte_level(self) -> bool:
        """Whether this is a byte-level BPE (CLIP's kind of vocabulary)."""
        return self.kind == "bpe"

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def from_vocab_and_merges(cls, vocab: dict[str, int], merges: list[tuple[str, str]],
                              context_length: int = 77) -> "Tokenizer":
        bpe = _Tokenizer(models.BPE(vocab, merges, end_of_word_suffix="</w>", fuse_unk=False))
        bpe.pre_tokenizer = _pre_tokenizer()
        return cls(bpe, context_length)

    @classmethod
    def from_openai_merges(cls, path: str | Path | None = None, context_length: int = 77) -> "Tokenizer":
        """OpenAI's `bpe_simple_vocab_16e6.txt.gz`: 48,894 merges over the byte alphabet."""
        path = Path(path) if path else find_openai_vocab()
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
        alphabet = _byte_alphabet()
        tokens = alphabet + [ch + "</w>" for ch in alphabet] + ["".join(m) for m in merges] + [START, END]
        return cls.from_vocab_and_merges({t: i for i, t in enumerate(tokens)}, merges, context_length)

    @classmethod
    def from_hf_files(cls, vocab_json: str | Path, merges_txt: str | Path, context_length: int = 77) -> "Tokenizer":
        """Hugging Face's `vocab.json` and `merges.txt`."""
        vocab = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
        lines = Path(merges_txt).read_text(encoding="utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
        return cls.from_vocab_and_merges(vocab, merges, context_length)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, context_length: int = 77) -> "Tokenizer":
        """A new byte-level BPE learned from a caption corpus, with pad, start and end tokens
        (ids 0, 1, 2). The same corpus always gives the same vocabulary."""
        pre = _pre_tokenizer()
        words: Counter[tuple[str, ...]] = Counter()
        for text, n in Counter(texts).items():
            for piece, _ in pre.pre_tokenize_str(clean(text)):
                words[(*piece[:-1], piece[-1] + "</w>")] += n
        alphabet = _byte_alphabet()
        base = [PAD, START, END] + alphabet + [ch + "</w>" for ch in alphabet]
        if vocab_size < len(base):
            raise BadInput(f"a byte-level BPE needs a vocabulary of at least {len(base)}, got {vocab_size}")
        merges = learn_merges(words, vocab_size - len(base))
        tokens = base + ["".join(m) for m in merges]
        return cls.from_vocab_and_merges({t: i for i, t in enumerate(tokens)}, merges, context_length)

    @classmethod
    def from_sentencepiece(cls, path: str | Path, context_length: int = 64) -> "Tokenizer":
        """SigLIP's `spiece.model` (formats/sentencepiece.py), splitting as transformers'
        SiglipTokenizer does."""
        from .formats.sentencepiece import read_spiece

        return cls(read_spiece(path), context_length)

    @classmethod
    def from_file(cls, path: str | Path, context_length: int = 77) -> "Tokenizer":
        return cls.from_string(Path(path).read_text(encoding="utf-8"), context_length)

    @classmethod
    def from_string(cls, text: str, context_length: int = 77) -> "Tokenizer":
        """A tokenizer from the JSON that `save` writes (and `to_string` returns)."""
        bpe = _Tokenizer.from_str(text)
        bpe.no_padding()  # padding and truncation are this class's job
        bpe.no_truncation()
        return cls(bpe, context_length)

    def save(self, path: str | Path) -> None:
        self.bpe.save(str(path))

    def to_string(self) -> str:
        return self.bpe.to_str()

    def is_openai(self) -> bool:
        """Whether this is OpenAI's vocabulary (its size and special ids; a trained one has a pad token)."""
        return (self.byte_level and len(self) == 49408 and (self.sot_token_id, self.eot_token_id) == (49406, 49407)
                and self.bpe.token_to_id(PAD) is None)

    def merges(self) -> list[tuple[str, str]]:
        model = json.loads(self.bpe.to_str())["model"]
        return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]

    def swapped(self, a: int, b: int) -> "Tokenizer":
        """The same byte-level BPE with ids `a` and `b` exchanged (for a format that gives an id a
        meaning of its own); the embedding rows must be exchanged with them."""
        vocab = self.bpe.get_vocab()
        vocab[self.bpe.id_to_token(a)], vocab[self.bpe.id_to_token(b)] = b, a
        return Tokenizer.from_vocab_and_merges(vocab, self.merges(), self.context_length)

    def save_hf_files(self, folder: str | Path) -> None:
        """Hugging Face's `vocab.json`, `merges.txt` and the special tokens, as `CLIPTokenizer`
        reads them."""
        from .files import write_json_atomic, write_text_atomic

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        merges = [" ".join(m) for m in self.merges()]
        write_text_atomic(folder / "vocab.json", json.dumps(self.bpe.get_vocab(), ensure_ascii=False))
        write_text_atomic(folder / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
        pad = PAD if self.bpe.token_to_id(PAD) is not None else END
        write_json_atomic(folder / "tokenizer_config.json", {
            "tokenizer_class": "CLIPTokenizer", "bos_token": START, "eos_token": END, "pad_token": pad,
            "unk_token": END, "model_max_length": self.context_length})

    # --- use --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.bpe.get_vocab_size()

    def prepare(self, text: str) -> str:
        """The text as the vocabulary is given it: `clean`ed, except for SentencePiece, whose
        normalizer does SigLIP's own cleaning."""
        return text if self.kind == "sentencepiece" else clean(text)

    def encode(self, text: str) -> list[int]:
        """BPE ids of one text, without start and end tokens."""
        return self.bpe.encode(self.prepare(text), add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ids up to the end token, with special tokens dropped."""
        ids = [int(i) for i in ids]
        if self.eot_token_id in ids:
            ids = ids[:ids.index(self.eot_token_id)]
        special = {self.sot_token_id, self.pad_token_id}
        if not self.byte_level:
            return self.bpe.decode([i for i in ids if i not in special])
        data = bytearray()
        for piece in (self.bpe.id_to_token(i) for i in ids if i not in special):
            word_end = piece.endswith("</w>")
            data += bytes(_STAND_IN_TO_BYTE[ch] for ch in piece.removesuffix("</w>"))
            data += b" " if word_end else b""
        return data.decode("utf-8", errors="replace").strip()

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None,
                 truncate: bool = False) -> torch.Tensor:
        return self.tokenize(texts, context_length, truncate)[0]

    def tokenize(self, texts: str | Sequence[str], context_length: int | None = None,
                 truncate: bool = False) -> tuple[torch.Tensor, list[int]]:
        """The ids, as `__call__` gives them, and the rows that were cut to fit (with `truncate`)."""
        import torch

        if isinstance(texts, str):
            texts = [texts]
        length = context_length or self.context_length
        encoded = self.bpe.encode_batch([self.prepare(t) for t in texts], add_special_tokens=False)
        out = torch.full((len(texts), length), self.pad_token_id, dtype=torch.long)
        cut = []
        for row, (text, enc) in enumerate(zip(texts, encoded)):
            ids = [*([] if self.sot_token_id is None else [self.sot_token_id]), *enc.ids, self.eot_token_id]
            if len(ids) > length:
                if not truncate:
                    raise BadInput(
                        f"text is {len(ids)} tokens, over the context length of {length}: "
                        f"{text[:60]!r}... shorten it or pass truncate=True")
                ids = ids[:length - 1] + [self.eot_token_id]
                cut.append(row)
            out[row, :len(ids)] = torch.tensor(ids)
        return out, cut
