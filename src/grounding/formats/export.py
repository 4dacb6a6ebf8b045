"""Encoders for inference without this project (`grounding export MODEL OUT`): the image and the
text encoder as two graphs, ONNX (for onnxruntime and every runtime that reads ONNX) or
TorchScript, beside what they need around them.

    OUT/image_encoder.onnx   pixels (batch, 3, S, S) float32, preprocessed -> features (batch, D)
    OUT/text_encoder.onnx    ids (batch, tokens) int64, any length up to the context -> features
                             (batch, D); padding after every row's end may be cut first
    OUT/tokenizer.json       a `tokenizers` file that cleans, splits, adds the start and end
                             tokens and pads to the context: ids straight from text
    OUT/preprocess.json      image size, mean, std, how to resize, the context, the logit scale
                             (and bias), the activation that turns logits into probabilities,
                             whether text is `clean`ed first and whether padding may be cut
                             (not for SigLIP, whose text tower pools the last position)

The features are the model's own, before normalisation, as `encode_image` and `encode_text`
give them (TorchScript: image_encoder.pt and text_encoder.pt instead)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from tokenizers import Regex, normalizers, processors
from torch import nn

from ..errors import BadInput, need
from ..files import atomic_path, write_json_atomic
from ..models import CLIP

FORMATS = ("onnx", "torchscript")


class Encoder(nn.Module):
    """One of the model's encoders (`encode_image` or `encode_text`) as a module of its own: what
    a graph exporter captures."""

    def __init__(self, model: CLIP, method: str):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(inputs)


def export(model: CLIP, out: str | Path, format: str = "onnx") -> list[Path]:
    """Writes the encoders, the tokenizer and the preprocessing into `out`; returns the files."""
    if format not in FORMATS:
        raise BadInput(f"unknown export format {format!r}: use {' or '.join(FORMATS)}")
    if format == "onnx":  # torch's exporter writes with these
        need("onnx", "export", "ONNX export")
        need("onnxscript", "export", "ONNX export")
    if model.config.text.kind == "lstm":
        raise BadInput("an LSTM text tower does not export (its packed sequences have no graph form); export "
                       "a model with a Transformer or MiniLM text tower")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.float().eval().cpu()
    size, context = model.config.vision.image_size, model.config.text.context_length
    pixels = torch.zeros(2, 3, size, size)
    ids = model.tokenizer(["a photo of a cat.", "a dog"])
    suffix = ".onnx" if format == "onnx" else ".pt"
    written = []
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # not a line per optional op library it lacks
    for name, method, example, input_name, dynamic in (
            ("image_encoder", "encode_image", pixels, "pixels", {0: "batch"}),
            ("text_encoder", "encode_text", ids, "ids", {0: "batch", 1: "tokens"})):
        encoder = Encoder(model, method).eval()
        path = out / f"{name}{suffix}"
        with atomic_path(path) as tmp, torch.no_grad():
            if format == "onnx":
                torch.onnx.export(encoder, (example,), str(tmp), dynamo=True, input_names=[input_name],
                                  output_names=["features"], dynamic_shapes={"inputs": dynamic},
                                  external_data=False, verbose=False)
            else:
                torch.jit.save(torch.jit.trace(encoder, (example,)), str(tmp))
        written.append(path)
    tokenizer_path = out / "tokenizer.json"
    with atomic_path(tokenizer_path) as tmp:
        standalone_tokenizer(model).save(str(tmp))
    vision = model.config.vision
    write_json_atomic(out / "preprocess.json", {
        "image_size": size, "mean": list(vision.mean), "std": list(vision.std),
        "resize": {"shortest": "bicubic resize of the shortest side to image_size, then a centre crop of image_size",
                   "squash": "bicubic resize to image_size x image_size"}[vision.resize],
        "resize_mode": vision.resize,
        "context_length": context, "pad_token_id": model.tokenizer.pad_token_id,
        "clean_text": model.tokenizer.kind != "sentencepiece", "cut_padding": model.config.text.kind != "siglip",
        "logit_scale": model.logit_scale.detach().exp().item(), "activation": model.activation,
        "logit_bias": None if model.logit_bias is None else model.logit_bias.item(), "embed_dim": model.config.embed_dim,
        "inputs": {"image_encoder": "pixels", "text_encoder": "ids"}, "outputs": "features"})
    return [*written, tokenizer_path, out / "preprocess.json"]


def standalone_tokenizer(model: CLIP):
    """The model's tokenizer as a `tokenizers` object that does everything on its own: cleans the
    text (BPE: lowercases and collapses whitespace, as `clean` does, less ftfy's repairs of broken
    unicode; SentencePiece: its own normalizer already does SigLIP's cleaning), adds the start
    and end tokens, truncates keeping the end token, and pads to the context length."""
    tokenizer = model.tokenizer
    bpe = type(tokenizer.bpe).from_str(tokenizer.bpe.to_str())
    context = model.config.text.context_length
    end = tokenizer.bpe.id_to_token(tokenizer.eot_token_id)
    if tokenizer.kind == "bpe":
        bpe.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                               normalizers.Strip(), normalizers.Lowercase()])
        start = tokenizer.bpe.id_to_token(tokenizer.sot_token_id)
        bpe.post_processor = processors.TemplateProcessing(
            single=f"{start} $A {end}", special_tokens=[(start, tokenizer.sot_token_id), (end, tokenizer.eot_token_id)])
    elif tokenizer.kind == "sentencepiece":
        bpe.post_processor = processors.TemplateProcessing(single=f"$A {end}",
                                                           special_tokens=[(end, tokenizer.eot_token_id)])
    bpe.enable_truncation(context)
    bpe.enable_padding(length=context, pad_id=tokenizer.pad_token_id,
                       pad_token=tokenizer.bpe.id_to_token(tokenizer.pad_token_id) or "")
    return bpe
