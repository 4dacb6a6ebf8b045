"""Models: `models` lists the names every --model takes, `convert` between formats, `export` the
encoders."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..common import App, choice, open_model

Format = choice("Format", "hf", "open_clip", "grounding")
ExportFormat = choice("ExportFormat", "onnx", "torchscript")

app = App()
STATE_FILES = (".pt", ".pth", ".bin", ".safetensors")  # open_clip's bare state dict, a file
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Write over what the destination already holds "
                                                            "(by default only a new or empty folder is written).")]


def _claim(destination: Path, overwrite: bool, command: str, as_file: bool = False) -> None:
    """Refuses a destination that holds a user's files before anything is loaded or written."""
    from ...files import FolderError, refuse_foreign

    if as_file:
        if destination.exists() and not overwrite:
            raise FolderError(f"{destination} exists; pass --overwrite to replace it, or choose another file")
        return
    refuse_foreign(destination, overwrite, set(), f"grounding {command} writes into a new or empty folder; pass "
                                                  "--overwrite to write over them, or choose another folder")


@app.command(short_help="List the models --model takes by name.")
def models() -> None:
    """The built-in model, the presets (random weights, for training) and the published models
    (downloaded from the Hugging Face hub on first use; marked where already in its cache). Any
    hub repo id (ORG/NAME or hf-hub:ORG/NAME) and any saved folder work too."""
    from ...builtin import BUILTIN
    from ...config import PRESETS
    from ...hub import OPENAI_NAMES, PUBLISHED, cached

    typer.echo(f"built in:  {', '.join(BUILTIN)} (trained; ships in the package)")
    typer.echo(f"presets:   {', '.join(PRESETS)} (random weights, to train)")
    typer.echo("published: downloaded from the Hugging Face hub on first use (name, repo, activation, image size, "
               "training data)")
    aliases = {published: alias for alias, published in OPENAI_NAMES.items()}
    for task in ("clip", "detect"):
        if task == "detect":
            typer.echo("detectors: for detect, locate, detect-eval and serve --detect-model (OWL-ViT)")
        for name, model in PUBLISHED.items():
            if model.task == task:
                shown = name + (f" ({aliases[name]})" if name in aliases else "")
                typer.echo(f"  {shown:<37} {model.repo:<38} {model.activation:<10} {model.image_size:>3}  "
                           f"{model.trained_on:<17} {'cached' if cached(model.repo) else ''}".rstrip())


@app.command(short_help="Convert a checkpoint between formats.")
def convert(
    source: str = typer.Argument(..., metavar="SOURCE", help="A model folder (grounding, Hugging Face or open_clip), "
                                                             "a state dict file or a built-in model."),
    destination: Path = typer.Argument(..., metavar="DESTINATION", help="The folder to write (open_clip: also a .pt "
                                                                        "or .safetensors file, the bare state dict, "
                                                                        "for a model with OpenAI's vocabulary)."),
    to: Format = typer.Option(..., help="hf: a Hugging Face CLIPModel folder (ViT and Transformer towers only); "
                              "open_clip: open_clip's model folder (ViT or ResNet, Transformer text), read by "
                              "create_model('local-dir:OUT'); grounding: any model."),
    activation: Optional[str] = typer.Option(None, help="For a SOURCE state dict, which carries no config: "
                                             "quick_gelu (OpenAI's weights) or gelu."),
    overwrite: Overwrite = False,
) -> None:
    """Convert a checkpoint between formats, preprocessing settings and tokenizer included. Hugging
    Face's CLIPModel holds ViT models only (the demo's ResNet goes --to open_clip)."""
    import grounding

    from ...formats.huggingface import write_hf_folder
    from ...formats.openai import write_open_clip
    from ...saved import save_model

    _claim(destination, overwrite, "convert", as_file=to == Format.open_clip and destination.suffix in STATE_FILES)
    clip = grounding.load(source, activation=activation)
    if to == Format.hf:
        write_hf_folder(clip, destination)
    elif to == Format.open_clip:
        write_open_clip(clip, destination)
    else:
        save_model(clip, destination)
    typer.echo(f"wrote {to.value} model to {destination}")



@app.command("export", short_help="Export the encoders (ONNX, TorchScript).")
def export_command(
    model: str = typer.Argument(..., metavar="MODEL", help="The model to export: a run or saved folder, a "
                                                           "checkpoint, or a built-in model."),
    out: Path = typer.Argument(..., metavar="OUT", help="The folder for the two encoders, tokenizer.json and "
                                                        "preprocess.json."),
    format: ExportFormat = typer.Option(ExportFormat.onnx, "--format", help="onnx (onnxruntime and the like) or "
                                        "torchscript (torch.jit.load)."),
    overwrite: Overwrite = False,
) -> None:
    """Export the image and text encoders for inference without grounding (docs/interop.md)."""
    from ...formats.export import export

    _claim(out, overwrite, "export")
    clip = open_model(model, "cpu")
    files = export(clip, out, format.value)
    typer.echo(f"wrote {', '.join(p.name for p in files)} to {out}")
