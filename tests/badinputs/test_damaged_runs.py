"""Runs and stores that were damaged, moved or changed underneath: nothing is used that is not
intact, nothing already done is lost, and nothing is mixed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import grounding
from grounding.config import preset
from grounding.files import FolderError
from grounding.training.options import LoopConfig, TrainConfig
from grounding.training.trainer import train

OPTIONS = dict(steps=6, batch_size=8, warmup=1, lr=1e-3, save_every=2, keep=3, workers=0, log_every=0.0)


def _train(out: Path, overwrite: bool = False, **changes):
    return train(preset("tiny"), TrainConfig(**{**OPTIONS, **changes}), out, show_progress=False, overwrite=overwrite)


def _weights(folder: Path) -> dict:
    return load_file(folder / "model.safetensors")


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("whole") / "run"
    _train(out)
    return _weights(out)


def _cut_short(path: Path) -> None:
    with open(path, "r+b") as f:  # in place: a hard link to it (OUT/model.safetensors) is cut too
        f.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize("damaged", ["model.safetensors", "state.pt"])
def test_a_damaged_newest_checkpoint_falls_back_to_an_intact_one_and_resumes_exactly(tmp_path, whole, damaged):
    out = tmp_path / "run"
    _train(out)
    newest = out / "checkpoints" / "step-0000006"
    _cut_short(newest / damaged)
    with pytest.warns(UserWarning, match=f"step-0000006 is damaged \\({damaged} has .* bytes"):
        train(None, None, out, resume=True, show_progress=False)
    resumed = _weights(out)
    assert resumed.keys() == whole.keys() and all(torch.equal(resumed[k], whole[k]) for k in whole)
    assert (out / "checkpoints" / "damaged-step-0000006" / damaged).is_file()  # kept aside, not deleted
    assert grounding.load(out) is not None


def test_a_changed_file_fails_its_checksum(tmp_path):
    out = tmp_path / "run"
    _train(out, steps=2, save_every=1)
    state = out / "checkpoints" / "step-0000002" / "state.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    state.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="state.pt does not match its checksum"):
        train(None, None, out, resume=True, show_progress=False)


def test_with_no_intact_checkpoint_resuming_names_them_and_moves_nothing(tmp_path):
    out = tmp_path / "run"
    _train(out, steps=2, save_every=1, keep=2)
    for folder in (out / "checkpoints").glob("step-*"):
        _cut_short(folder / "model.safetensors")
    with pytest.raises(ValueError, match="no intact checkpoint .*step-0000002: model.safetensors has"):
        train(None, None, out, resume=True, show_progress=False)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000001", "step-0000002"]


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


@pytest.mark.parametrize("content", ["garbage", "pickle"])
def test_an_unreadable_optimizer_state_names_its_file_and_no_pickle_runs(tmp_path, content):
    out = tmp_path / "run"
    _train(out, steps=1)
    folder = out / "checkpoints" / "step-0000001"
    (folder / "manifest.json").unlink()  # as a checkpoint written before manifests
    if content == "garbage":
        (folder / "state.pt").write_bytes(b"PK\x03\x04 not really a zip")
    else:
        torch.save({"step": 1, "optimizer": _Payload(tmp_path / "ran.txt")}, folder / "state.pt")
    with pytest.raises(ValueError, match="state.pt: the optimizer state cannot be read"):
        train(None, None, out, resume=True, show_progress=False)
    assert not (tmp_path / "ran.txt").exists()


def test_a_saved_model_folder_is_not_overwritten_without_being_asked(tmp_path):
    saved = tmp_path / "saved"
    grounding.save_model(grounding.create_model(preset("tiny")), saved)
    before = (saved / "model.safetensors").read_bytes()
    with pytest.raises(FolderError, match="--overwrite"):
        _train(saved, steps=1)
    assert (saved / "model.safetensors").read_bytes() == before and not (saved / "train.json").exists()
    _train(saved, overwrite=True, steps=1)
    assert (saved / "train.json").is_file() and (saved / "model.safetensors").read_bytes() != before


def test_every_run_checkpoints_a_few_times_whatever_its_save_interval(tmp_path):
    from grounding.training.loop import MIN_CHECKPOINTS, fit

    model = torch.nn.Linear(3, 1)
    model.config = preset("tiny")  # what save_weights reads to leave packaged backbones out

    def backward_at(step: int) -> float:
        loss = model(torch.ones(2, 3)).pow(2).mean()
        loss.backward()
        return loss.item()

    fit(model, backward_at, LoopConfig(steps=8, save_every=250, keep=10, warmup=1), tmp_path / "run",
        show_progress=False)
    saved = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*"))
    assert len(saved) == MIN_CHECKPOINTS and saved[-1] == "step-0000008"


def test_a_resumed_embedding_refuses_an_input_that_changed(tmp_path):
    from PIL import Image

    from grounding.tasks.retrieval.embed import embed_images

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):
        Image.new("RGB", (32, 32), (40 * i, 0, 0)).save(folder / f"{i}.png")
    model = grounding.create_model(preset("tiny"))
    store = embed_images(model, str(folder), tmp_path / "store", "tiny", shard_size=2, workers=0, show_progress=False)
    store.shard_path(2).with_suffix(".json").unlink()  # as if killed during the last shard
    (folder / "0.png").rename(folder / "9.png")  # the same count, other items
    with pytest.raises(ValueError, match="the input changed since this store was begun"):
        embed_images(model, str(folder), tmp_path / "store", "tiny", shard_size=2, workers=0, show_progress=False)
    (folder / "9.png").rename(folder / "0.png")
    resumed = embed_images(model, str(folder), tmp_path / "store", "tiny", shard_size=2, workers=0,
                           show_progress=False)
    keys = resumed.read()[1]
    assert len(keys) == len(set(keys)) == 5


def test_a_store_records_where_its_model_is_so_search_works_from_anywhere(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from grounding.interfaces.cli import app

    runner = CliRunner()
    grounding.save_model(grounding.create_model(preset("tiny")), tmp_path / "work" / "model")
    (tmp_path / "work" / "texts.txt").write_text("a red circle\na blue square\n")
    monkeypatch.chdir(tmp_path / "work")
    assert runner.invoke(app, ["embed", "--model", "model", "--texts", "texts.txt", "--out", "store"]).exit_code == 0
    assert runner.invoke(app, ["index", "build", "store"]).exit_code == 0
    manifest = json.loads(Path("store/manifest.json").read_text())
    assert manifest["model"] == str(tmp_path / "work" / "model")
    monkeypatch.chdir(tmp_path)
    found = runner.invoke(app, ["search", "work/store", "red circle", "-k", "1"])
    assert found.exit_code == 0 and "a red circle" in found.output, found.output
    shutil.move(tmp_path / "work" / "model", tmp_path / "moved")
    lost = runner.invoke(app, ["search", "work/store", "red circle"])
    assert lost.exit_code == 2 and f"fingerprint {manifest['model_fingerprint'][:16]}" in lost.output
    moved = runner.invoke(app, ["search", "work/store", "red circle", "--model", str(tmp_path / "moved")])
    assert moved.exit_code == 0, moved.output


def test_a_log_line_cut_short_by_a_crash_is_dropped_on_resume(tmp_path):
    out = tmp_path / "run"
    _train(out, steps=2, save_every=1)
    with open(out / "metrics.jsonl", "a") as log:
        log.write('{"step": 3, "lo')  # the crash came mid-line
    train(None, None, out, resume=True, show_progress=False, changes={"steps": 3})
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]


def _disk_fills_on_call(monkeypatch, target, name: str, call: int) -> None:
    """`target.name` raises 'No space left on device' from its `call`-th call on, as a full disk does."""
    import errno
    import os

    real, calls = getattr(target, name), []

    def full(*args, **kwargs):
        calls.append(1)
        if len(calls) >= call:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[-1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, full)


def test_a_full_disk_stops_train_in_one_line_leaves_no_half_checkpoint_and_resumes_exactly(tmp_path, whole,
                                                                                          monkeypatch):
    from typer.testing import CliRunner

    from grounding.interfaces.cli import app
    from grounding.training import checkpoint

    args = ["train", "--architecture", "tiny", "--steps", "6", "--batch-size", "8", "--warmup", "1", "--lr", "1e-3",
            "--save-every", "2", "--keep", "3", "--workers", "0", "--out", str(tmp_path / "run")]
    with monkeypatch.context() as patch:
        _disk_fills_on_call(patch, checkpoint.torch, "save", 2)  # the second checkpoint's optimizer state
        result = CliRunner().invoke(app, args)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1 and "Traceback" not in result.output, result.output
    assert "No space left on device" in errors[0] and "run it again (a training run with --resume OUT" in errors[0]
    assert not list((tmp_path / "run" / "checkpoints").glob(".step-*"))  # nothing half-written holds space
    assert len(list((tmp_path / "run" / "checkpoints").glob("step-*"))) == 1  # the first, whole
    resumed = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "run"), "--workers", "0"])
    assert resumed.exit_code == 0, resumed.output  # space freed: the run goes on
    again = _weights(tmp_path / "run")
    assert all(torch.equal(again[k], whole[k]) for k in whole)


def test_a_full_disk_stops_embed_in_one_line_and_the_same_command_finishes(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image
    from typer.testing import CliRunner

    from grounding.interfaces.cli import app
    from grounding.saved import save_model
    from grounding.tasks.retrieval import store as stores

    torch.manual_seed(0)
    save_model(grounding.build.create_model(preset("tiny")), tmp_path / "model")
    (tmp_path / "images").mkdir()
    for i in range(6):
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(tmp_path / "images" / f"{i}.png")
    args = ["embed", "--model", str(tmp_path / "model"), "--images", f"folder:{tmp_path / 'images'}", "--shard-size",
            "2", "--workers", "0", "--out"]
    with monkeypatch.context() as patch:
        _disk_fills_on_call(patch, stores.np, "save", 2)
        result = CliRunner().invoke(app, [*args, str(tmp_path / "store")])
    assert result.exit_code == 1 and "No space left on device" in result.output and "Traceback" not in result.output
    assert stores.Store(tmp_path / "store").shards() == [0]
    assert not [p for p in (tmp_path / "store").iterdir() if p.name.endswith(".tmp")]
    assert CliRunner().invoke(app, [*args, str(tmp_path / "store")]).exit_code == 0
    assert CliRunner().invoke(app, [*args, str(tmp_path / "whole")]).exit_code == 0
    resumed, whole = (stores.Store(tmp_path / name).read() for name in ("store", "whole"))
    assert np.array_equal(resumed[0], whole[0]) and resumed[1] == whole[1]
