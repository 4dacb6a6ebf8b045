"""Caption evaluation: BLEU-1..4, ROUGE-L and CIDEr-D of the generated captions, beside the
nearest-neighbour baseline (the training caption of the most similar training image, by the
captioner's own image features), with one record per example."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ...evaluation.caption_metrics import bleu, cider_d, rouge_l
from ...files import write_json_atomic, write_jsonl_atomic
from ..towers import pixels_of
from .data import CaptionExample, normalise_caption
from .decode import generate


def caption_scores(references: list[list[str]], candidates: list[str]) -> dict[str, float]:
    refs = {i: [normalise_caption(r) for r in rs] for i, rs in enumerate(references)}
    cands = {i: [normalise_caption(c)] for i, c in enumerate(candidates)}
    scores = {f"BLEU-{n + 1}": b for n, b in enumerate(bleu(refs, cands))}
    scores.update({"ROUGE-L": rouge_l(refs, cands), "CIDEr-D": cider_d(refs, cands)})
    return scores


@torch.no_grad()
def image_features(model, examples: list[CaptionExample], batch_size: int = 128) -> torch.Tensor:
    rows = []
    for i in range(0, len(examples), batch_size):
        rows.append(F.normalize(model.encode(pixels_of(model, examples[i:i + batch_size])).mean(dim=1), dim=-1))
    return torch.cat(rows)


def nearest_neighbour_captions(model, examples: list[CaptionExample], pool: list[CaptionExample]) -> list[str]:
    nearest = (image_features(model, examples) @ image_features(model, pool).t()).argmax(dim=1)
    return [pool[int(i)].captions[0] for i in nearest]


def evaluate_captions(model, examples: list[CaptionExample], pool: list[CaptionExample] | None = None,
                      out: str | Path | None = None, method: str = "greedy", batch_size: int = 128,
                      **decoding) -> dict:
    generated: list[str] = []
    for i in range(0, len(examples), batch_size):
        generated += generate(model, pixels_of(model, examples[i:i + batch_size]), method, **decoding)
    references = [e.captions for e in examples]
    summary = {"examples": len(examples), "decoding": method, "model": caption_scores(references, generated)}
    nn_captions = None
    if pool:
        nn_captions = nearest_neighbour_captions(model, examples, pool)
        summary["nearest_neighbour"] = caption_scores(references, nn_captions)
        summary["pool"] = len(pool)
    if out is not None:
        out = Path(out)
        write_json_atomic(out / "summary.json", summary)
        records = [{"image": e.ref.key, "references": e.captions, "generated": text} for e, text in zip(examples, generated)]
        if nn_captions is not None:
            for record, caption in zip(records, nn_captions):
                record["nearest_neighbour"] = caption
        write_jsonl_atomic(out / "predictions.jsonl", records)
    return summary
