"""Where the data grounding reads lives: one registry of the installed packages it knows, each
with its default place, the package and command that install it, its licence, and an
environment variable that points elsewhere (GROUNDING_<NAME>, such as
GROUNDING_FASHION_MNIST=/data/fashion-mnist). Whatever grounding unpacks or copies out of a
package goes under CACHE (GROUNDING_CACHE, by default ~/.cache/grounding)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("GROUNDING_CACHE", Path.home() / ".cache" / "grounding"))


class MissingPackageError(FileNotFoundError):
    """Data whose package is not installed; the message says how to install it."""


@dataclass(frozen=True)
class Source:
    name: str
    default: str  # where the package puts it
    package: str
    install: str
    licence: str

    @property
    def variable(self) -> str:
        return "GROUNDING_" + self.name.upper().replace("-", "_")

    def root(self) -> Path:
        return Path(os.environ.get(self.variable, self.default))

    def require(self, *inside: str, root: Path | None = None) -> Path:
        """The root (this one, else the variable's, else the default), once what it should hold
        (`inside`: files or folders under it) is there; else one error saying what to install,
        or what points elsewhere."""
        root = Path(root) if root is not None else self.root()
        missing = [root / part for part in inside or ("",) if not (root / part).exists()]
        if missing:
            raise MissingPackageError(f"{missing[0]}: not found; {self.name} comes with {self.package}: "
                                      f"`{self.install}` (or set {self.variable} to where it is)")
        return root


SOURCES = {source.name: source for source in (
    Source("fashion-mnist", "/usr/share/datasets/fashion-mnist", "the Debian package dataset-fashion-mnist",
           "apt-get install dataset-fashion-mnist", "MIT (Zalando Research)"),
    Source("flags", "/usr/share/iso-flags-png-320x240", "the Debian package iso-flags-png-320x240",
           "apt-get install iso-flags-png-320x240", "public domain"),
    Source("iso-codes", "/usr/share/iso-codes/json", "the Debian package iso-codes", "apt-get install iso-codes",
           "LGPL-2.1+"),
    Source("openclipart", "/usr/share/openclipart", "the Debian packages openclipart-png and openclipart-svg",
           "apt-get install openclipart-png openclipart-svg", "public domain"),
    Source("tuxpaint", "/usr/share/tuxpaint/stamps", "the Debian package tuxpaint-stamps-default",
           "apt-get install tuxpaint-stamps-default", "GPL-2+: do not ship weights trained on it"),
    Source("gcompris", "/usr/share/gcompris-qt/rcc", "the Debian package gcompris-qt-data",
           "apt-get install gcompris-qt-data", "GPL-3+: do not ship weights trained on it"),
)}
