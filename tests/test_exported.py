"""`grounding classify` in onnxruntime (inference/onnx.py): an exported folder, and the built-in
model's exported copy, give PyTorch's probabilities to 1e-4 without importing PyTorch; the copy is
made once, on first use, and a damaged one is made again."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from grounding.build import create_model
from grounding.builtin import BUILTIN
from grounding.config import preset
from grounding.data.synthetic import World
from grounding.inference import onnx as exported
from grounding.formats.export import export
from grounding.interfaces.cli import app
from grounding.saved import save_model

runner = CliRunner()
LABELS = "red circle,blue square,green triangle,a cat"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A saved tiny model, its export, and four synthetic images beside a file that is no image."""
    root = tmp_path_factory.mktemp("exported")
    torch.manual_seed(0)
    model = create_model(preset("tiny")).eval()
    save_model(model, root / "model")
    export(model, root / "onnx")
    rng = np.random.default_rng(0)
    for i in range(4):
        World().sample(rng, "one").render(48).save(root / f"{i}.png")
    (root / "broken.png").write_bytes(b"not a png")
    return root


def _probabilities(args: list[str]) -> dict[str, dict[str, float]]:
    result = runner.invoke(app, ["classify", *args, "--labels", LABELS, "--json", "--top-k", "4"])
    assert result.exit_code == 0, result.output
    return {(row := json.loads(line))["path"]: {t["label"]: t["probability"] for t in row["top"]}
            for line in result.stdout.splitlines()}


def _close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(abs(a[p][label] - b[p][label]) < 1e-4 for p in a for label in a[p])


def test_an_exported_folder_classifies_as_its_model_does(world):
    images = [str(world / f"{i}.png") for i in range(4)]
    ours = _probabilities([*images, "--model", str(world / "model")])
    onnx = _probabilities([*images, "--model", str(world / "onnx"), "--batch-size", "3"])  # two batches
    assert _close(ours, onnx)
    again = _probabilities([*images, "--model", str(world / "onnx")])  # the labels' classifier from the cache
    assert _close(onnx, again)


def test_an_exported_folder_skips_a_bad_image_naming_it(world):
    result = runner.invoke(app, ["classify", str(world / "0.png"), str(world / "broken.png"), "--model",
                                 str(world / "onnx"), "--labels", "a,b"])
    assert result.exit_code == 1
    assert "0.png: " in result.stdout and "skipped: " in result.output and "broken.png" in result.output


def test_an_exported_folder_runs_without_importing_torch(world, tmp_path):
    args = ["classify", str(world / "0.png"), "--model", str(world / "onnx"), "--labels", "a,b"]
    script = ("import sys; from grounding.interfaces.cli import app\n"
              f"try: app({args!r})\n"
              "except SystemExit as e: assert e.code in (0, None), e.code\n"
              "assert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, GROUNDING_CACHE=str(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert "0.png: " in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--engine", "torch"], "is an exported model, which runs in onnxruntime"),
    (["--precision", "bf16"], "drop --precision bf16"),
    (["--device", "cuda"], "drop --device cuda"),
])
def test_an_exported_folder_refuses_what_only_pytorch_does(world, args, message):
    result = runner.invoke(app, ["classify", str(world / "0.png"), "--model", str(world / "onnx"), "--labels", "a,b",
                                 *args])
    assert result.exit_code == 2 and message in result.output


def test_a_damaged_exported_folder_is_one_error_naming_it(world, tmp_path):
    damaged = tmp_path / "onnx"
    damaged.mkdir()
    for name in exported.FILES:
        (damaged / name).write_bytes((world / "onnx" / name).read_bytes())
    (damaged / "image_encoder.onnx").write_bytes(b"\0" * 100)
    result = runner.invoke(app, ["classify", str(world / "0.png"), "--model", str(damaged), "--labels", "a,b"])
    assert result.exit_code == 2 and "not a readable exported model" in result.output
    assert "grounding export MODEL" in result.output


def test_a_built_in_model_gets_its_copy_on_first_use_and_a_damaged_copy_again(world, monkeypatch):
    """The tiny saved model stands in for the built-in one (same code path, a fifth of the export time)."""
    monkeypatch.setitem(BUILTIN, "tiny-builtin", world / "model")
    images = [str(world / f"{i}.png") for i in range(4)]
    first = runner.invoke(app, ["classify", *images, "--model", "tiny-builtin", "--labels", LABELS, "--json"])
    assert first.exit_code == 0 and "preparing the built-in model for onnxruntime" in first.output, first.output
    copy = exported.builtin_copy("tiny-builtin")
    assert exported.is_exported(copy) and not list(copy.parent.glob(".tiny-builtin*"))  # no scratch left
    assert _close(_probabilities([*images, "--model", "tiny-builtin", "--engine", "torch"]),
                  _probabilities([*images, "--model", "tiny-builtin"]))
    (copy / "text_encoder.onnx").write_bytes(b"cut short")
    again = runner.invoke(app, ["classify", images[0], "--model", "tiny-builtin", "--labels", "a,b"])
    assert again.exit_code == 0 and "preparing the built-in model" in again.output
    assert "not a readable exported model" in again.output and "removed it, to be made again" in again.output
    assert exported.prepared_builtin("tiny-builtin") is not None


def test_a_built_in_copy_is_not_made_for_a_run_pytorch_must_do(world, monkeypatch):
    monkeypatch.setitem(BUILTIN, "tiny-builtin", world / "model")
    for args in (["--engine", "torch"], ["--precision", "bf16"]):
        result = runner.invoke(app, ["classify", str(world / "0.png"), "--model", "tiny-builtin", "--labels", "a,b",
                                     *args])
        assert result.exit_code == 0 and "preparing" not in result.output, result.output
    assert not exported.builtin_copy("tiny-builtin").exists()


def test_engine_onnx_makes_the_built_in_copy_first_and_takes_any_number_of_images(world, monkeypatch):
    monkeypatch.setitem(BUILTIN, "tiny-builtin", world / "model")
    images = [str(world / f"{i}.png") for i in range(4)]
    onnx = runner.invoke(app, ["classify", *images, "--model", "tiny-builtin", "--labels", LABELS, "--json",
                               "--engine", "onnx", "--batch-size", "2"])
    assert onnx.exit_code == 0 and "preparing the built-in model" in onnx.output, onnx.output
    assert len(onnx.stdout.splitlines()) == 4 and exported.prepared_builtin("tiny-builtin") is not None


def test_engine_onnx_wants_an_exported_folder_or_the_built_in_model(world):
    result = runner.invoke(app, ["classify", str(world / "0.png"), "--model", str(world / "model"), "--labels", "a,b",
                                 "--engine", "onnx"])
    assert result.exit_code == 2 and f"grounding export {world / 'model'} OUT" in result.output


def test_import_grounding_and_its_version_need_no_torch():
    done = subprocess.run([sys.executable, "-c", "import sys, grounding; grounding.__version__; "
                           "assert 'torch' not in sys.modules; grounding.load; assert 'torch' in sys.modules"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_the_built_in_model_classifies_the_same_in_onnxruntime(tmp_path):
    """The shipped model end to end, in fresh processes: the first run makes the copy, the next
    runs in onnxruntime, and both give PyTorch's probabilities to 1e-4."""
    from skimage import data as photos
    from PIL import Image

    Image.fromarray(photos.coffee()).save(tmp_path / "coffee.jpg")
    env = dict(os.environ, GROUNDING_CACHE=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "grounding", "classify", str(tmp_path / "coffee.jpg"), "--labels",
               "coffee,cat,rocket,astronaut,dog,car", "--json", "--top-k", "6"]

    def run(*extra: str) -> tuple[dict, str]:
        done = subprocess.run(command + list(extra), capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        return {t["label"]: t["probability"] for t in json.loads(done.stdout)["top"]}, done.stderr

    first, said = run()
    assert "preparing the built-in model" in said
    onnx, said = run()
    assert "preparing" not in said
    torch_path, _ = run("--engine", "torch")
    assert max(abs(onnx[k] - torch_path[k]) for k in torch_path) < 1e-4
    assert max(abs(first[k] - torch_path[k]) for k in torch_path) < 1e-4
    assert max(onnx, key=onnx.get) == "coffee"


def test_an_exported_model_refuses_what_a_classifier_cannot_be_made_of(world):
    model = exported.ExportedModel(world / "onnx")
    for labels, templates, message in (([], ["a {}."], "no labels given"),
                                       (["a", "b"], ["a {} next to a {}."], "one '{}' where the label goes")):
        with pytest.raises(ValueError, match=message):
            model.classifier(labels, templates)


def test_an_exported_folder_repairs_text_as_its_model_does(world):
    """Labels with broken unicode and HTML entities: the runner cleans them as the tokenizer does."""
    labels = "red circle,Ã©tÃ© &amp; caf&eacute;,ﬁne ＡＢＣ,blue square"
    runs = [runner.invoke(app, ["classify", str(world / "0.png"), "--model", str(world / folder), "--labels",
                                labels, "--json", "--top-k", "4"]) for folder in ("model", "onnx")]
    assert all(r.exit_code == 0 for r in runs), [r.output for r in runs]
    ours, onnx = ({t["label"]: t["probability"] for t in json.loads(r.stdout)["top"]} for r in runs)
    assert ours.keys() == onnx.keys() and all(abs(ours[k] - onnx[k]) < 1e-4 for k in ours)
