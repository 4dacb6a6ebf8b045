import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from grounding.data.inputs import list_items
from grounding.data.specs import expand_braces
from grounding.data.synthetic import World
from grounding.evaluation.metrics import rank_summary, retrieval_ranks
from grounding.interfaces.cli import app
from grounding.saved import fingerprint, save_model
from grounding.tasks.phrase_grounding.evaluate import pointing_game
from grounding.tasks.phrase_grounding.locate import strongest_box
from grounding.tasks.retrieval.embed import embed_images
from grounding.tasks.retrieval.index import Index, build_index, make_index

runner = CliRunner()


def scene_folder(root, n=20):
    root.mkdir(parents=True, exist_ok=True)
    world, rng = World(), np.random.default_rng(0)
    for i in range(n):
        world.sample(rng, "any").render(32).save(root / f"{i:03d}.png")
    return root


def test_brace_patterns_expand():
    assert expand_braces("s-{008..011}.tar") == ["s-008.tar", "s-009.tar", "s-010.tar", "s-011.tar"]
    assert expand_braces("{a,b}/{1..2}") == ["a/1", "a/2", "b/1", "b/2"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_ranks_and_recall_by_hand_with_ties():
    similarity = np.array([[0.9, 0.1, 0.9],   # tie with another: counts in its favour -> 1
                           [0.5, 0.4, 0.1],   # one above -> 2
                           [0.3, 0.8, 0.2]])  # two above -> 3
    ranks = retrieval_ranks(similarity)
    assert ranks.tolist() == [1, 2, 3]
    summary = rank_summary(ranks)
    assert summary["recall@1"] == pytest.approx(1 / 3) and summary["recall@5"] == 1.0
    assert summary["mean_rank"] == 2.0 and summary["median_rank"] == 2.0


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_approximate_index_returns_the_exact_top1_on_separated_data(kind):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((4000, 64)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    queries = data[:200] + 0.05 * rng.standard_normal((200, 64)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = make_index(data, "flat").search(queries, 1)[1][:, 0]
    approx = make_index(data, kind).search(queries, 1)[1][:, 0]
    assert (exact == np.arange(200)).all()
    assert np.mean(approx == exact) >= 0.99


def test_resumed_embedding_equals_a_one_pass_run(tiny_model, tmp_path):
    folder = scene_folder(tmp_path / "images", 20)
    whole = embed_images(tiny_model, str(folder), tmp_path / "whole", "tiny", shard_size=6, workers=0,
                         show_progress=False)
    part = embed_images(tiny_model, str(folder), tmp_path / "part", "tiny", shard_size=6, workers=0,
                        show_progress=False)
    for suffix in (".json", ".npy"):  # as if killed while writing the third shard
        part.shard_path(2).with_suffix(suffix).unlink()
    (part.shard_path(3).with_suffix(".json")).unlink()
    resumed = embed_images(tiny_model, str(folder), tmp_path / "part", "tiny", shard_size=6, workers=2,
                           show_progress=False)
    a, b = whole.read(), resumed.read()
    assert a[1] == b[1] and np.allclose(a[0], b[0], atol=1e-6)
    assert len(a[1]) == 20


def test_a_store_refuses_a_different_model_on_resume(tiny_model, tmp_path):
    import grounding

    folder = scene_folder(tmp_path / "images", 4)
    embed_images(tiny_model, str(folder), tmp_path / "e", "tiny", workers=0, show_progress=False)
    other = grounding.load("tiny")
    other.logit_scale.data += 1
    with pytest.raises(ValueError, match="made differently"):
        embed_images(other, str(folder), tmp_path / "e", "tiny", workers=0, show_progress=False)


def test_webdataset_shards_with_captions(tiny_model, tmp_path):
    world, rng = World(), np.random.default_rng(1)
    for s in range(2):
        with tarfile.open(tmp_path / f"shard-{s:03d}.tar", "w") as tar:
            for i in range(3):
                scene = world.sample(rng)
                for name, data in ((f"{s}{i}.png", _png(scene.render(32))), (f"{s}{i}.txt", scene.caption().encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    spec = f"tar:{tmp_path}/shard-{{000..001}}.tar"
    items, left_out = list_items(spec)
    assert len(items) == 6 and not left_out and all(item.caption.startswith("a ") for item in items)
    store = embed_images(tiny_model, spec, tmp_path / "e", "tiny", workers=0, show_progress=False)
    vectors, keys, captions, skipped = store.read()
    assert vectors.shape == (6, 32) and not skipped and captions == [item.caption for item in items]


def _png(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_index_refuses_queries_from_another_model(tiny_model, tmp_path):
    import grounding

    folder = scene_folder(tmp_path / "images", 6)
    embed_images(tiny_model, str(folder), tmp_path / "e", "tiny", workers=0, show_progress=False)
    build_index(tmp_path / "e")
    index = Index(tmp_path / "e")
    index.check_model(fingerprint(tiny_model), 32)
    other = grounding.load("tiny")
    other.logit_scale.data += 1
    with pytest.raises(ValueError, match="built with another model"):
        index.check_model(fingerprint(other), 32)


def test_phrase_grounding_beats_chance_by_a_wide_margin(trained_tiny):
    model, _ = trained_tiny
    result = pointing_game(model, n_scenes=60)
    assert result["phrases"] > 60
    assert result["accuracy"] > 2 * result["chance"]


def test_strongest_box_follows_the_connected_peak():
    heat = np.zeros((10, 10))
    heat[2:4, 5:8] = 1.0
    heat[8, 0] = 0.9  # a separate peak, not connected
    assert strongest_box(heat) == (5, 2, 8, 4)


def test_commands_end_to_end(trained_tiny, tmp_path):
    model, _ = trained_tiny
    save_model(model, tmp_path / "m")
    folder = scene_folder(tmp_path / "images", 12)
    m = str(tmp_path / "m")
    result = runner.invoke(app, ["embed", "--model", m, "--images", str(folder), "--out", str(tmp_path / "e"),
                                 "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["index", "build", str(tmp_path / "e")]).exit_code == 0
    result = runner.invoke(app, ["search", str(tmp_path / "e"), "a red circle", "-k", "3", "--json",
                                 "--sheet", str(tmp_path / "sheet.png")])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output.splitlines()[0])["hits"]
    assert len(hits) == 3 and hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert Image.open(tmp_path / "sheet.png").size[0] > 300
    result = runner.invoke(app, ["search", str(tmp_path / "e"), "--image", str(folder / "000.png"), "-k", "1"])
    assert result.exit_code == 0 and "000.png" in result.output  # an image finds itself first
    assert runner.invoke(app, ["search", str(tmp_path / "e"), "  "]).exit_code != 0
    result = runner.invoke(app, ["ground", str(folder / "001.png"), "the red circle", "--model", m,
                                 "--out", str(tmp_path / "g.png")])
    assert result.exit_code == 0 and (tmp_path / "g.png").stat().st_size > 5000
    result = runner.invoke(app, ["retrieval-eval", "--model", m, "--pairs", "synthetic:n=60,size=32",
                                 "--out", str(tmp_path / "r"), "--workers", "0"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["text_to_image"]["recall@10"] > 10 / 60  # better than chance
    assert len((tmp_path / "r" / "ranks.jsonl").read_text().splitlines()) == 60
