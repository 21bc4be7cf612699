"""Encoded image bytes to RGB pixels, in TensorFlow (``tf.data``, ``tf.function``, eager).

:func:`decode_rgb` reads every image PIL reads (what torchvision's ``ImageFolder`` gives
the original), as ``uint8`` RGB:

* JPEG (grey, RGB, CMYK), PNG (every colour type and bit depth; 16-bit channels keep their
  high byte, as libpng's 8-bit conversion does) and 24/32-bit BMP are decoded by
  TensorFlow, after the pixel limit is checked on the size in their header;
* everything else goes through PIL (:func:`pil_decode_rgb`, in ``tf.numpy_function``):
  GIF (its first frame only: TensorFlow would decode every frame), palette and 1-bit BMP
  (TensorFlow ignores a BMP's palette), TIFF, WebP, PPM/PGM and the other formats PIL
  opens. PIL converts the image to RGB; 16-bit grey keeps its high byte (PIL's own
  conversion would clip it to white), and floating-point images are refused (their range
  is unknown).

:func:`decode_jpeg_window` decodes only the part of a JPEG that a crop needs, at 1/2, 1/4 or
1/8 scale in libjpeg's DCT domain (:func:`jpeg_scale_index` picks the scale): the training
crop (:func:`larq_bnext.augment.crop.decode_and_random_crop`) and the evaluation
crop (:func:`larq_bnext.preprocessing.decode_and_center_crop`) use it.

Nothing here names a file: the callers that know it (the pipelines, ``predict``) do.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import tensorflow as tf

from larq_bnext.images.files import (
    MAX_IMAGE_PIXELS,
    ImageFileError,
    ImageHeader,
    check_pixels,
    pixel_limit,
)

__all__ = [
    "JPEG_SCALES",
    "DCT_METHOD",
    "JPEG",
    "PNG",
    "BMP",
    "OTHER",
    "image_kind",
    "encoded_size",
    "check_limit",
    "decode_rgb",
    "pil_decode_rgb",
    "jpeg_scale_index",
    "decode_jpeg_window",
]

#: libjpeg's DCT-domain scales (1/r) that decoding can use: ``tf.image.decode_and_crop_jpeg``'s
#: ``ratio``.
JPEG_SCALES = (1, 2, 4, 8)
#: PIL's default IDCT (JDCT_ISLOW), the one the original's loader decodes with.
DCT_METHOD = "INTEGER_ACCURATE"
#: :func:`image_kind`'s codes: decoded by TensorFlow (JPEG, PNG, 24/32-bit BMP) or by PIL.
JPEG, PNG, BMP, OTHER = 0, 1, 2, 3
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _bytes_at(encoded, start: int, length: int) -> tf.Tensor:
    """``length`` bytes of ``encoded`` from ``start`` as int64 (an error if it is shorter)."""
    raw = tf.io.decode_raw(tf.strings.substr(encoded, start, length), tf.uint8)
    return tf.cast(tf.ensure_shape(raw, [length]), tf.int64)


def _unsigned(values, big_endian: bool) -> tf.Tensor:
    count = values.shape[0]
    order = values if big_endian else tf.reverse(values, [0])
    weights = tf.bitwise.left_shift(
        tf.constant(1, tf.int64), tf.range(8 * count - 8, -1, -8, tf.int64)
    )
    return tf.reduce_sum(order * weights)


def _bmp_fields(encoded):
    """A BMP's header size, width, height (absolute), bits per pixel and compression."""
    head = _bytes_at(encoded, 14, 20)
    size = _unsigned(head[0:4], False)
    width = _unsigned(head[4:8], False)
    height = _unsigned(head[8:12], False)
    # Sides are signed 32-bit; a negative height means the rows are stored top-down.
    width = tf.abs(tf.where(width >= 2**31, width - 2**32, width))
    height = tf.abs(tf.where(height >= 2**31, height - 2**32, height))
    return size, width, height, _unsigned(head[14:16], False), _unsigned(head[16:20], False)


def image_kind(encoded) -> tf.Tensor:
    """Which decoder reads ``encoded``: :data:`JPEG`, :data:`PNG`, :data:`BMP` (24/32-bit,
    uncompressed: TensorFlow's) or :data:`OTHER` (PIL), from the first bytes.

    Args:
        encoded: a scalar string tensor holding the file's bytes.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    is_png = tf.equal(tf.strings.substr(encoded, 0, 8), _PNG_MAGIC)
    is_bmp = tf.equal(tf.strings.substr(encoded, 0, 2), b"BM") & (tf.strings.length(encoded) >= 34)

    def plain_bmp():
        size, _, _, bits, compression = _bmp_fields(encoded)
        return (size >= 40) & ((bits == 24) | (bits == 32)) & tf.equal(compression, 0)

    tf_bmp = tf.cond(is_bmp, plain_bmp, lambda: tf.constant(False))
    kind = tf.where(tf_bmp, BMP, OTHER)
    kind = tf.where(is_png, PNG, kind)
    return tf.where(tf.io.is_jpeg(encoded), JPEG, kind)


def encoded_size(encoded, kind) -> tf.Tensor:
    """``[height, width]`` (int64) from the header of a JPEG, PNG or BMP (``kind`` from
    :func:`image_kind`; ``[0, 0]`` for :data:`OTHER`, whose size PIL reads).

    Args:
        encoded: a scalar string tensor holding the file's bytes.
        kind: its :func:`image_kind`.
    """

    def jpeg():
        return tf.cast(tf.image.extract_jpeg_shape(encoded)[:2], tf.int64)

    def png():  # IHDR: width, height as big-endian 32-bit integers at bytes 16-24
        sides = _bytes_at(encoded, 16, 8)
        return tf.stack([_unsigned(sides[4:8], True), _unsigned(sides[0:4], True)])

    def bmp():
        _, width, height, _, _ = _bmp_fields(encoded)
        return tf.stack([height, width])

    other = lambda: tf.zeros([2], tf.int64)  # noqa: E731
    return tf.switch_case(kind, [jpeg, png, bmp, other])


def check_limit(size, max_image_pixels=MAX_IMAGE_PIXELS):
    """An op that fails (``InvalidArgumentError``) when ``size`` has more pixels than the limit.

    Args:
        size: ``[height, width]``.
        max_image_pixels: the limit (``None`` or 0: none; the op then does nothing).
    """
    limit = pixel_limit(max_image_pixels)
    if limit is None:
        return tf.no_op()
    pixels = tf.reduce_prod(tf.cast(size, tf.int64))
    return tf.debugging.assert_less_equal(
        pixels,
        tf.constant(limit, tf.int64),
        message=f"The image has more pixels than the limit of {limit} (max_image_pixels).",
    )


def decode_rgb(encoded, max_image_pixels=MAX_IMAGE_PIXELS) -> tf.Tensor:
    """Decode an image file's bytes to ``uint8`` RGB ``(height, width, 3)``.

    Refuses (an op error) an image whose header gives more than ``max_image_pixels`` pixels
    before decoding it.

    Args:
        encoded: a scalar string tensor (or ``bytes``) holding the file's bytes.
        max_image_pixels: the pixel limit (``None`` or 0: none).
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    kind = image_kind(encoded)

    def checked(decode):
        def branch():
            with tf.control_dependencies(
                [check_limit(encoded_size(encoded, kind), max_image_pixels)]
            ):
                return decode()

        return branch

    image = tf.switch_case(
        kind,
        [
            checked(lambda: tf.image.decode_jpeg(encoded, channels=3, dct_method=DCT_METHOD)),
            checked(lambda: tf.io.decode_png(encoded, channels=3)),
            checked(lambda: tf.io.decode_bmp(encoded, channels=3)),
            lambda: _pil_op(encoded, max_image_pixels),
        ],
    )
    image.set_shape([None, None, 3])
    return image


def _pil_op(encoded, max_image_pixels):
    image = tf.numpy_function(
        lambda data: pil_decode_rgb(data, max_image_pixels), [encoded], tf.uint8, stateful=False
    )
    image.set_shape([None, None, 3])
    return image


def pil_decode_rgb(data: bytes, max_image_pixels=MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode an image with PIL to ``uint8`` RGB: the first frame, the pixel limit checked on
    the header first.

    16-bit grey (PIL's ``I;16`` modes, and ``I`` with values in 0-65535, as PIL opens 16-bit
    PGM) keeps the high byte; other modes go through PIL's ``convert("RGB")``.

    Args:
        data: the file's bytes.
        max_image_pixels: the pixel limit (``None`` or 0: none).

    Raises:
        ImageFileError: not an image PIL reads, floating-point or 32-bit pixels, or (an
            :class:`~larq_bnext.images.files.ImageTooLargeError`) more pixels than the limit.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(data, np.ndarray):  # tf.numpy_function's scalar string
        data = data.item()
    try:
        with Image.open(io.BytesIO(data)) as image:
            check_pixels(ImageHeader(str(image.format), *image.size), "the image", max_image_pixels)
            if image.mode.startswith("I;16") or image.mode == "I":
                grey = np.asarray(image)
                if grey.min() < 0 or grey.max() > 65535:
                    raise ImageFileError(
                        "32-bit integer pixels: save the image with 8 or 16 bits per channel."
                    )
                return np.repeat((grey.astype(np.uint16) >> 8).astype(np.uint8)[..., None], 3, -1)
            if image.mode == "F":
                raise ImageFileError(
                    "floating-point pixels (PIL mode F) have no known range: save the image "
                    "with 8 or 16 bits per channel."
                )
            return np.asarray(image.convert("RGB"))
    except Image.DecompressionBombError as error:
        raise ImageFileError(f"{error} (PIL's own limit, PIL.Image.MAX_IMAGE_PIXELS).") from None
    except (UnidentifiedImageError, OSError, SyntaxError, struct.error) as error:
        raise ImageFileError(f"not a readable image ({type(error).__name__}: {error}).") from None


def jpeg_scale_index(crop_height, crop_width, size: int) -> tf.Tensor:
    """Index into :data:`JPEG_SCALES` of the coarsest libjpeg scale that keeps the crop at
    least ``size`` pixels on both sides (so the resize after it still shrinks).

    Args:
        crop_height: height of the crop in pixels of the full image (scalar int tensor).
        crop_width: width of the crop (scalar int tensor).
        size: the fewest pixels the scaled crop keeps on its shorter side.
    """
    short = tf.minimum(crop_height, crop_width)
    coarser = [tf.cast(short >= ratio * size, tf.int32) for ratio in JPEG_SCALES[1:]]
    return tf.add_n(coarser)


def decode_jpeg_window(encoded, shape, box, scale_index):
    """Decode the pixels of a JPEG that the crop ``box`` touches, at the libjpeg scale
    ``JPEG_SCALES[scale_index]``.

    Args:
        encoded: a scalar string tensor holding the JPEG.
        shape: its ``[height, width]`` (``tf.image.extract_jpeg_shape``).
        box: ``[top, left, height, width]`` of the crop in pixels of the full image (int32).
        scale_index: index into :data:`JPEG_SCALES`.

    Returns:
        ``(pixels, box_in_pixels)``: the decoded ``uint8`` RGB pixels and the box in their
        (fractional) coordinates, ``float32 [top, left, height, width]``.
    """
    top, left, ch, cw = tf.unstack(box)
    ratio = tf.gather(JPEG_SCALES, scale_index)

    def scaled(x):  # libjpeg's scaled image has ceil(side / ratio) pixels
        return -(-x // ratio)

    first_row, first_col = top // ratio, left // ratio
    rows = tf.minimum(scaled(top + ch), scaled(shape[0])) - first_row
    cols = tf.minimum(scaled(left + cw), scaled(shape[1])) - first_col
    window = tf.stack([first_row, first_col, rows, cols])

    def decode(r):  # the scale is an attribute of the op: one branch per scale
        return lambda: tf.image.decode_and_crop_jpeg(
            encoded, window, channels=3, ratio=r, dct_method=DCT_METHOD
        )

    crop = tf.switch_case(scale_index, [decode(r) for r in JPEG_SCALES])
    crop.set_shape([None, None, 3])
    box_in_crop = tf.cast(box, tf.float32) / tf.cast(ratio, tf.float32) - tf.cast(
        tf.stack([first_row, first_col, 0, 0]), tf.float32
    )
    return crop, box_in_crop
