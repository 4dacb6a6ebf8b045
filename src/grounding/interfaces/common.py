"""What the command modules share: the one handler of errors, one way to declare an option (its
default and help come from the config dataclass that owns it), the choices typer lists, and the
--device and --precision options."""
from __future__ import annotations

import dataclasses
import errno
import inspect
from enum import Enum
from typing import Annotated, Callable, Optional, get_args, get_type_hints

import typer
import typer.core

from ..errors import GroundingError


OUT_OF_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # what a user fixes by freeing space


class Command(typer.core.TyperCommand):
    """Every command's one handler of what the library refuses: a `GroundingError` becomes one
    `Error:` line (naming its option, if it has one) and its exit code. The built-in errors that
    libraries below grounding raise for bad input (a JSON file that is not JSON, say) read the
    same, and a disk that fills up is one line with exit code 1. Usage lines as click writes them
    (`IMAGE...`, `[QUERY]`): typer's own put every required argument in braces (`{images}...`),
    which reads as a set."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except GroundingError as e:
            if e.exit_code != 2:
                typer.echo(f"{e.heading}: {e}", err=True)
                raise typer.Exit(e.exit_code) from None
            raise typer.BadParameter(str(e), param_hint=e.option) from None
        except (ValueError, FileNotFoundError, FileExistsError) as e:
            raise typer.BadParameter(str(e)) from None
        except OSError as e:
            if e.errno not in OUT_OF_ROOM:
                raise
            where = f"{e.filename}: " if e.filename else ""
            typer.echo(f"Error: {where}{e.strerror or e}; free some space and run it again (a training run with "
                       "--resume OUT goes on from its last checkpoint, embed from its last shard)", err=True)
            raise typer.Exit(1) from None

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = (param.metavar or param.name.upper()) + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces


class App(typer.Typer):
    """A typer app whose commands write usage lines as `Command` does; one for every command group."""

    def __init__(self, **kwargs) -> None:
        super().__init__(no_args_is_help=True, rich_markup_mode=None, **kwargs)

    def command(self, *args, **kwargs):
        return super().command(*args, cls=kwargs.pop("cls", Command), **kwargs)


def choice(name: str, *values: str) -> type[Enum]:
    """A string enum, which typer shows as the option's allowed values."""
    return Enum(name, {v: v for v in values}, type=str)


ImageTower = choice("ImageTower", "vit", "resnet")
TextTower = choice("TextTower", "transformer", "lstm")


def default_of(cls, name: str, **extra) -> typer.models.OptionInfo:
    """A typer option whose help and shown default come from the config dataclass that owns the
    option (one home for each default). Its value is None unless given, so the dataclass's
    default, or a --config file's value, stands wherever the command line says nothing."""
    spec = {f.name: f for f in dataclasses.fields(cls)}[name]
    shown = "" if spec.default is None or spec.default is False or spec.default == "" else \
        f"  [default: {spec.default}]"
    return typer.Option(None, help=spec.metadata["help"] + shown, show_default=False, **extra)


def options_of(cls, names: tuple[str, ...] | None = None, choices: dict[str, type] | None = None) -> Callable:
    """A decorator that adds to a command, after its own parameters, an --option for each named
    field (by default every field) of the config dataclass `cls` (`default_of`; the field's type,
    or its `choices`). The command takes them in **options: commands that share a set of options
    declare it once, and a new field is a new option with nothing else to write."""
    hints = get_type_hints(cls)
    names = names or tuple(f.name for f in dataclasses.fields(cls))

    def plain(hint):  # `str | None` -> str
        return next((arg for arg in get_args(hint) if arg is not type(None)), hint)

    def add(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default_of(cls, name),
                                   annotation=Optional[(choices or {}).get(name, plain(hints[name]))])
                 for name in names]
        command.__signature__ = signature.replace(parameters=own + added)
        return command

    return add


def given(values: dict, cls) -> dict:
    """The options of `cls` that the command line gave (not None), choices as their strings."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in values.items() if v is not None and k in names}


BatchSize = Annotated[int, typer.Option(min=1, help="Images (or texts) encoded per batch.")]
Workers = Annotated[int, typer.Option(min=0, help="Processes that decode images beside the encoder (0: none).")]
Device = Annotated[str, typer.Option(help="cpu, cuda (or cuda:N), or auto: a GPU when PyTorch sees one.")]
Precision = Annotated[str, typer.Option(help="fp32; bf16 (the weights converted once, features still fp32); or "
                                        "auto: bf16 where the device multiplies bf16 fast, said on stderr.")]


Compile = Annotated[bool, typer.Option("--compile", help="Compile the image encoder first (torch.compile): about "
                                                         "half a minute, then faster; pays off over thousands of "
                                                         "images.")]


def open_model(spec: str, device: str = "cpu", precision: str = "fp32", compile: bool = False):
    """inference.engine.load_model, saying on stderr what decided an `auto` precision."""
    from ..inference.engine import load_model

    model, runtime = load_model(spec, device, precision, compile)
    say_precision(runtime)
    return model


def say_precision(runtime) -> None:
    if runtime.why:
        typer.echo(f"precision: {runtime.precision} ({runtime.why})", err=True)
