"""What the command modules share: the --device and --precision options and the one place they
are decided."""
from __future__ import annotations

from typing import Annotated

import typer

from ..runtime import Runtime

Device = Annotated[str, typer.Option(help="cpu, cuda (or cuda:N), or auto: a GPU when PyTorch sees one.")]
Precision = Annotated[str, typer.Option(help="fp32; bf16 (the weights converted once, features still fp32); or "
                                        "auto: bf16 where the device multiplies bf16 fast, said on stderr.")]


Compile = Annotated[bool, typer.Option(help="Compile the image encoder first (torch.compile): about half a minute, "
                                      "then faster; pays off over thousands of images.")]


def runtime_for(device: str, precision: str = "fp32", compile: bool = False) -> Runtime:
    try:
        return Runtime.resolve(device, precision, compile)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--precision" if "precision" in str(e) else "--device")
