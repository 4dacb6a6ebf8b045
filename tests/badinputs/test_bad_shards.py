"""Tar shards that are broken in each way a download or a careless writer breaks them: `embed`
embeds what can be read, names each shard and key it left out, and exits 0, as training does."""
from __future__ import annotations

import io
import tarfile

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from grounding.interfaces.cli import app
from grounding.tasks.retrieval.store import Store


def _png(value: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((24, 24, 3), value, np.uint8)).save(out, "PNG")
    return out.getvalue()


def _shard(path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_embed_skips_and_lists_truncated_empty_garbage_shards_and_repeated_keys(saved_tiny, tmp_path):
    _shard(tmp_path / "s-0.tar", [("a.png", _png(10)), ("a.txt", b"first a"), ("b.png", _png(20)),
                                  ("b.txt", b"a b"), ("a.png", _png(30)), ("a.txt", b"second a")])
    _shard(tmp_path / "s-1.tar", [(f"c{i}.png", _png(40 + i)) for i in range(6)])
    whole = (tmp_path / "s-1.tar").read_bytes()
    (tmp_path / "s-1.tar").write_bytes(whole[:len(whole) // 2])  # a download cut halfway
    (tmp_path / "s-2.tar").write_bytes(b"")
    (tmp_path / "s-3.tar").write_bytes(b"not a tar at all" * 64)
    result = CliRunner().invoke(app, ["embed", "--model", str(saved_tiny), "--images", f"tar:{tmp_path}/s-{{0..3}}.tar",
                                      "--out", str(tmp_path / "store"), "--workers", "0"])
    assert result.exit_code == 0, result.output
    _, keys, captions, skipped = Store(tmp_path / "store").read()
    by_key = dict(zip((k.rsplit("/", 1)[-1] for k in keys), captions))
    assert by_key["s-0.tar:a.png"] == "first a" and by_key["s-0.tar:b.png"] == "a b"  # the first a, not the second
    cut = [k for k in by_key if k.startswith("s-1.tar:")]
    assert 1 <= len(cut) < 6  # what was read before the break
    assert len(keys) == 2 + len(cut)
    assert any("s-0.tar:a: this key appears twice (a.png again)" in line for line in skipped)
    assert any("s-0.tar:a: this key appears twice (a.txt again)" in line for line in skipped)
    assert any("s-1.tar: unreadable after" in line for line in skipped)
    assert any("s-2.tar: unreadable" in line for line in skipped)
    assert any("s-3.tar: unreadable" in line for line in skipped)
    assert "None" not in "\n".join(skipped) and "Traceback" not in result.output
    assert f"skipped {len(skipped)}" in result.output


def test_training_streams_name_a_key_repeated_in_a_row_and_a_cut_shard(tmp_path):
    from itertools import islice

    from grounding.data.pairs import ShardSource, StreamPosition

    _shard(tmp_path / "d-0.tar", [("a.png", _png(10)), ("a.txt", b"first a"), ("a.png", _png(30)),
                                  ("a.txt", b"second a"), ("b.png", _png(20)), ("b.txt", b"a b")])
    _shard(tmp_path / "d-1.tar", [(f"c{i}.png", _png(40 + i)) for i in range(2)] + [("c0.txt", b"c")])
    whole = (tmp_path / "d-1.tar").read_bytes()
    (tmp_path / "d-1.tar").write_bytes(whole[:700])  # inside the first image's data
    problems: list[dict] = []
    source = ShardSource("tar:d", [str(tmp_path / "d-0.tar"), str(tmp_path / "d-1.tar")], shuffle_buffer=1)
    samples = [sample for sample, _ in islice(source.samples(0, 0, 1, StreamPosition(), problems), 6)]
    captions = {c for s in samples for c in s.captions}
    assert {"a b", "first a"} <= captions and "second a" not in captions
    reasons = [p["reason"] for p in problems]
    assert any("a.png appears twice in a row (one key for two samples)" in r for r in reasons), reasons
    assert any("d-1.tar" in r and "cut short or corrupt" in r for r in reasons), reasons
    assert not any(p["key"] == "None" or "None:" in p["key"] for p in problems)
