"""Zero-shot classification with a model exported by `grounding export` (formats/export.py's
folder), run with onnxruntime, NumPy and Pillow alone. Importing PyTorch takes longer than
classifying a few images, so `grounding classify` runs an exported folder given as `--model` this
way, and so the built-in model: on its first use it gets an exported copy in the cache (made
once, with PyTorch), which then serves its jobs of up to a batch of images on the CPU. The
answers are PyTorch's to 1e-4 (tests/test_exported.py)."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .. import cache
from ..builtin import BUILTIN
from ..config import MAX_IMAGE_SIZE
from ..data.images import BATCH_SIZE, BadImageError, Preprocess
from ..errors import BadInput
from ..files import FolderError, cached_array, stamp
from ..tokenizer import clean
from .scores import classifier_path, probabilities
from .templates import prompts

FILES = ("image_encoder.onnx", "text_encoder.onnx", "tokenizer.json", "preprocess.json")
KEPT_COPIES = 2  # exported copies of one built-in model kept (two installs may share the cache)


def is_exported(folder: str | Path) -> bool:
    return all((Path(folder) / name).is_file() for name in FILES)


class ExportedModel:
    """The encoders of an exported folder in onnxruntime sessions, with its tokenizer and its
    preprocessing. A folder that cannot be read is one ValueError naming it."""

    def __init__(self, folder: str | Path):
        import onnxruntime
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        try:
            settings = json.loads((self.folder / "preprocess.json").read_text())
            if not 1 <= int(settings["image_size"]) <= MAX_IMAGE_SIZE or not 0 < float(settings["logit_scale"]) < 1e4:
                raise ValueError(f"preprocess.json: image_size {settings['image_size']} or logit_scale "
                                 f"{settings['logit_scale']} out of range")
            self.preprocess = Preprocess(settings["image_size"], tuple(settings["mean"]), tuple(settings["std"]),
                                         settings.get("resize_mode", "shortest"))
            self.logit_scale = float(settings["logit_scale"])
            self.logit_bias = float(settings.get("logit_bias") or 0.0)  # folders exported before SigLIP had none
            self.activation = settings.get("activation", "softmax")
            self.embed_dim = int(settings["embed_dim"])
            # folders exported before SigLIP: BPE or WordPiece text, pooled at the end token
            self.clean_text, self.cut_padding = settings.get("clean_text", True), settings.get("cut_padding", True)
            self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
            self.image, self.text = (onnxruntime.InferenceSession(str(self.folder / f"{name}.onnx"),
                                                                  providers=["CPUExecutionProvider"])
                                     for name in ("image_encoder", "text_encoder"))
        except Exception as e:  # onnxruntime's own errors share no base class but Exception
            raise BadInput(f"{self.folder}: not a readable exported model ({str(e).splitlines()[0]}); export it "
                           f"again: grounding export MODEL {self.folder}") from None

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        """Unit image embeddings of preprocessed (batch, 3, S, S) pixels."""
        return _unit(self.image.run(None, {"pixels": pixels.astype(np.float32)})[0])

    def prepare(self, text: str) -> str:
        return clean(text) if self.clean_text else text

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Unit text embeddings; each batch is cut after its longest text where padding changes
        nothing (not for SigLIP, which pools the last position)."""
        rows = []
        for start in range(0, len(texts), batch_size):
            encoded = self.tokenizer.encode_batch([self.prepare(t) for t in texts[start:start + batch_size]])
            length = max(sum(e.attention_mask) for e in encoded) if self.cut_padding else len(encoded[0].ids)
            ids = np.array([e.ids[:length] for e in encoded], dtype=np.int64)
            rows.append(self.text.run(None, {"ids": ids})[0])
        return _unit(np.concatenate(rows))

    def classifier(self, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
        """(embed_dim, labels) unit columns, the mean of each label's template embeddings, as
        `encode.text_classifier` makes them; kept in the cache's classifiers."""
        texts = prompts(labels, templates)
        identity = "exported:" + _identity([self.folder / "text_encoder.onnx", self.folder / "tokenizer.json"])

        def build() -> np.ndarray:
            embeddings = self.encode_texts(texts)
            return _unit(embeddings.reshape(len(labels), len(templates), -1).mean(axis=1)).T

        return cached_array(classifier_path(identity, [self.prepare(t) for t in texts], len(templates), "float32"),
                            (self.embed_dim, len(labels)), build, "classifier")

    def classify_files(self, paths: Sequence, classifier: np.ndarray, batch_size: int = BATCH_SIZE
                       ) -> Iterator[tuple[object, np.ndarray | None, str]]:
        """(path, probabilities over the classifier's labels, "") per image, in order, or (path,
        None, why) for an image that cannot be read."""
        for start in range(0, len(paths), batch_size):
            batch, pixels, errors = paths[start:start + batch_size], [], []
            for path in batch:
                try:
                    pixels.append(self.preprocess.array(path))
                    errors.append("")
                except BadImageError as e:
                    errors.append(str(e))
            logits = self.logit_scale * self.encode_images(np.stack(pixels)) @ classifier + self.logit_bias \
                if pixels else np.zeros((0, classifier.shape[1]), np.float32)
            probs = iter(probabilities(logits, self.activation))
            for path, error in zip(batch, errors):
                yield path, None if error else next(probs), error


def builtin_copy(name: str) -> Path:
    """Where the exported copy of a built-in model lives, made or not: named by what its graphs
    depend on (the model's files, this package's model code, the installed dependencies), so
    that a changed install never runs a stale copy."""
    package = Path(__file__).parents[1]
    sources = [*sorted(BUILTIN[name].iterdir()), *sorted((package / "models").glob("*.py")),
               package / "formats" / "export.py"]
    return cache.folder("exported") / f"{name}-{_identity(sources, _dependencies())[:16]}"


def prepared_builtin(name: str) -> ExportedModel | None:
    """The built-in model's exported copy, if it has been made; a damaged one is removed (with a
    warning), to be made again."""
    folder = builtin_copy(name)
    if not folder.exists():
        return None
    try:
        return ExportedModel(folder)
    except ValueError as e:
        warnings.warn(f"{e}; removed it, to be made again")
        shutil.rmtree(folder, ignore_errors=True)
        return None


def prepare_builtin(model, name: str) -> Path:
    """Exports the loaded built-in model `model` into its copy's folder: written beside it and
    renamed into place whole, so that another process sees all of it or none; older copies past
    the newest KEPT_COPIES go."""
    from ..formats.export import export

    target = builtin_copy(name)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as e:
        raise FolderError(f"{target.parent}: cannot keep the built-in model's onnxruntime copy there ({e.strerror}); "
                          "set GROUNDING_CACHE to a folder you can write, or run with --engine torch") from None
    try:
        export(model, scratch)
        try:
            scratch.rename(target)
        except OSError:  # another process made it first
            pass
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    copies = sorted(target.parent.glob(f"{name}-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in copies[KEPT_COPIES:]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _identity(files: Sequence[Path], extra: object = None) -> str:
    """A hash of files' names and stamps (sizes and modification times), and of `extra`."""
    return hashlib.sha256(json.dumps([[(str(f), stamp(f)) for f in files], extra], default=str).encode()).hexdigest()


def _dependencies() -> list[tuple[str, str | None]]:
    """This package's version and those of what it requires (the towers' weights come from some)."""
    try:
        requirements = metadata.requires("grounding") or []
        own = metadata.version("grounding")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return [("grounding", None)]
    names = [re.split(r"[\s;<>=!~\[]", r, maxsplit=1)[0] for r in requirements if "extra ==" not in r]
    versions = [("grounding", own)]
    for name in names:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            versions.append((name, None))
    return versions


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
