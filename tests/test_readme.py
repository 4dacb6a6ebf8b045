"""The README's (and docs/'s) examples as written: every `grounding` command line in their shell
blocks (under torchrun too) parses against the real command line (the command exists, every
option exists and takes the value given), and the Python API block runs, with a small saved
model standing in for runs/demo."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
import typer.main

from grounding.interfaces.cli import app

README = Path(__file__).parent.parent / "README.md"
PAGES = [README, *sorted((README.parent / "docs").glob("*.md"))]  # the README and the docs it links to


def _blocks(language: str, pages: list[Path] = PAGES) -> list[str]:
    text = "\n".join(page.read_text(encoding="utf-8") for page in pages)
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def _command_lines(page: Path) -> list[list[str]]:
    """Each `grounding ...` invocation in the page's shell blocks, as the shell would split it."""
    found = []
    for block in _blocks("bash", [page]):
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


def _parse_error(args: list[str]) -> str | None:
    """Why `grounding ARGS` would not parse (None when it does)."""
    command = typer.main.get_command(app)
    path = []
    while hasattr(command, "commands") and args and args[0] in command.commands:
        path.append(args[0])
        command, args = command.commands[args[0]], args[1:]
    if not path:
        return "no such command"
    if "--help" in args:
        return None
    try:
        command.make_context("grounding " + " ".join(path), list(args))  # unknown options and bad values raise
    except typer.TyperException as e:  # typer's own click: its usage errors
        return str(e)
    return None


def test_the_readme_shows_many_commands():
    commands = [c for page in PAGES for c in _command_lines(page)]
    assert len(commands) >= 40 and {c[0] for c in commands if c} >= {"train", "classify", "zeroshot", "embed",
                                                                       "search", "convert", "train-vqa", "demo"}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_command_of_a_page_parses_as_written(page):
    failures = [f"grounding {' '.join(args)}: {why}" for args in _command_lines(page)
                if (why := _parse_error(args)) is not None]
    assert not failures, "\n".join(failures)


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
    model = scope["model"]
    unit = torch.nn.functional.normalize
    with torch.no_grad():  # the same probabilities, worked out here from the encoders
        image = unit(model.encode_image(scope["pixels"]), dim=-1)
        columns = []
        for label in ("red circle", "blue square"):
            prompts = model.tokenizer([f"a {label}.", f"a photo of a {label}."])
            columns.append(unit(unit(model.encode_text(prompts), dim=-1).mean(0), dim=0))
        expected = (model.logit_scale.exp() * image @ torch.stack(columns).t()).softmax(-1)
    assert torch.allclose(scope["probs"], expected, atol=1e-5)


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
