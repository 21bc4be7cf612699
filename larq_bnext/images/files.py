r"""Image files as the operating system names them: printable names, header sizes, the limit.

* :func:`display_path`: the printable, escaped form of any path (``str`` with undecodable
  bytes as the OS gives them, ``bytes`` or ``os.PathLike``): what every message, log line
  and JSON file of the package shows. Bytes that are not UTF-8 appear as ``\xNN``, other
  unprintable characters (a newline in a name) as ``\n``-style escapes::

      >>> display_path(b"caf\xe9 2.jpg")
      'caf\\xe9 2.jpg'

* :func:`read_header`: the format and size of an image file from its first bytes, before
  anything is decoded; :func:`check_pixels` refuses an image above the pixel limit
  (:data:`MAX_IMAGE_PIXELS`, PIL's default ``Image.MAX_IMAGE_PIXELS``) with a
  :class:`ImageTooLargeError` that names the file, its size, the limit and the fix.
* :func:`check_image_file` (``predict``'s check) and :func:`unreadable_reason` (the same as
  text, the image-folder scan's ``verify``): why a file cannot be used (missing, a directory,
  a broken link, empty, not an image, a truncated JPEG/PNG/GIF, too large).

JPEG, PNG, GIF and BMP headers are read here (a few bytes; a JPEG's frame header is found
by walking its markers), other formats through PIL. PIL's ``Image.open`` also reads sizes,
but costs three times this module's whole check per file (a scan of ImageNet's 1.28 million
files) and refuses to open, without giving the size, any image over twice its own global
``MAX_IMAGE_PIXELS``, whatever limit the caller chose.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import struct

__all__ = [
    "MAX_IMAGE_PIXELS",
    "ImageFileError",
    "ImageTooLargeError",
    "ImageHeader",
    "display_path",
    "pixel_limit",
    "read_header",
    "check_pixels",
    "check_image_file",
    "unreadable_reason",
    "not_an_image",
]

#: The default pixel limit (``width * height``): PIL's ``Image.MAX_IMAGE_PIXELS`` default,
#: 89,478,485 (a 24-bit image of 256 MiB; 9459 x 9459 pixels).
MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3
# The header must lie in the first bytes (JPEG: its markers before the frame header, EXIF and
# ICC profiles included); a longer one is read by PIL.
_HEAD_BYTES = 1 << 16
_LIMIT_FIX = (
    "raise the limit (--max_image_pixels=N on the command line, max_image_pixels=N in "
    "Python; 0 or None: no limit) or shrink the image"
)


class ImageFileError(ValueError):
    """A file that cannot be used as an image; the message names it and the fix."""


class ImageTooLargeError(ImageFileError):
    """An image whose header gives more pixels than the limit."""


@dataclasses.dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says.

    Args:
        format: ``"JPEG"``, ``"PNG"``, ``"GIF"``, ``"BMP"`` or PIL's name of another format.
        width: width in pixels.
        height: height in pixels.
    """

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        """``width * height``."""
        return self.width * self.height


def display_path(path) -> str:
    r"""The printable form of a path, for messages, logs and JSON files.

    Bytes that are not UTF-8 become ``\xNN`` (Python's ``backslashreplace``), unprintable
    characters become ``\n``, ``\t``, ``\xNN``, ``\uNNNN`` escapes; everything else,
    non-ASCII letters included, is kept. Applied to its own output it changes nothing.

    Args:
        path: a ``str`` (as ``os.listdir``/``sys.argv`` give it, undecodable bytes as
            surrogate escapes), ``bytes`` or ``os.PathLike``.
    """
    text = os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def pixel_limit(max_image_pixels) -> int | None:
    """A pixel limit as a positive ``int``, or ``None`` for no limit (``None`` or 0).

    Args:
        max_image_pixels: the limit (``width * height``), 0 or ``None``.

    Raises:
        ValueError: for a negative limit.
    """
    if max_image_pixels is None or int(max_image_pixels) == 0:
        return None
    if int(max_image_pixels) < 0:
        raise ValueError(
            f"max_image_pixels must be positive (or 0/None for no limit), not {max_image_pixels}."
        )
    return int(max_image_pixels)


def check_pixels(header: ImageHeader, path, max_image_pixels=MAX_IMAGE_PIXELS) -> None:
    """Refuse an image whose header gives more pixels than the limit.

    Args:
        header: the image's header (:func:`read_header`).
        path: the file, for the message.
        max_image_pixels: the limit (``None`` or 0: none).

    Raises:
        ImageTooLargeError: naming the file, its size, the limit and the fix.
    """
    limit = pixel_limit(max_image_pixels)
    if limit is not None and header.pixels > limit:
        raise ImageTooLargeError(
            f"{display_path(path)}: {header.width} x {header.height} pixels "
            f"({header.pixels:,}) is more than the limit of {limit:,} pixels; {_LIMIT_FIX}."
        )


def read_header(path) -> ImageHeader:
    """The format and size of an image file, read from its header (nothing is decoded).

    Args:
        path: the file (``str``, ``bytes`` or ``os.PathLike``).

    Raises:
        FileNotFoundError: no such file.
        ImageFileError: a directory, a broken link, not a regular file, unreadable, empty or
            not an image; the message names the file and what to do.
    """
    name = display_path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            target = display_path(os.readlink(path))
            raise ImageFileError(
                f"{name}: a broken link (to {target}, which does not exist). Fix or remove it."
            ) from None
        raise FileNotFoundError(f"{name}: no such file. Check the path.") from None
    except OSError as error:
        raise ImageFileError(f"{name}: cannot be read ({error.strerror}).") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageFileError(f"{name}: a directory, not an image file. Name the files in it.")
    if not stat.S_ISREG(info.st_mode):
        raise ImageFileError(f"{name}: not a regular file (a device, pipe or socket).")
    if info.st_size == 0:
        raise ImageFileError(f"{name}: an empty file (0 bytes). Replace or remove it.")
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError as error:
        raise ImageFileError(f"{name}: cannot be read ({error.strerror}).") from None
    try:
        header = _header(head)
    except ImageFileError as error:
        raise ImageFileError(not_an_image(path, error)) from None
    if header is None:
        header = _pil_header(path)
    return header


def _header(head: bytes) -> ImageHeader | None:
    """JPEG, PNG, GIF and BMP sizes from the first bytes (``None``: another format, or a
    JPEG frame header beyond them)."""
    if head[:3] == b"\xff\xd8\xff":
        return _jpeg_header(head)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return ImageHeader("PNG", width, height)
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return ImageHeader("GIF", width, height)
    if head[:2] == b"BM" and len(head) >= 26:
        (size,) = struct.unpack("<I", head[14:18])
        if size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sides
            width, height = struct.unpack("<HH", head[18:22])
        else:
            width, height = struct.unpack("<ii", head[18:26])
        return ImageHeader("BMP", abs(width), abs(height))
    return None


# JPEG start-of-frame markers (SOF0-SOF15 without DHT, JPG and DAC), which carry the size.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_header(head: bytes) -> ImageHeader | None:
    position = 2
    while position + 9 <= len(head):
        if head[position] != 0xFF:
            raise ImageFileError("a corrupt JPEG: no marker where one must be")
        marker = head[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _SOF:
            height, width = struct.unpack(">HH", head[position + 5 : position + 9])
            return ImageHeader("JPEG", width, height)
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            raise ImageFileError("a corrupt JPEG: no frame header")
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            position += 2
            continue
        (length,) = struct.unpack(">H", head[position + 2 : position + 4])
        position += 2 + length
    return None


def _pil_header(path) -> ImageHeader:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return ImageHeader(str(image.format), *image.size)
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(
            f"{display_path(path)}: {error} (PIL's own limit, PIL.Image.MAX_IMAGE_PIXELS); "
            f"{_LIMIT_FIX}."
        ) from None
    except UnidentifiedImageError:
        raise ImageFileError(not_an_image(path, "no known image format")) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageFileError(not_an_image(path, error)) from None


_NOT_AN_IMAGE = (
    "not a readable image (%s). Give a JPEG, PNG, GIF, BMP, TIFF or WebP file: re-save it as "
    "JPEG or PNG, or remove it"
)


def not_an_image(path, reason) -> str:
    """The message for a file that is no readable image, naming it, ``reason`` and the fix.

    Args:
        path: the file.
        reason: what went wrong (a decoder's message).
    """
    return f"{display_path(path)}: {_NOT_AN_IMAGE % reason}."


def check_image_file(path, max_image_pixels=MAX_IMAGE_PIXELS) -> ImageHeader:
    """Check an image file before decoding it; returns its header.

    :func:`read_header`, :func:`check_pixels`, and for JPEG, PNG and GIF the end marker in
    the last kilobyte (a file cut short). A file that passes can still fail to decode
    (damaged data inside); the decoders' errors say so.

    Args:
        path: the file.
        max_image_pixels: the pixel limit (``None`` or 0: none).

    Raises:
        FileNotFoundError: no such file.
        ImageFileError: why the file cannot be used (:class:`ImageTooLargeError` for the
            limit); the message names the file and the fix.
    """
    header = read_header(path)
    check_pixels(header, path, max_image_pixels)
    ending = _ENDINGS.get(header.format)
    if ending is not None and not _ends_with(path, ending):
        raise ImageFileError(
            f"{display_path(path)}: a truncated {header.format} (no end marker): the file was "
            "cut short. Replace or remove it."
        )
    return header


def unreadable_reason(path, max_image_pixels=MAX_IMAGE_PIXELS) -> str | None:
    """Why a file cannot be used as an image (a message naming it), or ``None``.

    The image-folder scan's check (:func:`larq_bnext.training.data.datasets.scan_image_folder`):
    :func:`check_image_file`'s error as text.

    Args:
        path: the file.
        max_image_pixels: the pixel limit (``None`` or 0: none).
    """
    try:
        check_image_file(path, max_image_pixels)
    except (OSError, ImageFileError) as error:
        return str(error)
    return None


# What the last bytes of a complete file hold: JPEG's end-of-image marker (some writers add
# padding after it), PNG's IEND chunk, GIF's trailer.
_ENDINGS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82", "GIF": b";"}


def _ends_with(path, marker: bytes) -> bool:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 1024))
        tail = handle.read()
    if marker == b";":  # GIF: the trailer byte, possibly followed by padding
        return tail.rstrip(b"\0").endswith(marker)
    return marker in tail
