"""The README's (and docs/'s) examples as written: every `grounding` command line in their shell
blocks (under torchrun too) parses against the real command line (the command exists, every
option exists and takes the value given), and the Python API block runs, with a small saved
model standing in for runs/demo."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import typer.main

from grounding.interfaces.cli import app

README = Path(__file__).parent.parent / "README.md"
PAGES = [README, *sorted((README.parent / "docs").glob("*.md"))]  # the README and the docs it links to


def _blocks(language: str) -> list[str]:
    text = "\n".join(page.read_text(encoding="utf-8") for page in PAGES)
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def _command_lines() -> list[list[str]]:
    """Each `grounding ...` invocation in the shell blocks, as the shell would split it."""
    found = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            command: list[str] = []
            for word in words + ["&&"]:
                if word in ("&&", "||", "|", ";"):
                    if command and command[0] == "torchrun" and "grounding" in command:  # torchrun ... -m grounding
                        command = command[command.index("grounding"):]
                    if command and command[0] == "grounding":
                        found.append(command[1:])
                    command = []
                else:
                    command.append(word)
    return found


COMMANDS = _command_lines()


def test_the_readme_shows_many_commands():
    assert len(COMMANDS) >= 40 and {c[0] for c in COMMANDS if c} >= {"train", "classify", "zeroshot", "embed",
                                                                       "search", "convert", "train-vqa", "demo"}


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a)[:70])
def test_a_readme_command_parses_as_written(args):
    command: click.Command = typer.main.get_command(app)
    path = []
    while hasattr(command, "commands") and args and args[0] in command.commands:
        path.append(args[0])
        command, args = command.commands[args[0]], args[1:]
    assert path, f"no such command: grounding {' '.join(args)}"
    if "--help" in args:
        return
    command.make_context("grounding " + " ".join(path), list(args))  # unknown options and bad values raise


def test_the_python_api_block_runs(tmp_path, monkeypatch):
    import torch

    from grounding.build import create_model
    from grounding.config import preset
    from grounding.data.synthetic import World
    from grounding.saved import save_model

    (block,) = [b for b in _blocks("python") if "grounding.load(\"runs/demo\")" in b]
    torch.manual_seed(0)
    save_model(create_model(preset("tiny")), tmp_path / "runs" / "demo")  # stands in for `grounding demo`'s run
    import numpy as np

    World().sample(np.random.default_rng(0), "any").render(64).save(tmp_path / "scene.png")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["probs"].shape == (1, 2) and torch.allclose(scope["probs"].sum(), torch.tensor(1.0))


def test_the_plain_onnxruntime_block_runs_and_agrees_with_the_model(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="install the test extra: pip install -e '.[test]'")
    import numpy as np
    import torch
    from PIL import Image

    from grounding.build import create_model
    from grounding.config import preset
    from grounding.formats.export import export

    (block,) = [b for b in _blocks("python") if "onnxruntime" in b]
    torch.manual_seed(0)
    model = create_model(preset("tiny")).eval()
    export(model, tmp_path / "out" / "onnx")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    with torch.no_grad():
        expected = model(model.preprocess(tmp_path / "photo.jpg")[None], model.tokenizer(scope["labels"]))[0].softmax(-1)
    assert np.abs(scope["probs"] - expected.numpy()).max() < 1e-4


def test_the_design_page_maps_every_module():
    """docs/design.md's tree names every module of the package under its folder."""
    tree = re.search(r"(?ms)^```\nsrc/grounding/\n(.*?)^```", (README.parent / "docs" / "design.md").read_text())[1]
    package = README.parent / "src" / "grounding"
    missing = [str(path.relative_to(package)) for path in sorted(package.rglob("*.py")) if path.name != "__init__.py"
               and not (path.name in tree and all(f"{part}/" in tree for part in path.relative_to(package).parts[:-1]))]
    assert not missing, f"docs/design.md does not list {missing}"
