"""Compositional benchmarks (data/composition.py, evaluation/compositionality.py): the built-in
world's swaps by kind, and Winoground and SugarCrepe read from miniature files written in their
published layouts, scored as a direct computation with the model's own embeddings scores them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from grounding.data.composition import open_contests
from grounding.data.synthetic import Scene, SceneObject, World
from grounding.demo import zero_shot
from grounding.evaluation.compositionality import contest_scores
from grounding.interfaces.cli import app


def test_the_swaps_of_a_scene_by_kind():
    scene = Scene((SceneObject("circle", "red", "small", 0.2, 0.5), SceneObject("square", "blue", "large", 0.8, 0.5)))
    assert scene.caption() == "a small red circle left of a large blue square"
    swaps = scene.swaps()
    assert swaps["attribute"] == ["a large red circle left of a small blue square",
                                  "a small blue circle left of a large red square"]
    assert swaps["object"] == ["a small red square left of a large blue circle"]
    assert swaps["relation"] == ["a small red circle right of a large blue square"]
    assert scene.hard_negatives() == sorted(c for group in swaps.values() for c in group)


def test_the_built_in_contests_report_relation_swaps_by_axis():
    from grounding.data.composition import synthetic_swaps

    contests = synthetic_swaps(scenes=60)
    assert {c.kind for c in contests} == {"attribute", "object", "relation, horizontal", "relation, vertical"}
    axis_words = {"horizontal": (" left of ", " right of "), "vertical": (" above ", " below ")}
    for contest in contests:
        if contest.kind.startswith("relation"):
            words = axis_words[contest.kind.removeprefix("relation, ")]
            assert any(w in contest.captions[0] for w in words) and any(w in contest.negatives[0] for w in words)


@pytest.mark.parametrize("caption, negatives", [
    ("a red cup on a blue table",
     ["a blue table on a red cup", "a red table on a blue cup", "a blue cup on a red table"]),
    ("A dog chasing the cat.", ["A cat chasing the dog"]),  # the noun swap is the same sentence: said once
    ("an egg in a box", ["a box in an egg"]),  # articles agree with their new nouns
    ("the circle to the left of the square", ["the square to the left of the circle"]),
    ("a red apple and a green pear", ["a red pear and a green apple", "a green apple and a red pear"]),
    ("a cat next to a dog", []),  # symmetric: the swap says the same
    ("a cup of tea", []),  # one noun phrase
    ("two cats", []),
])
def test_rule_made_negatives_swap_around_relations_and_attributes_and_nothing_else(caption, negatives):
    from grounding.data.negatives import swapped

    assert swapped(caption) == negatives


def test_a_twin_scene_rearranges_the_same_objects_and_never_shows_a_held_out_pair():
    from grounding.data.synthetic import World

    world = World()
    drawn = world.twinned_batch(0, 0, 200)
    scenes = [scene for scene, _ in drawn]
    held = set(world.held_out)
    assert not any((o.colour, o.shape) in held for s in scenes for o in s.objects)

    def parts(scene):  # the colours, the shapes and the sizes, each as a bag
        return [sorted(getattr(o, attr) for o in scene.objects) for attr in ("colour", "shape", "size")]

    twins = [b for a, b in zip(scenes, scenes[1:]) if parts(a) == parts(b) and a.caption() != b.caption()]
    assert len(twins) > 60  # a scene of two or more objects and its twin
    marked = [b for (a, _), (b, twin) in zip(drawn, drawn[1:]) if twin]
    assert set(twins) <= set(marked) and not drawn[0][1]
    alone = Scene((SceneObject("circle", "red", "small", 0.2, 0.5),))
    other = alone.twin(np.random.default_rng(0), {("red", "circle"), ("red", "square"), ("blue", "square")})
    assert other.caption() == "a small red square" and other.objects[0].x == 0.2  # one word changed, same place
    assert alone.twin(np.random.default_rng(0), {("red", "circle"), ("blue", "square")}) is None
    blocked = Scene((SceneObject("triangle", "red", "small", 0.2, 0.5),
                     SceneObject("square", "green", "small", 0.8, 0.5)))
    allowed = {("red", "triangle"), ("green", "square"), ("red", "square")}  # not green triangle
    twins = {blocked.twin(np.random.default_rng(seed), allowed).caption() for seed in range(20)}
    assert twins == {"a small red triangle right of a small green square"}  # only the places can change


def test_hard_negatives_come_from_the_csv_column_or_else_by_rule(tmp_path):
    import csv

    import grounding
    from grounding.config import preset
    from grounding.data.batches import PairBatches
    from grounding.data.images import TrainTransform
    from grounding.data.pairs import open_pairs

    for name, colour in (("a.png", "red"), ("b.png", "blue"), ("c.png", "green")):
        _picture(tmp_path / name, colour)
    with open(tmp_path / "pairs.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "caption", "negatives"),
                                 ("a.png", "a red square", "a blue square|a red disc"),
                                 ("b.png", "a blue cup on a table", ""), ("c.png", "green", "")])
    model = grounding.create_model(preset("tiny"))
    mixture = open_pairs(f"csv:{tmp_path / 'pairs.csv'}")
    assert mixture.sources[0].pairs[0].negatives == ["a blue square", "a red disc"]
    batch = PairBatches(mixture, model.tokenizer, TrainTransform(32, (0.5,) * 3, (0.5,) * 3), 3, 0, 0, 1,
                        hard_negatives=True).build(0, {}, [], 0)
    said = {model.tokenizer.decode(c): (model.tokenizer.decode(n), bool(h))
            for c, n, h in zip(batch.ids, batch.negatives, batch.have_negative)}
    assert said["a red square"][0] in {"a blue square", "a red disc"} and said["a red square"][1]
    assert said["a blue cup on a table"] == ("a table on a blue cup", True)  # by rule: no column for it
    assert not said["green"][1]  # nothing to swap: no negative


@pytest.mark.parametrize("caption, left", [
    ("a small red circle left of a large blue square", "a small circle left of a large square"),
    ("A Red cup, a grey mug and a white plate.", "A cup, a mug and a plate."),
    ("two dogs on the grass", "two dogs on the grass"),  # no colour word: as it was
    ("a reddish ball", "a reddish ball"),  # whole words only
])
def test_colourless_captions_lose_their_colour_words_and_nothing_else(caption, left):
    from grounding.data.colourless import colourless

    assert colourless(caption) == left


def test_grey_examples_are_drawn_in_grey_with_colourless_captions_and_negatives():
    import grounding
    from grounding.config import preset
    from grounding.data.batches import PairBatches
    from grounding.data.colourless import COLOUR_WORDS
    from grounding.data.images import TrainTransform
    from grounding.data.pairs import open_pairs

    model = grounding.create_model(preset("tiny"))

    def build(grey: float):
        return PairBatches(open_pairs("synthetic"), model.tokenizer, TrainTransform(32, (0.5,) * 3, (0.5,) * 3),
                           64, 0, 0, 1, hard_negatives=True, grey=grey).build(3, {}, [], 0)

    batch, again, plain = build(0.25), build(0.25), build(0.0)
    assert torch.equal(batch.pixels, again.pixels) and torch.equal(batch.ids, again.ids)  # seeded: a resume sees it
    captions = [model.tokenizer.decode(ids) for ids in batch.ids]
    grey = torch.tensor([not COLOUR_WORDS & set(c.split()) for c in captions])
    assert 8 <= int(grey.sum()) <= 24  # about a quarter of 64
    spread = (batch.pixels.amax(1) - batch.pixels.amin(1)).flatten(1).amax(1)  # across channels, per image
    assert (spread[grey] < 0.02).all() and (spread[~grey] > 0.2).all()
    assert torch.equal(batch.pixels[~grey], plain.pixels[~grey])  # the other examples as without --grey
    negatives = [model.tokenizer.decode(ids) for ids, have in zip(batch.negatives, batch.have_negative) if have]
    assert negatives and all(not COLOUR_WORDS & set(n.split()) for n, g in zip(negatives, grey[batch.have_negative]) if g)
    for c, n, have in zip(captions, batch.negatives, batch.have_negative):
        assert not have or model.tokenizer.decode(n) != c  # a negative is never the caption itself

    pairs = open_pairs("synthetic")
    pairs.sources[0].twins = True
    batches = PairBatches(pairs, model.tokenizer, TrainTransform(32, (0.5,) * 3, (0.5,) * 3), 64, 0, 0, 1,
                          hard_negatives=True, grey=0.25)
    twin = [sample.twin for sample, *_ in batches.choose(3)[0]]
    batch = batches.build(3, {}, [], 0)
    captions = [model.tokenizer.decode(ids) for ids in batch.ids]
    grey = [not COLOUR_WORDS & set(c.split()) for c in captions]
    assert sum(twin) > 16 and 8 <= sum(grey) <= 24
    # a twin's caption is often its scene's near miss: a column of the batch already, so no negative is given for it
    negatives = [model.tokenizer.decode(ids) for ids, have in zip(batch.negatives, batch.have_negative) if have]
    assert 16 <= len(negatives) < 64 and not set(negatives) & set(captions)
    assert all(grey[i] == grey[i - 1] for i in range(64) if twin[i])  # a scene and its twin, greyed together


def test_dropped_colour_words_keep_the_image_in_colour_beside_the_grey_share():
    import grounding
    from grounding.config import preset
    from grounding.data.batches import PairBatches
    from grounding.data.colourless import COLOUR_WORDS
    from grounding.data.images import TrainTransform
    from grounding.data.pairs import open_pairs

    model = grounding.create_model(preset("tiny"))
    pairs = open_pairs("synthetic")
    pairs.sources[0].twins = True

    def batches(grey: float, drop: float) -> PairBatches:
        return PairBatches(pairs, model.tokenizer, TrainTransform(32, (0.5,) * 3, (0.5,) * 3), 64, 0, 0, 1,
                           grey=grey, drop_colour_words=drop)

    def build(grey: float, drop: float):
        return batches(grey, drop).build(3, {}, [], 0)

    batch, plain, grey_only = build(0.25, 0.25), build(0.0, 0.0), build(0.25, 0.0)
    captions = [model.tokenizer.decode(ids) for ids in batch.ids]
    uncoloured = torch.tensor([not COLOUR_WORDS & set(c.split()) for c in captions])
    spread = (batch.pixels.amax(1) - batch.pixels.amin(1)).flatten(1).amax(1)
    grey = spread < 0.02
    assert 20 <= int(uncoloured.sum()) <= 44 and 8 <= int(grey.sum()) <= 24  # about a half, a quarter of 64
    assert not (grey & ~uncoloured).any()  # every grey image's caption lost its colour words too
    kept_in_colour = uncoloured & ~grey
    assert int(kept_in_colour.sum()) >= 8 and torch.equal(batch.pixels[~grey], plain.pixels[~grey])
    assert torch.equal(batch.pixels, grey_only.pixels)  # the grey share is the one --grey alone draws
    twin = [sample.twin for sample, *_ in batches(0.0, 0.0).choose(3)[0]]
    assert all(uncoloured[i] == uncoloured[i - 1] for i in range(64) if twin[i])  # a scene and its twin together


def test_an_example_without_a_negative_adds_no_column_to_the_loss():
    from grounding.losses import clip_loss, siglip_loss

    torch.manual_seed(0)
    image, text, wrong = (torch.nn.functional.normalize(torch.randn(4, 8), dim=-1) for _ in range(3))
    have = torch.tensor([1.0, 0.0, 1.0, 0.0])
    scale, bias = torch.tensor(2.0), torch.tensor(-1.0)
    assert clip_loss(image, text, scale, wrong * have[:, None]) == pytest.approx(
        float(clip_loss(image, text, scale, wrong[[0, 2]])))
    assert siglip_loss(image, text, scale, bias, wrong * have[:, None]) == pytest.approx(
        float(siglip_loss(image, text, scale, bias, wrong[[0, 2]])))


def _picture(path, colour) -> None:
    Image.new("RGB", (32, 32), colour).save(path)


def _similarity(model, path, text: str) -> float:
    with torch.no_grad():
        image = model.encode_image(model.preprocess(Image.open(path))[None], normalize=True)
        return float(image @ model.encode_text(model.tokenizer([text]), normalize=True).t())


def test_winoground_is_read_and_scored_as_its_paper_scores_it(tiny_model, tmp_path):
    (tmp_path / "images").mkdir()
    rows = []
    for n, (a, b) in enumerate([((250, 0, 0), (0, 0, 250)), ((0, 200, 0), (200, 200, 0)), ((90, 90, 90), (0, 0, 0))]):
        _picture(tmp_path / "images" / f"ex_{n}_img_0.png", a)
        _picture(tmp_path / "images" / f"ex_{n}_img_1.png", b)
        rows.append({"id": n, "image_0": f"ex_{n}_img_0", "image_1": f"ex_{n}_img_1", "caption_0": "a red circle",
                     "caption_1": "a circle that is red" if n else "a blue square", "tag": "Object" if n else "Relation"})
    (tmp_path / "examples.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    report = contest_scores(tiny_model, open_contests(f"winoground:{tmp_path}"))
    expected = {"text": [], "image": [], "group": []}
    for row in rows:
        s = [[_similarity(tiny_model, tmp_path / "images" / f"{row[f'image_{i}']}.png", row[f"caption_{c}"])
              for c in (0, 1)] for i in (0, 1)]
        text, image = s[0][0] > s[0][1] and s[1][1] > s[1][0], s[0][0] > s[1][0] and s[1][1] > s[0][1]
        for name, value in (("text", text), ("image", image), ("group", text and image)):
            expected[name].append(float(value))
    assert report["all"]["count"] == 3 and report["Object"]["count"] == 2
    for name, values in expected.items():
        assert report["all"][name] == pytest.approx(np.mean(values))


def test_sugarcrepe_is_read_per_file_and_an_unreadable_image_is_counted_out(tiny_model, tmp_path):
    (tmp_path / "val2017").mkdir()
    _picture(tmp_path / "val2017" / "000000000001.jpg", (250, 0, 0))
    _picture(tmp_path / "val2017" / "000000000002.jpg", (0, 0, 250))
    (tmp_path / "swap_att.json").write_text(json.dumps({
        "0": {"filename": "000000000001.jpg", "caption": "a red circle", "negative_caption": "a circle red"},
        "1": {"filename": "000000000002.jpg", "caption": "a blue square", "negative_caption": "a square blue"}}))
    (tmp_path / "add_obj.json").write_text(json.dumps({
        "0": {"filename": "000000000001.jpg", "caption": "a red circle", "negative_caption": "a red circle and a dog"},
        "1": {"filename": "missing.jpg", "caption": "a cat", "negative_caption": "a cat and a dog"}}))
    report = contest_scores(tiny_model, open_contests(f"sugarcrepe:{tmp_path}"))
    wins = [_similarity(tiny_model, tmp_path / "val2017" / f, pos) > _similarity(tiny_model, tmp_path / "val2017" / f, neg)
            for f, pos, neg in (("000000000001.jpg", "a red circle", "a circle red"),
                                ("000000000002.jpg", "a blue square", "a square blue"))]
    assert report["swap_att"] == {"accuracy": pytest.approx(np.mean(wins)), "chance": 0.5, "count": 2}
    assert report["add_obj"]["count"] == 1 and report["skipped"] == {"count": 1}
    result = CliRunner().invoke(app, ["compose-eval", "--model", "tiny", "--dataset", f"sugarcrepe:{tmp_path}",
                                      "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["swap_att"]["count"] == 2, result.output
    missing = CliRunner().invoke(app, ["compose-eval", "--model", "tiny", "--dataset", f"winoground:{tmp_path}"])
    assert missing.exit_code == 2 and "examples.jsonl: missing" in missing.output


def test_aro_crops_each_image_to_its_box_and_groups_relations(tiny_model, tmp_path):
    (tmp_path / "images").mkdir()
    picture = np.zeros((40, 60, 3), np.uint8)
    picture[:, :30] = (250, 0, 0)  # red on the left, blue on the right
    picture[:, 30:] = (0, 0, 250)
    Image.fromarray(picture).save(tmp_path / "images" / "1.jpg", quality=95)
    rows = [{"image_path": "1.jpg", "bbox_x": 0, "bbox_y": 0, "bbox_w": 30, "bbox_h": 40, "relation_name": "on",
             "true_caption": "the red cup is on the table", "false_caption": "the table is on the red cup"},
            {"image_path": "1.jpg", "bbox_x": 30, "bbox_y": 0, "bbox_w": 30, "bbox_h": 40, "relation_name": "under",
             "true_caption": "the cat is under the blue chair", "false_caption": "the blue chair is under the cat"}]
    (tmp_path / "visual_genome_relation.json").write_text(json.dumps(rows))
    contests = open_contests(f"aro:{tmp_path}")
    assert [c.kind for c in contests] == ["vg-relation: on", "vg-relation: under"]
    left = np.asarray(contests[0].images[0].read())
    assert left.shape[:2] == (40, 30) and left[..., 0].mean() > 200 and left[..., 2].mean() < 50
    report = contest_scores(tiny_model, contests)
    with torch.no_grad():
        for contest, kind in zip(contests, ("vg-relation: on", "vg-relation: under")):
            image = tiny_model.encode_image(tiny_model.preprocess(contest.images[0].read())[None], normalize=True)
            texts = tiny_model.encode_text(tiny_model.tokenizer([*contest.captions, *contest.negatives]),
                                           normalize=True)
            scores = (image @ texts.t())[0]
            assert report[kind]["accuracy"] == float(scores[0] > scores[1])


def test_aro_order_sets_shuffle_each_caption_four_ways_as_aro_does(tiny_model, tmp_path, monkeypatch):
    import itertools

    from grounding.data import word_order
    from grounding.errors import BadInput

    for folder, name, colour in (("val2014", "COCO_val2014_000000000001.jpg", (250, 0, 0)),
                                 ("flickr30k-images", "1007129816.jpg", (0, 0, 250))):
        (tmp_path / folder).mkdir()
        _picture(tmp_path / folder / name, colour)
    caption = "A small dog is chasing a big red ball on the green grass."
    (tmp_path / "coco_karpathy_test.json").write_text(json.dumps([
        {"image": "val2014/COCO_val2014_000000000001.jpg", "caption": [caption, "Dogs!"]}]))
    (tmp_path / "flickr30k_test.json").write_text(json.dumps([
        {"image": "flickr30k-images/1007129816.jpg", "caption": ["Two men play chess in a quiet park ."]}]))
    contests = open_contests(f"aro:{tmp_path}")
    assert [(c.kind, c.key) for c in contests] == [("coco-order", "coco-order/0/0"), ("coco-order", "coco-order/0/1"),
                                                   ("flickr30k-order", "flickr30k-order/0/0")]
    first, one_word, flickr = contests
    assert first.captions == ["a small dog is chasing a big red ball on the green grass"]  # ARO's cleaning
    assert 1 <= len(first.negatives) <= 4 and first.captions[0] not in first.negatives
    for contest in (first, flickr):
        assert all(sorted(n.split()) == sorted(contest.captions[0].split()) for n in contest.negatives)
    assert one_word.negatives == []  # "dogs" has no other order
    assert [c.negatives for c in open_contests(f"aro:{tmp_path}")] == [c.negatives for c in contests]  # seeded

    tagged = word_order.spacy_tagger()([caption])[0]
    words = [w for w, _ in tagged]
    nouns = [i for i, (_, tag) in enumerate(tagged) if tag in word_order.NOUNS]
    adjectives = [i for i, (_, tag) in enumerate(tagged) if tag in word_order.ADJECTIVES]
    assert [words[i] for i in nouns + adjectives] == ["dog", "ball", "grass", "small", "big", "red", "green"]
    nouns_moved, rest_moved, trigrams, within = (s.split() for s in word_order.shuffles(tagged, np.random.default_rng(0)))
    for group in (nouns, adjectives):  # nouns trade places with nouns only, adjectives with adjectives
        assert sorted(nouns_moved[i] for i in group) == sorted(words[i] for i in group)
    assert all(nouns_moved[i] == w for i, w in enumerate(words) if i not in nouns + adjectives)
    assert all(rest_moved[i] == words[i] for i in nouns + adjectives) and sorted(rest_moved) == sorted(words)
    chunks = [words[i:i + 3] for i in range(0, len(words), 3)]  # the last one short
    assert any(sum(order, []) == trigrams for order in itertools.permutations(chunks))
    assert [sorted(within[i:i + 3]) for i in range(0, len(words), 3)] == [sorted(chunk) for chunk in chunks]

    report = contest_scores(tiny_model, contests)
    with torch.no_grad():
        image = tiny_model.encode_image(tiny_model.preprocess(first.images[0].read())[None], normalize=True)
        scores = (image @ tiny_model.encode_text(tiny_model.tokenizer([*first.captions, *first.negatives]),
                                                 normalize=True).t())[0]
    assert report["coco-order"]["accuracy"] == pytest.approx((float(scores[0] > scores[1:].max()) + 1.0) / 2)
    monkeypatch.setattr(word_order, "PIPELINES", ("no_such_pipeline",))
    with pytest.raises(BadInput, match="^spaCy is installed but not its English model en_core_web_sm"):
        open_contests(f"aro:{tmp_path}")  # the fix, not a damaged file
    (tmp_path / "flickr30k_test.json").write_text('[{"image": "flickr30k-images/1007129816.jpg"}]')
    with pytest.raises(BadInput, match="flickr30k_test.json: damaged"):
        open_contests(f"aro:{tmp_path}")


@pytest.mark.slow
def test_image_negatives_raise_the_swap_score_over_the_same_run_without_them(tmp_path):
    """The demo's recipe without its text negatives (a third of the time), cut short, twice from
    the same seed: with each scene's twin beside it in the batch, the true caption beats its
    swaps more often (a one-sided bound)."""
    import dataclasses

    from grounding.data.composition import synthetic_swaps
    from grounding.training.recipes import demo
    from grounding.training.trainer import train

    config, options = demo()
    scores = {}
    for twins in (False, True):
        run = dataclasses.replace(options, steps=150, save_every=150, image_negatives=twins, hard_negatives=False)
        model = train(config, run, tmp_path / str(twins), show_progress=False)
        scores[twins] = contest_scores(model, synthetic_swaps(scenes=150))["all"]["accuracy"]
    # 150 steps: 65.3% against 59.3% (Intel host, 2026-12-08); at 100 steps the gap was 6.3 points
    # on an AMD host and 2.8 on an Intel one, too near the bound
    assert scores[True] > scores[False] + 0.03, scores


def test_heldout_pairs_benchmark_sorts_every_heldout_answer_and_probes_both_halves(trained_tiny, monkeypatch, capsys,
                                                                                   benchmark_script):
    import sys

    monkeypatch.setattr(sys, "argv", ["heldout_pairs.py", str(trained_tiny[1]), "--per-label", "2"])
    benchmark_script("heldout_pairs").main()
    row = capsys.readouterr().out.strip().splitlines()[-1]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    right, colour_only, other = (int(n) for n in cells[1].split(" / "))
    assert cells[0] == str(trained_tiny[1]) and right + colour_only + other == 40  # 10 images a held-out pair
    model, spec = trained_tiny[0], "synthetic:seed=1,per_label=10"
    probs, targets, scenes = zero_shot(model, spec)
    unseen = torch.tensor([(s.objects[0].colour, s.objects[0].shape) in World().held_out for s in scenes])
    assert right == int((probs[unseen].argmax(1) == targets[unseen]).sum())  # the zero-shot answers, sorted
    colour_seen = float(cells[3].split(" / ")[0].rstrip("%"))
    assert colour_seen > 50  # chance is 1 in 6


def test_composition_validation_benchmark_scores_its_own_draw(trained_tiny, monkeypatch, capsys, benchmark_script):
    import sys

    from grounding.data.composition import synthetic_swaps
    from grounding.evaluation.compositionality import contest_scores

    monkeypatch.setattr(sys, "argv", ["composition_validation.py", str(trained_tiny[1])])
    benchmark_script("composition_validation").main()
    cells = [cell.strip() for cell in capsys.readouterr().out.strip().splitlines()[-1].strip("|").split("|")]
    model = trained_tiny[0]
    probs, targets, scenes = zero_shot(model, "synthetic:seed=7,per_label=50")
    unseen = torch.tensor([(s.objects[0].colour, s.objects[0].shape) in World().held_out for s in scenes])
    assert int(unseen.sum()) == 200  # 50 images of each held-out pair: one image is half a point
    assert cells[3] == f"{(probs[unseen].argmax(1) == targets[unseen]).float().mean().item():.1%}"
    assert cells[-1] == f"{contest_scores(model, synthetic_swaps(scenes=1000, seed=11))['all']['accuracy']:.1%}"
