"""The one rule for every command that writes a folder: a new or empty folder, the command's own
earlier output, or --overwrite where the command has it. A folder that holds a user's files is
refused in one line before any work, and nothing in it changes."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from grounding.interfaces.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, saved_tiny):
    root = tmp_path_factory.mktemp("inputs")
    shutil.copytree(saved_tiny, root / "model")
    Image.new("RGB", (32, 32), (255, 0, 0)).save(root / "image.png")
    (root / "pairs.csv").write_text("image,caption\nimage.png,a red square\n")
    return root


COMMANDS = {  # each command that writes a folder, writing into {out}
    "convert hf": ["convert", "{m}", "{out}", "--to", "hf"],
    "convert open_clip": ["convert", "{m}", "{out}", "--to", "open_clip"],
    "convert grounding": ["convert", "{m}", "{out}", "--to", "grounding"],
    "export": ["export", "{m}", "{out}"],
    "zeroshot": ["zeroshot", "--model", "{m}", "--dataset", "synthetic:per_label=1,size=32", "--out", "{out}",
                 "--workers", "0", "--no-cache"],
    "retrieval-eval": ["retrieval-eval", "--model", "{m}", "--pairs", "synthetic:n=8,size=32", "--out", "{out}",
                       "--workers", "0"],
    "benchmark": ["benchmark", "--model", "{m}", "--dataset", "synthetic:per_label=1,size=32", "--out", "{out}",
                  "--workers", "0"],
    "train": ["train", "--architecture", "tiny", "--steps", "1", "--out", "{out}"],
    "embed": ["embed", "--model", "{m}", "--images", "{i}", "--out", "{out}", "--workers", "0"],
    "data shard": ["data", "shard", "csv:{c}", "--out", "{out}"],
    "train-vqa": ["train-vqa", "--towers", "tiny", "--steps", "1", "--out", "{out}", "--no-baselines"],
    "train-caption": ["train-caption", "--towers", "tiny", "--steps", "1", "--out", "{out}"],
}


def _args(name: str, inputs, out) -> list[str]:
    return [a.format(m=inputs / "model", i=inputs, c=inputs / "pairs.csv", out=out) for a in COMMANDS[name]]


@pytest.mark.parametrize("name", COMMANDS)
def test_a_folder_of_the_users_files_is_refused_and_left_alone(inputs, tmp_path, name):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"mine": true}')
    (out / "notes.txt").write_text("my notes")
    result = runner.invoke(app, _args(name, inputs, out), env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(out) in errors[0] and "Traceback" not in result.output, result.output
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "notes.txt"]
    assert (out / "config.json").read_text() == '{"mine": true}'


@pytest.mark.parametrize("name", ["zeroshot", "retrieval-eval", "benchmark"])
def test_a_command_writes_again_over_its_own_output(inputs, tmp_path, name):
    for _ in range(2):
        result = runner.invoke(app, _args(name, inputs, tmp_path / "out"))
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", ["convert hf", "export"])
def test_overwrite_writes_over_what_the_folder_holds(inputs, tmp_path, name):
    out = tmp_path / "out"
    assert runner.invoke(app, _args(name, inputs, out)).exit_code == 0
    again = runner.invoke(app, _args(name, inputs, out))
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert runner.invoke(app, [*_args(name, inputs, out), "--overwrite"]).exit_code == 0


def test_a_state_dict_file_is_not_replaced_without_overwrite(inputs, tmp_path):
    target = tmp_path / "weights.pt"
    target.write_bytes(b"someone's weights")
    args = ["convert", str(inputs / "model"), str(target), "--to", "open_clip"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "exists; pass --overwrite" in result.output
    assert target.read_bytes() == b"someone's weights"


def test_ground_refuses_a_folder_as_its_picture(inputs, tmp_path):
    result = runner.invoke(app, ["ground", str(inputs / "image.png"), "a red thing", "--model", str(inputs / "model"),
                                 "--out", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder; give the file to draw into" in result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_a_folder_that_cannot_be_made_is_one_line_naming_it(inputs, tmp_path, name):
    (tmp_path / "a-file").write_text("mine")
    out = tmp_path / "a-file" / "out"  # under a file: no folder can be made there
    result = runner.invoke(app, _args(name, inputs, out), env={"COLUMNS": "200"})
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.output, result.output
    assert f"{tmp_path / 'a-file'} is a file, so no folder can be made there" in errors[0]
    assert (tmp_path / "a-file").read_text() == "mine"


@pytest.mark.parametrize("name", ["export", "zeroshot", "embed"])
def test_a_read_only_place_is_refused_before_any_work(inputs, tmp_path, name, monkeypatch):
    import os

    # Permission bits do not stop root, who runs CI here: the check itself is made to see a read-only place.
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == tmp_path and mode == os.W_OK
                        else real(p, mode, **kw))
    result = runner.invoke(app, _args(name, inputs, tmp_path / "out"), env={"COLUMNS": "200"})
    assert result.exit_code == 2 and f"cannot write in {tmp_path} (read-only)" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_a_cache_that_cannot_be_written_costs_time_not_answers(inputs, tmp_path, monkeypatch):
    """classify and zeroshot answer as with a cache, and say once that nothing is kept."""
    args = ["classify", str(inputs / "image.png"), "--model", str(inputs / "model"), "--labels", "red,blue", "--json"]
    kept = runner.invoke(app, args)
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("GROUNDING_CACHE", str(tmp_path / "a-file" / "cache"))
    unkept = runner.invoke(app, args)
    assert kept.exit_code == unkept.exit_code == 0, unkept.output
    assert kept.stdout.splitlines()[-1] == unkept.stdout.splitlines()[-1]
    assert "cannot keep the classifier there" in unkept.output and "GROUNDING_CACHE" in unkept.output
    result = runner.invoke(app, [a for a in _args("zeroshot", inputs, tmp_path / "zs") if a != "--no-cache"])
    assert result.exit_code == 0 and (tmp_path / "zs" / "report.html").is_file(), result.output
