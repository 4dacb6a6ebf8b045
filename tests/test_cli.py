import dataclasses
import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from grounding.interfaces.cli import app

runner = CliRunner()


def _commands():
    import typer.main

    def walk(group, path):
        for name, command in group.commands.items():
            yield path + [name], command
            if hasattr(command, "commands"):  # a group (typer's is no click.Group subclass)
                yield from walk(command, path + [name])

    return list(walk(typer.main.get_command(app), []))


@pytest.mark.parametrize("path,command", _commands(), ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_every_command_explains_every_option(path, command):
    result = runner.invoke(app, path + ["--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert command.help and len(command.help.split()) >= 5, f"{path} has no summary"
    assert "--no-no-" not in result.output  # a flag named as a negation offers no double negative
    assert "[default: (" not in result.output  # defaults read as values, not as asides
    usage = result.output.splitlines()[0]
    assert "{" not in usage and "<bool>" not in result.output  # click's usage (IMAGE..., [QUERY]); flags take no value
    for param in command.params:
        assert param.help and len(param.help.split()) >= 3, f"{' '.join(path)} {param.name} has no help text"
        if param.param_type_name == "argument":
            assert (param.metavar or param.name.upper()) in usage
        else:
            assert all(flag.split("/")[0] in result.output for flag in param.opts)


@pytest.mark.parametrize("path", [[]] + [p for p, c in _commands() if hasattr(c, "commands")], ids=str)
def test_command_lists_show_whole_summaries(path):
    result = runner.invoke(app, path + ["--help"], env={"COLUMNS": "80"})
    listed = result.output.split("Commands:")[1].strip().splitlines()
    assert listed and not [line for line in listed if line.rstrip().endswith("...")]  # none cut mid-sentence


def test_train_needs_out_or_resume():
    result = runner.invoke(app, ["train", "--architecture", "tiny"])
    assert result.exit_code != 0 and "--out" in result.output


def test_unknown_model_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["train", "--architecture", "ViT-Z-99", "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "neither a preset" in result.output


@pytest.mark.slow
def test_demo_trains_classifies_and_draws_cards(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-c", "from grounding.interfaces.cli import app; app()", "demo",
                             "--out", str(out), "--steps", "3", "--examples", "2"],
                            capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.search(r"correct rank: \d+/24 +correct probability: \d+\.\d\d%", result.stdout)
    assert "never seen" in result.stdout
    assert re.search(r"twin images and grey copies \(--image-negatives --grey 0\.25\)([^\d\n]+\d+\.\d%){5}", result.stdout), result.stdout
    assert (out / "composed" / "config.json").is_file()  # the second row's model, trained beside the first
    cards = sorted((out / "cards").glob("*.png"))
    assert len(cards) == 2 and all(c.stat().st_size > 5000 for c in cards)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("command", [["train", "--architecture", "tiny", "--out", "{tmp}/run", "--device", "cuda"],
                                     ["classify", "{tmp}/x.png", "--model", "tiny", "--labels", "a,b",
                                      "--device", "cuda"],
                                     ["embed", "--model", "tiny", "--texts", "{tmp}/x.txt", "--out", "{tmp}/e",
                                      "--device", "cuda"]])
def test_asking_for_a_gpu_where_there_is_none_is_a_clear_error(tmp_path, command):
    result = runner.invoke(app, [part.format(tmp=tmp_path) for part in command])
    assert result.exit_code == 2 and "no CUDA GPU" in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_embed_runs_on_the_device_asked_for_and_stores_the_models_own_embeddings(tmp_path, tiny_model,
                                                                                  monkeypatch):
    from grounding.inference.encode import encode_texts
    from grounding.runtime import Runtime
    from grounding.saved import save_model
    from grounding.tasks.retrieval.store import Store

    save_model(tiny_model, tmp_path / "model")
    (tmp_path / "texts.txt").write_text("a red circle\na blue square\n")
    prepared = []
    prepare = Runtime.prepare
    monkeypatch.setattr(Runtime, "prepare", lambda self, model: prepared.append(self.device) or prepare(self, model))
    result = runner.invoke(app, ["embed", "--model", str(tmp_path / "model"), "--texts", str(tmp_path / "texts.txt"),
                                 "--out", str(tmp_path / "e"), "--device", "cpu"])
    assert result.exit_code == 0 and "2 embeddings" in result.output, result.output
    assert [str(device) for device in prepared] == ["cpu"]
    vectors, keys, _, _ = Store(tmp_path / "e").read()
    assert keys == ["a red circle", "a blue square"]
    expected = encode_texts(tiny_model, keys).numpy()
    assert abs(vectors - expected).max() < 1e-5


def test_a_preset_name_is_loudly_random(tmp_path):
    import grounding

    with pytest.warns(UserWarning, match="weights are random"):
        model = grounding.load("tiny")
    assert repr(model).startswith("# random weights")
    from PIL import Image

    Image.new("RGB", (32, 32), (255, 0, 0)).save(tmp_path / "red.png")
    result = runner.invoke(app, ["classify", str(tmp_path / "red.png"), "--model", "tiny", "--labels", "red,blue"])
    assert result.exit_code == 0 and "warning: 'tiny' is a preset: its weights are random" in result.output


def test_version():
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"grounding {version('grounding')}"


def test_importing_grounding_and_writing_files_leave_the_umask_alone(tmp_path):
    """Setting the umask, even to set it back, races with other threads' file creation."""
    script = ("import os; calls = []; real = os.umask; os.umask = lambda m: calls.append(m) or real(m); "
              "import grounding, grounding.files; "
              f"grounding.files.write_text_atomic({str(tmp_path / 'f.txt')!r}, 'x'); print(len(calls))")
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True).stdout.strip() == "0"


def test_a_missing_extra_is_one_line_naming_it(tmp_path, monkeypatch):
    """faiss comes with the `search` extra: without it, `index build` names the extra to install."""
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    result = runner.invoke(app, ["index", "build", str(tmp_path)])
    assert result.exit_code != 0
    assert "a vector index needs faiss: pip install 'grounding[search]'" in result.output


def test_demo_refuses_a_second_row_left_by_an_earlier_demo_with_other_options(tmp_path):
    from grounding.training.options import TrainConfig

    stale = tmp_path / "demo" / "composed"
    stale.mkdir(parents=True)
    (stale / "train.json").write_text(json.dumps(dataclasses.asdict(TrainConfig(image_negatives=True))))
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--steps", "3"])
    assert result.exit_code == 2 and "trained by an earlier demo with other options" in result.output, result.output
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["composed"]  # nothing trained first
