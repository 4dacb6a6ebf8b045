"""The corpus through the one image reader and through every command that reads images: each
accepted case gives the right pixels, each rejected one a message naming its file, and no case
stops a command that reads many images."""
from __future__ import annotations

import json
import shutil

import pytest
from badinput_corpus import CASES, tar_member, write_tar
from typer.testing import CliRunner

from grounding.data.images import BadImageError, decode_image, load_image
from grounding.interfaces.cli import app

runner = CliRunner()
ACCEPTED = [c for c in CASES if c.accept]
REJECTED = [c for c in CASES if not c.accept]


def _close(got, want, tolerance=40) -> bool:
    return max(abs(a - b) for a, b in zip(got, want)) <= tolerance


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_file_is_read_right_or_refused_by_name(corpus, case):
    path = corpus / case.name
    if case.accept:
        image = load_image(path)
        assert image.mode == "RGB"
        if case.size:
            assert image.size == case.size
        for xy, colour in case.pixels:
            assert _close(image.getpixel(xy), colour), (xy, image.getpixel(xy), colour)
    else:
        with pytest.raises(BadImageError) as error:
            load_image(path)
        assert str(path) in str(error.value) and case.expect in str(error.value)
        assert "\n" not in str(error.value)


@pytest.mark.parametrize("case", [c for c in CASES if c.in_tar], ids=lambda c: c.name)
def test_tar_members_go_through_the_same_reader(corpus, case):
    data = (corpus / case.name).read_bytes()
    name = f"shard-000.tar:{case.name}"
    if case.accept:
        image = decode_image(data, name)
        for xy, colour in case.pixels:
            assert _close(image.getpixel(xy), colour)
    else:
        with pytest.raises(BadImageError, match=case.expect) as error:
            decode_image(data, name)
        assert name in str(error.value)


def _assert_rejections_named(messages: list[str], cases, name_of=lambda c: c.name) -> None:
    for case in cases:
        hits = [m for m in messages if name_of(case) in m]
        assert hits, f"{case.name} is not reported among {messages}"
        assert case.expect in hits[0], hits[0]


def test_classify_answers_the_good_files_and_names_the_bad_ones(corpus, saved_tiny):
    files = [str(corpus / c.name) for c in CASES if c.name != "folder.jpg"]  # a folder given is searched
    result = runner.invoke(app, ["classify", *files, "--model", str(saved_tiny), "--labels", "red,green,blue",
                                 "--json", "--device", "cpu"])
    assert result.exit_code == 1, result.output  # some files could not be read
    assert "Traceback" not in result.output
    answered = [json.loads(line)["path"] for line in result.stdout.splitlines() if line.startswith("{")]
    assert answered == [str(corpus / c.name) for c in ACCEPTED]
    _assert_rejections_named([line for line in result.output.splitlines() if line.startswith("skipped:")],
                             [c for c in REJECTED if c.name != "folder.jpg"])
    empty = runner.invoke(app, ["classify", str(corpus / "folder.jpg"), "--model", str(saved_tiny), "--labels", "a,b"])
    assert empty.exit_code == 2 and "a folder with no images in it" in empty.output


def test_zeroshot_counts_the_good_files_and_lists_the_bad_ones(corpus, saved_tiny, tmp_path):
    root = tmp_path / "labelled"
    shutil.copytree(corpus, root / "red", symlinks=True)
    (root / "blue").mkdir()
    shutil.copy(corpus / "image.tif", root / "blue" / "blue.tif")
    result = runner.invoke(app, ["zeroshot", "--model", str(saved_tiny), "--dataset", f"folder:{root}", "--out",
                                 str(tmp_path / "zs"), "--workers", "0", "--device", "cpu", "--no-cache"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "zs" / "summary.json").read_text())
    assert summary["examples"] == len(ACCEPTED) + 1 and summary["skipped"] == len(REJECTED)
    _assert_rejections_named(summary["skipped_files"], REJECTED)


def test_embed_a_folder_keeps_the_good_files_and_lists_the_bad_ones(corpus, saved_tiny, tmp_path):
    result = runner.invoke(app, ["embed", "--model", str(saved_tiny), "--images", str(corpus), "--out",
                                 str(tmp_path / "store"), "--workers", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    from grounding.tasks.retrieval.store import Store

    _, keys, _, skipped = Store(tmp_path / "store").read()
    assert sorted(keys) == sorted(str(corpus / c.name) for c in ACCEPTED)
    _assert_rejections_named(skipped, REJECTED)


def test_embed_tar_shards_is_not_stopped_by_a_bomb_or_a_bad_member(corpus, saved_tiny, tmp_path):
    shard = write_tar(corpus, tmp_path / "shard-000.tar")
    result = runner.invoke(app, ["embed", "--model", str(saved_tiny), "--images", f"tar:{shard}", "--out",
                                 str(tmp_path / "store"), "--workers", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    from grounding.tasks.retrieval.store import Store

    _, keys, captions, skipped = Store(tmp_path / "store").read()
    assert sorted(keys) == sorted(f"{shard}:{tar_member(c)}" for c in ACCEPTED)
    assert sorted(captions) == sorted(c.name for c in ACCEPTED)  # each member kept its own caption
    in_tar = [c for c in REJECTED if c.in_tar]
    _assert_rejections_named(skipped, in_tar, lambda c: f"{shard}:{tar_member(c)}")


def test_training_skips_and_lists_every_bad_file(corpus, tmp_path):
    data = tmp_path / "captioned"
    shutil.copytree(corpus, data, symlinks=True)
    for case in CASES:
        (data / case.name).with_suffix(".txt").write_text(f"a picture called {case.name}\n")
    captions = {"empty-caption": b"\n", "latin-1-caption": "caf\xe9 cr\xe8me".encode("latin-1"),
                "huge-caption": ("a very long caption " * 2000).encode()}
    for name, caption in captions.items():
        shutil.copy(corpus / "image.bmp", data / f"{name}.bmp")
        (data / f"{name}.txt").write_bytes(caption)
    result = runner.invoke(app, ["train", "--data", f"folder:{data}", "--architecture", "tiny", "--epochs", "1",
                                 "--batch-size", "4", "--workers", "0", "--max-bad-fraction", "1", "--device", "cpu",
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    listed = [json.loads(line) for line in (tmp_path / "run" / "skipped.jsonl").read_text().splitlines()]
    reasons = [row["reason"] for row in listed]
    _assert_rejections_named(reasons, REJECTED)
    assert any("latin-1-caption.txt" in r and "not UTF-8" in r for r in reasons), reasons
    assert any("empty-caption" in r and "empty" in r for r in reasons), reasons
    assert len({row["key"] for row in listed}) == len(listed) == len(REJECTED) + 2  # each bad file listed once
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["truncated"] >= 1  # the huge caption, cut to the context length
