"""SigLIP's vocabulary: the `spiece.model` that Google's SigLIP repos ship (a SentencePiece
Unigram model, a protobuf), read into a `tokenizers` object and written back.

transformers' `SiglipTokenizer` lowercases the text, removes ASCII punctuation, collapses
whitespace, then lets SentencePiece normalise (NFKC) and split it, a `▁` before each word. The
`tokenizers` object made here does the same in its normalizer, so a saved or exported SigLIP
needs no SentencePiece at all; only reading and writing `spiece.model` does (its protobuf
schema ships with the `sentencepiece` package)."""
from __future__ import annotations

import json
import string
from pathlib import Path

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as _Tokenizer

from ..errors import BadInput, need

SPIECE_FILE = "spiece.model"
WORD_START = "\u2581"
_PUNCTUATION = Regex("[" + "".join("\\" + c for c in string.punctuation) + "]")
_UNIGRAM, _NORMAL, _UNKNOWN, _CONTROL = 1, 1, 2, 3  # the protobuf's enums


def _proto():
    return need("sentencepiece.sentencepiece_model_pb2", "siglip", "reading SigLIP's spiece.model").ModelProto()


def read_spiece(path: str | Path) -> _Tokenizer:
    """`spiece.model` as a `tokenizers` object that splits text as `SiglipTokenizer` does (without
    special tokens: the Tokenizer class adds the end token and the padding)."""
    proto = _proto()
    try:
        proto.ParseFromString(Path(path).read_bytes())
    except Exception as e:  # protobuf's DecodeError; its module depends on the protobuf build
        raise BadInput(f"{path}: not a SentencePiece model ({e}); download the folder again") from None
    if proto.trainer_spec.model_type != _UNIGRAM or not proto.pieces:
        raise BadInput(f"{path}: a SentencePiece model of type {proto.trainer_spec.model_type}; only Unigram "
                       "models (SigLIP's) are read")
    tokenizer = _Tokenizer(models.Unigram([(p.piece, p.score) for p in proto.pieces], proto.trainer_spec.unk_id,
                                          proto.trainer_spec.byte_fallback))
    steps = [normalizers.Replace(WORD_START, " "), normalizers.Lowercase(), normalizers.Replace(_PUNCTUATION, ""),
             normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    if proto.normalizer_spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap))
    tokenizer.normalizer = normalizers.Sequence([*steps, normalizers.Replace(Regex(" {2,}"), " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=WORD_START, prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement=WORD_START, prepend_scheme="always")
    return tokenizer


def write_spiece(tokenizer: _Tokenizer, path: str | Path) -> bool:
    """`spiece.model` for a tokenizer that `read_spiece` made (so transformers' SiglipTokenizer
    reads the folder); False, writing nothing, for any other kind of tokenizer."""
    from ..files import atomic_path

    spec = json.loads(tokenizer.to_str())
    model, normalizer = spec["model"], spec.get("normalizer") or {}
    if model["type"] != "Unigram" or tokenizer.normalizer is None or \
            tokenizer.normalizer.normalize_str(f"A{WORD_START}B, ") != "a b":  # not SigLIP's cleaning
        return False
    proto = _proto()
    specials = {t["content"] for t in spec.get("added_tokens", [])} | {"<pad>", "</s>", "<s>"}
    ids = {piece: i for i, (piece, _) in enumerate(model["vocab"])}
    for i, (piece, score) in enumerate(model["vocab"]):
        entry = proto.pieces.add()
        entry.piece, entry.score = piece, score
        entry.type = _UNKNOWN if i == model["unk_id"] else _CONTROL if piece in specials else _NORMAL
    trainer = proto.trainer_spec
    trainer.model_type, trainer.unk_id, trainer.byte_fallback = _UNIGRAM, model["unk_id"], model["byte_fallback"]
    trainer.pad_id, trainer.eos_id, trainer.bos_id = ids.get("<pad>", -1), ids.get("</s>", -1), ids.get("<s>", -1)
    charsmap = next((step["precompiled_charsmap"] for step in normalizer.get("normalizers", [])
                     if step["type"] == "Precompiled"), None)
    spec_out = proto.normalizer_spec
    spec_out.name = "nmt_nfkc" if charsmap else "identity"
    if charsmap:
        import base64

        spec_out.precompiled_charsmap = base64.b64decode(charsmap)
    spec_out.add_dummy_prefix = spec_out.remove_extra_whitespaces = spec_out.escape_whitespaces = True
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_bytes(proto.SerializeToString())
    return True
