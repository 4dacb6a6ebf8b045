"""What the command modules share: the --device option and the one place it is decided."""
from __future__ import annotations

from typing import Annotated

import typer

from ..runtime import Runtime

Device = Annotated[str, typer.Option(help="cpu, cuda (or cuda:N), or auto: a GPU when PyTorch sees one.")]


def runtime_for(device: str, precision: str = "fp32") -> Runtime:
    try:
        return Runtime.resolve(device, precision)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--device")
