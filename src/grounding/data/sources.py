"""Where the data grounding reads lives: one registry of the installed packages it knows, each
with its default place, the package and command that install it, its licence, and an
environment variable that points elsewhere (GROUNDING_<NAME>, such as
GROUNDING_FASHION_MNIST=/data/fashion-mnist). Whatever grounding unpacks or copies out of a
package goes into the cache (grounding/cache.py)."""
from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .. import cache
from ..errors import NotFound


class MissingPackageError(NotFound):
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

# The npm packages read (data/emoji.py), with the licence of their images.
NPM_LICENCES = {
    "emoji-datasource": "MIT (names only)",
    "emoji-datasource-google": "Apache-2.0 (Noto emoji)",
    "emoji-datasource-twitter": "CC-BY-4.0 (Twemoji)",
    "emoji-datasource-apple": "Apple's: not licensed for commercial use",
    "emoji-datasource-facebook": "Facebook's: no clear licence",
    "@lobehub/fluent-emoji-3d": "MIT (Microsoft Fluent Emoji)",
    "@iconify-json/fluent-emoji-flat": "MIT (Microsoft Fluent Emoji)",
    "@iconify-json/fluent-emoji": "MIT (Microsoft Fluent Emoji)",
    "@iconify-json/fxemoji": "Apache-2.0 (Mozilla FxEmoji)",
    "@iconify-json/emojione": "CC-BY-4.0 (Emoji One)",
    "@iconify-json/streamline-emojis": "CC-BY-4.0 (Streamline)",
    "@iconify-json/flat-color-icons": "MIT (Icons8)",
    "@iconify-json/circle-flags": "MIT (HatScripts)",
    "@iconify-json/flag": "MIT (flag-icons)",
}


def npm_package(package: str, where: str, marker: str) -> Path:
    """The folder of npm `package` (the one holding `marker`): in WHERE (a folder, or an `npm
    pack` .tgz unpacked once into the cache), else in ./node_modules, else the newest `npm pack`
    .tgz in the working folder, else an earlier unpacking."""
    tgz = package.removeprefix("@").replace("/", "-")
    unpacked = cache.folder("npm")
    candidates = [Path(where)] if where else [Path("node_modules"), *sorted(Path().glob(f"{tgz}-[0-9]*.tgz"))[-1:],
                                              *sorted(unpacked.glob(f"{tgz}-[0-9]*/package"))]
    for candidate in candidates:
        if candidate.is_file() and candidate.name.endswith(".tgz"):
            target = unpacked / candidate.name.removesuffix(".tgz")
            if not (target / "package" / marker).exists():
                cache.evict("npm")
                target.mkdir(parents=True, exist_ok=True)
                with tarfile.open(candidate) as tar:
                    tar.extractall(target, filter="data")
            candidate = target / "package"
        for folder in (candidate, candidate / "package", candidate / package, candidate / "node_modules" / package):
            if (folder / marker).exists():
                return folder
    looked = where or f"./node_modules, the working folder's .tgz files and {unpacked}"
    raise MissingPackageError(f"{looked}: no npm package {package} there; run `npm pack {package}` and pass the "
                              f"path of the .tgz it writes (or `npm install {package}`)")


def country_names() -> dict[str, str]:
    """Each ISO 3166-1 country's common name by its lower-case alpha-2 code (Debian's iso-codes)."""
    iso_3166 = SOURCES["iso-codes"].require("iso_3166-1.json") / "iso_3166-1.json"
    countries = json.loads(iso_3166.read_text(encoding="utf-8"))["3166-1"]
    return {c["alpha_2"].lower(): c.get("common_name", c["name"]) for c in countries}
