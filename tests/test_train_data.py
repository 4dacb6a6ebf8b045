"""Training on your own data: every --data kind, workers, exact resume, fine-tuning, bad data,
validation while training, and the options' one home."""
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

import grounding
from grounding.config import preset
from grounding.data.batches import PairBatches, batch_loader
from grounding.data.datasets import open_dataset
from grounding.data.images import TrainTransform
from grounding.data.pairs import Mixture, StreamPosition, open_pairs
from grounding.data.synthetic import World
from grounding.evaluation.metrics import topk_accuracy
from grounding.evaluation.predict import predict_zero_shot
from grounding.interfaces.cli import app
from grounding.training.feed import BadDataError
from grounding.training.options import TrainConfig
from grounding.training.trainer import train

CLI = [sys.executable, "-c", "from grounding.interfaces.cli import app; app()"]
runner = CliRunner()


def _scenes(n: int, seed: int = 3):
    return World().batch(seed, 0, n)


@pytest.fixture(scope="module")
def captioned(tmp_path_factory):
    """40 JPEG scenes with two captions each in a CSV, the same images with .txt captions in a
    folder, and three webdataset shards made with webdataset's own writer."""
    import webdataset as wds

    root = tmp_path_factory.mktemp("captioned")
    (root / "folder").mkdir()
    rows = []
    for i, scene in enumerate(_scenes(40)):
        name = f"img{i:02d}.jpg"
        scene.render(80).save(root / name)
        scene.render(80).save(root / "folder" / name)
        (root / "folder" / f"img{i:02d}.txt").write_text(scene.caption() + "\n", encoding="utf-8")
        rows += [(name, scene.caption()), (name, f"a picture of {scene.caption()}")]
    with open(root / "pairs.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("image", "caption"), *rows])
    for shard in range(3):
        with wds.TarWriter(str(root / f"shard-{shard:03d}.tar")) as sink:
            for i, scene in enumerate(_scenes(16, seed=10 + shard)):
                data = io.BytesIO()
                scene.render(80).save(data, format="JPEG")
                sink.write({"__key__": f"s{shard}-{i:03d}", "jpg": data.getvalue(), "txt": scene.caption()})
    return root


def _options(**changes) -> TrainConfig:
    base = dict(architecture="tiny", steps=4, batch_size=16, warmup=1, lr=1e-3, save_every=2, workers=0, log_every=0.0)
    return TrainConfig(**{**base, **changes})


@pytest.mark.parametrize("spec", ["csv:{root}/pairs.csv", "folder:{root}/folder", "tar:{root}/shard-{{000..002}}.tar",
                                  "csv:{root}/pairs.csv+tar:{root}/shard-{{000..002}}.tar@0.25+synthetic@0.25"])
def test_every_data_kind_trains(captioned, tmp_path, spec):
    spec = spec.format(root=captioned)
    model = train(None, _options(data=spec, workers=2), tmp_path / "run", show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) and r["skipped"] == 0 for r in rows)
    loaded = grounding.load(tmp_path / "run")
    assert (loaded.config.vision, loaded.config.text) == (model.config.vision, model.config.text)


def test_a_vocabulary_is_learned_from_the_training_captions(tmp_path):
    (tmp_path / "pairs.csv").write_text("image,caption\n" + "".join(
        f"{i}.png,a photograph of zebra{i % 3} crossing\n" for i in range(12)))
    for i in range(12):
        Image.new("RGB", (40, 40), (20 * i, 0, 0)).save(tmp_path / f"{i}.png")
    model = train(None, _options(data=f"csv:{tmp_path / 'pairs.csv'}", steps=1), tmp_path / "run", show_progress=False)
    assert len(model.tokenizer.encode("zebra1 crossing")) <= 3  # whole words in its merges
    assert len(model.tokenizer.encode("a red circle")) > 3  # not the synthetic world's vocabulary


def test_mixture_weights_set_each_batchs_share():
    mixture = Mixture([_Sized(900), _Sized(100), _Sized(0, streaming=True)], [None, None, 0.3])
    assert mixture.slots(64) == [40, 5, 19]
    assert sum(Mixture([_Sized(5), _Sized(7)], [0.5, 0.5]).slots(33)) == 33
    with pytest.raises(ValueError, match="nothing for the sources"):
        Mixture([_Sized(5), _Sized(7)], [1.0, None]).shares()
    with pytest.raises(ValueError, match="unknown kind; use synthetic, csv:PATH"):
        open_pairs("photos/")


class _Sized:
    def __init__(self, n: int, streaming: bool = False):
        self.n, self.streaming = n, streaming

    def __len__(self) -> int:
        return self.n


def test_a_batch_is_the_same_with_any_number_of_workers(captioned):
    model = grounding.create_model(preset("tiny"))
    mixture = open_pairs(f"csv:{captioned / 'pairs.csv'}")
    transform = TrainTransform(32, (0.5,) * 3, (0.5,) * 3)

    def batches(workers):
        data = PairBatches(mixture, model.tokenizer, transform, 8, 0, 3, 7, max(1, workers))
        return list(batch_loader(data, workers))

    alone, shared = batches(0), batches(2)
    assert [b.step for b in shared] == [3, 4, 5, 6]
    for a, b in zip(alone, shared):
        assert torch.equal(a.pixels, b.pixels) and torch.equal(a.ids, b.ids)


def test_each_rank_builds_its_slice_of_the_global_batch(captioned):
    """What makes two processes train as one: rank r's examples, crops and captions are rows
    r*n..(r+1)*n of the batch one process builds."""
    model = grounding.create_model(preset("tiny"))
    mixture = open_pairs(f"csv:{captioned / 'pairs.csv'}")
    transform = TrainTransform(32, (0.5,) * 3, (0.5,) * 3)

    def batch(rank, ranks):
        return next(iter(batch_loader(PairBatches(mixture, model.tokenizer, transform, 8, 0, 5, 6, 1,
                                                  rank=rank, ranks=ranks), 0)))

    whole, parts = batch(0, 1), [batch(r, 2) for r in (0, 1)]
    assert torch.equal(whole.pixels, torch.cat([p.pixels for p in parts]))
    assert torch.equal(whole.ids, torch.cat([p.ids for p in parts]))


def test_resampled_streams_draw_shards_with_replacement_and_resume_exactly(captioned):
    urls = [str(captioned / f"shard-{i:03d}.tar") for i in range(3)]
    source = open_pairs(f"tar:{captioned}/shard-{{000..002}}.tar", shuffle_buffer=8, resampled=True).sources[0]
    streams = 4  # more streams than shards: only a resampled source allows it

    def read(stream, n, position=None):
        got = []
        for sample, at in source.samples(0, stream, streams, position or StreamPosition(), []):
            got.append((sample.key, at))
            if len(got) == n:
                return got

    first = read(0, 40)  # 16 samples a shard: several rounds of draws
    assert {key.split(":")[0] for key, _ in first} <= set(urls)
    assert read(1, 40) != first  # each stream draws its own shards
    again = read(0, 15, StreamPosition(**vars(first[24][1])))
    assert [key for key, _ in again] == [key for key, _ in first[25:40]]


def test_samples_sets_the_run_length(captioned, tmp_path):
    spec = f"tar:{captioned}/shard-{{000..002}}.tar"
    train(None, _options(data=spec, samples=40, batch_size=8, resampled=True, workers=2), tmp_path / "run",
          show_progress=False)
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 5
    with pytest.raises(ValueError, match="not with --epochs"):
        _options(samples=10, epochs=1).check()


def _kill_at_step(args: list[str], out, step: int) -> None:
    killed = subprocess.Popen(CLI + args + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = out / "checkpoints" / f"step-{step:07d}"
    deadline = time.time() + 120
    while not target.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait()


@pytest.mark.slow
@pytest.mark.parametrize("data", ["csv:{root}/pairs.csv", "tar:{root}/shard-{{000..002}}.tar"])
def test_resume_after_sigkill_with_workers_is_bit_exact(captioned, tmp_path, data):
    args = ["train", "--architecture", "tiny", "--data", data.format(root=captioned), "--steps", "12", "--batch-size", "16",
            "--save-every", "3", "--warmup", "2", "--workers", "2"]
    subprocess.run(CLI + args + ["--out", str(tmp_path / "whole")], check=True, capture_output=True)
    _kill_at_step(args, tmp_path / "killed", 6)
    assert not (tmp_path / "killed" / "checkpoints" / "step-0000012").exists(), "the run finished before the kill"
    subprocess.run(CLI + ["train", "--resume", str(tmp_path / "killed")], check=True, capture_output=True)
    whole = load_file(tmp_path / "whole" / "model.safetensors")
    resumed = load_file(tmp_path / "killed" / "model.safetensors")
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


@pytest.mark.parametrize("stop, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_says_how_to_resume(captioned, tmp_path, stop, code):
    args = ["train", "--architecture", "tiny", "--data", f"csv:{captioned / 'pairs.csv'}", "--steps", "100000",
            "--batch-size", "8", "--save-every", "100000", "--workers", "0", "--out", str(tmp_path / "run")]
    running = subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 60
    while (not metrics.exists() or metrics.stat().st_size == 0) and time.time() < deadline:
        time.sleep(0.05)
    running.send_signal(stop)
    _, err = running.communicate(timeout=60)
    assert running.returncode == code
    saved = sorted((tmp_path / "run" / "checkpoints").glob("step-*"))
    assert len(saved) == 1 and f"grounding train --resume {tmp_path / 'run'}" in err
    assert "Traceback" not in err


def test_plain_progress_lines_when_output_is_not_a_terminal(captioned, tmp_path):
    result = subprocess.run(CLI + ["train", "--architecture", "tiny", "--data", f"csv:{captioned / 'pairs.csv'}", "--steps",
                                   "3", "--batch-size", "8", "--workers", "0", "--log-every", "0",
                                   "--out", str(tmp_path / "run")], capture_output=True, text=True, check=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("train step")]
    assert [line.split()[2] for line in lines] == ["1/3", "2/3", "3/3"] and all("eta" in line for line in lines)


def test_fine_tuning_a_hugging_face_folder_keeps_its_tokenizer(captioned, tmp_path):
    config = preset("tiny")
    config.vision.activation = config.text.activation = "quick_gelu"
    torch.manual_seed(0)
    base = grounding.create_model(config).eval()
    grounding.save_model(base, tmp_path / "mine")
    assert runner.invoke(app, ["convert", str(tmp_path / "mine"), str(tmp_path / "hf"), "--to", "hf"]).exit_code == 0
    start = grounding.load(tmp_path / "hf")
    tuned = train(None, _options(init=str(tmp_path / "hf"), data=f"csv:{captioned / 'pairs.csv'}"),
                  tmp_path / "run", show_progress=False)
    assert tuned.tokenizer.bpe.get_vocab() == start.tokenizer.bpe.get_vocab()
    assert tuned.preprocess == start.preprocess
    before, after = start.state_dict(), tuned.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # a killed fine-tuning run with no checkpoint yet starts again from the --init weights
    again = train(None, None, tmp_path / "run", resume=True, show_progress=False, changes={"steps": 5})
    assert not torch.equal(again.state_dict()["text.token_embedding.weight"], before["text.token_embedding.weight"])


@pytest.fixture
def partly_bad(tmp_path):
    """20 captioned images, 3 of them corrupt and one with an empty caption."""
    rows = []
    for i, scene in enumerate(_scenes(20)):
        scene.render(48).save(tmp_path / f"{i}.png")
        rows.append((f"{i}.png", "" if i == 4 else scene.caption()))
    (tmp_path / "1.png").write_bytes(b"not an image at all")
    (tmp_path / "2.png").write_bytes((tmp_path / "3.png").read_bytes()[:60])  # truncated
    (tmp_path / "5.png").write_bytes(b"")
    with open(tmp_path / "pairs.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "caption"), *rows])
    return tmp_path / "pairs.csv"


def test_bad_examples_are_skipped_counted_and_listed(partly_bad, tmp_path):
    train(None, _options(data=f"csv:{partly_bad}", steps=8, batch_size=20, max_bad_fraction=0.5),
          tmp_path / "run", show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["skipped"] == 8 * 4  # every batch holds all 20, and 4 are unusable
    listed = [json.loads(line) for line in (tmp_path / "run" / "skipped.jsonl").read_text().splitlines()]
    assert sorted(r["key"].rsplit("/", 1)[-1] for r in listed) == ["1.png", "2.png", "4.png", "5.png"]
    reasons = " ".join(r["reason"] for r in listed)
    assert "not an image" in reasons and "truncated" in reasons and "empty" in reasons


def test_too_much_bad_data_stops_the_run_with_a_message(partly_bad, tmp_path):
    with pytest.raises(BadDataError, match=r"unusable, over --max-bad-fraction 0.01.*skipped.jsonl"):
        train(None, _options(data=f"csv:{partly_bad}", steps=8, batch_size=20), tmp_path / "run", show_progress=False)
    result = subprocess.run(CLI + ["train", "--architecture", "tiny", "--data", f"csv:{partly_bad}", "--steps", "8",
                                   "--batch-size", "20", "--workers", "0", "--out", str(tmp_path / "cli")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr and "max-bad-fraction" in result.stderr


def test_long_captions_are_truncated_and_counted(tmp_path):
    long = " ".join(["a very long caption"] * 30)
    (tmp_path / "pairs.csv").write_text("image,caption\n" + "".join(f"{i}.png,{long} {i}\n" for i in range(8)))
    for i in range(8):
        Image.new("RGB", (40, 40), (30 * i, 90, 0)).save(tmp_path / f"{i}.png")
    train(None, _options(data=f"csv:{tmp_path / 'pairs.csv'}", steps=2, batch_size=8), tmp_path / "run",
          show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["truncated"] == 16 and rows[-1]["skipped"] == 0


def test_validation_rows_are_written_and_the_best_checkpoint_kept(captioned, tmp_path):
    options = _options(data=f"csv:{captioned / 'pairs.csv'}", steps=6, save_every=100, keep=1, eval_every=2,
                       eval_pairs=8, eval_data="synthetic:per_label=2")
    train(None, options, tmp_path / "run", show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    validated = [r for r in rows if "eval/zeroshot_top1" in r]
    assert [r["step"] for r in validated] == [2, 4, 6]
    assert all(r["eval/text_to_image_r1"] <= r["eval/text_to_image_r5"] for r in validated)
    best = json.loads((tmp_path / "run" / "eval" / "best.json").read_text())
    assert best["value"] == max(r["eval/zeroshot_top1"] for r in validated)
    # the kept checkpoint, evaluated afresh, gives the figures logged at its step
    kept = grounding.load(tmp_path / "run" / "checkpoints" / f"step-{best['step']:07d}")
    dataset = open_dataset("synthetic:per_label=2")
    scores = predict_zero_shot(kept, dataset, workers=0, show_progress=False)
    targets = np.array([t[0] for t in dataset.targets])
    logged = next(r for r in validated if r["step"] == best["step"])
    assert logged["eval/zeroshot_top1"] == round(topk_accuracy(scores.logits, targets), 4)
    assert logged["eval/zeroshot_top5"] == round(topk_accuracy(scores.logits, targets, 5), 4)


def test_a_run_is_described_by_its_train_json(captioned, tmp_path):
    first = runner.invoke(app, ["train", "--architecture", "tiny", "--data", f"csv:{captioned / 'pairs.csv'}", "--steps", "2",
                                "--batch-size", "8", "--workers", "0", "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["train", "--config", str(tmp_path / "a" / "train.json"), "--out", str(tmp_path / "b")])
    assert again.exit_code == 0, again.output
    options = [json.loads((tmp_path / run / "train.json").read_text()) for run in ("a", "b")]
    assert options[0] == options[1]
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    changed = runner.invoke(app, ["train", "--resume", str(tmp_path / "a"), "--lr", "0.1"])
    assert changed.exit_code == 2 and "keeps its options" in changed.output


def test_fine_tuning_an_open_clip_state_dict(captioned, tmp_path, openai_bpe, monkeypatch):
    monkeypatch.setenv("GROUNDING_OPENAI_BPE", str(openai_bpe))
    config = preset("tiny")
    config.tokenizer, config.text.vocab_size = "openai", 49408
    config.vision.activation = config.text.activation = "quick_gelu"
    config.vision.width = config.text.width = 64  # a state dict's head count is read as width / 64
    config.vision.heads = config.text.heads = 1
    torch.manual_seed(0)
    grounding.save_model(grounding.create_model(config), tmp_path / "mine")
    converted = runner.invoke(app, ["convert", str(tmp_path / "mine"), str(tmp_path / "oc.safetensors"),
                                    "--to", "open_clip"])
    assert converted.exit_code == 0, converted.output
    tuned = runner.invoke(app, ["train", "--init", str(tmp_path / "oc.safetensors"), "--init-activation", "quick_gelu",
                                "--data", f"csv:{captioned / 'pairs.csv'}", "--steps", "2", "--batch-size", "8",
                                "--workers", "0", "--out", str(tmp_path / "run")])
    assert tuned.exit_code == 0, tuned.output
    assert grounding.load(tmp_path / "run").config.vision.activation == "quick_gelu"
    refused = runner.invoke(app, ["train", "--init", str(tmp_path / "oc.safetensors"), "--out", str(tmp_path / "r2")])
    assert refused.exit_code == 2 and "activation" in refused.output


def test_a_second_writer_is_refused_while_a_run_holds_its_folder(captioned, tmp_path):
    from grounding.files import FolderInUseError, folder_lock

    with folder_lock(tmp_path / "run", "a test"):
        with pytest.raises(FolderInUseError, match=r"in use by this process"):
            train(None, _options(data=f"csv:{captioned / 'pairs.csv'}", steps=1), tmp_path / "run",
                  show_progress=False)
        result = subprocess.run(CLI + ["train", "--architecture", "tiny", "--steps", "1", "--out", str(tmp_path / "run")],
                                capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
        assert result.returncode == 2 and "in use by pid" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]  # the refused run wrote nothing
    train(None, _options(data=f"csv:{captioned / 'pairs.csv'}", steps=1), tmp_path / "run", show_progress=False)


@pytest.mark.parametrize("option, value, message", [("--steps", "0", "at least 1 step"),
                                                    ("--batch-size", "1", "at least 2 pairs"),
                                                    ("--accum", "0", "micro-batches"),
                                                    ("--save-every", "0", "every 1 step"),
                                                    ("--lr", "-0.1", "must be positive"),
                                                    ("--drop-colour-words", "1.0", "under 1 with --grey's")])
def test_impossible_training_options_are_one_line_errors_that_write_nothing(tmp_path, option, value, message):
    result = runner.invoke(app, ["train", "--architecture", "tiny", option, value, "--out", str(tmp_path / "run")])
    said = _said(result)
    assert result.exit_code == 2 and f"{option} {value}: " in said and message in said, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_every_writer_locks_its_folder(tmp_path):
    from grounding.files import folder_lock

    (tmp_path / "texts.txt").write_text("a red circle\n")
    jobs = {"emb": ["embed", "--model", "tiny", "--texts", str(tmp_path / "texts.txt"), "--out", str(tmp_path / "emb")],
            "vqa": ["train-vqa", "--towers", "tiny", "--steps", "1", "--out", str(tmp_path / "vqa")],
            "cap": ["train-caption", "--towers", "tiny", "--steps", "1", "--out", str(tmp_path / "cap")]}
    for folder, args in jobs.items():
        with folder_lock(tmp_path / folder, "a test"):
            result = runner.invoke(app, args)
        assert result.exit_code == 2 and "in use by" in _said(result), result.output
    assert runner.invoke(app, jobs["emb"]).exit_code == 0
    with folder_lock(tmp_path / "emb", "a test"):
        assert "in use by" in _said(runner.invoke(app, ["index", "build", str(tmp_path / "emb")]))
    bad = runner.invoke(app, ["train-vqa", "--steps", "0", "--out", str(tmp_path / "zero")])
    assert bad.exit_code == 2 and "at least 1 step" in _said(bad)


def _said(result) -> str:
    """A command's output as one line, without the error box's borders."""
    return " ".join(result.output.replace("│", " ").split())
