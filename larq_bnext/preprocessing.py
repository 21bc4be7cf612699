"""Input preprocessing and prediction decoding for the ImageNet BNext models.

The official checkpoints were evaluated (timm's eval transform, ``crop_pct=0.95``) on RGB images
whose shorter side was resized to ``floor(224 / 0.95) = 235`` pixels (bicubic), centre-cropped to
224 x 224, scaled to [0, 1] and normalised with the ImageNet mean ``(0.485, 0.456, 0.406)`` and
standard deviation ``(0.229, 0.224, 0.225)`` (all from :mod:`larq_bnext.registry`). Use the same
steps to reproduce their accuracy (the examples below: ``weights="imagenet"`` for the official
checkpoint, an image file for the random pixels).

:func:`eval_transform` is plain TensorFlow and works inside ``tf.data`` pipelines
(``dataset.map(eval_transform)``). :func:`preprocess_input` is only the normalisation, for images
that already have the right size (``keras.applications`` style).

The resize is TensorFlow's antialiased bicubic, rounded to whole 0-255 values like the PIL image
the original pipeline produced; it matches PIL's bicubic resize to within a few grey levels.

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

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EVAL_IMAGE_SIZE",
    "EVAL_CROP_FRACTION",
    "preprocess_input",
    "eval_resize_size",
    "eval_transform",
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
) -> tf.Tensor:
    """The official evaluation transform: resize, centre crop, normalise.

    1. Resize so that the shorter side is ``floor(image_size / crop_fraction)`` (235), the longer
       one in proportion (rounded down, as torchvision does), bicubic with antialiasing, rounded
       to whole values in [0, 255].
    2. Centre crop ``image_size`` x ``image_size`` (offsets rounded half to even, as torchvision).
    3. Scale to [0, 1] and normalise with :data:`IMAGENET_MEAN` and :data:`IMAGENET_STD`.

    Works eagerly and inside ``tf.data`` / ``tf.function`` (images of any size).

    Args:
        image: one RGB image, ``(height, width, 3)``, values in [0, 255] (``uint8`` from
            ``tf.io.decode_jpeg(..., channels=3)``, or any numeric dtype). A single-channel image
            ``(height, width, 1)`` is repeated to RGB.
        image_size: side of the output (224 for the official models).
        crop_fraction: fraction of the resized shorter side kept by the crop (0.95).

    Returns:
        A ``float32`` tensor of shape ``(image_size, image_size, 3)``.

    Raises:
        ValueError: if ``image`` is not a 3-D image with 1 or 3 channels.
    """
    image = tf.convert_to_tensor(image)
    if image.shape.rank is not None and image.shape.rank != 3:
        raise ValueError(
            f"eval_transform takes one image (height, width, channels); got shape {image.shape}. "
            "Map it over a dataset of single images, or use tf.map_fn for a batch."
        )
    channels = image.shape[-1]
    if channels == 1:
        image = tf.repeat(image, 3, axis=-1)
    elif channels is not None and channels != 3:
        raise ValueError(f"eval_transform needs an RGB image (3 channels); got {channels}.")
    image = tf.cast(image, tf.float32)

    resize = eval_resize_size(image_size, crop_fraction)
    shape = tf.shape(image)
    height = tf.cast(shape[0], tf.float64)
    width = tf.cast(shape[1], tf.float64)
    short = tf.minimum(height, width)
    long_side = tf.cast(tf.floor(resize * tf.maximum(height, width) / short), tf.int32)
    new_h = tf.where(height <= width, resize, long_side)
    new_w = tf.where(height <= width, long_side, resize)
    image = tf.image.resize(
        image, tf.stack([new_h, new_w]), method=_PREPROCESSING.interpolation, antialias=True
    )
    image = tf.clip_by_value(tf.round(image), 0.0, 255.0)

    top = tf.cast(tf.round(tf.cast(new_h - image_size, tf.float64) / 2.0), tf.int32)
    left = tf.cast(tf.round(tf.cast(new_w - image_size, tf.float64) / 2.0), tf.int32)
    image = image[top : top + image_size, left : left + image_size, :]
    image = tf.ensure_shape(image, (image_size, image_size, 3))
    return preprocess_input(image)


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
