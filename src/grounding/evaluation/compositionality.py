"""The compositionality score: how often the model prefers a scene's true caption to every
caption made of the same words in a wrong arrangement (colours or shapes swapped between two
objects, the relation reversed). A model that reads captions as bags of words scores about
1 / (1 + negatives) per scene, however good its zero-shot accuracy."""
from __future__ import annotations

import numpy as np
import torch

from ..data.composition import synthetic_swaps
from ..data.synthetic import World
from ..inference.encode import encode_images, encode_texts
from ..models import CLIP


def compositionality_score(model: CLIP, world: World, n_scenes: int = 200, seed: int = 5,
                           split: str = "any") -> dict[str, float]:
    """The share of two-object scenes whose true caption outscores all its hard negatives, and
    the rate a caption-blind (random) scorer would reach: `contest_scores` over one contest a
    scene."""
    row = contest_scores(model, synthetic_swaps(world, n_scenes, seed, split, by_kind=False))["all"]
    return {"score": row["accuracy"], "chance": row["chance"], "scenes": row["count"]}


@torch.no_grad()
def contest_scores(model: CLIP, contests: list, batch_size: int = 64) -> dict[str, dict[str, float]]:
    """Per kind of contest (and over all): for one image, how often its true caption outscores
    every wrong one, beside the rate of a scorer that ignores the image (1 / captions); for
    Winoground's pairs, the text score (each image prefers its caption), the image score (each
    caption prefers its image) and the group score (both), chance 25%, 25% and 16.7%."""
    from ..data.images import ImageList

    def ident(ref) -> tuple:  # two scenes can share a caption, not their objects
        return ref.key, ref.scene

    refs = list({ident(ref): ref for c in contests for ref in c.images}.values())
    index = {ident(ref): i for i, ref in enumerate(refs)}
    features, readable = torch.zeros(len(refs), model.config.embed_dim), torch.zeros(len(refs), dtype=torch.bool)
    for batch, rows, _ in encode_images(model, ImageList(refs, model.config.vision.image_size), batch_size):
        if batch is not None:
            features[torch.as_tensor(rows)], readable[torch.as_tensor(rows)] = batch.float().cpu(), True
    texts = sorted({t for c in contests for t in (*c.captions, *c.negatives)})
    position = {t: i for i, t in enumerate(texts)}
    text_features = encode_texts(model, texts).float().cpu()
    kinds: dict[str, list[dict[str, float]]] = {}
    skipped = 0
    for contest in contests:
        rows = [index[ident(ref)] for ref in contest.images]
        if not readable[rows].all():  # an image that cannot be read: the contest is left out, and counted
            skipped += 1
            continue
        images = features[rows]
        if len(contest.images) == 1:
            scores = images[0] @ text_features[[position[t] for t in (*contest.captions, *contest.negatives)]].t()
            # a caption with no wrong arrangement left (ARO's order sets: every shuffle gave it back) is right
            result = {"accuracy": float(len(scores) == 1 or scores[0] > scores[1:].max()), "chance": 1 / len(scores)}
        else:
            s = images @ text_features[[position[t] for t in contest.captions]].t()  # s[i, c]: image i, caption c
            text = bool(s[0, 0] > s[0, 1] and s[1, 1] > s[1, 0])
            image = bool(s[0, 0] > s[1, 0] and s[1, 1] > s[0, 1])
            result = {"text": float(text), "image": float(image), "group": float(text and image)}
        kinds.setdefault(contest.kind, []).append(result)
    report = {kind: {metric: float(np.mean([r[metric] for r in rows])) for metric in rows[0]} | {"count": len(rows)}
              for kind, rows in sorted(kinds.items())}
    every = [r for rows in kinds.values() for r in rows]
    if every and all(r.keys() == every[0].keys() for r in every):
        report["all"] = {metric: float(np.mean([r[metric] for r in every])) for metric in every[0]} | {"count": len(every)}
    if skipped:
        report["skipped"] = {"count": skipped}
    return report
