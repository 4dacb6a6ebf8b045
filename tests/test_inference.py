"""Inference as a user runs it: `classify` over folders and patterns in batches with workers, as
text, JSON or CSV, the built-in model by default; and bf16 inference within its stated tolerance
of fp32 (cosine 0.999, the same top-1 on 99% of images)."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import grounding
from grounding.build import create_model
from grounding.config import preset
from grounding.data.synthetic import World
from grounding.interfaces.cli import app
from grounding.runtime import Runtime
from grounding.saved import save_model

runner = CliRunner()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes") / "photos"
    (folder / "more").mkdir(parents=True)
    rng = np.random.default_rng(0)
    world = World()
    for i in range(7):
        world.sample(rng, "one").render(48).save(folder / ("more" if i > 4 else "") / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "m"
    save_model(create_model(preset("tiny")), folder)
    return folder


def test_classify_reads_folders_and_patterns_in_batches_and_writes_csv(scenes, saved):
    args = ["classify", str(scenes), "--model", str(saved), "--labels", "red circle,blue square,green triangle",
            "--top-k", "2", "--batch-size", "2", "--workers", "2", "--device", "cpu"]
    as_csv = runner.invoke(app, args + ["--csv"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    files = sorted(str(p) for p in scenes.rglob("*.png"))
    assert [r["path"] for r in rows] == files  # every image, in order, across batches and workers
    assert all(r["label_1"] and 0 <= float(r["probability_2"]) <= float(r["probability_1"]) <= 1 for r in rows)
    as_json = runner.invoke(app, args + ["--json"])
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [r["path"] for r in records] == files
    for row, record in zip(rows, records):  # the same answers, one way or the other
        assert row["label_1"] == record["top"][0]["label"]
        assert float(row["probability_1"]) == pytest.approx(record["top"][0]["probability"], abs=1e-6)
    pattern = runner.invoke(app, ["classify", str(scenes / "*.png"), "--model", str(saved), "--labels", "a,b"])
    assert pattern.exit_code == 0 and len(pattern.stdout.splitlines()) == 5  # the pattern does not cross folders
    nothing = runner.invoke(app, ["classify", str(scenes / "*.gif"), "--model", str(saved), "--labels", "a,b"])
    assert nothing.exit_code == 2 and "no file matches this pattern" in nothing.output


def test_classify_uses_the_builtin_model_by_default(scenes):
    # PyTorch's path: its onnxruntime one (and the export it needs first) is tests/test_exported.py's
    result = runner.invoke(app, ["classify", str(scenes / "0.png"), "--labels", "a red circle,a cat", "--json",
                                 "--engine", "torch"])
    assert result.exit_code == 0 and "random" not in result.output, result.output
    assert len(json.loads(result.stdout)["top"]) == 2


@pytest.mark.parametrize("name", [pytest.param("ViT-B-32", marks=pytest.mark.slow),
                                  pytest.param("RN50", marks=pytest.mark.slow), "lit-minilm-effnet"])
def test_bf16_embeddings_stay_within_cosine_0999_of_fp32(name, openai_bpe, monkeypatch):
    monkeypatch.setenv("GROUNDING_OPENAI_BPE", str(openai_bpe))
    torch.manual_seed(0)
    # its own copy of the built-in model: bf16 converts the weights in place
    model = grounding.load(name) if name == "lit-minilm-effnet" else create_model(preset(name)).eval()
    size = model.config.vision.image_size
    pixels = torch.randn(4, 3, size, size)
    ids = model.tokenizer(["a photo of a cat", "a red circle left of a blue square", "spoon"])
    with torch.no_grad():
        image, text = model.encode_image(pixels, True), model.encode_text(ids, True)
        fast = Runtime.resolve("cpu", "bf16").prepare(model)
        assert next(fast.parameters()).dtype == torch.bfloat16  # converted once, not autocast
        fast_image, fast_text = fast.encode_image(pixels, True), fast.encode_text(ids, True)
    assert fast_image.dtype == fast_text.dtype == torch.float32
    assert (image * fast_image).sum(-1).min() >= 0.999 and (text * fast_text).sum(-1).min() >= 0.999


def _top(folder, spec, precision, out):
    """Each image's best labels, [[label, probability], ...], best first."""
    result = runner.invoke(app, ["zeroshot", "--model", str(folder), "--dataset", spec, "--out", str(out),
                                 "--workers", "0", "--device", "cpu", "--precision", precision, "--no-cache"])
    assert result.exit_code == 0, result.output
    return [json.loads(r)["top"] for r in (out / "predictions.jsonl").read_text().splitlines()]


def test_bf16_changes_zero_shot_top1_only_where_fp32_was_all_but_tied(trained_tiny, tmp_path):
    fp32, bf16 = (_top(trained_tiny[1], "synthetic:per_label=10", p, tmp_path / p) for p in ("fp32", "bf16"))
    changed = [a[:2] for a, b in zip(fp32, bf16) if a[0][0] != b[0][0]]
    assert len(fp32) == 240 and len(changed) <= 0.02 * 240, changed
    # (measured: 3 on the host of 2026-12-06, fp32's two best labels 0.05 to 0.5 points apart there)
    assert all(first[1] - second[1] < 0.01 for first, second in changed), changed


@pytest.mark.slow
def test_auto_keeps_the_builtin_model_in_fp32_since_bf16_changes_its_answers(tmp_path, builtin):
    fp32, bf16 = (_top("lit-minilm-effnet", "synthetic:per_label=5", p, tmp_path / p) for p in ("fp32", "bf16"))
    agree = np.mean([a[0][0] == b[0][0] for a, b in zip(fp32, bf16)])
    # the guard fails for it (measured 95.8%, 5 of 120 changed, on 2026-12-07's host; 82% on flags): why auto
    # leaves it alone
    assert agree < 0.99
    model = builtin
    chosen = Runtime.resolve("cpu", "auto").for_model(model)
    assert chosen.precision == "fp32"
    assert Runtime.resolve("cpu", "bf16").for_model(model).precision == "bf16"  # asked for by name, it is done


def test_auto_precision_says_what_it_chose(saved, scenes):
    result = runner.invoke(app, ["classify", str(scenes / "0.png"), "--model", str(saved), "--labels", "a,b",
                                 "--precision", "auto", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    chosen = Runtime.resolve("cpu", "auto")
    assert f"precision: {chosen.precision} ({chosen.why})" in result.output


@pytest.mark.slow
def test_a_compiled_image_encoder_gives_the_same_answers(scenes, saved):
    args = ["classify", str(scenes), "--model", str(saved), "--labels", "red circle,blue square", "--json",
            "--batch-size", "3", "--device", "cpu"]
    plain, compiled = runner.invoke(app, args), runner.invoke(app, args + ["--compile"])
    assert plain.exit_code == compiled.exit_code == 0, compiled.output
    for a, b in zip(plain.stdout.splitlines(), compiled.stdout.splitlines(), strict=True):
        a, b = json.loads(a), json.loads(b)  # batches of 3, 3 and 1 images: one compile serves every size
        assert a["path"] == b["path"] and a["top"][0]["label"] == b["top"][0]["label"]
        assert a["top"][0]["probability"] == pytest.approx(b["top"][0]["probability"], abs=1e-4)
