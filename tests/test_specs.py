"""One SPEC grammar for every command that reads data (data/specs.py): a kind serves the roles
the registry gives it, its options are checked by name and value, and the same spec reads the
same way in every command."""
from __future__ import annotations

import pytest
from PIL import Image
from typer.testing import CliRunner

from grounding.data.datasets import open_dataset
from grounding.data.inputs import list_items
from grounding.data.pairs import listed_pairs
from grounding.data.retrieval import open_retrieval
from grounding.data.specs import parse_mixture, parse_spec
from grounding.interfaces.cli import app

runner = CliRunner()


def test_options_are_parsed_once_typed_and_checked():
    spec = parse_spec("synthetic:per_label=3,seed=7,multi", "dataset")
    assert (spec.kind, spec.options) == ("synthetic", {"per_label": 3, "seed": 7, "multi": True})
    assert str(spec.with_options(seed=8)) == "synthetic:per_label=3,seed=8,multi"
    for bad, words in (("synthetic:bogus=3", "unknown option 'bogus'; it takes per_label, seed, size, multi"),
                       ("synthetic:size=0", "size=0 must be at least 8"),
                       ("synthetic:per_label=-5", "per_label=-5 must be at least 1"),
                       ("synthetic:seed=x", "seed='x' is not a whole number"),
                       ("synthetic:multi=2", "multi is a flag"),
                       ("flags:all", "flags takes nothing after it"),
                       ("csv", "say which, as csv:PATH")):
        with pytest.raises(ValueError, match=words):
            parse_spec(bad, "dataset")


def test_each_kind_serves_its_roles_only():
    with pytest.raises(ValueError, match="fashion-mnist does not serve here; use synthetic, csv:PATH"):
        parse_spec("fashion-mnist", "train")
    with pytest.raises(ValueError, match="synthetic takes no options here|unknown option 'n'"):
        parse_spec("synthetic:n=5", "train")
    assert parse_spec("synthetic:n=5", "pairs").option("n", 500) == 5
    assert [(str(s), w) for s, w in parse_mixture("synthetic+csv:a.csv@0.25")] == [("synthetic", None),
                                                                                  ("csv:a.csv", 0.25)]
    with pytest.raises(ValueError, match="must lie in"):
        parse_mixture("synthetic@1.5")


def test_one_captioned_list_reads_alike_for_training_retrieval_and_embedding(tmp_path):
    for i in range(3):
        Image.new("RGB", (16, 16), (80 * i, 0, 0)).save(tmp_path / f"{i}.png")
    (tmp_path / "pairs.csv").write_text("image,caption\n0.png,a black square\n1.png,a dark red square\n"
                                        "2.png,a red square\n")
    spec = f"csv:{tmp_path / 'pairs.csv'}"
    train = [(str(p.image), p.captions[0]) for p in listed_pairs(spec)]
    pairs = open_retrieval(spec)
    items = [(i.key, i.caption) for i in list_items(spec)[0]]
    assert train == [(key, caption) for key, (caption,) in zip(pairs.keys, pairs.captions)] == items
    assert len(train) == 3


def test_the_commands_refuse_a_bad_option_by_name(tmp_path):
    for args in (["zeroshot", "--model", "tiny", "--dataset", "synthetic:bogus=3", "--out", str(tmp_path / "z")],
                 ["retrieval-eval", "--model", "tiny", "--pairs", "synthetic:n=0", "--out", str(tmp_path / "r")],
                 ["train", "--architecture", "tiny", "--data", "synthetic:seed=2", "--out", str(tmp_path / "t")]):
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert result.exit_code == 2 and len(errors) == 1 and "synthetic" in errors[0], result.output
        assert not (tmp_path / "t").exists()
    assert len(open_dataset("synthetic:per_label=2")) == 48
