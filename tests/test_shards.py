"""`grounding data shard`: webdataset shards from listed training data, a manifest that counts
them and lists what was left out, and training that reads them back with the same captions."""
from __future__ import annotations

import csv
import json
import tarfile

import numpy as np
from typer.testing import CliRunner

from grounding.data.synthetic import World
from grounding.interfaces.cli import app

runner = CliRunner()


def test_shards_from_a_csv_train_as_tar_data(tmp_path):
    rng = np.random.default_rng(0)
    rows = [("image", "caption")]
    for i in range(9):
        scene = World().sample(rng, "any")
        scene.render(48).save(tmp_path / f"{i}.png")
        rows.append((f"{i}.png", scene.caption()))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    rows.append(("bad.png", "a broken file"))
    with open(tmp_path / "pairs.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    result = runner.invoke(app, ["data", "shard", f"csv:{tmp_path / 'pairs.csv'}", "--out", str(tmp_path / "shards"),
                                 "--shard-size", "4"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert manifest["samples"] == 9 and [s["samples"] for s in manifest["shards"]] == [4, 4, 1]
    assert len(manifest["skipped"]) == 1 and "bad.png" in manifest["skipped"][0]["reason"]
    with tarfile.open(tmp_path / "shards" / "shard-00000.tar") as tar:
        names = sorted(tar.getnames())
        caption = tar.extractfile("000000000.txt").read().decode()
    assert names[:3] == ["000000000.json", "000000000.png", "000000000.txt"]
    assert caption == rows[1][1]
    assert runner.invoke(app, ["data", "shard", f"csv:{tmp_path / 'pairs.csv'}", "--out",
                               str(tmp_path / "shards")]).exit_code == 2  # never into a folder already used
    trained = runner.invoke(app, ["train", "--data", manifest["train_with"], "--architecture", "tiny", "--steps", "2",
                                  "--batch-size", "4", "--workers", "0", "--out", str(tmp_path / "run")])
    assert trained.exit_code == 0, trained.output
    rows_logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows_logged] == [1, 2] and all(r["skipped"] == 0 for r in rows_logged)
