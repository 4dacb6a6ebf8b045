"""A generated corpus of bad and awkward inputs. Each image case says whether it must be accepted
(and which pixels it must give) or rejected (and which words the message must hold beside the
file's name). The tests in this folder run the corpus through every command that reads images."""
from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


@dataclass(frozen=True)
class Case:
    name: str  # the file's name
    accept: bool
    expect: str = ""  # rejected: words of the message
    pixels: tuple = ()  # accepted: ((x, y), (r, g, b)) that the decoded image must show, within 40
    size: tuple | None = None  # accepted: the decoded (width, height)
    in_tar: bool = True  # whether the case also makes sense as a tar member


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, **kwargs)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb() -> bytes:
    """A valid-looking 100,000 x 100,000 greyscale PNG of a few hundred bytes."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * 100_001 * 4)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


def _bad_crc(data: bytes) -> bytes:
    """The PNG with its image data's checksum changed: the pixels still decode."""
    data = bytearray(data)
    start = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[start:start + 4])[0]
    data[start + 8 + length] ^= 0xFF
    return bytes(data)


def _halves(left, right, size=(40, 20), mode="RGB") -> Image.Image:
    image = Image.new(mode, size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def _noise(size=64) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8))


def _files() -> dict[str, tuple[bytes | None, Case]]:
    """name -> (bytes, case); bytes None for the cases made on disk (links, folders)."""
    rgba = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (10, 0, 20, 20))
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(1, (10, 0, 20, 20))
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", transparency=0)
    palette_png = buffer.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown turned 90 degrees clockwise
    frames = [Image.new("RGB", (16, 16), RED), Image.new("RGB", (16, 16), BLUE)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    grey16 = Image.fromarray(np.full((16, 16), 128 * 257, dtype=np.uint16))
    encoded = {}
    for fmt, colour in (("WEBP", GREEN), ("TIFF", BLUE), ("BMP", RED)):
        out = io.BytesIO()
        Image.new("RGB", (16, 16), colour).save(out, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
        encoded[fmt] = out.getvalue()
    noise_jpeg, noise_png = _jpeg(_noise()), _png(_noise())
    return {
        "rgba.png": (_png(rgba), Case("rgba.png", True, pixels=(((2, 10), WHITE), ((15, 10), RED)))),
        "palette-transparent.png": (palette_png, Case("palette-transparent.png", True,
                                                      pixels=(((2, 10), WHITE), ((15, 10), RED)))),
        "grey16.png": (_png(grey16), Case("grey16.png", True, pixels=(((8, 8), (128, 128, 128)),))),
        "cmyk.jpg": (_jpeg(Image.new("CMYK", (16, 16), (0, 255, 255, 0))), Case("cmyk.jpg", True,
                                                                                pixels=(((8, 8), RED),))),
        "exif-rotated.jpg": (_jpeg(_halves(RED, BLUE), exif=exif), Case(
            "exif-rotated.jpg", True, size=(20, 40), pixels=(((10, 3), RED), ((10, 36), BLUE)))),
        "animated.gif": (gif.getvalue(), Case("animated.gif", True, pixels=(((8, 8), RED),))),
        "image.webp": (encoded["WEBP"], Case("image.webp", True, pixels=(((8, 8), GREEN),))),
        "image.tif": (encoded["TIFF"], Case("image.tif", True, pixels=(((8, 8), BLUE),))),
        "image.bmp": (encoded["BMP"], Case("image.bmp", True, pixels=(((8, 8), RED),))),
        "café ☕ 写真.png": (_png(Image.new("RGB", (16, 16), GREEN)), Case("café ☕ 写真.png", True,
                                                                         pixels=(((8, 8), GREEN),))),
        "jpeg-bytes.png": (_jpeg(Image.new("RGB", (16, 16), BLUE)), Case("jpeg-bytes.png", True,
                                                                         pixels=(((8, 8), BLUE),))),
        "empty.png": (b"", Case("empty.png", False, "empty")),
        "text.png": (b"just some words, not an image\n", Case("text.png", False, "not an image")),
        "page.png": (b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n",
                     Case("page.png", False, "not an image")),
        "truncated.jpg": (noise_jpeg[:len(noise_jpeg) // 2], Case("truncated.jpg", False, "truncated or corrupt")),
        "truncated.png": (noise_png[:len(noise_png) * 2 // 3], Case("truncated.png", False, "truncated or corrupt")),
        "bad-crc.png": (_bad_crc(noise_png), Case("bad-crc.png", False, "truncated or corrupt")),
        "bomb.png": (_bomb(), Case("bomb.png", False, "decompression bomb")),
        "drawing.svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" '
                        b'height="10" fill="red"/></svg>', Case("drawing.svg", False, "vector image")),
        "broken-link.png": (None, Case("broken-link.png", False, "broken symbolic link", in_tar=False)),
        "folder.jpg": (None, Case("folder.jpg", False, "a folder", in_tar=False)),
    }


CASES = [case for _, case in _files().values()]


def write_corpus(root: Path) -> Path:
    """Every case as a file under `root` (made fresh)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, (data, _) in _files().items():
        if data is not None:
            (root / name).write_bytes(data)
    os.symlink(root / "no-such-target.png", root / "broken-link.png")
    (root / "folder.jpg").mkdir()
    return root


def write_tar(root: Path, path: Path) -> Path:
    """The cases that can be tar members, as a webdataset shard (KEY.EXT with KEY.txt)."""
    import tarfile

    with tarfile.open(path, "w") as tar:
        for n, (name, (data, case)) in enumerate(_files().items()):
            if not case.in_tar:
                continue
            for member, payload in ((f"{n:03d}{Path(name).suffix}", data), (f"{n:03d}.txt", f"{name}\n".encode())):
                info = tarfile.TarInfo(member)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return path


def tar_member(case: Case) -> str:
    """The member name write_tar gives a case."""
    n = list(_files()).index(case.name)
    return f"{n:03d}{Path(case.name).suffix}"
