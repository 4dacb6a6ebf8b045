"""VQA evaluation: accuracy overall and per question type (VQA's soft score of the predicted
answer), beside the two honest baselines: the question-only model and the majority answer of
each question type in training. Writes summary.json and one record per example."""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...data.images import ImageRef
from ...errors import BadInput
from ...evaluation.metrics import accuracy_by_type
from ...files import write_json_atomic, write_jsonl_atomic
from .data import QUESTION_TYPES, QAExample, to_tensors


@torch.no_grad()
def answer_probs(model, examples: list[QAExample], batch_size: int = 256) -> torch.Tensor:
    answers = model.config.answers
    rows = []
    for i in range(0, len(examples), batch_size):
        pixels, ids, _ = to_tensors(model, examples[i:i + batch_size], answers)
        rows.append(model(pixels, ids).softmax(dim=-1))
    return torch.cat(rows)


def top_answers(model, image: Image.Image, question: str, top: int = 3) -> list[tuple[str, float]]:
    """The `top` answers to a question about one image, with their probabilities (the vqa
    command and the server's /vqa)."""
    if not question.strip():
        raise BadInput("the question is empty: ask something, e.g. 'how many circles are there?'", "QUESTION")
    example = QAExample(question, {}, ref=ImageRef(pixels=np.asarray(image.convert("RGB"))))
    probs = answer_probs(model, [example])[0].cpu()
    values, indices = probs.topk(min(top, len(probs)))
    return [(model.config.answers[int(i)], float(p)) for p, i in zip(values, indices)]


def majority_answers(data, batches: int = 40, batch_size: int = 256) -> dict[str, str]:
    """The most frequent answer of each question type in (a sample of) the training stream, and
    overall under the key ''."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for step in range(batches):
        for e in data.batch(step, batch_size):
            for answer, score in e.answers.items():
                counts[e.qtype][answer] += score
                counts[""][answer] += score
    return {t: c.most_common(1)[0][0] for t, c in counts.items()}


def evaluate_vqa(model, examples: list[QAExample], out: str | Path | None = None, blind=None,
                 majority: dict[str, str] | None = None) -> dict:
    """{'model': {...}, 'blind': {...}, 'majority': {...}}: accuracy overall and per type."""
    answers = model.config.answers
    probs = answer_probs(model, examples)
    predicted = [answers[i] for i in probs.argmax(dim=1).tolist()]
    types = [e.qtype for e in examples]

    def by_type(scores: list[float]) -> dict[str, float]:
        return accuracy_by_type(scores, types, QUESTION_TYPES)

    summary = {"examples": len(examples),
               "model": by_type([e.answers.get(p, 0.0) for e, p in zip(examples, predicted)])}
    blind_predicted = None
    if blind is not None:
        blind_predicted = [answers[i] for i in answer_probs(blind, examples).argmax(dim=1).tolist()]
        summary["blind"] = by_type([e.answers.get(p, 0.0) for e, p in zip(examples, blind_predicted)])
    if majority is not None:
        guesses = [majority.get(e.qtype, majority[""]) for e in examples]
        summary["majority"] = by_type([e.answers.get(g, 0.0) for e, g in zip(examples, guesses)])
    if out is not None:
        out = Path(out)
        write_json_atomic(out / "summary.json", summary)
        top = probs.topk(min(3, len(answers)), dim=1)
        records = [{"image": e.ref.key, "question": e.question, "type": e.qtype, "answers": e.answers,
                    "predicted": predicted[n], "score": e.answers.get(predicted[n], 0.0),
                    "top3": [[answers[i], round(float(p), 4)] for p, i in zip(top.values[n], top.indices[n])]}
                   for n, e in enumerate(examples)]
        if blind_predicted is not None:
            for record, guess in zip(records, blind_predicted):
                record["blind_predicted"] = guess
        write_jsonl_atomic(out / "predictions.jsonl", records)
    return summary
