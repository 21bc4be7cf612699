"""The files a user can hand the package: sizes, PIL modes, formats, names, broken things.

:func:`write` creates them in a folder; :data:`CASES` says what each is and what each public
surface must make of it. Names are ``bytes`` (one of them is not UTF-8); :func:`shown` is the
printable form every message must use.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import zlib

import numpy as np
from PIL import Image

#: Refused by the pixel limit (its message names the size, the limit and the flag).
TOO_LARGE = "too large"
#: Cannot be read; the message names the file and what to do.
UNREADABLE = "unreadable"
#: Read and classified / trained on.
OK = "ok"


@dataclasses.dataclass(frozen=True)
class Case:
    """One file of the matrix.

    Args:
        name: the file's name (bytes: not necessarily UTF-8).
        write: ``write(path)`` creates it.
        outcome: :data:`OK`, :data:`TOO_LARGE` or :data:`UNREADABLE`.
        message: words every error about it contains (besides its name).
        in_folders: whether an image-folder scan lists it (torchvision's extensions only).
        scan_catches: whether the folder scan's header check already skips it (otherwise
            the pipelines skip it when it fails to decode).
    """

    name: bytes
    write: object
    outcome: str = OK
    message: tuple = ()
    in_folders: bool = True
    scan_catches: bool = True


def shown(name: bytes) -> str:
    """The printable form of a name, computed independently of the package."""
    text = name.decode("utf-8", "backslashreplace")
    return text.replace("\n", "\\n")


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))
    return np.clip(smooth.astype(int) + rng.integers(-10, 11, smooth.shape), 0, 255).astype(
        np.uint8
    )


def _pil(mode: str, fmt: str, shape=(40, 56), seed: int = 0, **options):
    def write(path):
        image = Image.fromarray(_photo(*shape, seed))
        if mode == "I;16":
            grey = np.asarray(image.convert("L"), np.uint16) * 257 + np.uint16(seed)
            image = Image.fromarray(grey)
        elif mode == "F":
            image = Image.fromarray(np.asarray(image.convert("L"), np.float32) / 255.0)
        elif mode != "RGB":
            image = image.convert(mode)
        image.save(path, fmt, **options)

    return write


def _pgm16(path):
    grey = np.asarray(Image.fromarray(_photo(30, 40, 3)).convert("L"), np.uint16) * 257
    with open(path, "wb") as handle:
        handle.write(b"P5\n40 30\n65535\n" + grey.astype(">u2").tobytes())


def _png_claiming(width: int, height: int):
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    def write(path):
        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        with open(path, "wb") as handle:
            handle.write(b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b""))

    return write


def _jpeg_claiming(width: int, height: int):
    def write(path):
        _pil("RGB", "JPEG", (16, 16))(path)
        with open(path, "rb") as handle:
            data = bytearray(handle.read())
        sof = data.index(b"\xff\xc0")
        data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
        with open(path, "wb") as handle:
            handle.write(bytes(data))

    return write


def _bytes(data: bytes):
    def write(path):
        with open(path, "wb") as handle:
            handle.write(data)

    return write


def _truncated(make):
    def write(path):
        make(path)
        with open(path, "rb") as handle:
            data = handle.read()
        with open(path, "wb") as handle:
            handle.write(data[: len(data) // 2])

    return write


def _damaged_jpeg(path):
    """A JPEG whose header and end marker are intact but whose quantisation tables were cut
    out: its scan cannot be decoded."""
    _pil("RGB", "JPEG", (64, 64), quality=95)(path)
    with open(path, "rb") as handle:
        data = handle.read()
    while b"\xff\xdb" in data:  # DQT segments
        start = data.index(b"\xff\xdb")
        (length,) = struct.unpack(">H", data[start + 2 : start + 4])
        data = data[:start] + data[start + 2 + length :]
    with open(path, "wb") as handle:
        handle.write(data)


def _directory(path):
    os.mkdir(path)
    _pil("RGB", "PNG", (20, 24), seed=9)(os.path.join(path, b"inside.png"))


def _link_to_nothing(path):
    os.symlink(os.path.join(os.path.dirname(path), b"nowhere.jpg"), path)


def _pipe(path):
    os.mkfifo(path)


_TOO_LARGE = ("is more than the limit of", "--max_image_pixels")
# Files of each PIL mode and format PIL writes: (name, mode, format, save options).
_MODES = [
    ("rgb.jpg", "RGB", "JPEG", dict(quality=95)),
    ("grey.jpg", "L", "JPEG", {}),
    ("cmyk.jpg", "CMYK", "JPEG", {}),
    ("grey.png", "L", "PNG", {}),
    ("grey_alpha.png", "LA", "PNG", {}),
    ("palette.png", "P", "PNG", {}),
    ("rgba.png", "RGBA", "PNG", {}),
    ("grey16.png", "I;16", "PNG", dict(seed=1)),
    ("bilevel.png", "1", "PNG", {}),
    ("palette.gif", "P", "GIF", {}),  # not an ImageFolder extension
    ("rgb.bmp", "RGB", "BMP", {}),
    ("palette.bmp", "P", "BMP", {}),
    ("bilevel.bmp", "1", "BMP", {}),
    ("rgb.tiff", "RGB", "TIFF", {}),
    ("cmyk.tif", "CMYK", "TIFF", {}),
    ("grey16.tif", "I;16", "TIFF", dict(seed=2)),
    ("rgb.webp", "RGB", "WEBP", dict(quality=90)),
    ("rgb.ppm", "RGB", "PPM", {}),
]
_NOT_IMAGE = ("not a readable image", "JPEG or PNG")

CASES = (
    # Sizes.
    Case(b"pixel_1x1.jpg", _pil("RGB", "JPEG", (1, 1))),
    Case(b"pixel_1x1.png", _pil("RGB", "PNG", (1, 1))),
    Case(b"strip_1x20000.jpg", _pil("RGB", "JPEG", (20000, 1))),  # width 1, height 20000
    Case(b"strip_20000x1.png", _pil("RGB", "PNG", (1, 20000))),
    Case(b"header_100000x100000.png", _png_claiming(100000, 100000), TOO_LARGE, _TOO_LARGE),
    Case(b"header_65000x65000.jpg", _jpeg_claiming(65000, 65000), TOO_LARGE, _TOO_LARGE),
    # PIL modes and formats.
    *(
        Case(name.encode(), _pil(mode, fmt, **options), in_folders=not name.endswith(".gif"))
        for name, mode, fmt, options in _MODES
    ),
    Case(b"grey16.pgm", _pgm16),
    Case(
        b"float.tif",
        _pil("F", "TIFF"),
        UNREADABLE,
        ("floating-point pixels",),
        scan_catches=False,
    ),
    # Names.
    Case(b"with space.jpg", _pil("RGB", "JPEG", seed=3)),
    Case("café.png".encode(), _pil("RGB", "PNG", seed=4)),
    Case(b"latin1_caf\xe9.jpg", _pil("RGB", "JPEG", seed=5)),
    Case(b"new\nline.png", _pil("RGB", "PNG", seed=6)),
    # Broken files, and things that are not files.
    Case(b"empty.jpg", _bytes(b""), UNREADABLE, ("empty file",)),
    Case(b"truncated.jpg", _truncated(_pil("RGB", "JPEG", (64, 64))), UNREADABLE, ("truncated",)),
    Case(
        b"truncated_\xff.png", _truncated(_pil("RGB", "PNG", (64, 64))), UNREADABLE, ("truncated",)
    ),
    Case(
        b"notes.jpg", _bytes(b"not an image at all, just some text\n" * 4), UNREADABLE, _NOT_IMAGE
    ),
    Case(b"damaged_\xe9.jpg", _damaged_jpeg, UNREADABLE, _NOT_IMAGE, scan_catches=False),
    Case(b"dangling.jpg", _link_to_nothing, UNREADABLE, ("a broken link",)),
    Case(b"pipe.jpg", _pipe, UNREADABLE, ("not a regular file",)),
    # A directory named like an image: predict refuses it; a folder scan walks into it.
    Case(b"folder.jpg", _directory, UNREADABLE, ("a directory",), in_folders=False),
)


def write(root) -> dict[bytes, bytes]:
    """Create every case's file in ``root``; returns ``{name: path}`` (bytes)."""
    root = os.fsencode(root)
    os.makedirs(root, exist_ok=True)
    paths = {}
    for case in CASES:
        path = os.path.join(root, case.name)
        case.write(path)
        paths[case.name] = path
    return paths


def by_name() -> dict[bytes, Case]:
    """``{name: case}``."""
    return {case.name: case for case in CASES}
