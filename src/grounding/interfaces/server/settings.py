"""What `grounding serve` serves and its limits: each setting's default and help in one place,
which the command line's options read (interfaces/commands/serve.py) and the app uses. Free of
FastAPI, so that the command line can show them without it."""
from __future__ import annotations

import secrets
from dataclasses import dataclass, fields

from ...errors import BadInput
from ...training.options import option


@dataclass
class ServerSettings:
    model: str = option("lit-minilm-effnet", "The CLIP model the page and API answer with.")
    index: str | None = option(None, "An embedding store with a built index, for search.")
    vqa_model: str | None = option(None, "A folder written by grounding train-vqa, for /vqa.")
    caption_model: str | None = option(None, "A folder written by grounding train-caption, for /caption.")
    detect_model: str | None = option(None, "A folder written by grounding train-detect, or a Hugging Face OWL-ViT "
                                            "folder, for /detect.")
    api_key: str | None = option(None, "Require this key (header X-API-Key) on every endpoint but /health; or set "
                                       "GROUNDING_API_KEY.")
    max_upload_mb: float = option(10.0, "The largest upload accepted, in MiB (413 above).")
    max_pixels: int = option(40_000_000, "The most pixels an uploaded image may have (413 above).")
    max_labels: int = option(1000, "The most labels one classify request may give.")
    max_images: int = option(16, "The most images one request may send.")
    max_held_pixels: int = option(80_000_000, "The most decoded pixels the server holds at once, all requests "
                                              "together (about 3 bytes each); requests wait their turn above.")
    max_batch: int = option(32, "Images encoded together at most (requests are batched).")
    max_wait_ms: float = option(10.0, "How long a request waits for others to batch with.")
    device: str = option("auto", "cpu, cuda (or cuda:N), or auto: a GPU when PyTorch sees one.")
    precision: str = option("fp32", "fp32, bf16, or auto: bf16 where the device multiplies bf16 fast.")

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name.startswith("max_") and not value > (0 if spec.name != "max_wait_ms" else -1):
                least = "at least 0" if spec.name == "max_wait_ms" else "above 0"
                raise BadInput(f"--{spec.name.replace('_', '-')} {value}: must be {least}",
                               f"--{spec.name.replace('_', '-')}")

    def admits(self, key: str | bytes | None) -> bool:
        """Whether a request's X-API-Key lets it in (always, where the server has no key): the
        header's bytes (a str as HTTP decodes headers, latin-1) against the key's UTF-8, in constant
        time, so any header value is an answer, never an error."""
        if not self.api_key:
            return True
        given = key.encode("latin-1", "replace") if isinstance(key, str) else key or b""
        return secrets.compare_digest(given, self.api_key.encode("utf-8", "surrogateescape"))

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2 ** 20)

    @property
    def max_request_bytes(self) -> int:
        """A whole request's body at most: its images at their limit, and room for the form's fields."""
        return self.max_images * self.max_upload_bytes + 2 ** 20
