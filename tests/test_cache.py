"""One cache (grounding/cache.py): one root, every kind with a limit past which the least
recently used entries go, `grounding cache info|clear`, and tests that never touch the user's."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from typer.testing import CliRunner

from grounding import cache
from grounding.interfaces.cli import app

runner = CliRunner()


def _entry(kind: str, name: str, size: int, age: int) -> Path:
    path = cache.folder(kind) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (1_000_000 + age, 1_000_000 + age))
    return path


def test_the_tests_cache_is_their_own(tmp_path):
    assert cache.root() == tmp_path / "cache" and not str(cache.root()).startswith(str(Path.home() / ".cache"))


def test_the_least_recently_used_go_past_the_limit(monkeypatch):
    monkeypatch.setitem(cache.KINDS, "classifiers", dataclasses.replace(cache.KINDS["classifiers"], limit=250))
    old, middle, new = (_entry("classifiers", f"{n}.safetensors", 100, age) for n, age in (("a", 1), ("b", 2), ("c", 3)))
    cache.touch(old)  # used just now: the most recent
    assert cache.evict("classifiers") == 100
    assert old.exists() and new.exists() and not middle.exists()
    assert cache.evict("classifiers") == 0


def test_a_new_classifier_entry_makes_room_first(monkeypatch):
    from grounding.inference.scores import classifier_path

    monkeypatch.setitem(cache.KINDS, "classifiers", dataclasses.replace(cache.KINDS["classifiers"], limit=150))
    stale = [_entry("classifiers", f"{n}.safetensors", 100, n) for n in range(3)]
    path = classifier_path("model", ["a photo of a cat."], 1, "float32")
    assert path.parent == cache.folder("classifiers") and not path.exists()
    assert [p.exists() for p in stale] == [False, False, True]


def test_info_and_clear_from_the_command_line():
    _entry("classifiers", "a.safetensors", 2 ** 20, 1)
    (cache.folder("features") / "set").mkdir(parents=True)
    (cache.folder("features") / "set" / "part.safetensors").write_bytes(b"x" * 2 ** 20)
    result = runner.invoke(app, ["cache", "info"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "classifiers" in result.output and "1.0 MiB" in result.output, result.output
    result = runner.invoke(app, ["cache", "clear", "features"])
    assert result.exit_code == 0 and "freed 1.0 MiB" in result.output
    assert not (cache.folder("features") / "set").exists() and (cache.folder("classifiers") / "a.safetensors").exists()
    assert runner.invoke(app, ["cache", "clear"]).exit_code == 0 and cache.entries("classifiers") == []
    bad = runner.invoke(app, ["cache", "clear", "bogus"])
    assert bad.exit_code == 2 and "unknown cache kind 'bogus'" in bad.output
