"""`grounding serve`: the web page and the HTTP API."""
from __future__ import annotations

import warnings
from typing import Optional

import typer

from ...errors import MissingDependency
from ..common import App, default_of, given
from ..server.settings import ServerSettings

app = App()


@app.command(short_help="Serve the web page and the HTTP API.")
def serve(
    model: Optional[str] = default_of(ServerSettings, "model"),
    index: Optional[str] = default_of(ServerSettings, "index"),
    vqa_model: Optional[str] = default_of(ServerSettings, "vqa_model"),
    caption_model: Optional[str] = default_of(ServerSettings, "caption_model"),
    detect_model: Optional[str] = default_of(ServerSettings, "detect_model"),
    host: str = typer.Option("127.0.0.1", help="The address to listen on (0.0.0.0 opens it to the network)."),
    port: int = typer.Option(8000, min=1, max=65535, help="The port to listen on."),
    api_key: Optional[str] = default_of(ServerSettings, "api_key", envvar="GROUNDING_API_KEY"),
    max_upload_mb: Optional[float] = default_of(ServerSettings, "max_upload_mb"),
    max_pixels: Optional[int] = default_of(ServerSettings, "max_pixels"),
    max_labels: Optional[int] = default_of(ServerSettings, "max_labels"),
    max_images: Optional[int] = default_of(ServerSettings, "max_images"),
    max_held_pixels: Optional[int] = default_of(ServerSettings, "max_held_pixels"),
    max_batch: Optional[int] = default_of(ServerSettings, "max_batch"),
    max_wait_ms: Optional[float] = default_of(ServerSettings, "max_wait_ms"),
    device: Optional[str] = default_of(ServerSettings, "device"),
    precision: Optional[str] = default_of(ServerSettings, "precision"),
) -> None:
    """Serve the web page and the HTTP API (classify, search, ground, detect, ask, caption; docs at /docs)."""
    settings = ServerSettings(**given(locals(), ServerSettings))
    try:
        import uvicorn

        from ..server.app import create_app, return_freed_memory
    except ImportError:
        raise MissingDependency("the server needs FastAPI and uvicorn: pip install 'grounding[serve]'") from None
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        warnings.warn(f"serving on {host} without --api-key: anyone who can reach this machine can use the server")
    return_freed_memory()
    application = create_app(settings)
    typer.echo(f"serving {settings.model} on http://{host}:{port}/ (API docs at /docs)", err=True)
    uvicorn.run(application, host=host, port=port, log_level="warning")
