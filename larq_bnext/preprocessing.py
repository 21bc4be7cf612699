"""Input preprocessing and prediction decoding for the ImageNet BNext models.

The official checkpoints were evaluated (timm's eval transform, ``crop_pct=0.95``) on RGB images
whose shorter side was resized to ``floor(224 / 0.95) = 235`` pixels (bicubic), centre-cropped to
224 x 224, scaled to [0, 1] and normalised with the ImageNet mean ``(0.485, 0.456, 0.406)`` and
standard deviation ``(0.229, 0.224, 0.225)`` (all from :mod:`larq_bnext.registry`). Use the same
steps to reproduce their accuracy (the examples below: ``weights="imagenet"`` for the official
checkpoint, an image file for the random pixels).

:func:`eval_transform` is plain TensorFlow and works inside ``tf.data`` pipelines
(``dataset.map(eval_transform)``); :func:`decode_and_center_crop` does the same from a file's
bytes (any image PIL reads), decoding only the crop's window of a JPEG.
:func:`preprocess_input` is only the normalisation, for images that already have the right
size (``keras.applications`` style).

The resize is the antialiased bicubic of PIL and ``tf.image.resize``
(:func:`larq_bnext.images.resampling.resize_window`), rounded to whole 0-255 values like the
PIL image the original pipeline produced; it matches PIL's bicubic resize to within a few grey
levels. Only the crop's window is resampled: memory does not grow with the aspect ratio.

Examples:
    >>> import numpy as np
    >>> import larq_bnext
    >>> model = larq_bnext.BNextT(weights=None)
    >>> image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)  # any size
    >>> x = larq_bnext.preprocessing.eval_transform(image)  # or tf.io.decode_jpeg(file bytes)
    >>> x.shape, x.dtype.name
    (TensorShape([224, 224, 3]), 'float32')
    >>> preds = model(x[None])
    >>> larq_bnext.decode_predictions(np.eye(1000)[[1]], top=1)[0]  # class 1, probability 1
    [('n01443537', 'goldfish, Carassius auratus', 1.0)]
    >>> len(larq_bnext.decode_predictions(preds.numpy(), top=5)[0])
    5
"""

from __future__ import annotations

import functools
import json
import math
from importlib import resources

import numpy as np
import tensorflow as tf

from larq_bnext import registry
from larq_bnext.images.files import MAX_IMAGE_PIXELS
from larq_bnext.images.resampling import resize_window

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EVAL_IMAGE_SIZE",
    "EVAL_CROP_FRACTION",
    "EVAL_INTERPOLATION",
    "preprocess_input",
    "eval_resize_size",
    "eval_transform",
    "decode_and_center_crop",
    "imagenet_class_index",
    "decode_predictions",
]

# Read from the registry: every published BNext shares this preprocessing.
_PREPROCESSING = registry.IMAGENET_PREPROCESSING
#: Per-channel mean of ImageNet RGB images scaled to [0, 1].
IMAGENET_MEAN = _PREPROCESSING.mean
#: Per-channel standard deviation of ImageNet RGB images scaled to [0, 1].
IMAGENET_STD = _PREPROCESSING.std
#: Side of the evaluated crop.
EVAL_IMAGE_SIZE = _PREPROCESSING.image_size
#: Fraction of the resized shorter side that the centre crop keeps (timm's ``crop_pct``).
EVAL_CROP_FRACTION = _PREPROCESSING.crop_fraction
#: How the evaluation transform resamples (bicubic with anti-aliasing, like PIL's).
EVAL_INTERPOLATION = _PREPROCESSING.interpolation


def preprocess_input(x, data_format: str | None = None):
    """Normalise RGB images with values in [0, 255] the way the BNext models expect.

    ``(x / 255 - mean) / std`` per channel, with the ImageNet mean and standard deviation
    (``keras.applications``' "torch" mode). The spatial size is left alone: resize and crop
    first (see :func:`eval_transform`).

    Args:
        x: a NumPy array or TensorFlow tensor of RGB images, channels last (``(..., 3)``), or
            channels first with ``data_format="channels_first"``. Integer inputs become
            ``floatx()`` (float32 by default); floating inputs keep their dtype.
        data_format: ``"channels_last"`` (default) or ``"channels_first"``.

    Returns:
        The normalised images, of the same kind (array or tensor) and shape as ``x``.

    Raises:
        ValueError: for a channel axis of size other than 3 or an unknown ``data_format``.
    """
    data_format = data_format or "channels_last"
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            f"data_format must be 'channels_last' or 'channels_first', not {data_format!r}."
        )
    axis = -1 if data_format == "channels_last" else -3
    shape = [1] * len(x.shape)
    if not shape or x.shape[axis] != 3:
        raise ValueError(
            f"preprocess_input expects RGB images with 3 channels on axis {axis} "
            f"({data_format}); got shape {tuple(x.shape)}."
        )
    shape[axis] = 3
    if isinstance(x, (tf.Tensor, tf.Variable)):
        dtype = x.dtype if x.dtype.is_floating else tf.as_dtype(tf.keras.backend.floatx())
        x = tf.cast(x, dtype)
        width = x.shape[-2] if axis == -1 and len(x.shape) >= 2 else None
        if width is not None:
            # Rows of width * 3 values against the mean and std tiled along the row: the
            # same arithmetic, but broadcasting a 3-vector over the channel axis is a slow
            # path of TensorFlow's CPU kernels (about 4x the time on 224x224 images).
            full = tf.shape(x)
            rows = tf.reshape(x, tf.concat([full[:-2], [width * 3]], axis=0))
            mean = tf.tile(tf.constant(IMAGENET_MEAN, dtype), [width])
            std = tf.tile(tf.constant(IMAGENET_STD, dtype), [width])
            return tf.reshape((rows / 255.0 - mean) / std, full)
        mean = tf.reshape(tf.constant(IMAGENET_MEAN, dtype), shape)
        std = tf.reshape(tf.constant(IMAGENET_STD, dtype), shape)
        return (x / 255.0 - mean) / std
    x = np.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(tf.keras.backend.floatx())
    x = x.astype(dtype, copy=False)
    mean = np.reshape(np.asarray(IMAGENET_MEAN, dtype), shape)
    std = np.reshape(np.asarray(IMAGENET_STD, dtype), shape)
    return (x / dtype.type(255.0) - mean) / std


def eval_resize_size(
    image_size: int = EVAL_IMAGE_SIZE, crop_fraction: float = EVAL_CROP_FRACTION
) -> int:
    """Shorter side before the centre crop: ``floor(image_size / crop_fraction)`` (235 at 224).

    Args:
        image_size: side of the final crop.
        crop_fraction: fraction of the resized image the crop keeps.
    """
    return int(math.floor(image_size / crop_fraction))


def eval_transform(
    image,
    image_size: int = EVAL_IMAGE_SIZE,
    crop_fraction: float = EVAL_CROP_FRACTION,
    interpolation: str = EVAL_INTERPOLATION,
) -> tf.Tensor:
    """The official evaluation transform: resize, centre crop, normalise.

    1. Resize so that the shorter side is ``floor(image_size / crop_fraction)`` (235), the longer
       one in proportion (rounded down, as torchvision does), bicubic with antialiasing, rounded
       to whole values in [0, 255].
    2. Centre crop ``image_size`` x ``image_size`` (offsets rounded half to even, as torchvision).
    3. Scale to [0, 1] and normalise with :data:`IMAGENET_MEAN` and :data:`IMAGENET_STD`.

    Only the crop is computed: its window is mapped back onto the image, the pixels that its
    resampling reads are cut out, and they are resized once
    (:func:`larq_bnext.images.resampling.resize_window`). The result is that of resizing the
    whole image and then cropping (to float32 rounding), but memory no longer grows with the
    image's aspect ratio: a 1 x 20000 strip costs what a 224 x 224 image costs.

    Works eagerly and inside ``tf.data`` / ``tf.function`` (images of any size). For files, see
    :func:`decode_and_center_crop`, which decodes only the window of a JPEG.

    Args:
        image: one RGB image, ``(height, width, 3)``, values in [0, 255] (``uint8`` from
            ``tf.io.decode_jpeg(..., channels=3)``, or any numeric dtype). A single-channel image
            ``(height, width, 1)`` is repeated to RGB.
        image_size: side of the output (224 for the official models).
        crop_fraction: fraction of the resized shorter side kept by the crop (0.95), in (0, 1].
        interpolation: the resampling, the registry's (``"bicubic"``, the only one
            implemented: the official models were evaluated with it).

    Returns:
        A ``float32`` tensor of shape ``(image_size, image_size, 3)``.

    Raises:
        ValueError: if ``image`` is not a 3-D image with 1 or 3 channels, ``crop_fraction``
            is not in (0, 1] or ``interpolation`` is not ``"bicubic"``.
    """
    _check_crop(image_size, crop_fraction, interpolation)
    image = tf.convert_to_tensor(image)
    if image.shape.rank is not None and image.shape.rank != 3:
        raise ValueError(
            f"eval_transform takes one image (height, width, channels); got shape {image.shape}. "
            "Map it over a dataset of single images, or use tf.map_fn for a batch."
        )
    channels = image.shape[-1]
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"eval_transform needs an RGB image (3 channels); got {channels}.")
    shape = tf.shape(image)
    window = _centre_window(shape[0], shape[1], image_size, crop_fraction)
    rows, columns = _support(window, shape[0], shape[1], image_size)
    # Cutting the support out is a copy: it pays where it leaves most pixels out (a
    # panorama); a photograph is resampled in place.
    area = tf.cast(rows[1] - rows[0], tf.int64) * tf.cast(columns[1] - columns[0], tf.int64)
    cut = 2 * area < tf.cast(shape[0], tf.int64) * tf.cast(shape[1], tf.int64)
    rows = tf.where(cut, rows, tf.stack([0, shape[0]]))
    columns = tf.where(cut, columns, tf.stack([0, shape[1]]))
    pixels = tf.cond(cut, lambda: image[rows[0] : rows[1], columns[0] : columns[1]], lambda: image)
    if channels == 1:
        pixels = tf.repeat(pixels, 3, axis=-1)
    offset = tf.cast(tf.stack([rows[0], columns[0], 0, 0]), tf.float32)
    return _finish(resize_window(pixels, image_size, window - offset), image_size)


def decode_and_center_crop(
    encoded,
    image_size: int = EVAL_IMAGE_SIZE,
    crop_fraction: float = EVAL_CROP_FRACTION,
    max_image_pixels=MAX_IMAGE_PIXELS,
    jpeg_dct_scaling: bool = True,
    interpolation: str = EVAL_INTERPOLATION,
) -> tf.Tensor:
    """:func:`eval_transform` of an image file's bytes, decoding no more than the crop needs.

    A JPEG's size is read from its header and only the pixels that the centre crop's
    resampling reads are decoded (``tf.image.decode_and_crop_jpeg``); when that window is at
    least four times the output on both sides (an image whose shorter side is 941 pixels or
    more, at 224), libjpeg decodes it at 1/2, 1/4 or 1/8 scale in the DCT domain, the
    coarsest that keeps twice the output, and the window is resampled from those pixels. Other
    formats are decoded whole (:func:`larq_bnext.images.decode.decode_rgb`: TensorFlow, or PIL
    for what it cannot read) and go through :func:`eval_transform`. Every image whose header
    gives more than ``max_image_pixels`` pixels is refused before decoding (an op error, which
    the input pipelines count as a skipped file).

    Args:
        encoded: a scalar string tensor (or ``bytes``) holding the file's bytes.
        image_size: side of the output.
        crop_fraction: fraction of the resized shorter side kept by the crop, in (0, 1].
        max_image_pixels: the pixel limit (``None`` or 0: none); PIL's default.
        jpeg_dct_scaling: let libjpeg scale large JPEG windows down in the DCT domain;
            ``False`` decodes them at full size, as PIL does for the original.
        interpolation: the resampling (``"bicubic"``, see :func:`eval_transform`).

    Returns:
        A ``float32`` tensor of shape ``(image_size, image_size, 3)``.
    """
    from larq_bnext.images import decode

    _check_crop(image_size, crop_fraction, interpolation)
    encoded = tf.convert_to_tensor(encoded, tf.string)

    def jpeg():
        shape = tf.image.extract_jpeg_shape(encoded)[:2]
        with tf.control_dependencies([decode.check_limit(shape, max_image_pixels)]):
            window = _centre_window(shape[0], shape[1], image_size, crop_fraction)
        rows, columns = _support(window, shape[0], shape[1], image_size)
        box = tf.stack([rows[0], columns[0], rows[1] - rows[0], columns[1] - columns[0]])
        if jpeg_dct_scaling:
            index = decode.jpeg_scale_index(window[2], window[3], 2 * image_size)
        else:
            index = tf.constant(0)
        pixels, box_in_pixels = decode.decode_jpeg_window(encoded, shape, box, index)
        ratio = tf.cast(tf.gather(decode.JPEG_SCALES, index), tf.float32)
        offset = tf.cast(tf.stack([rows[0], columns[0], 0, 0]), tf.float32)
        origin = tf.concat([box_in_pixels[:2], [0.0, 0.0]], axis=0)
        return _finish(
            resize_window(pixels, image_size, (window - offset) / ratio + origin), image_size
        )

    def other():
        image = decode.decode_rgb(encoded, max_image_pixels)
        return eval_transform(image, image_size, crop_fraction)

    out = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
    return tf.ensure_shape(out, (image_size, image_size, 3))


def _check_crop(image_size: int, crop_fraction: float, interpolation: str) -> None:
    if interpolation != "bicubic":
        raise ValueError(
            f"interpolation {interpolation!r} is not implemented by the evaluation transform: "
            "it resamples bicubically with anti-aliasing, as every published BNext was "
            "evaluated. Pass interpolation='bicubic', or resize with tf.image.resize yourself "
            "and normalise with preprocess_input."
        )
    if not 0 < crop_fraction <= 1:
        raise ValueError(
            f"crop_fraction must be in (0, 1] (the crop keeps that fraction of the resized "
            f"shorter side), not {crop_fraction}."
        )
    if int(image_size) < 1:
        raise ValueError(f"image_size must be positive, not {image_size}.")


def _centre_window(height, width, image_size: int, crop_fraction: float) -> tf.Tensor:
    """The centre crop's window in the source, ``float32 [top, left, height, width]``.

    The transform resizes the image to ``(new_h, new_w)`` (shorter side ``resize``) and crops
    ``image_size`` pixels at ``(top, left)``; crop pixel ``x`` is resized pixel ``top + x``,
    which samples the source at ``(top + x + 0.5) * height / new_h``: the window of
    ``image_size`` output pixels that starts at ``top * height / new_h`` in the source.
    """
    resize = tf.constant(eval_resize_size(image_size, crop_fraction), tf.float64)
    height = tf.cast(height, tf.float64)
    width = tf.cast(width, tf.float64)
    short = tf.minimum(height, width)
    long_side = tf.floor(resize * tf.maximum(height, width) / short)
    new_h = tf.where(height <= width, resize, long_side)
    new_w = tf.where(height <= width, long_side, resize)
    top = tf.round((new_h - image_size) / 2.0)  # half to even, as torchvision
    left = tf.round((new_w - image_size) / 2.0)
    scale_h, scale_w = height / new_h, width / new_w
    window = tf.stack([top * scale_h, left * scale_w, image_size * scale_h, image_size * scale_w])
    return tf.cast(window, tf.float32)


def _support(window, height, width, image_size: int):
    """``([first, end), [first, end))`` rows and columns of the source that the bicubic
    resampling of ``window`` reads: the window widened by the kernel's radius (2 output
    pixels, in source pixels when shrinking), clipped to the image."""
    top, left, window_h, window_w = tf.unstack(window)

    def span(start, length, size):
        radius = 2.0 * tf.maximum(length / image_size, 1.0)
        first = tf.cast(tf.floor(start - radius), tf.int32) - 1
        end = tf.cast(tf.math.ceil(start + length + radius), tf.int32) + 1
        size = tf.cast(size, tf.int32)
        return tf.clip_by_value(first, 0, size), tf.clip_by_value(end, 0, size)

    return span(top, window_h, height), span(left, window_w, width)


def _finish(resized, image_size: int) -> tf.Tensor:
    """Whole values on [0, 255], like the uint8 image PIL's resize gives timm; normalised."""
    resized = tf.clip_by_value(tf.round(resized), 0.0, 255.0)
    return preprocess_input(tf.ensure_shape(resized, (image_size, image_size, 3)))


@functools.lru_cache(maxsize=1)
def imagenet_class_index() -> tuple:
    """The 1000 ImageNet classes in model output order: ``((wnid, description), ...)``.

    Read from the class index shipped with the package (sorted WordNet ids, the order of the
    original's image-folder loader and of Keras), so no network access is needed.
    """
    text = (
        resources.files("larq_bnext")
        .joinpath("resources/imagenet_classes.json")
        .read_text(encoding="utf-8")
    )
    index = json.loads(text)
    return tuple((index[str(i)][0], index[str(i)][1]) for i in range(len(index)))


def decode_predictions(preds, top: int = 5) -> list:
    """Turn ImageNet predictions into ``(wnid, description, score)`` tuples, best first.

    Args:
        preds: array or tensor of shape ``(batch, 1000)`` (probabilities or logits).
        top: how many classes to return per sample.

    Returns:
        One list per sample of ``top`` tuples ``(wnid, description, score)``, where
        ``description`` is the class's WordNet synonyms, e.g. ``"tench, Tinca tinca"``.

    Raises:
        ValueError: if ``preds`` is not ``(batch, 1000)`` or ``top`` is not in ``1..1000``.
    """
    preds = np.asarray(preds)
    classes = imagenet_class_index()
    if preds.ndim != 2 or preds.shape[1] != len(classes):
        raise ValueError(
            "decode_predictions expects a batch of ImageNet predictions of shape "
            f"(samples, {len(classes)}); got {preds.shape}."
        )
    if not 1 <= int(top) <= len(classes):
        raise ValueError(f"top must be between 1 and {len(classes)}, not {top}.")
    results = []
    for row in preds:
        best = np.argsort(-row, kind="stable")[: int(top)]
        results.append([(classes[i][0], classes[i][1], float(row[i])) for i in best])
    return results
