"""An embedding store or its index cut short (a full disk, a copy stopped halfway): search and
index build say which file is damaged and how to make it again, in one line, and a store shard
made anew by the same `embed` is all it takes."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from grounding.interfaces.cli import app

pytest.importorskip("faiss", reason="install the search extra: pip install -e '.[search]'")
runner = CliRunner()


@pytest.fixture(scope="module")
def store(saved_tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    (root / "images").mkdir()
    for i in range(6):
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(root / "images" / f"{i}.png")
    for args in (["embed", "--model", str(saved_tiny), "--images", f"folder:{root / 'images'}", "--out",
                  str(root / "store"), "--workers", "0"], ["index", "build", str(root / "store")]):
        assert runner.invoke(app, args).exit_code == 0
    return root / "store"


@pytest.mark.parametrize("name, fix", [
    ("index/index.faiss", "build it again: grounding index build"),
    ("index/items.json", "build it again: grounding index build"),
    ("index/meta.json", "build it again: grounding index build"),
    ("shard-00000.npy", "delete shard-00000.json and shard-00000.npy and run the same `grounding embed` again"),
    ("shard-00000.json", "delete shard-00000.json and shard-00000.npy and run the same `grounding embed` again"),
])
def test_a_file_of_a_store_cut_short_is_named_with_its_fix(store, tmp_path, name, fix):
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    data = (copy / name).read_bytes()
    (copy / name).write_bytes(data[:len(data) // 2])
    command = ["search", str(copy), "a red square"] if name.startswith("index") else ["index", "build", str(copy)]
    result = runner.invoke(app, command)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert f"{copy / name}: damaged or cut short" in errors[0] and fix in errors[0], errors[0]
    assert "Traceback" not in result.output
