"""`grounding export`: the encoders as ONNX (run in onnxruntime) and TorchScript graphs give the
model's own features to 1e-4, for a ViT, a ResNet and the built-in model's packaged towers, and
the exported tokenizer.json gives the model's own ids on its own."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

import grounding
from grounding.config import preset
from grounding.formats.export import export

TEXTS = ["a red circle", "two blue squares above a small green triangle", "Zebra!  crossing"]


def _model(kind: str):
    if kind == "builtin":
        return grounding.load("lit-minilm-effnet")
    config = preset("tiny")
    if kind == "resnet":
        config.vision.kind, config.vision.layers, config.vision.width, config.vision.heads = "resnet", (1, 1, 1, 1), 8, 4
        config.vision.image_size = 64
    torch.manual_seed(0)
    return grounding.create_model(config).eval()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["vit", "resnet", "builtin"])
def test_onnx_encoders_in_onnxruntime_give_our_features(kind, tmp_path):
    from tokenizers import Tokenizer

    model = _model(kind)
    export(model, tmp_path / "out")
    size = model.config.vision.image_size
    pixels = torch.randn(3, 3, size, size)  # another batch size than the export's example
    image = ort.InferenceSession(str(tmp_path / "out" / "image_encoder.onnx"))
    text = ort.InferenceSession(str(tmp_path / "out" / "text_encoder.onnx"))
    standalone = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    encoded = standalone.encode_batch(TEXTS)
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    assert (ids == model.tokenizer(TEXTS).numpy()).all()
    with torch.no_grad():
        assert np.abs(image.run(None, {"pixels": pixels.numpy()})[0] - model.encode_image(pixels).numpy()).max() < 1e-4
        ours = model.encode_text(torch.from_numpy(ids)).numpy()
        assert np.abs(text.run(None, {"ids": ids})[0] - ours).max() < 1e-4
        length = max(sum(e.attention_mask) for e in encoded)  # the padding after the longest text cut off
        assert length < ids.shape[1] and np.abs(text.run(None, {"ids": ids[:, :length]})[0] - ours).max() < 1e-4


def test_torchscript_encoders_give_our_features(tmp_path):
    model = _model("vit")
    export(model, tmp_path / "out", "torchscript")
    image = torch.jit.load(str(tmp_path / "out" / "image_encoder.pt"))
    text = torch.jit.load(str(tmp_path / "out" / "text_encoder.pt"))
    pixels, ids = torch.randn(3, 3, 32, 32), model.tokenizer(TEXTS)
    with torch.no_grad():
        assert (image(pixels) - model.encode_image(pixels)).abs().max() < 1e-4
        assert (text(ids) - model.encode_text(ids)).abs().max() < 1e-4


def test_an_lstm_text_tower_is_refused_with_a_reason(tmp_path):
    config = preset("tiny")
    config.text.kind = "lstm"
    with pytest.raises(ValueError, match="LSTM text tower does not export"):
        export(grounding.create_model(config), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_export_command(tmp_path):
    from typer.testing import CliRunner

    from grounding.interfaces.cli import app
    from grounding.saved import save_model

    save_model(_model("vit"), tmp_path / "model")
    result = CliRunner().invoke(app, ["export", str(tmp_path / "model"), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"image_encoder.onnx", "text_encoder.onnx",
                                                             "tokenizer.json", "preprocess.json"}
