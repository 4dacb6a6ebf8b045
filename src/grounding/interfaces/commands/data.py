"""`grounding data shard`: webdataset shards from any listed training data."""
from __future__ import annotations

from pathlib import Path

import typer

from ..common import App

app = App()


data_app = App(help="Prepare training data: webdataset shards for training at scale.",
               short_help="Prepare training data (webdataset shards).")
app.add_typer(data_app, name="data")


@data_app.command("shard", short_help="Write webdataset shards from any listed data.")
def data_shard(
    spec: str = typer.Argument(..., metavar="SPEC", help="Training pairs as train --data names them (csv:PATH, "
                                                         "folder:PATH, openclipart, emoji:STYLE, iconify:SET, "
                                                         "tuxpaint, joined with +)."),
    out: Path = typer.Option(..., help="A new or empty folder for the shards and manifest.json."),
    shard_size: int = typer.Option(1000, min=1, help="Samples per shard."),
) -> None:
    """Write webdataset shards (image, captions, metadata) from any training data that lists its
    images, with a manifest of counts, bytes and skipped files."""
    from ...data.shards import write_shards

    manifest = write_shards(spec, out, shard_size)
    typer.echo(f"{manifest['samples']} samples in {len(manifest['shards'])} shards ({manifest['bytes']:,} bytes), "
               f"{len(manifest['skipped'])} skipped (listed in {out / 'manifest.json'}); "
               f"train with --data '{manifest['train_with']}'")
