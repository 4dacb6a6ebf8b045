"""SigLIP in Hugging Face's `SiglipModel` format: transformers' own model and ours give the same
embeddings and logits both ways (its folder read here, ours read by transformers), probabilities
are SigLIP's sigmoids, and a loaded SigLIP model fine-tunes with the SigLIP loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer as Tokenizers, decoders, models, pre_tokenizers

import grounding
from grounding.formats.huggingface import write_hf_folder
from grounding.inference.encode import classify, text_classifier

transformers = pytest.importorskip("transformers", reason="install the test extra: pip install -e '.[test]'")

WORDS = ["red", "blue", "green", "circle", "square", "a", "photo", "of", "the", "small", "large", "triangle"]


def _sentencepiece_json(folder) -> None:
    """A SentencePiece-style tokenizer.json (a Unigram over ▁-words, SigLIP's special tokens)."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"\u2581{w}", -1.0) for w in WORDS]
    tokenizer = Tokenizers(models.Unigram(vocab, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.save(str(folder / "tokenizer.json"))


@pytest.fixture(scope="module")
def theirs(tmp_path_factory):
    """transformers' SiglipModel from a tiny random config, saved as the hub holds it."""
    folder = tmp_path_factory.mktemp("siglip")
    config = transformers.SiglipConfig(
        text_config=dict(vocab_size=len(WORDS) + 3, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16, pad_token_id=0, eos_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8))
    torch.manual_seed(0)
    model = transformers.SiglipModel(config).eval()
    with torch.no_grad():
        model.logit_bias.fill_(-3.0)
        model.logit_scale.fill_(2.0)
    model.save_pretrained(folder)
    _sentencepiece_json(folder)
    return model, folder


def _inputs(size: int = 32):
    torch.manual_seed(1)
    return torch.randn(3, 3, size, size), torch.randint(3, len(WORDS) + 3, (4, 16))


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


def test_transformers_siglip_folders_load_with_its_embeddings_and_logits(theirs):
    model, folder = theirs
    ours = grounding.load(folder)
    assert ours.config.loss == "siglip" and ours.activation == "sigmoid" and ours.config.vision.resize == "squash"
    _agree(model, ours)


def test_transformers_reads_our_siglip_folders_with_our_embeddings(theirs, tmp_path):
    _, folder = theirs
    ours = grounding.load(folder)
    with torch.no_grad():
        for p in ours.parameters():  # weights of our own, not theirs passed through
            p.add_(0.01 * torch.randn_like(p))
    write_hf_folder(ours, tmp_path / "out")
    _agree(transformers.SiglipModel.from_pretrained(tmp_path / "out").eval(), ours)
    assert grounding.load(tmp_path / "out").tokenizer(["a red circle"]).tolist() == ours.tokenizer(
        ["a red circle"]).tolist()


def test_siglip_text_is_its_pieces_then_the_end_then_padding_and_probabilities_are_sigmoids(theirs):
    _, folder = theirs
    ours = grounding.load(folder)
    ids = ours.tokenizer(["a red circle"])[0].tolist()
    assert ids[:4] == [3 + WORDS.index("a"), 3 + WORDS.index("red"), 3 + WORDS.index("circle"), 1]
    assert ids[4:] == [0] * 12
    pixels, _ = _inputs()
    labels = ["red circle", "blue square"]
    probs = classify(ours, text_classifier(ours, labels, ["a photo of the {}"]), pixels)
    with torch.no_grad():
        image = ours.encode_image(pixels, normalize=True)
        text = ours.encode_text(ours.tokenizer([f"a photo of the {label}" for label in labels]), normalize=True)
        expected = torch.sigmoid(ours.logit_scale.exp() * image @ text.t() + ours.logit_bias)
    assert torch.allclose(probs, expected, atol=1e-5) and not torch.allclose(probs.sum(1), torch.ones(3))


def test_a_siglip_model_fine_tunes_with_the_siglip_loss(theirs, tmp_path):
    from grounding.training.options import TrainConfig
    from grounding.training.trainer import train

    _, folder = theirs
    before = grounding.load(folder)
    tuned = train(None, TrainConfig(init=str(folder), data="synthetic", steps=3, batch_size=8, warmup=1, workers=0,
                                    lr=1e-3), tmp_path / "run", show_progress=False)
    bias = tuned.logit_bias.item()
    assert tuned.config.loss == "siglip" and bias != before.logit_bias.item() and np.isfinite(bias)
    again = grounding.load(tmp_path / "run")
    pixels, ids = _inputs()
    with torch.no_grad():
        assert torch.allclose(again(pixels, ids)[0], tuned.eval()(pixels, ids)[0], atol=1e-5)
