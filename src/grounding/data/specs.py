"""Every data SPEC, parsed in one place: `KIND[:ARGUMENT]`, where the argument is a path, a style
or a split (`csv:pairs.csv`, `emoji:google:PATH`, `fashion-mnist:train`), or `key=value` options
(`synthetic:n=500,seed=2`); several training sources join with `+`, each optionally weighted
`@W`. The registry below says which commands read each kind (its roles) and which options it
takes in each; a kind, option or value outside it is one error that says what is allowed.

Roles: `train` (training pairs: train --data, data shard, train-caption), `pairs` (images with
one caption each: retrieval-eval), `dataset` (labelled images: zeroshot, probe, --eval-data),
`images` (a collection to embed), `qa` (questions about images: train-vqa), `boxes` (images
with labelled boxes: train-detect, detect-eval), `composition` (true captions against rearranged
ones: compose-eval)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadInput

ROLES = ("train", "pairs", "dataset", "images", "qa", "boxes", "composition")
# The options that take whole numbers, and the least each may be.
COUNTS = {"n": 1, "per_label": 1, "size": 8, "seed": 0}


@dataclass(frozen=True)
class Kind:
    name: str
    argument: str  # how the argument reads, in messages: "PATH", "[ROOT]", "STYLE[:PATH]", "OPTIONS", ""
    roles: tuple[str, ...]
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)  # role -> the options it takes there

    @property
    def required(self) -> bool:
        return self.argument not in ("", "OPTIONS") and not self.argument.startswith("[")

    def usage(self, role: str) -> str:
        if self.argument == "OPTIONS":
            return self.name + (f"[:{'|'.join(self.options[role])}]" if self.options.get(role) else "")
        return self.name + (f":{self.argument}" if self.required else f"[:{self.argument.strip('[]')}]"
                            if self.argument else "")


LISTED = ("train", "pairs", "images")  # kinds that list captioned images serve all of these
KINDS = {kind.name: kind for kind in (
    Kind("synthetic", "OPTIONS", ("train", "pairs", "dataset", "qa", "boxes", "composition"),
         {"train": (), "qa": (), "boxes": (), "composition": (), "pairs": ("n", "seed", "size"), "dataset": ("per_label", "seed", "size", "multi")}),
    Kind("csv", "PATH", (*LISTED, "dataset", "qa")),
    Kind("folder", "PATH", (*LISTED, "dataset")),
    Kind("tar", "PATTERN", ("train", "images")),
    Kind("openclipart", "[ROOT]", LISTED),
    Kind("tuxpaint", "[ROOT]", LISTED),
    Kind("gcompris", "[ROOT]", LISTED),
    Kind("emoji", "STYLE[:PATH]", (*LISTED, "dataset")),
    Kind("iconify", "SET[:PATH]", (*LISTED, "dataset")),
    Kind("fashion-mnist", "[test|train]", ("dataset",)),
    Kind("flags", "", ("dataset",)),
    Kind("photos", "[demo]", ("dataset",)),
    # the standard benchmarks, in the layouts they download in (data/benchmarks.py)
    Kind("wds", "DIR[:SPLIT]", ("dataset", "pairs")),
    Kind("coco", "JSON[:SPLIT]", ("pairs", "boxes")),  # captions for pairs, instances (boxes) for boxes
    Kind("flickr30k", "JSON[:SPLIT]", ("pairs",)),
    Kind("imagenet", "DIR", ("dataset",)),
    Kind("cars", "DIR[:SPLIT]", ("dataset",)),
    Kind("country211", "DIR[:SPLIT]", ("dataset",)),
    Kind("cifar10", "PATH[:SPLIT]", ("dataset",)),
    Kind("cifar100", "PATH[:SPLIT]", ("dataset",)),
    # compositional benchmarks (data/composition.py)
    Kind("winoground", "DIR", ("composition",)),
    Kind("sugarcrepe", "DIR", ("composition",)),
    Kind("aro", "DIR", ("composition",)),
)}


@dataclass(frozen=True)
class Spec:
    kind: str
    argument: str = ""  # what follows `KIND:` (for OPTIONS kinds: nothing; see options)
    options: dict[str, int | bool] = field(default_factory=dict)
    text: str = ""  # as the user wrote it

    def __str__(self) -> str:
        return self.text or self.kind

    def option(self, name: str, default: int) -> int:
        return int(self.options.get(name, default))

    def with_options(self, **changes: int | bool) -> "Spec":
        options = {**self.options, **changes}
        rest = ",".join(k if v is True else f"{k}={v}" for k, v in options.items())
        return Spec(self.kind, self.argument, options, self.kind + (f":{rest}" if rest else ""))


def parse_spec(text: str, role: str, option: str | None = None) -> Spec:
    """One SPEC for one role, checked against the registry; `option` names the command-line
    option in errors (--data, --dataset, ...). For `images`, a bare folder or .tar path is one."""
    text = str(text).strip()
    kind, _, rest = text.partition(":")
    if role == "images" and kind not in KINDS:
        if Path(text).is_dir():
            kind, rest = "folder", text
        elif text.endswith(".tar"):
            kind, rest = "tar", text
    where = f"{option} {text!r}" if option else repr(text)
    usable = [k.usage(role) for k in KINDS.values() if role in k.roles]
    if kind not in KINDS or role not in KINDS[kind].roles:
        what = "unknown kind" if kind not in KINDS else f"{kind} does not serve here"
        raise BadInput(f"{where}: {what}; use {', '.join(usable)}", option)
    spec = KINDS[kind]
    if spec.argument == "OPTIONS":
        return Spec(kind, "", _options(rest, spec.options.get(role, ()), where, option), text)
    if rest and not spec.argument:
        raise BadInput(f"{where}: {kind} takes nothing after it", option)
    if not rest and spec.required:
        raise BadInput(f"{where}: say which, as {spec.usage(role)}", option)
    return Spec(kind, rest, {}, text)


def _options(rest: str, allowed: tuple[str, ...], where: str, option: str | None) -> dict[str, int | bool]:
    options: dict[str, int | bool] = {}
    for item in filter(None, rest.split(",")):
        name, eq, value = item.partition("=")
        if name not in allowed:
            takes = f"takes {', '.join(allowed)}" if allowed else "takes no options here"
            raise BadInput(f"{where}: unknown option {name!r}; it {takes}", option)
        if name not in COUNTS:  # a flag
            if eq:
                raise BadInput(f"{where}: {name} is a flag, given without a value", option)
            options[name] = True
            continue
        try:
            number = int(value)
        except ValueError:
            raise BadInput(f"{where}: {name}={value!r} is not a whole number", option) from None
        if number < COUNTS[name]:
            raise BadInput(f"{where}: {name}={number} must be at least {COUNTS[name]}", option)
        options[name] = number
    return options


def parse_mixture(text: str, option: str = "--data") -> list[tuple[Spec, float | None]]:
    """Training sources joined with `+`, each with its weight `@W` (a share of every batch, in
    (0, 1]) or None."""
    parts = []
    for part in str(text).split("+"):
        part, weight = part.strip(), None
        head, at, tail = part.rpartition("@")
        if at and _is_number(tail):
            part, weight = head, float(tail)
            if not 0 < weight <= 1:
                raise BadInput(f"{option} {text!r}: the weight @{tail} must lie in (0, 1]", option)
        parts.append((parse_spec(part, "train", option), weight))
    return parts


def expand_braces(pattern: str) -> list[str]:
    """`a-{000..002}.tar` -> a-000.tar a-001.tar a-002.tar; `{x,y}` -> x y; nested and repeated."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    body, head, tail = match.group(1), pattern[:match.start()], pattern[match.end():]
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        lo, hi = numeric.groups()
        width = len(lo) if lo.startswith("0") else 0
        options = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        options = body.split(",")
    return [expanded for option in options for expanded in expand_braces(head + option + tail)]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
