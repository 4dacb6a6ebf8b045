"""`grounding ground`: where in an image a phrase is."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..common import App, Device, Precision, choice, open_model

GroundMethod = choice("GroundMethod", "occlusion", "similarity")

app = App()


@app.command(short_help="Show where in an image a phrase is.")
def ground(
    image: Path = typer.Argument(..., metavar="IMAGE", help="The image to look in."),
    phrase: str = typer.Argument(..., metavar="PHRASE", help='What to find, e.g. "the red circle".'),
    model: str = typer.Option(..., help="A saved model or run folder, or a preset name."),
    out: Path = typer.Option(Path("ground.png"), help="Where to draw the heat map and the box."),
    method: GroundMethod = typer.Option(GroundMethod.occlusion, help="occlusion (any tower) or similarity "
                                        "(patch tokens; docs/tasks.md)."),
    window: Optional[int] = typer.Option(None, min=1, help="Occlusion window in pixels; default half a ViT patch."),
    device: Device = "auto",
    precision: Precision = "fp32",
) -> None:
    """Show which part of an image a phrase refers to: a heat map and a box."""
    from ...data.images import load_image
    from ...tasks.phrase_grounding.locate import ground as run_ground
    from ...tasks.phrase_grounding.locate import save_overlay

    if out.is_dir():
        raise typer.BadParameter(f"{out} is a folder; give the file to draw into, e.g. {out / 'ground.png'}",
                                 param_hint="--out")
    clip = open_model(model, device, precision)
    heat, box, view = run_ground(clip, load_image(image), phrase, method.value, window)
    save_overlay(view, heat, box, phrase, out)
    typer.echo(f"strongest region (x0, y0, x1, y1) in the model's {view.width}px view: {box}; drawn in {out}")
