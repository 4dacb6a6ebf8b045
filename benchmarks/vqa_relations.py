"""Why VQA relation questions are not learned: a VQA model trained on two-object scenes' relation
questions alone, in one of three forms, from the image's grid cells or from perfect object
tokens, and scored on 400 new questions of the same form (docs/tasks.md, "Visual question
answering").

    python benchmarks/vqa_relations.py --init runs/demo --form yes-no            # the world's own form
    python benchmarks/vqa_relations.py --init runs/demo --form where --objects    # perfect object tokens

Forms: `yes-no` asks "is A left of B?" with the true relation or its opposite, equally often
(Scene.questions' form); `one-word` asks only "left of" and "above", A and B in either order,
so that yes and no stay equally likely; `where` asks "where is A from B?" (left, right, above,
below); `where,yes-no` trains one form and then the other, `where+yes-no` both at once.
`--objects` gives the fusion layers one token per object, its true colour, shape and place,
instead of the image tower's grid cells: what the question form costs without the perception.
`--relation-target` adds the model's relation head (models/vqa.py), trained on each question's
true relation beside the answer: what makes the yes/no form learnable.

    python benchmarks/vqa_relations.py --init runs/demo --freeze --form yes-no --relation-target --steps 1000
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from grounding.build import attach
from grounding.data.images import ImageRef
from grounding.data.relations import OPPOSITE
from grounding.data.synthetic import COLOURS, SHAPES, World, relation
from grounding.models.vqa import VQAConfig, VQAModel
from grounding.saved import load
from grounding.tasks.towers import copy_towers, freeze_towers
from grounding.tasks.vqa.data import RELATIONS, QAExample, to_tensors
from grounding.tasks.vqa.train import relation_loss

ANSWERS = ["yes", "no", "left", "right", "above", "below"]


def questions(world: World, seed: int, size: int, form: str) -> list[QAExample]:
    rng = np.random.default_rng([seed, 11])
    out: list[QAExample] = []
    while len(out) < size:
        scene = world.sample(rng, "train", n_objects=2)
        a, b = scene.objects
        if (a.colour, a.shape) == (b.colour, b.shape):
            continue
        truth, yes = relation(a, b), bool(rng.random() < 0.5)
        if form == "where":
            question, answer = f"where is the {a.colour} {a.shape} from the {b.colour} {b.shape}?", truth.split()[0]
        elif form == "yes-no":  # the world's own pair of relation questions, one answered yes
            question, answer, _ = next(qa for qa in scene.questions()
                                       if qa[2] == "relation" and qa[1] == ("yes" if yes else "no"))
        else:  # one word an axis: A is the left (upper) one exactly when the answer is yes
            word = truth if truth in ("left of", "above") else OPPOSITE[truth]
            if (word == truth) != yes:
                a, b = b, a
            question, answer = f"is the {a.colour} {a.shape} {word} the {b.colour} {b.shape}?", "yes" if yes else "no"
        out.append(QAExample(question, {answer: 1.0}, "relation", ImageRef(scene=scene), relation(a, b)))
    return out


class ObjectTokens(nn.Module):
    """One token an object from the scene itself: its colour's and shape's embeddings and its
    place; `examples` is set to the batch before each forward pass."""

    def __init__(self, width: int):
        super().__init__()
        self.colour, self.shape = nn.Embedding(len(COLOURS), width), nn.Embedding(len(SHAPES), width)
        self.place = nn.Linear(2, width)
        self.examples: list[QAExample] = []

    def forward(self, tower: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        objects = [e.ref.scene.objects for e in self.examples]
        colours = torch.tensor([[list(COLOURS).index(o.colour) for o in objs] for objs in objects])
        shapes = torch.tensor([[SHAPES.index(o.shape) for o in objs] for objs in objects])
        places = torch.tensor([[[4 * (o.x - 0.5), 4 * (o.y - 0.5)] for o in objs] for objs in objects])
        return self.colour(colours) + self.shape(shapes) + self.place(places)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", default="runs/demo", help="the CLIP model whose towers start the VQA model")
    parser.add_argument("--form", default="yes-no",
                        help="yes-no, one-word or where; stages separated by commas are trained one after "
                             "another for --steps each (a curriculum), forms joined by + share each batch; the "
                             "last form named is scored")
    parser.add_argument("--objects", action="store_true", help="perfect object tokens instead of grid cells")
    parser.add_argument("--relation-target", action="store_true", help="train the relation head beside the answer")
    parser.add_argument("--grid-stage", type=int, default=4)
    parser.add_argument("--final-grid", action="store_true", help="the final stage's cells beside --grid-stage's")
    parser.add_argument("--freeze", action="store_true", help="keep the towers' weights fixed")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=3e-4, help="3e-4: at 1e-3 the learnable forms stall (docs/tasks.md)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the new layers' weights")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    clip, world = load(args.init), World()
    relations = RELATIONS if args.relation_target else []
    model = attach(VQAModel(VQAConfig(clip.config, ANSWERS, grid_stage=args.grid_stage, relations=relations,
                                      final_grid=args.final_grid)),
                   clip.tokenizer)
    copy_towers(model, clip)
    if args.freeze:
        freeze_towers(model)
    if args.objects:
        model.image_in = ObjectTokens(model.config.width)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    stages = [stage.split("+") for stage in args.form.split(",")]
    if unknown := {form for stage in stages for form in stage} - {"yes-no", "one-word", "where"}:
        parser.error(f"unknown form {', '.join(sorted(unknown))}")
    scored = stages[-1][-1]
    test = questions(world, 999, 400, scored)

    def run(examples: list[QAExample]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The answers' logits, the answers, and the loss (with the relation target's, if asked)."""
        if args.objects:
            model.image_in.examples = examples
        pixels, ids, targets = to_tensors(model, examples, ANSWERS)
        state = model.fuse(pixels, ids)
        logits, answers = model.head(state), targets.argmax(1)
        return logits, answers, F.cross_entropy(logits, answers) + relation_loss(model, state, examples)

    began, losses = time.perf_counter(), []
    for step in range(1, len(stages) * args.steps + 1):
        stage = stages[(step - 1) // args.steps]  # its forms share the batch, each from a stream of its own
        _, _, loss = run([q for k, form in enumerate(stage)
                          for q in questions(world, step + 1_000_000 * k, 64 // len(stage), form)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 100 == 0:
            model.eval()
            with torch.no_grad():
                logits, targets, _ = run(test)
            model.train()
            accuracy = (logits.argmax(1) == targets).float().mean().item()
            print(f"step {step} ({'+'.join(stage)}): training loss {np.mean(losses[-100:]):.3f} "
                  f"({'the answer and the relation target together' if relations else 'ln 2 = 0.693'}), "
                  f"accuracy on 400 new {scored} questions {accuracy:.1%}, {time.perf_counter() - began:.0f} s",
                  flush=True)


if __name__ == "__main__":
    main()
