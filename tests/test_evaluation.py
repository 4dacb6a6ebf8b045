import json
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from grounding.data.examples import warn_label_collisions
from grounding.data.datasets import open_dataset
from grounding.data.sources import MissingPackageError
from grounding.evaluation import probe as probes
from grounding.evaluation.run import evaluate_zero_shot, run_probe
from grounding.inference import encode
from grounding.inference.templates import TEMPLATE_SETS, read_templates
from grounding.interfaces.cli import app

runner = CliRunner()


def make_folder(root, bad=True):
    for name, colour in [("red_things", (220, 30, 30)), ("blue_things", (30, 30, 220))]:
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 30), colour).save(root / name / f"{i}.png")
    if bad:
        (root / "red_things" / "broken.png").write_bytes(b"")
    (root / "classes.txt").write_text("red_things\tred thing\nblue_things,blue thing\n")
    return root


def test_folder_dataset_reads_classes_txt(tmp_path):
    ds = open_dataset(f"folder:{make_folder(tmp_path / 'f')}")
    assert ds.classes == ["blue thing", "red thing"]
    assert len(ds) == 7 and not ds.multi_label
    assert sorted({t for (t,) in ds.targets}) == [0, 1]


def test_csv_dataset_with_several_labels_is_multi_label(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "data.csv").write_text("path,label\na.png,cat|dog\na.png,dog\n")
    ds = open_dataset(f"csv:{tmp_path / 'data.csv'}")
    assert ds.classes == ["cat", "dog"] and ds.targets == [(0, 1), (1,)] and ds.multi_label
    assert ds.image(0).size == (8, 8)


def test_missing_packages_name_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("GROUNDING_FASHION_MNIST", str(tmp_path / "none"))  # where each source is, overridden
    monkeypatch.setenv("GROUNDING_FLAGS", str(tmp_path / "none"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingPackageError, match="apt-get install dataset-fashion-mnist.*GROUNDING_FASHION_MNIST"):
        open_dataset("fashion-mnist")
    with pytest.raises(MissingPackageError, match="apt-get install iso-flags-png-320x240"):
        open_dataset("flags")
    with pytest.raises(MissingPackageError, match="npm pack emoji-datasource-google"):
        open_dataset("emoji:google")
    with pytest.raises(ValueError, match="'inet': unknown kind; use synthetic"):
        open_dataset("inet")
    with pytest.raises(ValueError, match="'imagenet': say which, as imagenet:DIR"):
        open_dataset("imagenet")


def test_emoji_package_layout_with_skin_tones_folded(tmp_path):
    root = tmp_path / "node_modules" / "emoji-datasource-google"
    (root / "img" / "google" / "64").mkdir(parents=True)
    entries = [
        {"name": "GRINNING FACE", "image": "1f600.png", "category": "Smileys & Emotion", "sort_order": 1,
         "has_img_google": True},
        {"name": "WAVING HAND SIGN", "image": "1f44b.png", "category": "People & Body", "sort_order": 2,
         "has_img_google": True, "skin_variations": {"1F3FB": {"image": "1f44b-1f3fb.png", "has_img_google": True}}},
        {"name": "NO GOOGLE IMAGE", "image": "0000.png", "category": "Symbols", "sort_order": 3,
         "has_img_google": False},
    ]
    (root / "emoji.json").write_text(json.dumps(entries))
    for image in ("1f600.png", "1f44b.png", "1f44b-1f3fb.png"):
        Image.new("RGBA", (64, 64)).save(root / "img" / "google" / "64" / image)
    ds = open_dataset(f"emoji:google:{tmp_path / 'node_modules'}")
    assert ds.classes == ["grinning face", "waving hand sign"]
    assert ds.categories == ["Smileys & Emotion", "People & Body"]
    assert ds.image(1).mode == "RGB"


@pytest.mark.parametrize("spec,count", [("fashion-mnist", 10), ("flags", 200)])
def test_debian_datasets_when_installed(spec, count):
    try:
        ds = open_dataset(spec)
    except MissingPackageError as e:
        pytest.skip(f"{e} (README: Datasets)")
    assert len(ds.classes) >= count and ds.image(0).mode == "RGB"


def test_colliding_labels_warn():
    with pytest.warns(UserWarning, match="read the same once normalised"):
        warn_label_collisions(["T-shirt", "t shirt", "dress"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_label_collisions(["shirt", "t-shirt"])


def test_zero_shot_evaluation_writes_summary_predictions_and_report(tiny_model, tmp_path):
    ds = open_dataset(f"folder:{make_folder(tmp_path / 'f')}")
    out = tmp_path / "eval"
    summary = evaluate_zero_shot(tiny_model, ds, ("a {}.",), out, batch_size=4, workers=2, cards=True,
                                 cache=False, show_progress=False)
    assert summary["examples"] == 6 and summary["skipped"] == 1
    assert "broken.png" in summary["skipped_files"][0]
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 6
    for line in lines:
        probs = dict(line["top"])  # both labels: their probabilities sum to one
        assert probs.keys() == {"red thing", "blue thing"} and sum(probs.values()) == pytest.approx(1)
        assert line["probability"] == pytest.approx(probs[line["label"]])
        assert line["rank"] == ("1/2" if max(probs, key=probs.get) == line["label"] else "2/2")
    top1 = np.mean([line["rank"] == "1/2" for line in lines])
    assert summary["top1"] == pytest.approx(top1)
    page = (out / "report.html").read_text()
    assert "correct rank:" in page and "data:image/png;base64," in page
    assert not re.search(r"(src|href)=[\"']https?:", page)  # self-contained
    assert len(list((out / "cards").glob("*.png"))) == 6


def test_multi_label_synthetic_reports_mean_average_precision(trained_tiny, tiny_model, tmp_path):
    ds = open_dataset("synthetic:multi,per_label=2,size=32")

    def mean_ap(model, name):
        summary = evaluate_zero_shot(model, ds, ("a {}.",), tmp_path / name, workers=0, cache=False,
                                     show_progress=False)
        assert summary["multi_label"] and set(summary["per_label_ap"]) == set(ds.classes)
        return summary["mean_average_precision"]

    positive_rate = np.mean([len(t) for t in ds.targets]) / len(ds.classes)  # what random scores' AP comes to
    trained, untrained = mean_ap(trained_tiny[0], "trained"), mean_ap(tiny_model, "untrained")
    assert trained > 2 * positive_rate and trained > untrained  # measured 0.26, against 0.08 and 0.14


def test_classifier_cache_skips_encoding_the_second_time(tiny_model, monkeypatch):
    first = encode.cached_text_classifier(tiny_model, ["red circle", "blue square"], ("a {}.",))

    def fail(*args, **kwargs):
        raise AssertionError("encoded again")

    monkeypatch.setattr(encode, "text_classifier", fail)
    again = encode.cached_text_classifier(tiny_model, ["red circle", "blue square"], ("a {}.",))
    assert torch.equal(first, again)
    with pytest.raises(AssertionError, match="encoded again"):  # other labels: a new key
        encode.cached_text_classifier(tiny_model, ["red circle", "green star"], ("a {}.",))


def test_templates_file(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("# mine\na photo of a {}.\n\nthe {} itself\n")
    assert read_templates(path) == ("a photo of a {}.", "the {} itself")
    for bad in ("no placeholder here", "a {} of a {}", "a {0} photo", "a {label}"):
        path.write_text(bad + "\n")
        with pytest.raises(ValueError, match="these do not"):
            read_templates(path)


def test_probe_separates_separable_features_and_picks_k_shots():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 3
    y = np.repeat(np.arange(3), 40)
    x = centres[y] + rng.normal(size=(120, 8)) * 0.3
    result = probes.probe(x, y, x, y, 3, shots=4)
    assert result["test_accuracy"] == 1.0 and result["train_examples"] == 12
    picks = probes.k_shot(y, 2, seed=1)
    assert np.bincount(y[picks]).tolist() == [2, 2, 2]


def test_probe_fit_matches_the_optimum():
    # at the optimum the gradient of mean CE + l2 |W|^2 vanishes
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(60, 5)), rng.integers(0, 3, 60)
    w, b = probes.fit(x, y, 3, l2=0.1)
    w, b = w.requires_grad_(), b.requires_grad_()
    xt = torch.as_tensor(x)
    loss = torch.nn.functional.cross_entropy(xt @ w + b, torch.as_tensor(y)) + 0.1 * (w * w).sum()
    grads = torch.autograd.grad(loss, (w, b))
    assert max(g.abs().max().item() for g in grads) < 1e-6


def test_run_probe_on_synthetic(tiny_model, tmp_path):
    spec = "synthetic:per_label=6,size=32"
    results = run_probe(tiny_model, spec, [2, None], workers=0)
    assert [r["shots"] for r in results] == [2, "all"]
    zero_shot = evaluate_zero_shot(tiny_model, open_dataset(spec), TEMPLATE_SETS["synthetic"], tmp_path / "z", workers=0,
                                   show_progress=False)["top1"]
    assert all(abs(r["zero_shot_top1"] - zero_shot) < 1e-9 for r in results)  # the same test images
    # 144 test images of 24 labels: chance is 4.2%, and 5 standard deviations above it is 12.5% (measured: 28-30%)
    chance = 1 / 24
    assert all(r["test_accuracy"] > chance + 5 * (chance * (1 - chance) / 144) ** 0.5 for r in results)


def test_classify_command_prints_top_labels(tmp_path):
    import grounding
    from grounding.saved import save_model

    model = grounding.load("tiny")
    save_model(model, tmp_path / "m")
    Image.new("RGB", (50, 50), (200, 20, 20)).save(tmp_path / "x.png")
    result = runner.invoke(app, ["classify", str(tmp_path / "x.png"), "--model", str(tmp_path / "m"),
                                 "--labels", "red circle, blue square,green star", "--top-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert len(row["top"]) == 2 and row["top"][0]["probability"] >= row["top"][1]["probability"]
    (tmp_path / "bad.png").write_bytes(b"junk")
    result = runner.invoke(app, ["classify", str(tmp_path / "bad.png"), "--model", str(tmp_path / "m"),
                                 "--labels", "a,b"])
    assert result.exit_code == 1 and "bad.png" in result.output
    result = runner.invoke(app, ["classify", str(tmp_path / "x.png"), "--model", str(tmp_path / "m"), "--labels", " , "])
    assert result.exit_code != 0 and "empty" in result.output


def test_a_file_name_that_is_not_utf8_reaches_the_report_as_its_own_bytes(tiny_model, tmp_path):
    import os

    for label, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (tmp_path / "f" / label).mkdir(parents=True)
        Image.new("RGB", (16, 16), colour).save(os.fsencode(tmp_path / "f" / label) + b"/caf\xe9.png", format="PNG")
    summary = evaluate_zero_shot(tiny_model, open_dataset(f"folder:{tmp_path / 'f'}"), ("a {}.",), tmp_path / "out",
                                 workers=0, cache=False, show_progress=False)
    assert summary["examples"] == 2
    assert b"caf\xe9.png" in (tmp_path / "out" / "report.html").read_bytes()
    assert len((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()) == 2
