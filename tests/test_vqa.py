"""VQA: soft scores, the data stream, training (resumable), evaluation with baselines, the
commands, and a tiny model that beats its question-only twin."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from grounding.errors import BadInput
from grounding.evaluation.metrics import vqa_soft_scores as soft_scores
from grounding.interfaces.cli import app
from grounding.tasks.options import VQAOptions
from grounding.tasks.saved import load_task_model
from grounding.tasks.vqa.data import SYNTHETIC_ANSWERS, SyntheticQA, open_qa
from grounding.tasks.vqa.evaluate import evaluate_vqa, majority_answers
from grounding.tasks.vqa.train import train_vqa
from grounding.training.options import LoopConfig

runner = CliRunner()


def test_soft_scores_follow_the_vqa_rule():
    assert soft_scores(["two"]) == {"two": 1.0}
    assert soft_scores(["two", "two", "three"]) == pytest.approx({"two": 2 / 3, "three": 1 / 3})
    assert soft_scores(["Two", "two", "two ", "two", "three"])["two"] == 1.0


def test_synthetic_stream_is_seeded_balanced_and_answerable():
    data = SyntheticQA(seed=3)
    first, again = data.batch(5, 400), data.batch(5, 400)
    assert [e.question for e in first] == [e.question for e in again]
    types = {e.qtype for e in first}
    assert types == {"count", "colour", "shape", "relation", "existence"}
    existence = [e for e in first if e.qtype == "existence"]
    yes = sum("yes" in e.answers for e in existence) / len(existence)
    assert 0.35 < yes < 0.65  # no free accuracy from the answer prior
    assert all(set(e.answers) <= set(SYNTHETIC_ANSWERS) for e in first)


def test_relation_share_asks_relation_questions_each_with_its_true_relation():
    from grounding.data.relations import OPPOSITE
    from grounding.tasks.vqa.data import RELATIONS

    plain, more = SyntheticQA(seed=3).batch(5, 400), SyntheticQA(seed=3, relation_share=0.5).batch(5, 400)
    share = [sum(e.qtype == "relation" for e in batch) / 400 for batch in (plain, more)]
    assert share[0] < 0.1 and 0.45 < share[1] < 0.65, share
    relations = [e for e in plain + more if e.qtype == "relation"]
    assert all(e.relation in RELATIONS for e in relations) and not any(e.relation for e in plain + more
                                                                          if e.qtype != "relation")
    for e in relations:  # "yes" asks the true relation, "no" its opposite
        asked = e.relation if "yes" in e.answers else OPPOSITE[e.relation]
        assert f" {asked} the " in e.question, e
    assert 0.35 < sum("yes" in e.answers for e in relations) / len(relations) < 0.65
    with pytest.raises(BadInput, match="--relation-share"):
        SyntheticQA(relation_share=1.5)


def _options(steps: int, **kw) -> VQAOptions:
    return VQAOptions(loop=LoopConfig(steps=steps, batch_size=48, lr=2e-3, warmup=10, save_every=20),
                      towers="tiny", width=64, layers=1, **kw)


@pytest.fixture(scope="module")
def tiny_vqa(tmp_path_factory, trained_tiny):
    """A tiny VQA model and its blind twin, both starting from the tiny CLIP model's towers."""
    out = tmp_path_factory.mktemp("vqa")
    init = str(trained_tiny[1])
    model = train_vqa(_options(200, init=init), out / "model", show_progress=False)
    blind = train_vqa(_options(200, init=init), out / "blind", blind=True, show_progress=False)
    return model, blind, out


@pytest.mark.slow
def test_tiny_vqa_model_beats_its_blind_baseline(tiny_vqa):
    model, blind, out = tiny_vqa
    examples = SyntheticQA(seed=77).batch(0, 400)
    summary = evaluate_vqa(model, examples, out / "eval", blind, majority_answers(SyntheticQA(), 4, 128))
    assert summary["model"]["overall"] > summary["blind"]["overall"] + 0.05
    assert summary["model"]["colour"] > summary["blind"]["colour"] + 0.25  # colour needs the image
    records = [json.loads(line) for line in (out / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 400 and {"question", "type", "predicted", "top3", "blind_predicted"} <= set(records[0])


def test_training_resumes_to_the_same_weights(tmp_path):
    import shutil

    straight = train_vqa(_options(40, relation_target=True, relation_share=0.25), tmp_path / "a", show_progress=False)
    # a run killed after its step-20 checkpoint: the folder as it was then
    shutil.copytree(tmp_path / "a", tmp_path / "b", ignore=shutil.ignore_patterns("step-0000040"))
    resumed = train_vqa(_options(40, relation_target=True, relation_share=0.25), tmp_path / "b", show_progress=False)
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
    from grounding.tasks.vqa.train import new_model

    start = new_model(_options(40, relation_target=True), SyntheticQA(), blind=False)  # where the run started
    assert resumed.config.relations == ["left of", "right of", "above", "below"]
    assert not torch.equal(resumed.relation_head.weight, start.relation_head.weight)  # the relation target trains it
    assert torch.equal(load_task_model(tmp_path / "b", "vqa").head[-1].weight, resumed.head[-1].weight)


def test_the_final_grid_adds_its_cells_as_tokens_and_is_saved_with_the_model(tmp_path):
    model = train_vqa(_options(3, image_tower="resnet", final_grid=True, relation_target=True), tmp_path / "run",
                      show_progress=False)
    size = model.config.towers.vision.image_size
    pixels = torch.randn(2, 3, size, size)
    tokens = model.image_in(model.visual, pixels)
    assert tokens.shape[1] == (size // 16) ** 2 + (size // 32) ** 2  # stage 3's cells, then the final stage's
    final = model.visual.forward_grid(pixels).flatten(2).transpose(1, 2)
    assert torch.allclose(tokens[:, (size // 16) ** 2:], model.image_in.final(final) + model.image_in.final_positions)
    loaded = load_task_model(tmp_path / "run", "vqa")
    assert loaded.config.final_grid and torch.equal(loaded.image_in.final.weight, model.image_in.final.weight)
    with pytest.raises(BadInput, match="--final-grid is for ResNet"):
        train_vqa(_options(3, final_grid=True), tmp_path / "vit", show_progress=False)
    assert not (tmp_path / "vit").exists()  # refused before anything was written


def test_csv_data_trains_and_holds_rows_out(tmp_path):
    scenes = SyntheticQA(seed=1).batch(0, 30)
    rows = ["image,question,answer,type"]
    for i, e in enumerate(scenes):
        e.ref.scene.render(32).save(tmp_path / f"{i}.png")
        answer = next(iter(e.answers))
        rows.append(f"{i}.png,{e.question},{answer}|{answer}|{answer},{e.qtype}")
    (tmp_path / "qa.csv").write_text("\n".join(rows) + "\n")
    data, held_out = open_qa(f"csv:{tmp_path / 'qa.csv'}")
    assert len(held_out) == 6 and len(data.examples) == 24
    model = train_vqa(_options(3, data=f"csv:{tmp_path / 'qa.csv'}", relation_target=True), tmp_path / "run",
                      show_progress=False)
    assert set(model.config.answers) <= set(SYNTHETIC_ANSWERS)
    assert model.config.relations == [] and model.relation_head is None  # a CSV names no relations
    with pytest.raises(BadInput, match="--relation-share"):
        open_qa(f"csv:{tmp_path / 'qa.csv'}", relation_share=0.25)


@pytest.mark.slow
def test_vqa_commands_answer_with_top_three(tmp_path, tiny_vqa):
    result = runner.invoke(app, ["train-vqa", "--out", str(tmp_path / "run"), "--towers", "tiny", "--steps", "3",
                                 "--batch-size", "16", "--width", "32", "--layers", "1"])
    assert result.exit_code == 0, result.output
    assert "combinations" in result.output and "blind" in result.output and "majority" in result.output
    summary = json.loads((tmp_path / "run" / "eval" / "summary.json").read_text())
    assert set(summary["results"]) == {"held-out scenes", "held-out combinations"}
    model, _, out = tiny_vqa
    SyntheticQA(seed=2).batch(0, 1)[0].ref.scene.render(32).save(tmp_path / "scene.png")
    answer = runner.invoke(app, ["vqa", str(tmp_path / "scene.png"), "how many circles are there?",
                                 "--model", str(out / "model")])
    assert answer.exit_code == 0, answer.output
    assert answer.output.count("%") == 3
    empty = runner.invoke(app, ["vqa", str(tmp_path / "scene.png"), " ", "--model", str(out / "model")])
    assert empty.exit_code != 0 and "empty" in empty.output


def test_accuracy_by_type_on_a_hand_computed_case():
    from grounding.evaluation.metrics import accuracy_by_type

    result = accuracy_by_type([1.0, 0.0, 2 / 3, 1.0], ["count", "count", "colour", "relation"])
    assert result["overall"] == pytest.approx((1 + 0 + 2 / 3 + 1) / 4)
    assert result["count"] == 0.5 and result["colour"] == pytest.approx(2 / 3) and result["relation"] == 1.0
    assert "shape" not in result  # no questions of that type: no figure
