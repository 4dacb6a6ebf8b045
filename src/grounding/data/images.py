"""Image loading and preprocessing with Pillow, NumPy and torch alone.

Evaluation: bicubic resize of the shortest side, centre crop, normalisation by the model's mean
and std. Training adds a random resized crop. Every unreadable file raises `BadImageError`
naming the file and what is wrong with it; nothing is decoded wrongly without a word: PNG
checksums are verified, EXIF orientation is applied, 16-bit images are scaled to 8 bits and
transparency is laid over white. PyTorch is imported only where a tensor is made: decoding and
`Preprocess.array` serve inference/onnx.py, which runs without it.
"""
from __future__ import annotations

import io
import math
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import BadInput

if TYPE_CHECKING:
    import torch

    from .synthetic import Scene

# Images encoded per batch, and the processes that decode them beside the encoder, wherever a
# caller says nothing else (every encoding command's --batch-size and --workers default).
BATCH_SIZE, WORKERS = 64, 2
MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit, enforced as an error
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# Listed beside the images so that they are reported as skipped, never silently left out.
VECTOR_SUFFIXES = {".svg", ".svgz", ".eps", ".pdf"}


def listed(name: str | Path) -> bool:
    """Whether a folder or tar listing takes this file: an image, or a vector image, which is
    then reported as skipped rather than silently left out."""
    return Path(name).suffix.lower() in IMAGE_SUFFIXES | VECTOR_SUFFIXES


class BadImageError(BadInput):
    """An image file that cannot be used; the message names the file and the reason."""


def load_image(path: str | Path) -> Image.Image:
    """An RGB image, fully decoded, or BadImageError naming the file."""
    path = Path(path)
    if path.is_dir():
        raise BadImageError(f"{path}: a folder, not an image file")
    if not path.is_file():
        broken = path.is_symlink()
        raise BadImageError(f"{path}: " + ("a broken symbolic link; point it at an image" if broken else "no such file"))
    if path.stat().st_size == 0:
        raise BadImageError(f"{path}: the file is empty (0 bytes); replace or remove it")
    _refuse_vector(path.name, str(path))
    return _decode(path.read_bytes(), str(path))


def decode_image(data: bytes, name: str) -> Image.Image:
    """`load_image` for bytes already read (a tar member); `name` goes into the error message."""
    if not data:
        raise BadImageError(f"{name}: empty (0 bytes); replace or remove it")
    _refuse_vector(name, name)
    return _decode(data, name)


def _refuse_vector(filename: str, name: str) -> None:
    if Path(filename).suffix.lower() in VECTOR_SUFFIXES:
        raise BadImageError(f"{name}: a vector image, not supported; rasterise it first (e.g. to PNG)")


def _decode(data: bytes, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise BadImageError(f"{name}: {image.width}x{image.height} pixels is over the "
                                        f"{MAX_PIXELS:,}-pixel limit (a decompression bomb?); resize it first")
                if image.format == "PNG":  # Pillow skips the checksums of image data while decoding
                    image.verify()
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                ImageOps.exif_transpose(image, in_place=True)  # no copy of a photo's pixels: one is enough
                return flatten(image)
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImageError(f"{name}: over Pillow's pixel limit (a decompression bomb?); resize it first") from None
    except UnidentifiedImageError:
        raise BadImageError(f"{name}: not an image Pillow can read; check the file type") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise BadImageError(f"{name}: cannot decode ({e}); the file is truncated or corrupt") from None


@dataclass(frozen=True)
class ImageRef:
    """One image, wherever it lives: a synthetic `scene` (rendered at the size asked for), pixels
    in memory, encoded bytes, a file at `path`, or a `member` of the tar shard at `path` (its
    `length` bytes from `offset`); of a file, a `crop` (x0, y0, x1, y1 in pixels) may be asked.
    `read()` is the one way every dataset, store and server view gets an image; `key` is what
    names it in stores and reports (`SHARD.tar:MEMBER` for a tar member), and `from_key` reads
    such a key back."""

    path: Path | None = None
    scene: Scene | None = None
    pixels: np.ndarray | None = None  # uint8 (H, W[, 3])
    data: bytes | None = None
    member: str | None = None
    offset: int = 0
    length: int = 0
    name: str = ""  # the key of in-memory images
    crop: tuple[float, float, float, float] | None = None  # a region of the file (ARO's boxes)

    def read(self, size: int = 224) -> Image.Image:
        """The image in RGB (or BadImageError naming it); `size` is a scene's render size."""
        if self.scene is not None:
            return self.scene.render(size)
        if self.pixels is not None:
            return Image.fromarray(self.pixels).convert("RGB")
        if self.data is not None:
            return decode_image(self.data, self.key)
        if self.member is not None:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self.offset)
                    return decode_image(f.read(self.length), self.key)
            except FileNotFoundError:
                raise BadImageError(f"{self.key}: its shard {self.path} is gone") from None
        image = load_image(self.path)
        return image if self.crop is None else image.crop(tuple(round(v) for v in self.crop))

    @property
    def key(self) -> str:
        if self.member is not None:
            return f"{self.path}:{self.member}"
        if self.path is not None:
            return str(self.path) + ("" if self.crop is None else f"#{','.join(f'{v:g}' for v in self.crop)}")
        return self.scene.caption() if self.scene is not None else self.name

    @classmethod
    def from_key(cls, key: str) -> ImageRef:
        """The image a stored key names: a file, or `SHARD.tar:MEMBER` (looked up in the shard)."""
        shard, tar_member, member = key.partition(".tar:")
        if not tar_member or Path(key).is_file():
            return cls(Path(key))
        import tarfile

        path = Path(shard + ".tar")
        try:
            with tarfile.open(path) as tar:
                info = tar.getmember(member)
        except (OSError, tarfile.TarError, KeyError) as e:
            raise BadImageError(f"{key}: cannot find {member} in the shard {path} ({e})") from None
        return cls.of_member(path, info)

    @classmethod
    def of_member(cls, shard: Path, info) -> ImageRef:
        """A member of a tar shard (its `tarfile.TarInfo`), read later by offset, not by reopening."""
        return cls(Path(shard), member=info.name, offset=info.offset_data, length=info.size)

    def thumbnail(self, size: int = 160, format: str = "JPEG") -> bytes:
        """The image shrunk to fit size x size, encoded (JPEG for the server, PNG for reports)."""
        image = self.read()
        image.thumbnail((size, size))
        out = io.BytesIO()
        image.save(out, format, **({"quality": 85} if format == "JPEG" else {}))
        return out.getvalue()


def flatten(image: Image.Image) -> Image.Image:
    """RGB, with any transparency laid over white (clip art and emoji are drawn on a transparent
    canvas whose hidden pixels are often black) and 16- or 32-bit greyscale scaled to 8 bits
    (a plain convert clips it, so most of it comes out white)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, image).convert("RGB")
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)
        peak = array.max(initial=0)
        sixteen_bit = image.mode.startswith("I;16") or (image.mode == "I" and peak > 255)
        scale = 255 / 65535 if sixteen_bit else 255.0 if image.mode == "F" and peak <= 1 else 1.0
        grey = np.clip(np.rint(array * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _normalised(image: Image.Image, mean: tuple, std: tuple) -> np.ndarray:
    """(3, height, width) float32, each channel less its mean, over its std."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def _tensor(array: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(array)


@dataclass(frozen=True)
class Preprocess:
    """Turns a PIL image or a path into a normalised (3, size, size) tensor (`array`: the same as
    a NumPy array)."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "shortest"  # or "squash" (config.VisionConfig.resize)

    def __call__(self, image: Image.Image | str | Path) -> torch.Tensor:
        return _tensor(self.array(image))

    def array(self, image: Image.Image | str | Path) -> np.ndarray:
        if not isinstance(image, Image.Image):
            image = load_image(image)
        size, image = self.image_size, flatten(image)
        if self.resize == "squash":
            square = image if image.size == (size, size) else image.resize((size, size), Image.BICUBIC)
        else:
            square = center_crop(resize_shortest(image, size), size)
        return _normalised(square, self.mean, self.std)


class ImageList:
    """Images read on demand (scenes rendered at `size`), the source `DecodedImages` decodes in
    worker processes; datasets and retrieval pairs are such sources too."""

    def __init__(self, refs: list[ImageRef], size: int = 224):
        self.refs, self.size = refs, size

    @classmethod
    def of_paths(cls, paths: list[Path]) -> ImageList:
        return cls([ImageRef(Path(p)) for p in paths])

    def __len__(self) -> int:
        return len(self.refs)

    def image(self, i: int) -> Image.Image:
        return self.refs[i].read(self.size)


class DecodedImages:
    """`source.image(i)` preprocessed, for DataLoader workers: yields (pixels, i, error). An
    unreadable image gives zeros and its error message instead of stopping the run."""

    def __init__(self, source, preprocess: Preprocess):
        self.source, self.preprocess = source, preprocess

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        try:
            return self.preprocess(self.source.image(i)), i, ""
        except BadImageError as e:
            size = self.preprocess.image_size
            return _tensor(np.zeros((3, size, size), np.float32)), i, str(e)


def one_thread(_: int) -> None:
    """Each worker process decodes on one core, leaving the others to the model (several
    processes each using every core slow each other down several times), and leaves Ctrl-C to the
    main process to handle (a training run checkpoints first)."""
    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def image_loader(source, preprocess: Preprocess, batch_size: int = BATCH_SIZE, workers: int = WORKERS) -> torch.utils.data.DataLoader:
    """Batches of `DecodedImages(source)`, decoded in `workers` processes of one thread each
    (0: in this process) while the caller encodes."""
    import torch

    return torch.utils.data.DataLoader(DecodedImages(source, preprocess), batch_size=batch_size, num_workers=workers,
                                       worker_init_fn=one_thread if workers else None,
                                       prefetch_factor=4 if workers else None)


def load_batch(paths: list[str | Path], preprocess: Preprocess, skip_bad: bool = False
               ) -> tuple[torch.Tensor, list[Path], list[str]]:
    """Preprocessed images stacked, the paths kept, and one message per file skipped. Without
    `skip_bad` the first unreadable file raises BadImageError; with it, it is skipped and counted."""
    import torch

    tensors, kept, skipped = [], [], []
    for path in paths:
        try:
            tensors.append(preprocess(load_image(path)))
            kept.append(Path(path))
        except BadImageError as e:
            if not skip_bad:
                raise
            skipped.append(str(e))
    size = preprocess.image_size
    return (torch.stack(tensors) if tensors else torch.empty(0, 3, size, size)), kept, skipped


def resize_shortest(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    return image if new == (w, h) else image.resize(new, Image.BICUBIC)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))


@dataclass(frozen=True)
class TrainTransform:
    """Random resized crop (area share in `scale`, aspect ratio in `ratio`), then normalisation.
    Randomness comes from the generator passed in, so a resumed run crops the same way."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: tuple[float, float] = (0.9, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        w, h = image.size
        area = w * h * rng.uniform(*self.scale)
        aspect = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
        cw = min(w, round(math.sqrt(area * aspect)))
        ch = min(h, round(math.sqrt(area / aspect)))
        left = int(rng.integers(0, w - cw + 1))
        top = int(rng.integers(0, h - ch + 1))
        crop = image.resize((self.image_size, self.image_size), Image.BICUBIC,
                            box=(left, top, left + cw, top + ch))
        return _tensor(_normalised(crop, self.mean, self.std))
