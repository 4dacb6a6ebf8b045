"""Open-vocabulary detection (models/detector.py, tasks/detection/): the box arithmetic, the
Hungarian matching, COCO mAP on hand-made detections, a tiny detector that learns the built-in
world well past a fixed-box baseline, and the commands."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from grounding.data.images import ImageRef
from grounding.interfaces.cli import app
from grounding.models.detector import box_bias, corners, generalized_iou
from grounding.tasks.detection.data import BoxedImage, SyntheticBoxes, targets
from grounding.tasks.detection.evaluate import Detection, average_precision, in_image
from grounding.tasks.detection.loss import match

pytest.importorskip("pycocotools", reason="install the detect extra: pip install -e '.[detect]'")
runner = CliRunner()


def test_generalized_iou_of_boxes_worked_by_hand():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [3.0, 0.0, 4.0, 1.0]])
    # overlap 1, union 7, hull 9: 1/7 - 2/9; identical: 1; apart: 0 - (8 - 5) / 8
    expected = torch.tensor([[1 / 7 - 2 / 9, 1.0, -3 / 8]])
    assert torch.allclose(generalized_iou(a, b), expected, atol=1e-6)
    assert torch.allclose(corners(torch.tensor([[0.5, 0.5, 0.2, 0.4]])), torch.tensor([[0.4, 0.3, 0.6, 0.7]]))
    assert torch.allclose(torch.sigmoid(box_bias(2)[1]), torch.tensor([1.0, 0.5, 0.5, 0.5]), atol=1e-3)  # row 0, col 1


def test_each_object_is_matched_to_the_prediction_that_fits_it():
    boxes = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.8, 0.8, 0.2, 0.2], [0.5, 0.5, 0.3, 0.3]])
    logits = torch.tensor([[5.0, -5.0], [-5.0, 5.0], [0.0, 0.0]])
    target = {"boxes": torch.tensor([[0.8, 0.8, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]]), "labels": torch.tensor([1, 0])}
    rows, cols = match(logits, boxes, target)
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 1, 1: 0}


def test_coco_map_of_hand_made_detections():
    truth = [BoxedImage(ImageRef(), np.array([[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9]]), ["a", "b"])]
    perfect = [[Detection((0.1, 0.1, 0.3, 0.3), "a", 0.9), Detection((0.5, 0.5, 0.9, 0.9), "b", 0.8)]]
    report = average_precision(truth, perfect, ["a", "b"], {"only b": ["b"]})
    assert report["all"]["map"] == pytest.approx(1.0) and report["only b"]["map50"] == pytest.approx(1.0)
    # b found shifted down: IoU 0.128 / 0.192 = 2/3, so it counts at thresholds .5 to .65 and no higher
    loose = [[Detection((0.1, 0.1, 0.3, 0.3), "a", 0.9), Detection((0.5, 0.58, 0.9, 0.98), "b", 0.8)]]
    report = average_precision(truth, loose, ["a", "b"])
    assert report["per_class_ap50"] == pytest.approx({"a": 1.0, "b": 1.0}) and report["all"]["map"] < 0.8
    wrong = [[Detection((0.1, 0.1, 0.3, 0.3), "b", 0.9)]]
    assert average_precision(truth, wrong, ["a", "b"])["all"]["map50"] == pytest.approx(0.0)
    assert average_precision(truth, perfect, ["a", "b", "c"])["per_class_ap50"]["c"] is None  # nothing to find


def test_boxes_go_back_to_the_images_own_pixels():
    assert in_image((0.0, 0.0, 1.0, 0.5), (100, 50), "shortest") == (25.0, 0.0, 75.0, 25.0)
    assert in_image((0.0, 0.0, 1.0, 0.5), (100, 50), "squash") == (0.0, 0.0, 100.0, 25.0)


def test_training_scenes_never_show_or_ask_for_a_held_out_pair():
    data = SyntheticBoxes(seed=3)
    assert len(data.classes) == 20 and not set(data.classes) & set(data.unseen)
    examples = data.batch(0, 64)
    assert all(label in data.classes for e in examples for label in e.labels)
    target = targets(examples[:1], data.classes, torch.device("cpu"))[0]
    assert target["boxes"].shape == (len(examples[0].labels), 4) and (target["boxes"] > 0).all()


def test_another_renderer_draws_the_same_boxes_otherwise():
    from grounding.tasks.detection.data import drawn_otherwise

    examples = SyntheticBoxes(seed=3).batch(0, 8)
    rng = np.random.default_rng(0)
    other = [drawn_otherwise(e, rng) for e in examples]
    for before, after in zip(examples, other):
        assert np.array_equal(before.boxes, after.boxes) and before.labels == after.labels
        drawn = np.asarray(after.ref.read(96))
        assert drawn.shape == (96, 96, 3)
        assert not np.array_equal(drawn, np.asarray(before.ref.read(96)))
    corners = {tuple(np.asarray(o.ref.read(96))[0, 0]) for o in other}
    assert len(corners) > 1  # the backgrounds differ


def test_a_referring_expression_singles_out_its_object_by_what_it_takes():
    from grounding.data.synthetic import Scene, SceneObject
    from grounding.tasks.detection.data import referring_expression

    rng = np.random.default_rng(0)
    lone = Scene((SceneObject("circle", "red", "small", 0.3, 0.3),))
    assert referring_expression(lone, rng) == ("the red circle", 0, "name")
    sizes = Scene((SceneObject("circle", "red", "small", 0.2, 0.5), SceneObject("circle", "red", "large", 0.8, 0.5)))
    assert {referring_expression(sizes, rng) for _ in range(20)} == {("the small red circle", 0, "size"),
                                                                    ("the large red circle", 1, "size")}
    twins = Scene((SceneObject("circle", "red", "small", 0.2, 0.2), SceneObject("circle", "red", "small", 0.8, 0.8),
                   SceneObject("square", "blue", "small", 0.8, 0.2)))
    found = {referring_expression(twins, rng) for _ in range(40)}
    assert {("the red circle left of the blue square", 0, "relation"),
            ("the red circle below the blue square", 1, "relation")} <= found
    assert all(kind != "name" or text == "the blue square" for text, _, kind in found)


def test_an_expression_is_taken_apart_at_its_relation_and_size_words():
    from grounding.data.relations import Expression, parse_expression

    assert parse_expression("The red circle") == Expression("red circle")
    assert parse_expression("the small red circle to the left of the large blue square") == Expression(
        "red circle", "small", "left of", "blue square", "large")
    assert parse_expression("a big dog under a table") == Expression("dog", "large", "below", "table")
    assert parse_expression("man on top of the horse") == Expression("man", None, "above", "horse")
    assert parse_expression("left of") == Expression("left of")  # nothing on either side: a phrase
    assert parse_expression("the leftover cake") == Expression("leftover cake")  # words, not letters
    assert parse_expression("small") == Expression("small")  # a size word alone is the subject


class _Scored(torch.nn.Module):
    """A stand-in detector with three boxes and a fixed score for each phrase on each box."""

    boxes = torch.tensor([[0.1, 0.4, 0.3, 0.6], [0.7, 0.35, 0.99, 0.65], [0.4, 0.4, 0.6, 0.6]])  # corners
    scores = {"red circle": [2.0, 3.0, -4.0], "blue square": [-4.0, -4.0, 3.0]}

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.texts = []

    def tokenizer(self, texts, truncate):
        self.texts = list(texts)
        return torch.zeros(len(texts), 1)

    def queries(self, ids):
        return ids

    def forward(self, pixels, queries):
        logits = torch.tensor([self.scores.get(text, [0.0] * 3) for text in self.texts]).t()[None]
        cx, cy = (self.boxes[:, 0] + self.boxes[:, 2]) / 2, (self.boxes[:, 1] + self.boxes[:, 3]) / 2
        w, h = self.boxes[:, 2] - self.boxes[:, 0], self.boxes[:, 3] - self.boxes[:, 1]
        return logits.repeat(len(pixels), 1, 1), torch.stack([cx, cy, w, h], dim=-1)[None].repeat(len(pixels), 1, 1)


def test_locate_resolves_relation_and_size_words_by_the_boxes_geometry():
    from grounding.tasks.detection.evaluate import locate_pixels

    model, pixels = _Scored(), torch.zeros(4, 3, 8, 8)
    asked = ["the red circle", "the red circle left of the blue square", "a red circle to the right of the blue square",
             "the small red circle"]
    picked = [found.box for found in locate_pixels(model, pixels, asked)]
    right, left = model.boxes[1].tolist(), model.boxes[0].tolist()
    assert [pytest.approx(box, abs=1e-6) for box in picked] == [right, left, right, left]
    nothing_above = locate_pixels(model, pixels[:1], ["the red circle above the blue square"])[0]
    assert nothing_above.box == pytest.approx(right, abs=1e-6)  # no pair holds it: the best circle


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detect") / "run"
    result = runner.invoke(app, ["train-detect", "--towers", "tiny", "--steps", "300", "--batch-size", "32", "--lr",
                                 "1e-3", "--out", str(folder), "--eval-images", "100"])
    assert result.exit_code == 0, result.output
    return folder


@pytest.mark.slow
def test_a_tiny_detector_learns_the_world_far_past_a_fixed_box_baseline(detector):
    summary = json.loads((detector / "eval" / "summary.json").read_text())["results"]
    data = SyntheticBoxes(seed=1000, split="train")
    examples, queries = data.batch(0, 100), data.seen + data.unseen
    typical = np.concatenate([e.boxes for e in examples]).mean(axis=0)  # every query, at the average box
    fixed = [[Detection(tuple(typical), q, 0.5) for q in queries] for _ in examples]
    baseline = average_precision(examples, fixed, queries)["all"]["map50"]
    learned = summary["held-out scenes"]["all"]["map50"]
    assert learned > baseline + 0.05, (learned, baseline)
    assert summary["held-out scenes"]["held-out pairs"]["map50"] is None  # none of them in those scenes
    assert summary["another renderer"]["images"] == 100
    assert summary["held-out combinations"]["referring"]["expressions"] >= 95  # nearly every scene has one


@pytest.mark.slow
def test_detect_reports_draws_and_skips_by_name(detector, tmp_path):
    scene = SyntheticBoxes(seed=5).batch(0, 1)[0]
    scene.ref.read(96).save(tmp_path / "scene.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    args = ["detect", str(tmp_path / "scene.png"), "--queries", "red circle, blue square", "--model", str(detector),
            "--threshold", "0"]
    shown = runner.invoke(app, [*args, "--json", "--out", str(tmp_path / "drawn")])
    assert shown.exit_code == 0, shown.output
    row = json.loads(shown.stdout.splitlines()[-1])
    assert row["detections"] and {d["query"] for d in row["detections"]} <= {"red circle", "blue square"}
    assert all(0 <= v <= 96 for d in row["detections"] for v in d["box"])
    assert Image.open(tmp_path / "drawn" / "scene.png").size == (96, 96)
    listed = runner.invoke(app, [*args, "--csv"])
    assert listed.stdout.splitlines()[0] == "path,query,score,x0,y0,x1,y1" and len(listed.stdout.splitlines()) > 1
    skipped = runner.invoke(app, ["detect", str(tmp_path / "broken.png"), "--queries", "a", "--model", str(detector)])
    assert skipped.exit_code == 1 and "broken.png" in skipped.output
    empty = runner.invoke(app, ["detect", str(tmp_path / "scene.png"), "--queries", " , ", "--model", str(detector)])
    assert empty.exit_code == 2 and "no queries" in empty.output


@pytest.mark.slow
def test_an_example_crop_finds_its_kind_and_is_labelled_by_its_name(detector, tmp_path):
    from grounding.data.synthetic import Scene, SceneObject

    Scene((SceneObject("circle", "red", "large", 0.5, 0.5),)).render(64).crop((12, 12, 52, 52)).save(
        tmp_path / "red-circle.png")
    scene = Scene((SceneObject("circle", "red", "large", 0.3, 0.3), SceneObject("square", "blue", "large", 0.7, 0.7)))
    scene.render(64).save(tmp_path / "scene.png")
    shown = runner.invoke(app, ["detect", str(tmp_path / "scene.png"), "--query-image", str(tmp_path / "red-circle.png"),
                                "--queries", "blue square", "--model", str(detector), "--threshold", "0", "--json"])
    assert shown.exit_code == 0, shown.output
    found = json.loads(shown.stdout.splitlines()[-1])["detections"]
    assert {d["query"] for d in found} == {"red-circle", "blue square"}
    x0, y0, x1, y1 = next(d["box"] for d in found if d["query"] == "red-circle")  # its best box: the circle's
    assert abs((x0 + x1) / 2 - 19.2) < abs((x0 + x1) / 2 - 44.8) and abs((y0 + y1) / 2 - 19.2) < abs((y0 + y1) / 2 - 44.8)
    missing = runner.invoke(app, ["detect", str(tmp_path / "scene.png"), "--query-image", str(tmp_path / "no.png"),
                                  "--model", str(detector)])
    assert missing.exit_code != 0 and "no.png" in missing.output and "Traceback" not in missing.output


@pytest.mark.slow
def test_locate_draws_the_one_box_an_expression_picks(detector, tmp_path):
    from grounding.data.synthetic import Scene, SceneObject

    Scene((SceneObject("circle", "red", "large", 0.3, 0.3),)).render(64).save(tmp_path / "one.png")
    result = runner.invoke(app, ["locate", str(tmp_path / "one.png"), "the red circle", "--model", str(detector),
                                 "--out", str(tmp_path / "drawn.png")])
    assert result.exit_code == 0 and result.output.startswith("the red circle: ("), result.output
    x0, y0, x1, y1 = (float(v) for v in result.output.split("(")[1].split(")")[0].split(","))
    assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64 and (tmp_path / "drawn.png").is_file()
    empty = runner.invoke(app, ["locate", str(tmp_path / "one.png"), " ", "--model", str(detector)])
    assert empty.exit_code == 2 and "an empty expression" in empty.output


@pytest.mark.slow
def test_detect_eval_prints_the_map_table(detector):
    result = runner.invoke(app, ["detect-eval", "--model", str(detector), "--images", "20"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "held-out combinations (20)" in result.output and "mAP@.5" in result.output
    assert "referring accuracy" in result.output


def _coco(tmp_path, count: int = 10) -> tuple:
    """A COCO instances file beside rendered scenes, with each kind of bad annotation too."""
    data = SyntheticBoxes(seed=7)
    examples = data.batch(0, count)
    images, annotations = [], []
    for n, example in enumerate(examples):
        example.ref.read(64).save(tmp_path / f"{n}.png")
        images.append({"id": n, "file_name": f"{n}.png", "width": 64, "height": 64})
        for box, label in zip(example.boxes, example.labels):
            x0, y0, x1, y1 = (float(v) * 64 for v in box)
            annotations.append({"id": len(annotations), "image_id": n, "category_id": data.seen.index(label),
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0})
    bad = [{"id": 900, "image_id": 0, "category_id": 999, "bbox": [1, 1, 5, 5]},      # unknown category
           {"id": 901, "image_id": 77, "category_id": 0, "bbox": [1, 1, 5, 5]},       # unknown image
           {"id": 902, "image_id": 0, "category_id": 0, "bbox": [70, 70, 5, 5]},      # outside its image
           {"id": 903, "image_id": 0, "category_id": 0, "bbox": [1, 1, 5, 5], "iscrowd": 1},
           {"id": 904, "image_id": 1, "category_id": 0, "bbox": [60, 60, 10, 10]}]    # clipped to 4 x 4
    images.append({"id": 50, "file_name": "missing.png", "width": 64, "height": 64})
    categories = [{"id": i, "name": name} for i, name in enumerate(data.seen)]
    (tmp_path / "instances.json").write_text(json.dumps({"images": images, "annotations": annotations + bad,
                                                         "categories": categories}))
    return tmp_path / "instances.json", examples, data.seen


def test_coco_instances_are_read_with_bad_annotations_left_out_and_said(tmp_path):
    from grounding.tasks.detection.data import coco_boxes

    path, examples, classes = _coco(tmp_path)
    with pytest.warns(UserWarning, match=r"left out 5 annotations or images \(annotation 900: category 999"):
        read, names = coco_boxes(path)
    assert names == classes and len(read) == len(examples)  # the missing file's image is left out
    assert read[0].labels == examples[0].labels and np.allclose(read[0].boxes, examples[0].boxes, atol=1e-5)
    assert read[1].labels[-1] == classes[0] and np.allclose(read[1].boxes[-1], [60 / 64, 60 / 64, 1, 1])
    (tmp_path / "empty.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(ValueError, match="no categories in it"):
        coco_boxes(tmp_path / "empty.json")
    (tmp_path / "cut.json").write_text(path.read_text()[:100])
    with pytest.raises(ValueError, match="cut.json: damaged or cut short"):
        coco_boxes(tmp_path / "cut.json")


@pytest.mark.slow
def test_train_detect_and_detect_eval_on_a_coco_file(tmp_path):
    path, _, _ = _coco(tmp_path, count=20)
    out = tmp_path / "run"
    trained = runner.invoke(app, ["train-detect", "--towers", "tiny", "--data", f"coco:{path}", "--steps", "4",
                                  "--batch-size", "4", "--out", str(out)])
    assert trained.exit_code == 0, trained.output
    summary = json.loads((out / "eval" / "summary.json").read_text())["results"]
    assert summary["held-out images"]["images"] == 4 and "all" in summary["held-out images"]
    evaluated = runner.invoke(app, ["detect-eval", "--model", str(out), "--dataset", f"coco:{path}"],
                              env={"COLUMNS": "200"})
    assert evaluated.exit_code == 0 and "(20)" in evaluated.output, evaluated.output
