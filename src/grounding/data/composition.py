"""Compositional benchmarks, read in the layouts they are published in: each is a list of
`Contest`s, one image's true captions against the same words in a wrong arrangement (or, for
Winoground, two images and two captions that use the same words).

    winoground:DIR   Winoground as its Hugging Face copy lays it out: DIR/examples.jsonl (id,
                     image_0, image_1, caption_0, caption_1, tag) and DIR/images/IMAGE.png
    aro:DIR          ARO's VG-Relation and VG-Attribution (visual_genome_relation.json,
                     visual_genome_attribution.json: image_path, bbox_x/y/w/h, true_caption,
                     false_caption, relation_name or attributes) with Visual Genome's images in
                     DIR/images; each image cropped to its box, as ARO does. And its COCO-Order
                     and Flickr30k-Order: the Karpathy test splits as BLIP publishes them
                     (coco_karpathy_test.json, flickr30k_test.json: image, caption list) with
                     the images where their paths name them under DIR (val2014/...,
                     flickr30k-images/...); every caption against four shuffles of its words
                     (data/word_order.py)
    sugarcrepe:DIR   SugarCrepe's seven JSON files (add_att, add_obj, replace_att, replace_obj,
                     replace_rel, swap_att, swap_obj: {id: {filename, caption, negative_caption}})
                     with COCO's val2017 images in DIR/val2017 (a link to them is enough)
    synthetic        the built-in world's two-object scenes, each caption against its colour,
                     size, shape and relation swaps, each kind of swap reported apart (relation
                     swaps by axis: horizontal, vertical)"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadInput, NotFound
from ..files import reading
from .images import ImageRef
from .relations import AXIS
from .synthetic import World, relation
from .word_order import Tagger, clean, shuffles, spacy_tagger

SUGARCREPE = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")


@dataclass
class Contest:
    """Images and captions where caption i belongs to image i (one image: caption 0 is true and
    the rest are not). `kind` groups the contests in the report."""

    images: list[ImageRef]
    captions: list[str]
    kind: str
    key: str = ""
    negatives: list[str] = field(default_factory=list)  # one image: its wrong captions


def winoground(root: str | Path) -> list[Contest]:
    root = Path(root)
    path = root / "examples.jsonl"
    if not path.is_file():
        raise NotFound(f"{path}: missing (Winoground as its Hugging Face copy lays it out: examples.jsonl, images/)")
    contests = []
    with reading(path, "download Winoground's examples.jsonl again"):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for row in rows:
            images = [ImageRef(root / "images" / f"{row[f'image_{i}']}.png") for i in (0, 1)]
            contests.append(Contest(images, [row["caption_0"], row["caption_1"]], row.get("tag", "winoground"),
                                    str(row["id"])))
    return contests


def aro(root: str | Path) -> list[Contest]:
    """VG-Relation's contests are grouped by relation and VG-Attribution's as one kind; ARO
    reports VG-Relation as the mean over relations (macro), which the report's kinds allow.
    COCO-Order and Flickr30k-Order have a contest per caption, with its shuffles that differ
    from it (ARO's argmax counts a tie with the true caption as right)."""
    root = Path(root)
    files = {"vg-relation": root / "visual_genome_relation.json", "vg-attribution": root / "visual_genome_attribution.json",
             "coco-order": root / "coco_karpathy_test.json", "flickr30k-order": root / "flickr30k_test.json"}
    if not any(path.is_file() for path in files.values()):
        raise NotFound(f"{root}: none of {', '.join(p.name for p in files.values())} (ARO's files)")
    contests, captions = [], {}
    for name, path in files.items():
        if not path.is_file():
            continue
        with reading(path, "download ARO's JSON files again"):
            rows = json.loads(path.read_text(encoding="utf-8"))
            if name.endswith("-order"):
                captions[name] = [(root / row["image"], n, k, caption) for n, row in enumerate(rows)
                                  for k, caption in enumerate(row["caption"])]
            else:
                contests += cropped_regions(name, rows, root)
    if captions:  # tagged outside the files' blocks: a tagger's failure is not a damaged file
        tag = spacy_tagger()
        contests += [contest for name, rows in captions.items() for contest in shuffled_captions(name, rows, tag)]
    return contests


def cropped_regions(name: str, rows: list[dict], root: Path) -> list[Contest]:
    contests = []
    for n, row in enumerate(rows):
        x, y, w, h = (float(row[f"bbox_{k}"]) for k in "xywh")
        kind = f"vg-relation: {row['relation_name']}" if name == "vg-relation" else name
        contests.append(Contest([ImageRef(root / "images" / row["image_path"], crop=(x, y, x + w, y + h))],
                                [row["true_caption"]], kind, f"{name}/{n}", [row["false_caption"]]))
    return contests


def shuffled_captions(name: str, rows: list[tuple[Path, int, int, str]], tag: Tagger) -> list[Contest]:
    """A contest per (image, row, caption number, caption): the caption against its shuffles,
    seeded by its place in the file."""
    contests = []
    for (image, n, k, caption), tagged in zip(rows, tag([caption for *_, caption in rows])):
        truth = clean(caption)
        wrong = dict.fromkeys(clean(text) for text in shuffles(tagged, np.random.default_rng([n, k])))
        contests.append(Contest([ImageRef(image)], [truth], name, f"{name}/{n}/{k}",
                                [text for text in wrong if text != truth]))
    return contests


def sugarcrepe(root: str | Path) -> list[Contest]:
    root = Path(root)
    found = [name for name in SUGARCREPE if (root / f"{name}.json").is_file()]
    if not found:
        raise NotFound(f"{root}: none of SugarCrepe's files ({', '.join(n + '.json' for n in SUGARCREPE)})")
    contests = []
    for name in found:
        path = root / f"{name}.json"
        with reading(path, "download SugarCrepe's JSON files again"):
            for key, row in json.loads(path.read_text(encoding="utf-8")).items():
                contests.append(Contest([ImageRef(root / "val2017" / row["filename"])], [row["caption"]], name,
                                        f"{name}/{key}", [row["negative_caption"]]))
    return contests


def synthetic_swaps(world: World | None = None, scenes: int = 300, seed: int = 5, split: str = "any",
                    by_kind: bool = True) -> list[Contest]:
    """Two-object scenes that allow a swap: a contest per kind of swap (the true caption against
    every swap of that kind; a relation swap's kind names its axis), or with `by_kind=False` one
    per scene against all its swaps (the demo's compositionality score)."""
    rng = np.random.default_rng([seed, 9])
    world, contests = world or World(), []
    for n in range(scenes):
        scene = world.sample(rng, split, n_objects=2)
        swaps = scene.swaps()
        if not by_kind and swaps:
            swaps = {"all swaps": scene.hard_negatives()}
        for kind, negatives in swaps.items():
            if kind == "relation":
                kind = f"relation, {AXIS[relation(*scene.objects)]}"
            contests.append(Contest([ImageRef(scene=scene)], [scene.caption()], kind, f"scene {n}", negatives))
    return contests


def open_contests(spec: str) -> list[Contest]:
    from .specs import parse_spec

    parsed = parse_spec(spec, "composition", "--dataset")
    contests = {"winoground": winoground, "sugarcrepe": sugarcrepe, "aro": aro}.get(parsed.kind)
    found = contests(parsed.argument) if contests else synthetic_swaps()
    if not found:
        raise BadInput(f"{spec}: no examples in it")
    return found
