"""Opening a model for inference, and the one place that chooses the engine zero-shot
classification runs in: PyTorch, or onnxruntime without importing PyTorch (an exported folder,
or the built-in model's exported copy for small jobs, which then start in under a second).
Importing this module imports no PyTorch."""
from __future__ import annotations

import time
import warnings
from importlib.util import find_spec
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

from ..builtin import BUILTIN
from ..data.images import BATCH_SIZE, WORKERS
from ..errors import BadInput, about
from ..files import FolderError
from . import onnx

if TYPE_CHECKING:
    from ..models import CLIP
    from ..runtime import Runtime

ENGINES = ("auto", "torch", "onnx")
Answers = Iterator[tuple[object, "np.ndarray | None", str]]  # (path, probabilities or None, why unreadable)


def load_model(spec: str, device: str = "auto", precision: str = "fp32", compile: bool = False
               ) -> tuple[CLIP, Runtime]:
    """The model `spec` names (a saved folder, a checkpoint, a preset or a built-in model), ready
    on `device` in `precision` (decided here, once: bf16 weights are converted after the model's
    fingerprints are taken, so that a model is always named by its trained weights), with the
    runtime it runs in (its `why` says what decided an `auto` precision)."""
    import grounding

    from ..runtime import Runtime
    from ..saved import fingerprint

    runtime = Runtime.resolve(device, precision, compile)
    with about("--model"):
        model = grounding.load(spec, device=runtime.device)
    runtime = runtime.for_model(model)
    for part in (None, "text", "visual"):
        fingerprint(model, part)
    return runtime.prepare(model), runtime


class TorchClassifier:
    """Zero-shot classification in PyTorch, with any model, device and precision."""

    engine = "torch"

    def __init__(self, spec: str, device: str = "cpu", precision: str = "fp32", compile: bool = False,
                 makes_copy: bool = False):
        self.spec, self.makes_copy = spec, makes_copy
        self.model, self.runtime = load_model(spec, device, precision, compile)

    def classifier(self, labels: Sequence[str], templates: Sequence[str]):
        from .encode import cached_text_classifier

        return cached_text_classifier(self.model, labels, templates)

    def classify_files(self, paths: Sequence, classifier, batch_size: int = BATCH_SIZE,
                       workers: int = WORKERS) -> Answers:
        """(path, probabilities over the classifier's labels, "") per image, in order, or (path,
        None, why) for an image that cannot be read; decoded in workers while the model encodes."""
        from ..data.images import ImageList
        from .encode import encode_images, logits
        from .scores import probabilities

        workers = workers if len(paths) > batch_size else 0  # one batch: no worker start-up to pay
        start = 0
        for features, index, errors in encode_images(self.model, ImageList.of_paths(paths), batch_size, workers):
            read = {} if features is None else dict(zip(index.tolist(), probabilities(
                logits(self.model, features, classifier).cpu().numpy(), self.model.activation)))
            unread = iter(errors)  # one message per unreadable image, in order
            for i in range(start, start + len(index) + len(errors)):
                yield (paths[i], read[i], "") if i in read else (paths[i], None, next(unread))
            start += len(index) + len(errors)

    def after(self, note: Callable[[str], None]) -> None:
        """After a run of the built-in model: its exported copy is made, once, so that later small
        runs start without PyTorch (`note` says so). Nothing for other models, or where the job
        asked for what only PyTorch does."""
        if not self.makes_copy or self.spec not in BUILTIN or onnx.is_exported(onnx.builtin_copy(self.spec)) \
                or not all(find_spec(name) for name in ("onnx", "onnxscript")):  # the export extra makes it
            return  # (a damaged copy is removed, to be made again, where a small run opens it)
        note("preparing the built-in model for onnxruntime, once (about 20 s): later runs of up to a batch of "
             "images start without PyTorch")
        began = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporter's own notes, of no use here
                folder = onnx.prepare_builtin(self.model, self.spec)
        except FolderError as e:  # this run's answers stand; later runs stay in PyTorch
            warnings.warn(str(e))
            return
        note(f"prepared in {time.perf_counter() - began:.0f} s: {folder}")


class OnnxClassifier:
    """Zero-shot classification in onnxruntime on the CPU, with an exported folder."""

    engine = "onnx"

    def __init__(self, exported: onnx.ExportedModel):
        self.exported = exported

    def classifier(self, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
        return self.exported.classifier(labels, templates)

    def classify_files(self, paths: Sequence, classifier: np.ndarray, batch_size: int = BATCH_SIZE,
                       workers: int = WORKERS) -> Answers:
        return self.exported.classify_files(paths, classifier, batch_size)

    def after(self, note: Callable[[str], None]) -> None:
        pass


@dataclass(frozen=True)
class Request:
    """What a zero-shot job asks of its engine."""

    model: str
    engine: str = "auto"
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False
    images: int = 0  # how many images the job classifies
    batch_size: int = BATCH_SIZE

    def torch_options(self) -> list[str]:
        """The options given that only PyTorch honours."""
        return [option for option, given in ((f"--device {self.device}", self.device not in ("auto", "cpu")),
                                             (f"--precision {self.precision}", self.precision != "fp32"),
                                             ("--compile", self.compile)) if given]


def open_classifier(request: Request, note: Callable[[str], None] = lambda _: None
                    ) -> TorchClassifier | OnnxClassifier:
    """The engine a zero-shot job runs in. `torch`: PyTorch always. `onnx`: onnxruntime always (an
    exported folder, or the built-in model's exported copy, made first if need be). `auto`:
    onnxruntime for an exported folder, and for the built-in model on at most one batch of images
    on the CPU in fp32 once its copy exists; PyTorch otherwise. `note` hears of a copy being made."""
    if request.engine not in ENGINES:
        raise BadInput(f"unknown engine {request.engine!r}: use one of {', '.join(ENGINES)}", "--engine")
    spec, torch_only = request.model, request.torch_options()
    folder = onnx.is_exported(spec)
    if request.engine == "torch" and folder:
        raise BadInput(f"{spec} is an exported model, which runs in onnxruntime: drop --engine torch", "--engine")
    small = request.images <= request.batch_size

    def in_torch() -> TorchClassifier:  # an auto job of the built-in model makes its copy after
        return TorchClassifier(spec, request.device, request.precision, request.compile,
                               makes_copy=request.engine == "auto" and not torch_only)

    if request.engine == "torch" or (request.engine == "auto" and not folder
                                     and (torch_only or not small or spec not in BUILTIN)):
        return in_torch()
    if torch_only:
        raise BadInput(f"onnxruntime runs on the CPU in fp32 here: drop {', '.join(torch_only)}"
                       + ("" if folder else ", or run PyTorch with --engine torch"), "--engine")
    if not folder and spec not in BUILTIN:
        raise BadInput(f"--engine onnx runs an exported folder or the built-in model: run grounding export {spec} "
                       "OUT, then classify with --model OUT", "--engine")
    with about("--model"):
        if folder:
            return OnnxClassifier(onnx.ExportedModel(spec))
        prepared = onnx.prepared_builtin(spec)
        if prepared is None and request.engine == "onnx":
            TorchClassifier(spec, makes_copy=True).after(note)
            prepared = onnx.prepared_builtin(spec)
    if prepared is None:  # auto, and no copy yet: this run is PyTorch's, and makes the copy after
        return in_torch()
    return OnnxClassifier(prepared)
