"""Every command with each bad option or file: a non-zero exit, one `Error:` line naming the value
or file and the fix, no traceback, and nothing written or changed."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from grounding.interfaces.cli import app

runner = CliRunner()


class Payload:
    """A pickle that would write a file when unpickled: loading it must be refused, never run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.fixture(scope="module")
def world(tmp_path_factory, saved_tiny) -> Path:
    """Files the bad invocations point at; none of them may change."""
    root = tmp_path_factory.mktemp("world")
    shutil.copytree(saved_tiny, root / "model")
    (root / "a-file").write_text("not a folder\n")
    (root / "latin1.txt").write_bytes("red\ncaf\u00e9\n".encode("latin-1"))
    (root / "header-only.csv").write_text("image,label\n")
    (root / "garbage.tar").write_bytes(b"not a tar at all" * 40)
    from PIL import Image

    Image.new("RGB", (32, 32), (255, 0, 0)).save(root / "image.png")
    config = json.loads((saved_tiny / "config.json").read_text())
    for name, change in (("not-json", None), ("zero-heads", ("vision", "heads", 0)),
                         ("string-width", ("text", "width", "big")), ("huge", ("vision", "layers", 100_000_000)),
                         ("zero-std", ("vision", "std", [0.5, 0.0, 0.5])), ("wide", ("vision", "image_size", 10 ** 6))):
        folder = root / name
        shutil.copytree(saved_tiny, folder)
        if change is None:
            (folder / "config.json").write_text("{ this is not json")
        else:
            bad = json.loads(json.dumps(config))
            bad[change[0]][change[1]] = change[2]
            (folder / "config.json").write_text(json.dumps(bad))
    (root / "absurd-export").mkdir()  # only its preprocess.json is read before the sizes are refused
    for name in ("image_encoder.onnx", "text_encoder.onnx", "tokenizer.json"):
        (root / "absurd-export" / name).write_bytes(b"")
    (root / "absurd-export" / "preprocess.json").write_text(json.dumps(
        {"image_size": 10 ** 9, "mean": [0.5] * 3, "std": [0.5] * 3, "logit_scale": 100.0, "embed_dim": 32}))
    shutil.copytree(saved_tiny, root / "truncated")
    weights = (root / "truncated" / "model.safetensors").read_bytes()
    (root / "truncated" / "model.safetensors").write_bytes(weights[:len(weights) // 2])
    shutil.copytree(saved_tiny, root / "wrong-shapes")
    wider = dict(config, embed_dim=48)
    (root / "wrong-shapes" / "config.json").write_text(json.dumps(wider))
    torch.save(Payload(root / "pwned.txt"), root / "evil.pt")
    hf = root / "hf-pickle"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "clip", "text_config": {}, "vision_config": {}}))
    torch.save(Payload(root / "pwned.txt"), hf / "pytorch_model.bin")
    (root / "two-slots.txt").write_text("a {} next to a {}\n")
    (root / "labels.csv").write_text("image,label\nimage.png,red\nimage.png,\n")
    (root / "no-images" / "cats").mkdir(parents=True)
    (root / "someone").mkdir()
    (root / "someone" / "notes.txt").write_text("my files\n")
    store = root / "store"
    (root / "texts.txt").write_text("a red circle\na blue square\n")
    assert runner.invoke(app, ["embed", "--model", str(saved_tiny), "--texts", str(root / "texts.txt"), "--out",
                               str(store), "--device", "cpu"]).exit_code == 0
    assert runner.invoke(app, ["index", "build", str(store)]).exit_code == 0
    return root


def _snapshot(root: Path) -> dict:
    """Every file's size and time; the store's own lock file, which its writers hold, aside."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
            for p in sorted(root.rglob("*")) if p != root / "store" / ".lock"}


# (arguments with {w} for the world folder, exit code, words the one error line must hold)
TRAIN = ["train", "--architecture", "tiny", "--out", "{w}/run"]
ROWS = [
    (TRAIN + ["--steps", "0"], 2, "--steps 0"),
    (TRAIN + ["--batch-size", "0"], 2, "--batch-size 0"),
    (TRAIN + ["--batch-size", "1"], 2, "at least 2 pairs"),
    (TRAIN + ["--accum", "0"], 2, "--accum 0"),
    (TRAIN + ["--save-every", "0"], 2, "--save-every 0"),
    (TRAIN + ["--lr", "-0.001"], 2, "--lr -0.001"),
    (TRAIN + ["--local-loss"], 2, "--local-loss needs --gather-with-grad"),
    (TRAIN + ["--loss", "siglip", "--gather-with-grad"], 2, "ring of ranks"),
    (TRAIN + ["--samples", "100", "--epochs", "1"], 2, "not with --epochs"),
    (["train", "--architecture", "tiny", "--out", "{w}/a-file"], 2, "a file, not a folder"),
    (["train", "--architecture", "tiny", "--out", "{w}/model"], 2, "pass --overwrite"),
    (["train", "--architecture", "tiny", "--out", "{w}/someone"], 2, "pass --overwrite"),
    (["train", "--resume", "{w}/someone"], 2, "not a training run folder"),
    (["train", "--config", "{w}/two-slots.txt", "--out", "{w}/run"], 2, "not a training config"),
    (["train-vqa", "--steps", "0", "--out", "{w}/run"], 2, "--steps 0"),
    (["train-vqa", "--out", "{w}/model"], 2, "pass --overwrite"),
    (["train-caption", "--batch-size", "0", "--out", "{w}/run"], 2, "--batch-size 0"),
    (["classify", "{w}/image.png", "--model", "{w}/model", "--labels", "a,b", "--top-k", "0"], 2, "--top-k"),
    (["classify", "{w}/image.png", "--model", "{w}/model", "--labels", "a,b", "--top-k", "-3"], 2, "--top-k"),
    (["classify", "{w}/image.png", "--model", "{w}/not-json", "--labels", "a,b"], 2, "not valid JSON"),
    (["classify", "{w}/image.png", "--model", "{w}/zero-heads", "--labels", "a,b"], 2, "vision.heads is 0"),
    (["classify", "{w}/image.png", "--model", "{w}/string-width", "--labels", "a,b"], 2, "text.width is 'big'"),
    (["classify", "{w}/image.png", "--model", "{w}/truncated", "--labels", "a,b"], 2, "truncated"),
    (["classify", "{w}/image.png", "--model", "{w}/wrong-shapes", "--labels", "a,b"], 2, "does not fit"),
    (["classify", "{w}/image.png", "--model", "{w}/evil.pt", "--labels", "a,b"], 2, "evil.pt"),
    (["classify", "{w}/image.png", "--model", "{w}/hf-pickle", "--labels", "a,b"], 2, "pytorch_model.bin"),
    (["classify", "{w}/image.png", "--model", "{w}/model", "--labels", "a,b", "--templates", "{w}/two-slots.txt"],
     2, "one '{}'"),
    (["classify", "{w}/image.png", "--model", "{w}/model", "--labels", " , "], 2, "label list is empty"),
    (["zeroshot", "--model", "{w}/model", "--dataset", "csv:{w}/labels.csv", "--out", "{w}/zs"], 2, "empty label"),
    (["zeroshot", "--model", "{w}/model", "--dataset", "folder:{w}/no-images", "--out", "{w}/zs"], 2,
     "no images found"),
    (["zeroshot", "--model", "{w}/model", "--dataset", "synthetic", "--templates", "{w}/missing.txt", "--out",
      "{w}/zs"], 2, "no such template file"),
    (["probe", "--model", "{w}/model", "--dataset", "folder:{w}/missing"], 2, "no such folder"),
    (["embed", "--model", "{w}/model", "--texts", "{w}/missing.txt", "--out", "{w}/e"], 2, "no such file"),
    (["embed", "--model", "{w}/model", "--texts", "{w}/texts.txt", "--out", "{w}/someone"], 2,
     "not an embedding store"),
    (["embed", "--model", "{w}/model", "--texts", "{w}/texts.txt", "--out", "{w}/a-file"], 2, "a file, not a folder"),
    (["index", "build", "{w}/store", "--kind", "ivfpq"], 2, "at least 256 vectors"),
    (["search", "{w}/store", "red", "-k", "0"], 2, "--top-k"),
    (["search", "{w}/store", "--queries", "{w}/missing.txt"], 2, "no such file"),
    (["ground", "{w}/a-file", "a red thing", "--model", "{w}/model", "--out", "{w}/g.png"], 2, "not an image"),
    (["vqa", "{w}/image.png", "what is it?", "--model", "{w}/model"], 2, "not a vqa model"),
    (["caption", "{w}/image.png", "--model", "{w}/someone"], 2, "no config.json"),
    (["convert", "{w}/evil.pt", "{w}/out", "--to", "hf", "--activation", "gelu"], 2, "evil.pt"),
    # counts and rates that cannot work, refused by name before anything is made (issue #29)
    (TRAIN + ["--lr", "inf"], 2, "--lr inf: the learning rate must be positive and finite"),
    (TRAIN + ["--steps", "99999999999999999999"], 2, "and at most 1,000,000,000"),
    (TRAIN + ["--seed", "-1"], 2, "--seed -1: seeds are 0 or more"),
    (TRAIN + ["--lock-image", "--lock-image-unlocked-layers", "-1"], 2, "--lock-image-unlocked-layers -1"),
    (["train-vqa", "--width", "-1", "--out", "{w}/run"], 2, "--width -1: give 1 or more"),
    (["train-caption", "--layers", "0", "--out", "{w}/run"], 2, "--layers 0: give 1 or more"),
    (["embed", "--model", "{w}/model", "--texts", "{w}/texts.txt", "--out", "{w}/e", "--shard-size", "-3"], 2,
     "--shard-size"),
    (["zeroshot", "--model", "{w}/model", "--dataset", "synthetic", "--limit", "-5", "--out", "{w}/zs"], 2, "--limit"),
    (["probe", "--model", "{w}/model", "--dataset", "synthetic", "--train-limit", "-5"], 2, "--train-limit"),
    (["probe", "--model", "{w}/model", "--dataset", "synthetic", "--shots", "0"], 2, "--shots"),
    (["demo", "--steps", "0", "--out", "{w}/demo"], 2, "--steps"),
    (["demo", "--examples", "-3", "--out", "{w}/demo"], 2, "--examples"),
    (["ground", "{w}/image.png", "a red thing", "--model", "{w}/model", "--window", "-4"], 2, "--window"),
    # refused once the run has begun making its folder: the folder goes again
    (["train", "--architecture", "nonexist", "--out", "{w}/run"], 2, "--architecture: 'nonexist' is neither"),
    (["train", "--architecture", "tiny", "--init", "{w}/missing", "--out", "{w}/run"], 2, "no config.json here"),
    (TRAIN + ["--eval-data", "folder:{w}/missing", "--eval-every", "1"], 2, "no such folder"),
    (["train-caption", "--decoder", "bogus", "--towers", "tiny", "--out", "{w}/run"], 2, "unknown decoder"),
    (["train-vqa", "--towers", "nonexist", "--out", "{w}/run"], 2, "--towers: 'nonexist' is neither"),
    # sizes no machine holds, refused before anything is allocated; a std that divides by zero
    (["classify", "{w}/image.png", "--model", "{w}/huge", "--labels", "a,b"], 2, "billion parameters"),
    (["classify", "{w}/image.png", "--model", "{w}/zero-std", "--labels", "a,b"], 2, "vision.std is"),
    (["classify", "{w}/image.png", "--model", "{w}/wide", "--labels", "a,b"], 2, "vision.image_size is 1,000,000"),
    # text files that are not UTF-8, folders given as files, a CSV with no rows, a tar that is none
    (["classify", "{w}/image.png", "--model", "{w}/model", "--labels-file", "{w}/latin1.txt"], 2,
     "latin1.txt: line 2 is not UTF-8 text (byte 0xe9)"),
    (["classify", "{w}/image.png", "--model", "{w}/model", "--labels-file", "{w}/model"], 2, "a folder, not a file"),
    (["classify", "{w}/image.png", "--model", "{w}/model", "--labels", "a,b", "--templates", "{w}/latin1.txt"], 2,
     "latin1.txt: line 2 is not UTF-8 text"),
    (["embed", "--model", "{w}/model", "--texts", "{w}/latin1.txt", "--out", "{w}/e"], 2, "not UTF-8 text"),
    (["search", "{w}/store", "--queries", "{w}/latin1.txt"], 2, "latin1.txt: line 2 is not UTF-8 text"),
    (["zeroshot", "--model", "{w}/model", "--dataset", "csv:{w}/header-only.csv", "--out", "{w}/zs"], 2,
     "a header and no rows"),
    (["embed", "--model", "{w}/model", "--images", "tar:{w}/garbage.tar", "--out", "{w}/e"], 2,
     "garbage.tar: unreadable"),
    # sizes that cannot work, in an exported folder's preprocess.json and in ground's window
    (["classify", "{w}/image.png", "--model", "{w}/absurd-export", "--labels", "a,b"], 2,
     "preprocess.json: image_size 1000000000"),
    (["ground", "{w}/image.png", "a red square", "--model", "{w}/model", "--window", "100000", "--out", "{w}/g.png"],
     2, "--window 100000: give 1 to 16 pixels"),
]


@pytest.mark.parametrize("args,code,words", ROWS, ids=lambda x: " ".join(x)[:60] if isinstance(x, list) else None)
def test_a_bad_invocation_is_one_error_line_and_writes_nothing(world, args, code, words):
    before = _snapshot(world)
    result = runner.invoke(app, [a.format(w=world) for a in args], env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and words in errors[0], result.output
    assert _snapshot(world) == before
    assert not (world / "pwned.txt").exists()


def test_a_folder_that_shadows_a_preset_is_refused(world, monkeypatch):
    monkeypatch.chdir(world)
    (world / "tiny").mkdir()
    try:
        result = runner.invoke(app, ["classify", "image.png", "--model", "tiny", "--labels", "a,b"])
        assert result.exit_code == 2 and "pass ./tiny for the folder" in result.output, result.output
        assert runner.invoke(app, ["classify", "image.png", "--model", "./model", "--labels", "a,b"]).exit_code == 0
    finally:
        (world / "tiny").rmdir()


def test_repeated_and_colliding_labels_warn_by_name(world):
    result = runner.invoke(app, ["classify", str(world / "image.png"), "--model", str(world / "model"),
                                 "--labels", "cat,T-shirt,cat,t shirt"])
    assert result.exit_code == 0, result.output
    assert "warning: label 'cat' is given twice" in result.output
    assert "warning: labels 'T-shirt' and 't shirt' read the same" in result.output


def test_a_damaged_classifier_cache_entry_cut_short_or_bit_flipped_is_rebuilt(world, tmp_path):
    from grounding.inference.encode import cached_text_classifier
    from grounding.saved import load

    model = load(world / "model")
    first = cached_text_classifier(model, ["red", "blue"], ["a {}."])
    (entry,) = (tmp_path / "cache" / "classifiers").glob("*.safetensors")  # conftest's cache
    whole = entry.read_bytes()
    flipped = bytearray(whole)
    flipped[-3] ^= 0x40  # one bit of the last number: still a readable file of the right shape
    for damage in (whole[:40], bytes(flipped)):
        entry.write_bytes(damage)
        with pytest.warns(UserWarning, match="damaged classifier cache entry; made it again"):
            again = cached_text_classifier(model, ["red", "blue"], ["a {}."])
        assert torch.equal(first, again) and entry.read_bytes() == whole


def test_a_csv_with_a_byte_order_mark_reads(world, tmp_path):
    (tmp_path / "image.png").write_bytes((world / "image.png").read_bytes())
    (tmp_path / "labels.csv").write_bytes("\ufeffimage,label\nimage.png,red\n".encode("utf-8"))
    result = runner.invoke(app, ["zeroshot", "--model", str(world / "model"), "--dataset",
                                 f"csv:{tmp_path / 'labels.csv'}", "--out", str(tmp_path / "zs"), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "zs" / "summary.json").read_text())["examples"] == 1


def test_the_pickle_payload_is_real_and_loading_never_runs_it(world, tmp_path):
    from grounding.saved import load

    marker = tmp_path / "ran.txt"
    torch.save(Payload(marker), tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="evil.pt"):
        load(tmp_path / "evil.pt", activation="gelu")
    assert not marker.exists()
    pickle.loads(pickle.dumps(Payload(marker)))  # what a plain unpickler would do
    assert marker.read_text() == "pwned"


def test_an_output_folder_that_cannot_be_written_is_one_error_line(tmp_path):
    """Root writes anywhere, so as root the command runs without the capability to override
    file permissions (util-linux's setpriv), as an ordinary user would."""
    (tmp_path / "read-only").mkdir()
    (tmp_path / "read-only").chmod(0o555)
    command = [sys.executable, "-c", "from grounding.interfaces.cli import app; app()", "train", "--architecture", "tiny",
               "--out", str(tmp_path / "read-only" / "run")]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without util-linux's setpriv: cannot drop the right to write anywhere")
        caps = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "(read-only); choose a folder you can write to" in errors[0] and "Traceback" not in result.stderr
    assert list((tmp_path / "read-only").iterdir()) == []


def test_a_run_whose_loss_stops_being_a_number_stops_with_its_last_good_checkpoint(tmp_path):
    def strict(constant):
        raise ValueError(f"{constant} is not JSON")

    result = runner.invoke(app, ["train", "--architecture", "tiny", "--lr", "900", "--steps", "40", "--save-every", "2",
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "stopped: the weights stopped being numbers at step" in result.output, \
        result.output
    assert "start again with a lower --lr" in result.output and "Traceback" not in result.output
    log = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line, parse_constant=strict) for line in log]
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert kept and rows and int(kept[-1].split("-")[1]) <= rows[-1]["step"] < 40
    import grounding

    assert all(torch.isfinite(t).all() for t in grounding.load(tmp_path / "run").state_dict().values())

