"""`grounding serve`: a web page and an HTTP API over the same models (FastAPI under uvicorn).

Model work runs in threads, never on the event loop; image encodings of requests that arrive
together are batched (batching.py). Nothing a request sends is taken as a file path (thumbnails
are served by index row), nothing is unpickled, uploads are bounded in bytes and pixels, CORS is
off, and with an API key every endpoint but /health wants it (header `X-API-Key`)."""
from __future__ import annotations

import asyncio
import base64
import io
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch
from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, Security, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError

from .settings import ServerSettings

STATIC = Path(__file__).parent / "static"
CLASSIFIERS_KEPT = 64  # label sets whose classifiers stay in memory
T = TypeVar("T")


class Models:
    """What the server answers with, loaded once at start."""

    def __init__(self, settings: ServerSettings):
        from ...inference.engine import load_model
        from ...saved import fingerprint
        from ...tasks.retrieval.index import Index
        from ...tasks.saved import load_task_model
        from .batching import MicroBatcher

        self.clip, self.runtime = load_model(settings.model, settings.device, settings.precision)
        self.fingerprint = fingerprint(self.clip)  # taken from the trained weights, before any bf16
        self.index = Index(Path(settings.index)) if settings.index else None
        if self.index is not None:
            self.index.check_model(self.fingerprint, self.clip.config.embed_dim)
        self.vqa = load_task_model(settings.vqa_model, "vqa").to(self.runtime.device) if settings.vqa_model else None
        self.captioner = (load_task_model(settings.caption_model, "caption").to(self.runtime.device)
                          if settings.caption_model else None)
        self.detector = (load_task_model(settings.detect_model, "detect").to(self.runtime.device)
                         if settings.detect_model else None)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.images = MicroBatcher(self._encode_images, self.executor, settings.max_batch, settings.max_wait_ms / 1000)
        self.classifiers: dict[tuple, torch.Tensor] = {}

    async def run(self, work, *args):
        """`work(*args)` on the model thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, partial(work, *args))

    def run_here(self, work, *args):
        """`work(*args)` on the model thread, waited for from another thread (an image's)."""
        return self.executor.submit(work, *args).result()

    @torch.no_grad()  # grad mode is per thread: the batcher's thread needs it said here
    def _encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(pixels.to(self.runtime.device), normalize=True).cpu()

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        from ...inference.encode import encode_texts

        return encode_texts(self.clip, texts).cpu()

    def classifier(self, labels: tuple[str, ...], templates: str) -> torch.Tensor:
        """The classifier of these labels, kept in memory for the most recent label sets."""
        from ...inference.encode import cached_text_classifier
        from ...inference.templates import TEMPLATE_SETS

        key = (labels, templates)
        if key not in self.classifiers:
            if len(self.classifiers) >= CLASSIFIERS_KEPT:
                self.classifiers.pop(next(iter(self.classifiers)))
            self.classifiers[key] = cached_text_classifier(self.clip, list(labels), TEMPLATE_SETS[templates]).cpu()
        return self.classifiers[key]

    def probabilities(self, features: torch.Tensor, classifier: torch.Tensor) -> np.ndarray:
        from ...inference.encode import logits
        from ...inference.scores import probabilities

        return probabilities(logits(self.clip, features, classifier).numpy(), self.clip.activation)


def create_app(settings: ServerSettings, models: Models | None = None) -> FastAPI:
    from ... import __version__
    from ...data.images import decode_image
    from ...errors import GroundingError
    from ...inference.templates import TEMPLATE_SETS

    models = models or Models(settings)
    held = PixelBudget(settings.max_held_pixels)
    app = FastAPI(title="grounding", version=__version__,
                  description="Zero-shot classification, search, phrase grounding, VQA and captioning.")
    app.add_middleware(BodyGate, settings=settings)
    header = APIKeyHeader(name="X-API-Key", auto_error=False)

    @app.exception_handler(GroundingError)
    async def refused(request: Request, error: GroundingError) -> JSONResponse:
        """What the library refuses, answered with its status and its one line."""
        return JSONResponse({"detail": str(error)}, status_code=error.http_status)

    def authorised(key: str | None = Security(header)) -> None:
        if not settings.admits(key):
            raise HTTPException(401, NO_KEY)

    guarded = [Depends(authorised)]

    async def read_image(upload: UploadFile, use: Callable[[Image.Image], T]) -> T:
        """`use(the decoded image)`, in a thread, while the image counts against the pixels the
        server may hold (so requests of huge images wait their turn instead of piling up); the
        image is let go when `use` returns, so keep from it only what is small (its pixels for
        the model, an answer)."""
        name = upload.filename or "the upload"
        if upload.content_type and not upload.content_type.startswith("image/") \
                and upload.content_type != "application/octet-stream":
            raise HTTPException(400, f"{name}: sent as {upload.content_type}, not as an image")
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(413, f"{name}: over the server's upload limit of {settings.max_upload_bytes:,} bytes")
        try:
            with Image.open(io.BytesIO(data)) as probe:  # the header alone: refuse before decoding
                width, height = probe.size
        except Image.DecompressionBombError:
            raise HTTPException(413, f"{name}: over the server's limit of {settings.max_pixels:,} pixels "
                                     "(a decompression bomb?)") from None
        except (UnidentifiedImageError, OSError):
            raise HTTPException(400, f"{name}: not an image this server can read") from None
        if width * height > settings.max_pixels:
            raise HTTPException(413, f"{name}: {width}x{height} pixels is over the server's limit of "
                                     f"{settings.max_pixels:,}")
        async with held.pixels(width * height):
            return await asyncio.to_thread(lambda: use(decode_image(data, name)))

    async def preprocessed(upload: UploadFile) -> torch.Tensor:
        """The image as the CLIP model's input: all a classify or search request keeps of it."""
        return await read_image(upload, models.clip.preprocess)

    def parse_labels(labels: str, what: str = "labels") -> tuple[str, ...]:
        names = tuple(dict.fromkeys(x.strip() for x in labels.replace("\n", ",").split(",") if x.strip()))
        if not names:
            raise HTTPException(400, f"no {what}: give some, separated by commas or new lines")
        if len(names) > settings.max_labels:
            raise HTTPException(400, f"{len(names)} {what} is over the server's limit of {settings.max_labels}")
        return names

    async def unit_features(pixels: list[torch.Tensor]) -> torch.Tensor:
        return await models.images(torch.stack(pixels))

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/info", dependencies=guarded)
    def info() -> dict:
        index = None if models.index is None else {"count": len(models.index.keys), "kind": models.index.kind,
                                                   "index": models.index.meta["kind"]}
        return {"version": __version__, "model": settings.model, "fingerprint": models.fingerprint,
                "embed_dim": models.clip.config.embed_dim, "device": str(models.runtime.device),
                "precision": models.runtime.precision, "index": index, "vqa": models.vqa is not None,
                "caption": models.captioner is not None, "detect": models.detector is not None, "template_sets": list(TEMPLATE_SETS),
                "limits": {k: v for k, v in asdict(settings).items() if k.startswith("max_")}}

    @app.post("/classify", dependencies=guarded)
    async def classify(images: list[UploadFile] = File(..., description="One or more images."),
                       labels: str = Form(..., description="Labels, separated by commas or new lines."),
                       templates: str = Form("default", description="A built-in template set."),
                       top_k: int = Form(5, ge=1, le=1000)) -> dict:
        """The top labels of each image, with probabilities (zero-shot)."""
        if len(images) > settings.max_images:
            raise HTTPException(413, f"{len(images)} images is over the server's limit of {settings.max_images} a "
                                     "request")
        names = parse_labels(labels)
        if templates not in TEMPLATE_SETS:
            raise HTTPException(400, f"unknown template set {templates!r}: use one of {', '.join(TEMPLATE_SETS)}")
        pixels = [await preprocessed(upload) for upload in images]  # one full-size image held at a time
        classifier = await models.run(models.classifier, names, templates)
        features = await unit_features(pixels)
        probs = models.probabilities(features, classifier)
        k = min(top_k, len(names))
        results = []
        for upload, row in zip(images, probs):
            top = row.argsort()[::-1][:k]
            results.append({"filename": upload.filename, "top": [
                {"label": names[int(i)], "probability": float(row[i])} for i in top]})
        return {"results": results}

    def need_index():
        if models.index is None:
            raise HTTPException(404, "this server has no index: start it with --index STORE (grounding embed, "
                                     "then grounding index build)")
        return models.index

    def hits(rows: list[tuple[int, float]]) -> list[dict]:
        index = need_index()
        return [{"id": r, "name": _printable(Path(index.keys[r]).name), "score": s,
                 "caption": index.captions[r] and _printable(index.captions[r]),
                 "thumbnail": f"/thumbnail/{r}" if index.kind == "image" else None} for r, s in rows]

    @app.get("/search", dependencies=guarded)
    async def search_words(q: str = Query(..., min_length=1, max_length=1000), k: int = Query(20, ge=1, le=500)) -> dict:
        """The index's items nearest to some words."""
        index = need_index()
        if not q.strip():
            raise HTTPException(400, "an empty query: give some words to search for")
        vector = await models.run(models.encode_texts, [q])
        return {"query": q, "hits": hits(index.search_rows(vector.numpy(), k)[0])}

    @app.post("/search", dependencies=guarded)
    async def search_image(image: UploadFile = File(...), k: int = Form(20, ge=1, le=500)) -> dict:
        """The index's items nearest to an image."""
        index = need_index()
        vector = await unit_features([await preprocessed(image)])
        return {"query": image.filename, "hits": hits(index.search_rows(vector.numpy(), k)[0])}

    @app.get("/thumbnail/{row}", dependencies=guarded)
    async def thumbnail(row: int) -> Response:
        """A row of the index as a small JPEG (by row number: no path is ever taken from a request)."""
        index = need_index()
        if index.kind != "image" or not 0 <= row < len(index.keys):
            raise HTTPException(404, f"no image at row {row}")
        try:
            data = await asyncio.to_thread(_thumbnail, index.keys[row])
        except (OSError, ValueError, KeyError):
            raise HTTPException(404, f"the image of row {row} cannot be read any more") from None
        return Response(data, media_type="image/jpeg")

    @app.post("/ground", dependencies=guarded)
    async def ground(image: UploadFile = File(...), phrase: str = Form(..., min_length=1, max_length=300)) -> dict:
        """Where in the image a phrase is: the strongest box and a heat map PNG (as a data URL)."""
        from ...tasks.phrase_grounding.locate import ground as locate, overlay

        if not phrase.strip():
            raise HTTPException(400, "an empty phrase: say what to look for")
        def draw(picture: Image.Image) -> tuple[bytes, tuple, int]:
            heat, box, view = models.run_here(torch.no_grad()(locate), models.clip, picture, phrase)
            return _png(overlay(view, heat, box)), box, view.size[0]

        png, box, view_size = await read_image(image, draw)
        return {"phrase": phrase, "box": list(box), "view_size": view_size,
                "heatmap": "data:image/png;base64," + base64.b64encode(png).decode()}

    @app.post("/detect", dependencies=guarded)
    async def detect(image: UploadFile = File(...),
                     queries: str = Form(..., description="What to find, separated by commas or new lines."),
                     threshold: float = Form(0.3, ge=0.0, le=1.0)) -> dict:
        """Every box whose score for a query passes the threshold (in the image's own pixels),
        and the image with them drawn (a PNG data URL)."""
        from ...tasks.detection.evaluate import ask, detect_image, draw_detections

        if models.detector is None:
            raise HTTPException(404, "this server has no detector: start it with --detect-model (grounding "
                                     "train-detect, or an OWL-ViT folder)")
        names = parse_labels(queries, "queries")
        detector = models.detector

        def find(picture: Image.Image) -> tuple[list[dict], bytes]:
            found = models.run_here(lambda: detect_image(detector, picture, ask(detector, names), threshold))
            return [{"query": d.query, "score": d.score, "box": [round(v, 1) for v in box]} for d, box in found], \
                _png(draw_detections(picture, found))

        detections, png = await read_image(image, find)
        return {"queries": list(names), "detections": detections,
                "image": "data:image/png;base64," + base64.b64encode(png).decode()}

    @app.post("/vqa", dependencies=guarded)
    async def vqa(image: UploadFile = File(...), question: str = Form(..., min_length=1, max_length=300),
                  top: int = Form(3, ge=1, le=50)) -> dict:
        """Answers to a question about the image, with probabilities."""
        if models.vqa is None:
            raise HTTPException(404, "this server has no VQA model: start it with --vqa-model (grounding train-vqa)")
        if not question.strip():
            raise HTTPException(400, "an empty question")
        from ...tasks.vqa.evaluate import top_answers

        answers = await read_image(image, lambda picture: models.run_here(top_answers, models.vqa, picture, question,
                                                                          top))
        return {"question": question, "answers": [{"answer": a, "probability": p} for a, p in answers]}

    @app.post("/caption", dependencies=guarded)
    async def caption(image: UploadFile = File(...)) -> dict:
        """A caption of the image (greedy decoding)."""
        from ...tasks.captioning.decode import generate

        if models.captioner is None:
            raise HTTPException(404, "this server has no captioning model: start it with --caption-model "
                                     "(grounding train-caption)")
        @torch.no_grad()
        def describe(picture: Image.Image) -> str:
            pixels = models.captioner.preprocess(picture)[None].to(models.runtime.device)
            return models.run_here(lambda: generate(models.captioner, pixels)[0])

        return {"caption": await read_image(image, describe)}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.models = models
    return app


NO_KEY = "this server wants an API key: send it in the X-API-Key header"


class PixelBudget:
    """The decoded pixels all requests together may hold at once: a request whose image does not
    fit waits until others let theirs go (an image larger than the whole budget waits for all
    the rest, then runs alone). Bounds the server's memory under any number of large images."""

    def __init__(self, limit: int):
        self.limit, self.held = limit, 0
        self.changed: asyncio.Condition | None = None  # made on the event loop, at first use

    @asynccontextmanager
    async def pixels(self, count: int):
        self.changed = self.changed or asyncio.Condition()
        count = min(count, self.limit)
        async with self.changed:
            await self.changed.wait_for(lambda: self.held + count <= self.limit)
            self.held += count
        try:
            yield
        finally:
            async with self.changed:
                self.held -= count
                self.changed.notify_all()


def return_freed_memory() -> None:
    """Makes glibc give freed image buffers back to the system. Without it, the heap grows to the
    largest burst of decoded images and stays there (ten 6000x6000 PNGs kept 2 GB resident after
    their request); with a fixed mmap threshold every buffer over 4 MiB is a mapping of its own,
    unmapped when freed. Elsewhere than glibc it does nothing."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, 4 * 2 ** 20)  # M_MMAP_THRESHOLD (fixing it also stops glibc raising it)


class BodyGate:
    """Before any body is read: a request that writes (POST) must carry the API key, if the
    server has one, and a declared length within the server's limit (a whole request's images at
    their limit), so that no upload is read, spooled or parsed only to be refused afterwards."""

    def __init__(self, app, settings: ServerSettings):
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = dict(scope["headers"])
            length = headers.get(b"content-length", b"").decode("latin-1")
            refusal = None
            if not self.settings.admits(headers.get(b"x-api-key")):
                refusal = (401, NO_KEY)
            elif not length.isdigit():
                refusal = (411, "say the length of the request (Content-Length); a body of unknown length is refused")
            elif int(length) > self.settings.max_request_bytes:
                refusal = (413, f"a request of {int(length):,} bytes is over the server's limit of "
                                f"{self.settings.max_request_bytes:,}")
            if refusal:
                await JSONResponse({"detail": refusal[1]}, status_code=refusal[0])(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _printable(text: str) -> str:
    """A name as JSON can carry it: bytes that were not UTF-8 in a file name become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@lru_cache(maxsize=2048)
def _thumbnail(key: str) -> bytes:
    """A JPEG of a store's item (a file, or a member of a webdataset tar), kept for the next ask."""
    from ...data.images import ImageRef

    return ImageRef.from_key(key).thumbnail()


