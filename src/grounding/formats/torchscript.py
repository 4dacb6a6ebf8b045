"""TorchScript archives (OpenAI's original CLIP checkpoints), read as data. The archive's
`data.pkl` holds the module tree; it is unpickled by a loader that knows only tensors and plain
containers: each scripted class becomes an inert record of its attributes, any other global is
refused, and the TorchScript code in the archive is never loaded, let alone run."""
from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import torch

from ..errors import BadInput

_DTYPES = {"HalfStorage": torch.float16, "FloatStorage": torch.float32, "DoubleStorage": torch.float64,
           "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
           "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
           "BoolStorage": torch.bool}


class _Record:
    """Stands in for a scripted module: only its attributes, kept as data."""

    def __setstate__(self, state: dict) -> None:
        self.state = state


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_) -> torch.Tensor:
    return storage.as_strided(size, stride, offset).clone()


def is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.endswith("/data.pkl") for n in names) and any("/code/" in n for n in names)


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, path: Path):
        super().__init__(io.BytesIO(data))
        self.archive, self.root, self.path = archive, root, path
        self.records: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__"):
            return self.records.setdefault(f"{module}.{name}", type(name, (_Record,), {}))
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
        raise BadInput(f"{self.path}: the archive refers to {module}.{name}, which a TorchScript checkpoint of "
                       "weights never needs; refusing to load it (convert it where it is trusted, or use another)")

    def persistent_load(self, pid):
        kind, dtype, key, _location, _numel = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"{self.path}: unknown persistent id {kind!r}")
        data = bytearray(self.archive.read(f"{self.root}/data/{key}"))
        return torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)


def _flatten(value, prefix: str, out: dict[str, torch.Tensor]) -> None:
    for name, item in value.state.items():
        if isinstance(item, torch.Tensor):
            out[prefix + name] = item
        elif isinstance(item, _Record):
            _flatten(item, f"{prefix}{name}.", out)


def read_torchscript(path: str | Path) -> dict[str, torch.Tensor]:
    """The module tree's tensors under their dotted attribute names, as in a state dict."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pickled = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            root = pickled.rsplit("/", 1)[0]
            tree = _Unpickler(archive.read(pickled), archive, root, path).load()
    except BadInput:
        raise
    except (zipfile.BadZipFile, pickle.UnpicklingError, KeyError, EOFError, StopIteration, ValueError, TypeError) as e:
        raise BadInput(f"{path}: a damaged TorchScript archive ({type(e).__name__}: {e}); "
                       "download or copy it again") from None
    if not isinstance(tree, _Record):
        raise BadInput(f"{path}: the archive does not hold a module")
    state: dict[str, torch.Tensor] = {}
    _flatten(tree, "", state)
    return state
