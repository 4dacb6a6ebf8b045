"""SigLIP in Hugging Face's `SiglipModel` format: transformers' own model and ours give the same
embeddings and logits both ways (its folder read here, ours read by transformers), probabilities
are SigLIP's sigmoids, and a loaded SigLIP model fine-tunes with the SigLIP loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import grounding
from grounding.formats.huggingface import write_hf_folder
from grounding.inference.encode import classify, text_classifier

transformers = pytest.importorskip("transformers", reason="install the test extra: pip install -e '.[test]'")

WORDS = ["red", "blue", "circle", "square", "a", "photo", "of", "the", "triangle"]  # some of the vocabulary's
CONTEXT = 16


def _texts(n: int, seed: int = 1) -> list[str]:
    """Captions with what SiglipTokenizer cleans away or normalises: case, punctuation, runs of
    spaces, full-width and accented letters, ligatures, a literal ▁, emoji, the empty string."""
    import random

    rng = random.Random(seed)
    pieces = WORDS + list("abcxyz ABC.,!?&;'\"-_()[]{}\t\n") + ["é", "ß", "Ｆ", "ｕ", "\u2581", "ﬁ", "\u00a0",
                                                                   "\u3000", "😀", "Ⅸ", "½"]
    return ["", "  ", "A  Red, Circle!!"] + ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
                                              for _ in range(n)]


def _their_ids(folder, texts: list[str]) -> list[list[int]]:
    tokenizer = transformers.SiglipTokenizer(str(folder / "spiece.model"))
    return tokenizer(texts, padding="max_length", max_length=CONTEXT, truncation=True).input_ids


def _inputs(size: int = 32):
    torch.manual_seed(1)
    return torch.randn(3, 3, size, size), torch.randint(3, 30, (4, CONTEXT))


def _agree(hf_model, ours) -> None:
    pixels, ids = _inputs()
    with torch.no_grad():
        hf_image = hf_model.get_image_features(pixel_values=pixels)
        hf_text = hf_model.get_text_features(input_ids=ids)
        hf_logits = hf_model(input_ids=ids, pixel_values=pixels).logits_per_image
        hf_image, hf_text = (getattr(x, "pooler_output", x) for x in (hf_image, hf_text))
        assert (ours.encode_image(pixels) - hf_image).abs().max() < 1e-4
        assert (ours.encode_text(ids) - hf_text).abs().max() < 1e-4
        assert (ours(pixels, ids)[0] - hf_logits).abs().max() < 1e-4


def test_transformers_siglip_folders_load_with_its_embeddings_and_logits(siglip_folder):
    model, folder = siglip_folder
    ours = grounding.load(folder)
    assert ours.config.loss == "siglip" and ours.activation == "sigmoid" and ours.config.vision.resize == "squash"
    _agree(model, ours)


def test_transformers_reads_our_siglip_folders_with_our_embeddings_and_ids(siglip_folder, tmp_path):
    _, folder = siglip_folder
    ours = grounding.load(folder)
    with torch.no_grad():
        for p in ours.parameters():  # weights of our own, not theirs passed through
            p.add_(0.01 * torch.randn_like(p))
    write_hf_folder(ours, tmp_path / "out")
    _agree(transformers.SiglipModel.from_pretrained(tmp_path / "out").eval(), ours)
    texts = _texts(300, seed=2)
    assert _their_ids(tmp_path / "out", texts) == ours.tokenizer(texts, truncate=True).tolist()
    assert grounding.load(tmp_path / "out").tokenizer(texts, truncate=True).tolist() == ours.tokenizer(
        texts, truncate=True).tolist()


def test_siglip_text_is_split_as_siglips_tokenizer_splits_it_then_ended_and_padded_with_the_end(siglip_folder):
    """The spiece.model read without SentencePiece's runtime gives SiglipTokenizer's ids (its
    lowercasing, punctuation removal, NFKC, `</s>` at the end and as padding) on 2,000 texts."""
    _, folder = siglip_folder
    ours = grounding.load(folder)
    texts = _texts(2000)
    assert ours.tokenizer(texts, truncate=True).tolist() == _their_ids(folder, texts)
    assert ours.tokenizer(["a red circle"])[0].tolist()[-1] == 1 == ours.tokenizer.pad_token_id


def test_siglip_probabilities_are_sigmoids(siglip_folder):
    _, folder = siglip_folder
    ours = grounding.load(folder)
    pixels, _ = _inputs()
    labels = ["red circle", "blue square"]
    probs = classify(ours, text_classifier(ours, labels, ["a photo of the {}"]), pixels)
    with torch.no_grad():
        image = ours.encode_image(pixels, normalize=True)
        text = ours.encode_text(ours.tokenizer([f"a photo of the {label}" for label in labels]), normalize=True)
        expected = torch.sigmoid(ours.logit_scale.exp() * image @ text.t() + ours.logit_bias)
    assert torch.allclose(probs, expected, atol=1e-5) and not torch.allclose(probs.sum(1), torch.ones(3))


def test_an_exported_siglip_classifies_in_onnxruntime_as_in_pytorch(siglip_folder, tmp_path):
    """The exported tokenizer adds the end token and keeps the padding (SigLIP pools the last
    position), and the runner leaves the text to the tokenizer's own cleaning."""
    pytest.importorskip("onnxruntime")
    from PIL import Image

    from grounding.formats.export import export
    from grounding.inference.onnx import ExportedModel

    _, folder = siglip_folder
    ours = grounding.load(folder)
    export(ours, tmp_path / "onnx")
    runner = ExportedModel(tmp_path / "onnx")
    labels, templates = ["Red circle!", "blue  square", "ÉTÉ ﬁne"], ["a photo of the {}.", "{}"]
    torch_classifier = text_classifier(ours, labels, templates).numpy()
    assert np.abs(runner.classifier(labels, templates) - torch_classifier).max() < 1e-4
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    pixels = ours.preprocess(image)[None]
    assert np.abs(runner.encode_images(pixels.numpy()) - ours.encode_image(pixels, normalize=True).detach().numpy()
                  ).max() < 1e-4


def test_a_siglip_model_fine_tunes_with_the_siglip_loss(siglip_folder, tmp_path):
    from grounding.training.options import TrainConfig
    from grounding.training.trainer import train

    _, folder = siglip_folder
    before = grounding.load(folder)
    tuned = train(None, TrainConfig(init=str(folder), data="synthetic", steps=3, batch_size=8, warmup=1, workers=0,
                                    lr=1e-3), tmp_path / "run", show_progress=False)
    bias = tuned.logit_bias.item()
    assert tuned.config.loss == "siglip" and bias != before.logit_bias.item() and np.isfinite(bias)
    again = grounding.load(tmp_path / "run")
    pixels, ids = _inputs()
    with torch.no_grad():
        assert torch.allclose(again(pixels, ids)[0], tuned.eval()(pixels, ids)[0], atol=1e-5)
