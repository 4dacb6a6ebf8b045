"""Question/answer examples: the synthetic world's (a question type drawn uniformly per scene,
yes and no equally likely, so that no answer prior is free accuracy) or a CSV's, with VQA's
soft scores where several annotators answered."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...data.images import ImageRef
from ...data.relations import OPPOSITE
from ...data.specs import parse_spec
from ...data.streams import ListStream, split_off
from ...data.synthetic import COLOURS, NUMBER_WORDS, SHAPES, SPLITS, Scene, World, relation
from ...errors import BadInput
from ...evaluation.metrics import vqa_soft_scores
from ...files import read_csv_rows
from ...runtime import device_of
from ..towers import pixels_of

QUESTION_TYPES = ("count", "colour", "shape", "relation", "existence")
SYNTHETIC_ANSWERS = [*NUMBER_WORDS, *COLOURS, *SHAPES, "yes", "no"]
RELATIONS = list(OPPOSITE)  # the classes of the auxiliary relation target (models/vqa.py)


@dataclass
class QAExample:
    question: str
    answers: dict[str, float]  # answer -> score in [0, 1]
    qtype: str = ""
    ref: ImageRef = ImageRef()  # its scene or its file; ref.key names it in predictions.jsonl
    relation: str = ""  # a relation question's true relation between the objects it names, where known


def pick_question(scene: Scene, rng: np.random.Generator) -> tuple[str, str, str]:
    by_type: dict[str, list] = {}
    for q, a, t in scene.questions():
        by_type.setdefault(t, []).append((q, a, t))
    qtype = sorted(by_type)[int(rng.integers(len(by_type)))]
    pool = by_type[qtype]
    if qtype == "existence":
        wanted = "yes" if rng.random() < 0.5 else "no"
        pool = [qa for qa in pool if qa[1] == wanted] or pool
    return pool[int(rng.integers(len(pool)))]


class SyntheticQA:
    """A seeded stream of examples: batch `step` is always the same. `relation_share` of each
    batch are relation questions about two-object scenes, on top of the world's own mix (in
    which about one question in twenty is one)."""

    answers = SYNTHETIC_ANSWERS
    relations = RELATIONS

    def __init__(self, world: World | None = None, seed: int = 0, split: str = "train", relation_share: float = 0.0):
        if not 0 <= relation_share <= 1:
            raise BadInput(f"--relation-share {relation_share}: give a share from 0 to 1", "--relation-share")
        self.world, self.seed, self.split, self.relation_share = world or World(), seed, split, relation_share

    def batch(self, step: int, size: int) -> list[QAExample]:
        rng = np.random.default_rng([self.seed, step, SPLITS[self.split], 7])
        examples = []
        for _ in range(size):
            if self.relation_share and rng.random() < self.relation_share:
                scene = self.world.sample(rng, self.split, n_objects=2)
                pool = [qa for qa in scene.questions() if qa[2] == "relation"] or scene.questions()
                q, a, t = pool[int(rng.integers(len(pool)))]
            else:
                scene = self.world.sample(rng, self.split)
                q, a, t = pick_question(scene, rng)
            where = relation(*scene.objects) if t == "relation" else ""
            examples.append(QAExample(q, {a: 1.0}, t, ImageRef(scene=scene), where))
        return examples


def csv_questions(path: str | Path) -> list[QAExample]:
    """Rows of image, question, answer (several annotators' answers as "a|b|c") and optionally
    type; image paths are relative to the CSV's folder."""
    path = Path(path)
    rows = read_csv_rows(path, {"image", "question", "answer"}, "columns image,question,answer[,type]")
    return [QAExample(r["question"], vqa_soft_scores(r["answer"].split("|")), r.get("type", "") or "",
                      ImageRef(path.parent / r["image"])) for r in rows]


class ListQA(ListStream[QAExample]):
    """A CSV's examples, with their answer vocabulary."""

    relations: list[str] = []  # a CSV names no relation targets

    def __init__(self, examples: list[QAExample], seed: int = 0):
        super().__init__(examples, seed)
        self.answers = sorted({a for e in examples for a in e.answers})


def open_qa(spec: str, seed: int = 0, held_out: float = 0.2, relation_share: float = 0.0
            ) -> tuple[SyntheticQA | ListQA, list[QAExample] | None]:
    """The training source, and for a CSV the seeded share of its rows kept out of training for
    evaluation (None for the synthetic world, whose test scenes are new draws)."""
    parsed = parse_spec(spec, "qa")
    if parsed.kind == "synthetic":
        return SyntheticQA(seed=seed, relation_share=relation_share), None
    if relation_share:
        raise BadInput(f"--relation-share asks the built-in world for more relation questions; {spec} has its own "
                       "questions: leave the option out", "--relation-share")
    kept, held = split_off(csv_questions(parsed.argument), seed, held_out)  # columns image,question,answer[,type]
    return ListQA(kept, seed), held


def to_tensors(model, examples: list[QAExample], answers: list[str]):
    """Pixels (None for a blind model, which never looks), question ids, and the answer scores
    as a (batch, answers) matrix."""
    pixels = None if model.config.blind else pixels_of(model, examples)
    ids = model.tokenizer([e.question for e in examples], truncate=True).to(device_of(model))
    index = {a: i for i, a in enumerate(answers)}
    targets = torch.zeros(len(examples), len(answers), device=ids.device)
    for row, e in enumerate(examples):
        for a, s in e.answers.items():
            if a in index:
                targets[row, index[a]] = s
    return pixels, ids, targets
