"""The inference layer every caller shares (inference/): one way from logits to probabilities
(softmax for CLIP, sigmoid for SigLIP, in both engines), the engine choice, one classifier cache
key whatever the precision, and errors that carry their exit code and HTTP status."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from grounding.build import create_model
from grounding.config import preset
from grounding.errors import AlreadyExists, BadInput, GroundingError, NotFound, about
from grounding.inference.encode import cached_text_classifier, classify, encode_texts, text_classifier
from grounding.inference.engine import OnnxClassifier, Request, TorchClassifier, load_model, open_classifier
from grounding.inference.scores import probabilities
from grounding.interfaces.cli import app
from grounding.saved import fingerprint, load, save_model

runner = CliRunner()


@pytest.fixture(scope="module")
def siglip_model():
    torch.manual_seed(0)
    model = create_model(dataclasses.replace(preset("tiny"), loss="siglip")).eval()
    with torch.no_grad():
        model.logit_bias.fill_(-2.5)  # away from its starting value, so that a dropped bias shows
    return model


def test_softmax_rows_sum_to_one_and_sigmoids_score_each_label_alone():
    logits = np.array([[2.0, -1.0, 0.5], [900.0, -900.0, 0.0]], np.float32)
    soft = probabilities(logits)
    assert np.allclose(soft.sum(axis=1), 1) and soft[1, 0] == pytest.approx(1.0)
    sig = probabilities(logits, "sigmoid")
    assert np.allclose(sig[0], 1 / (1 + np.exp(-logits[0].astype(np.float64))))
    assert sig[1].tolist() == pytest.approx([1.0, 0.0, 0.5]) and np.isfinite(sig).all()  # no overflow
    with pytest.raises(ValueError, match="unknown activation"):
        probabilities(logits, "relu")


def test_a_siglip_model_classifies_with_its_bias_and_sigmoids(siglip_model):
    model = siglip_model
    assert model.activation == "sigmoid" and create_model(preset("tiny")).activation == "softmax"
    pixels = torch.rand(3, 3, 32, 32)
    classifier = text_classifier(model, ["red circle", "blue square", "green star"], ["a {}."])
    probs = classify(model, classifier, pixels)
    with torch.no_grad():
        image = model.encode_image(pixels, normalize=True)
        expected = torch.sigmoid(model.logit_scale.exp() * image @ classifier + model.logit_bias)
    assert torch.allclose(probs, expected, atol=1e-6)
    assert not torch.allclose(probs.sum(dim=1), torch.ones(3))  # not a softmax


def test_the_text_encoder_batches_without_changing_the_answer(tiny_model):
    texts = [f"a red circle number {i}" for i in range(7)]
    whole = encode_texts(tiny_model, texts)
    assert torch.allclose(encode_texts(tiny_model, texts, batch_size=3), whole, atol=1e-6)
    assert torch.allclose(whole.norm(dim=1), torch.ones(7)) and encode_texts(tiny_model, []).shape == (0, tiny_model.config.embed_dim)


def test_bf16_and_fp32_runs_key_the_same_classifier_by_the_trained_weights(tmp_path, tiny_model):
    """The CLI and the server both open models through load_model: a bf16 model keeps the
    fingerprints of its fp32 weights, so both name its classifier the same way."""
    save_model(tiny_model, tmp_path / "model")
    fp32, _ = load_model(str(tmp_path / "model"), "cpu", "fp32")
    bf16, runtime = load_model(str(tmp_path / "model"), "cpu", "bf16")
    assert runtime.precision == "bf16" and bf16.text.token_embedding.weight.dtype == torch.bfloat16
    assert fingerprint(bf16, "text") == fingerprint(fp32, "text") == fingerprint(load(tmp_path / "model"), "text")
    cached_text_classifier(bf16, ["a", "b"], ["a {}."])
    cached_text_classifier(fp32, ["a", "b"], ["a {}."])
    entries = list((tmp_path / "cache" / "classifiers").glob("*.safetensors"))  # conftest's cache
    assert len(entries) == 2  # one per precision, each named by the same weights


def test_the_engine_choice(tmp_path, tiny_model):
    save_model(tiny_model, tmp_path / "model")
    spec = str(tmp_path / "model")
    assert isinstance(open_classifier(Request(spec)), TorchClassifier)  # not the built-in model: PyTorch
    with pytest.raises(BadInput, match="exported folder or the built-in model") as refused:
        open_classifier(Request(spec, engine="onnx"))
    assert refused.value.option == "--engine"
    with pytest.raises(BadInput, match="unknown engine"):
        open_classifier(Request(spec, engine="tensorrt"))


@pytest.mark.slow
def test_an_exported_siglip_model_gives_sigmoid_probabilities_as_pytorch_does(tmp_path, siglip_model):
    from grounding.formats.export import export
    from grounding.inference.onnx import ExportedModel

    save_model(siglip_model, tmp_path / "model")
    export(load(tmp_path / "model"), tmp_path / "onnx")
    images = []
    for i, colour in enumerate(("red", "blue", "white")):
        from PIL import Image

        Image.new("RGB", (40, 40), colour).save(tmp_path / f"{i}.png")
        images.append(tmp_path / f"{i}.png")
    labels, templates = ["red", "blue", "white"], ["a {} square."]
    torch_engine = TorchClassifier(str(tmp_path / "model"))
    onnx_engine = OnnxClassifier(ExportedModel(tmp_path / "onnx"))
    ours = [p for _, p, _ in torch_engine.classify_files(images, torch_engine.classifier(labels, templates))]
    theirs = [p for _, p, _ in onnx_engine.classify_files(images, onnx_engine.classifier(labels, templates))]
    assert np.allclose(np.stack(ours), np.stack(theirs), atol=1e-4)
    assert not np.allclose(np.stack(ours).sum(axis=1), 1)


def test_errors_carry_their_exit_code_status_and_option():
    assert issubclass(BadInput, ValueError) and issubclass(NotFound, FileNotFoundError)
    assert (BadInput("x").http_status, NotFound("x").http_status, AlreadyExists("x").http_status) == (400, 404, 409)
    with pytest.raises(GroundingError) as raised:
        with about("--dataset"):
            raise NotFound("data/x: no such folder")
    assert raised.value.option == "--dataset" and raised.value.exit_code == 2


def test_the_command_line_says_a_library_error_in_one_line_naming_its_option(tmp_path):
    result = runner.invoke(app, ["zeroshot", "--model", "tiny", "--dataset", f"folder:{tmp_path / 'none'}",
                                 "--out", str(tmp_path / "zs")], env={"COLUMNS": "200"})
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert "for --dataset: " in errors[0] and "none: no such folder" in errors[0] and "Traceback" not in result.output
