"""Captioning: both decoders train and resume, decoding (greedy, beam, nucleus) is consistent
and cached decoding equals uncached, a tiny model beats the nearest-neighbour caption, and the
commands work."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from grounding.interfaces.cli import app
from grounding.tasks.captioning.data import SyntheticCaptions, normalise_caption, open_captions
from grounding.tasks.captioning.decode import generate
from grounding.tasks.captioning.evaluate import evaluate_captions
from grounding.tasks.captioning.train import new_model, train_captioner
from grounding.tasks.options import CaptionOptions
from grounding.training.options import LoopConfig

runner = CliRunner()


def _options(steps: int, decoder: str = "transformer", **kw) -> CaptionOptions:
    return CaptionOptions(loop=LoopConfig(steps=steps, batch_size=48, lr=3e-3, warmup=10, save_every=50),
                          towers="tiny", decoder=decoder, width=64, layers=2, **kw)


def _pixels(model, n: int = 6, seed: int = 5) -> torch.Tensor:
    return torch.stack([model.preprocess(e.ref.read(32)) for e in SyntheticCaptions(seed=seed).batch(0, n)])


@pytest.mark.parametrize("decoder", ["transformer", "lstm"])
def test_cached_decoding_equals_recomputing_the_prefix(decoder):
    model = new_model(_options(1, decoder)).eval()
    pixels = _pixels(model)
    assert generate(model, pixels, max_length=12) == generate(model, pixels, max_length=12, cache=False)
    state = model.decoder.start(model.encode(pixels))
    ids = model.tokenizer(["a small red circle"] * len(pixels))[:, :6]
    stepwise = torch.cat([model.decoder.step(ids[:, t:t + 1], state) for t in range(6)], dim=1)
    whole = model.decoder.step(ids, model.decoder.start(model.encode(pixels), cache=False))
    assert torch.allclose(stepwise, whole, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_captioner(tmp_path_factory, trained_tiny):
    """A tiny captioner whose image tower and tokenizer start from the tiny CLIP model's."""
    out = tmp_path_factory.mktemp("caption")
    return train_captioner(_options(400, init=str(trained_tiny[1])), out / "model", show_progress=False), out


@pytest.mark.slow
def test_decoding_methods_agree_where_they_should(tiny_captioner):
    model, _ = tiny_captioner
    pixels = _pixels(model)
    greedy = generate(model, pixels)
    assert generate(model, pixels, "beam", beam=1) == greedy
    assert generate(model, pixels, "top-p", top_p=1e-6, seed=3) == greedy  # the nucleus is the top token
    sampled = generate(model, pixels, "top-p", top_p=0.95, seed=3)
    assert sampled == generate(model, pixels, "top-p", top_p=0.95, seed=3)


class _MarkovDecoder:
    """A decoder whose next-token probabilities depend only on the last token, where greedy
    decoding is a trap: "a" is likelier first (0.55 against 0.45), but "a c" ends with 0.55 x 0.36
    = 0.198 and "b" with 0.45 x 0.9 = 0.405, the likeliest caption of all."""

    SOT, EOT, A, B, C = 1, 2, 3, 4, 5
    NEXT = {SOT: {A: 0.55, B: 0.45}, A: {C: 0.36, B: 0.34, EOT: 0.30}, B: {EOT: 0.9, A: 0.05, B: 0.05}, C: {EOT: 1.0}}

    def start(self, image, cache=True):
        return {}

    def reorder(self, state, index):
        return state

    def step(self, ids, state):
        probs = torch.full((len(ids), ids.shape[1], 6), 1e-9)
        for row, last in enumerate(ids[:, -1].tolist()):
            for token, p in self.NEXT.get(last, {self.EOT: 1.0}).items():
                probs[row, -1, token] = p
        return probs.log()


class _MarkovCaptioner:
    def __init__(self):
        d = self.decoder = _MarkovDecoder()
        text = SimpleNamespace(eot_token_id=d.EOT, context_length=8)
        self.config = SimpleNamespace(towers=SimpleNamespace(text=text))
        words = {d.A: "a", d.B: "b", d.C: "c"}
        self.tokenizer = SimpleNamespace(sot_token_id=d.SOT,
                                         decode=lambda ids: " ".join(words[i] for i in ids if i in words))

    def encode(self, pixels):
        return pixels


def test_beam_search_escapes_the_greedy_trap_and_finds_the_likeliest_caption():
    model, pixels = _MarkovCaptioner(), torch.zeros(2, 3)
    assert generate(model, pixels) == ["a c", "a c"]
    assert generate(model, pixels, "beam", beam=1, length_penalty=0.0) == ["a c", "a c"]
    assert generate(model, pixels, "beam", beam=2, length_penalty=0.0) == ["b", "b"]


@pytest.mark.slow
def test_tiny_captioner_beats_the_nearest_neighbour_caption(tiny_captioner):
    model, out = tiny_captioner
    examples = SyntheticCaptions(seed=1000, split="held_out").batch(0, 150)  # unseen colour-shape pairs
    pool = SyntheticCaptions(seed=0).batch(0, 500)
    summary = evaluate_captions(model, examples, pool, out / "eval")
    assert summary["model"]["CIDEr-D"] > summary["nearest_neighbour"]["CIDEr-D"]
    assert summary["model"]["BLEU-4"] > summary["nearest_neighbour"]["BLEU-4"]
    record = json.loads((out / "eval" / "predictions.jsonl").read_text().splitlines()[0])
    assert {"image", "references", "generated", "nearest_neighbour"} <= set(record)


def test_lstm_decoder_trains_and_resumes(tmp_path):
    straight = train_captioner(_options(20, "lstm"), tmp_path / "a", show_progress=False)
    train_captioner(_options(10, "lstm"), tmp_path / "b", show_progress=False)
    resumed = train_captioner(_options(20, "lstm"), tmp_path / "b", show_progress=False)
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_csv_captions_hold_images_out(tmp_path):
    rows = ["image,caption"]
    for i, e in enumerate(SyntheticCaptions(seed=2).batch(0, 10)):
        e.ref.scene.render(32).save(tmp_path / f"{i}.png")
        rows += [f"{i}.png,{e.captions[0]}", f"{i}.png,\"{e.captions[0]}, again\""]
    (tmp_path / "c.csv").write_text("\n".join(rows) + "\n")
    data, held_out = open_captions(f"csv:{tmp_path / 'c.csv'}")
    assert len(held_out) == 2 and len(data.examples) == 8 and len(held_out[0].captions) == 2
    assert normalise_caption("A red circle, and a Square.") == "a red circle and a square"


@pytest.mark.slow
def test_caption_commands(tmp_path, tiny_captioner):
    result = runner.invoke(app, ["train-caption", "--out", str(tmp_path / "run"), "--towers", "tiny", "--steps", "3",
                                 "--batch-size", "16", "--width", "32", "--decoder", "lstm"])
    assert result.exit_code == 0, result.output
    assert "nearest neighbour" in result.output and "CIDEr-D" in result.output
    model, out = tiny_captioner
    SyntheticCaptions(seed=4).batch(0, 1)[0].ref.scene.render(32).save(tmp_path / "scene.png")
    for extra in ([], ["--beam", "3"], ["--top-p", "0.9", "--seed", "1"]):
        shown = runner.invoke(app, ["caption", str(tmp_path / "scene.png"), "--model", str(out / "model"), *extra])
        assert shown.exit_code == 0 and shown.output.startswith(str(tmp_path / "scene.png")), shown.output
    wrong = runner.invoke(app, ["caption", str(tmp_path / "scene.png"), "--model", str(tmp_path / "run" / "eval")])
    assert wrong.exit_code != 0


def test_tuxpaint_stamps_load_with_their_english_caption(tmp_path):
    from PIL import Image

    from grounding.data.clipart import tuxpaint_pairs
    from grounding.data.sources import MissingPackageError

    (tmp_path / "animals").mkdir()
    Image.new("RGBA", (20, 20)).save(tmp_path / "animals" / "cat.png")
    (tmp_path / "animals" / "cat.txt").write_text("A cat sitting down.\nfr.utf8=Un chat assis.\n", encoding="utf-8")
    (tmp_path / "animals" / "svgonly.txt").write_text("No PNG beside this one.\n")
    pairs = tuxpaint_pairs(tmp_path)
    assert [p.captions for p in pairs] == [["A cat sitting down."]]
    with pytest.raises(MissingPackageError, match="apt-get install tuxpaint-stamps-default"):
        tuxpaint_pairs(tmp_path / "missing")
