"""timm's RandAugment ops (PIL's computations) on batches with per-image arguments.

The 15 image ops of timm's RandAugment, each PIL's computation on uint8 images as timm runs it,
rebuilt on TensorFlow (:func:`~larq_bnext.images.transform.projective_transform` resamples the
affine transforms).
Images are batches ``(B, H, W, 3)`` of whole values on ``[0, 255]`` (float), as the batch stage
of :mod:`larq_bnext.augment.config` holds them; every op returns whole values on ``[0, 255]``
like the uint8 images PIL returns. Arguments are per image (shape ``(B,)``). The policy that
draws them is :mod:`larq_bnext.augment.randaugment`.

The geometric ops resample bilinearly (or nearest): TensorFlow's projective transform has no
bicubic, which the original's timm call uses. Everything else matches PIL exactly.
"""

from __future__ import annotations

import functools
import math

import tensorflow as tf

from larq_bnext.images.transform import projective_transform

__all__ = [
    "IMAGENET_MEAN_FILL",
    "auto_contrast",
    "equalize",
    "invert",
    "posterize",
    "solarize",
    "solarize_add",
    "color",
    "contrast",
    "brightness",
    "sharpness",
    "rotate",
    "shear",
    "translate",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
]

#: ``round(255 * ImageNet mean)``: the fill colour the original's timm call passes.
IMAGENET_MEAN_FILL = (124, 116, 104)


def _f(images):
    return tf.cast(images, tf.float32)


def _per_image(value, dtype=tf.float32):
    return tf.reshape(tf.cast(value, dtype), [-1, 1, 1, 1])


def _lut_where(images, condition, value):
    return tf.where(condition, value, images)


# ----------------------------------------------------------------------------- point ops
def auto_contrast(images):
    """PIL's ``ImageOps.autocontrast``: stretch each channel's ``[min, max]`` to ``[0, 255]``.

    ``int(x * 255 / (max - min) - min * 255 / (max - min))`` in double precision, as PIL's
    lookup table; channels with ``max <= min`` stay. (keras-cv's ``AutoContrast`` neither
    truncates nor matches PIL's rounding.)

    Args:
        images: ``(B, H, W, C)`` whole values on ``[0, 255]``.

    Example:

    >>> auto_contrast(tf.constant([[[[10.0], [20.0]]]])).numpy().ravel().tolist()
    [0.0, 255.0]
    """
    x = tf.cast(images, tf.float64)
    lo = tf.reduce_min(x, axis=[1, 2], keepdims=True)
    hi = tf.reduce_max(x, axis=[1, 2], keepdims=True)
    scale = 255.0 / tf.maximum(hi - lo, 1.0)
    out = tf.clip_by_value(tf.floor(x * scale + (-lo * scale)), 0.0, 255.0)
    return tf.cast(tf.where(hi > lo, out, x), tf.float32)


def equalize(images):
    """PIL's ``ImageOps.equalize`` per image and channel, vectorised over the batch.

    PIL's algorithm (``tfa.image.equalize``'s too, which maps it image by image in a nested
    ``tf.function``): ``step = (pixels - count of the top value) // 255``, lookup table
    ``(cumulative count below + step // 2) // step``; a channel with ``step == 0`` stays.

    Args:
        images: ``(B, H, W, C)`` whole values on ``[0, 255]``.

    Example:

    >>> x = tf.reshape(tf.constant([0.0] * 255 + [1.0] * 255 + [2.0]), [1, 1, 511, 1])
    >>> sorted(set(equalize(x).numpy().ravel().tolist()))
    [0.0, 128.0, 255.0]
    """
    x = tf.cast(images, tf.int32)
    shape = tf.shape(x)
    flat = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [shape[0] * shape[3], -1])
    hist = tf.math.bincount(flat, minlength=256, maxlength=256, axis=-1)
    top = tf.reduce_max(tf.where(hist > 0, tf.range(256), 0), axis=1)
    step = (tf.reduce_sum(hist, axis=1) - tf.gather(hist, top, batch_dims=1)) // 255
    step = step[:, None]
    lut = (tf.cumsum(hist, axis=1, exclusive=True) + step // 2) // tf.maximum(step, 1)
    out = tf.gather(tf.clip_by_value(lut, 0, 255), flat, batch_dims=1)
    out = tf.where(step > 0, out, flat)
    out = tf.transpose(tf.reshape(out, tf.gather(shape, [0, 3, 1, 2])), [0, 2, 3, 1])
    return _f(out)


def invert(images):
    """PIL's ``ImageOps.invert``: ``255 - x``.

    Args:
        images: ``(B, H, W, C)`` on ``[0, 255]``.

    Example:

    >>> invert(tf.constant([0.0, 200.0])).numpy().tolist()
    [255.0, 55.0]
    """
    return 255.0 - _f(images)


def posterize(images, bits):
    """PIL's ``ImageOps.posterize``: keep the ``bits`` most significant bits (0 gives black).

    Args:
        images: ``(B, H, W, C)`` whole values on ``[0, 255]``.
        bits: ``(B,)`` bits kept per image, ``0..8``.

    Example:

    >>> posterize(tf.constant([[[[200.0]]]]), [2]).numpy().ravel().tolist()
    [192.0]
    """
    step = _per_image(tf.pow(2.0, 8.0 - tf.clip_by_value(_f(bits), 0.0, 8.0)))
    return tf.floor(_f(images) / step) * step


def solarize(images, threshold):
    """PIL's ``ImageOps.solarize``: invert the values at or above ``threshold``.

    Args:
        images: ``(B, H, W, C)`` on ``[0, 255]``.
        threshold: ``(B,)`` per image; 256 leaves the image unchanged.

    Example:

    >>> solarize(tf.constant([[[[100.0], [200.0]]]]), [128]).numpy().ravel().tolist()
    [100.0, 55.0]
    """
    images = _f(images)
    return _lut_where(images, images >= _per_image(threshold), 255.0 - images)


def solarize_add(images, addition, threshold=128):
    """timm's ``solarize_add``: add ``addition`` (capped at 255) to the values below 128.

    Args:
        images: ``(B, H, W, C)`` on ``[0, 255]``.
        addition: ``(B,)`` per image.
        threshold: values below it are raised.

    Example:

    >>> solarize_add(tf.constant([[[[100.0], [200.0]]]]), [30]).numpy().ravel().tolist()
    [130.0, 200.0]
    """
    images = _f(images)
    raised = tf.minimum(images + _per_image(addition), 255.0)
    return _lut_where(images, images < threshold, raised)


# ----------------------------------------------------------------------------- enhancements
def _blend(degenerate, images, factor):
    # PIL's ImagingBlend on uint8: in1 + alpha * (in2 - in1) in float32, clipped, truncated.
    out = degenerate + _per_image(factor) * (_f(images) - degenerate)
    return tf.floor(tf.clip_by_value(out, 0.0, 255.0))


def _grayscale(images):
    # PIL's RGB -> L: (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16, in integers.
    rgb = tf.cast(images, tf.int32)
    weighted = rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000
    return _f(tf.bitwise.right_shift(weighted, 16))[..., None]


def color(images, factor):
    """PIL's ``ImageEnhance.Color``: blend from the grey (``L``) image; 1 is the identity.

    Args:
        images: ``(B, H, W, 3)`` whole values on ``[0, 255]``.
        factor: ``(B,)`` per image (0 gives grey, above 1 saturates).

    Example:

    >>> color(tf.constant([[[[200.0, 100.0, 0.0]]]]), [0.0]).numpy().ravel().tolist()
    [118.0, 118.0, 118.0]
    """
    images = _f(images)
    return _blend(tf.broadcast_to(_grayscale(images), tf.shape(images)), images, factor)


def contrast(images, factor):
    """PIL's ``ImageEnhance.Contrast``: blend from the rounded mean grey level.

    Args:
        images: ``(B, H, W, 3)`` whole values on ``[0, 255]``.
        factor: ``(B,)`` per image (0 gives a flat grey image).

    Example:

    >>> contrast(tf.constant([[[[0.0] * 3], [[200.0] * 3]]]), [0.5]).numpy()[0, :, 0, 0].tolist()
    [50.0, 150.0]
    """
    images = _f(images)
    mean = tf.reduce_mean(tf.cast(_grayscale(images), tf.float64), axis=[1, 2, 3], keepdims=True)
    degenerate = _f(tf.floor(mean + 0.5))
    return _blend(degenerate, images, factor)


def brightness(images, factor):
    """PIL's ``ImageEnhance.Brightness``: blend from black, ``trunc(clip(factor * x))``.

    Args:
        images: ``(B, H, W, C)`` whole values on ``[0, 255]``.
        factor: ``(B,)`` per image.

    Example:

    >>> brightness(tf.constant([[[[100.0], [200.0]]]]), [1.5]).numpy().ravel().tolist()
    [150.0, 255.0]
    """
    return _blend(tf.zeros([], tf.float32), images, factor)


def sharpness(images, factor):
    """PIL's ``ImageEnhance.Sharpness``: blend from PIL's ``SMOOTH`` filter of the image.

    The 3x3 kernel ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13`` rounded like PIL's filter, the
    one-pixel border left as it is (as PIL and ``tfa.image.sharpness`` do; the latter takes one
    factor per batch and truncates, hence this one).

    Args:
        images: ``(B, H, W, C)`` whole values on ``[0, 255]``.
        factor: ``(B,)`` per image (0 smooths, above 1 sharpens).

    Example:

    >>> img = tf.constant([[[[0.0], [0.0], [0.0]], [[0.0], [13.0], [0.0]], [[0.0], [0.0], [0.0]]]])
    >>> sharpness(img, [0.0]).numpy()[0, 1, 1, 0]
    5.0
    """
    images = _f(images)
    channels = images.shape[-1]
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
    smooth = tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], "VALID")
    smooth = tf.floor(tf.clip_by_value(smooth, 0.0, 255.0) + 0.5)
    smooth = tf.pad(smooth, [[0, 0], [1, 1], [1, 1], [0, 0]])
    shape = tf.shape(images)
    rows = tf.range(shape[1])[None, :, None, None]
    cols = tf.range(shape[2])[None, None, :, None]
    inner = (rows > 0) & (rows < shape[1] - 1) & (cols > 0) & (cols < shape[2] - 1)
    return _blend(tf.where(inner, smooth, images), images, factor)


# ----------------------------------------------------------------------------- geometric ops
def _affine(images, matrix, fill, interpolation):
    """PIL's ``Image.transform(AFFINE, (a, b, c, d, e, f))`` by :func:`projective_transform`.

    PIL samples output pixel ``(x, y)`` at ``M (x + 0.5, y + 0.5)`` in continuous coordinates;
    TensorFlow at ``M (x, y)`` in pixel indices; the offsets convert one into the other. The
    fill colour is per channel: transform ``images - fill`` with fill 0, then add it back.
    """
    a, b, c, d, e, f = tf.unstack(tf.cast(matrix, tf.float32), axis=-1)
    transforms = tf.stack(
        [a, b, c + 0.5 * (a + b) - 0.5, d, e, f + 0.5 * (d + e) - 0.5, 0 * a, 0 * a], axis=-1
    )
    fill = tf.constant(fill, tf.float32)
    out = projective_transform(_f(images) - fill, transforms, interpolation)
    # PIL truncates its bilinear interpolation to uint8.
    return tf.clip_by_value(tf.floor(out + fill), 0.0, 255.0)


def _ones_like_batch(values):
    return tf.ones_like(tf.cast(values, tf.float32))


def rotate(images, degrees, fill=IMAGENET_MEAN_FILL, interpolation="bilinear"):
    """PIL's ``Image.rotate(degrees)`` (counter-clockwise, about the centre, same size).

    Args:
        images: ``(B, H, W, C)`` on ``[0, 255]``.
        degrees: ``(B,)`` angles per image.
        fill: colour of the uncovered corners.
        interpolation: ``"bilinear"`` or ``"nearest"``.

    Example:

    >>> img = tf.reshape(tf.range(9.0), [1, 3, 3, 1])
    >>> rotate(img, [90.0], interpolation="nearest").numpy()[0, :, :, 0].tolist()
    [[2.0, 5.0, 8.0], [1.0, 4.0, 7.0], [0.0, 3.0, 6.0]]
    """
    images = _f(images)
    angle = -tf.cast(degrees, tf.float64) * (math.pi / 180.0)
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx = tf.cast(tf.shape(images)[2], tf.float64) / 2.0
    cy = tf.cast(tf.shape(images)[1], tf.float64) / 2.0
    c = cos * -cx + sin * -cy + cx
    f = -sin * -cx + cos * -cy + cy
    matrix = tf.stack([cos, sin, c, -sin, cos, f], axis=-1)
    return _affine(images, matrix, fill, interpolation)


def _identity_but(images, slot, value, fill, interpolation):
    """PIL affine: the identity with coefficient ``slot`` (of ``a, b, c, d, e, f``) set."""
    one = _ones_like_batch(value)
    coefficients = [one, 0.0 * one, 0.0 * one, 0.0 * one, one, 0.0 * one]
    coefficients[slot] = value
    return _affine(images, tf.stack(coefficients, axis=-1), fill, interpolation)


def shear(images, factor, axis, fill=IMAGENET_MEAN_FILL, interpolation="bilinear"):
    """timm's ``shear_x``/``shear_y``: PIL affine ``(1, factor, 0, 0, 1, 0)`` or its transpose.

    ``shear_x`` and ``shear_y`` are this function with ``axis`` set to ``"x"`` or ``"y"``.

    Args:
        images: ``(B, H, W, C)`` on ``[0, 255]``.
        factor: ``(B,)`` shear per image (timm: up to 0.3).
        axis: ``"x"`` (rows slide sideways) or ``"y"`` (columns slide up or down).
        fill: colour of the uncovered area.
        interpolation: ``"bilinear"`` or ``"nearest"``.

    Example:

    >>> img = tf.reshape(tf.range(4.0), [1, 2, 2, 1])
    >>> shear(img, [0.0], "x", fill=(0,)).numpy().ravel().tolist()
    [0.0, 1.0, 2.0, 3.0]
    >>> img = tf.reshape(tf.range(9.0), [1, 3, 3, 1])
    >>> shear_y(img, [1.0], fill=(9,), interpolation="nearest").numpy()[0, :, :, 0].tolist()
    [[3.0, 7.0, 9.0], [6.0, 9.0, 9.0], [9.0, 9.0, 9.0]]
    """
    return _identity_but(images, {"x": 1, "y": 3}[axis], _f(factor), fill, interpolation)


def translate(images, fraction, axis, fill=IMAGENET_MEAN_FILL, interpolation="bilinear"):
    """timm's ``translate_x_rel``/``translate_y_rel``: content moves by a fraction of the size.

    ``translate_x`` (left by ``fraction * width`` pixels) and ``translate_y`` (up by
    ``fraction * height``) are this function with ``axis`` set to ``"x"`` or ``"y"``.

    Args:
        images: ``(B, H, W, C)`` on ``[0, 255]``.
        fraction: ``(B,)`` per image (timm: up to 0.45, signed).
        axis: ``"x"`` or ``"y"``.
        fill: colour of the uncovered area.
        interpolation: ``"bilinear"`` or ``"nearest"``.

    Example:

    >>> img = tf.reshape(tf.range(4.0), [1, 1, 4, 1])
    >>> translate_x(img, [0.25], fill=(9,), interpolation="nearest").numpy().ravel().tolist()
    [1.0, 2.0, 3.0, 9.0]
    >>> img = tf.reshape(tf.range(4.0), [1, 4, 1, 1])
    >>> translate_y(img, [-0.25], fill=(9,), interpolation="nearest").numpy().ravel().tolist()
    [9.0, 0.0, 1.0, 2.0]
    """
    images = _f(images)
    size = _f(tf.shape(images)[2 if axis == "x" else 1])
    return _identity_but(images, {"x": 2, "y": 5}[axis], _f(fraction) * size, fill, interpolation)


shear_x = functools.partial(shear, axis="x")
shear_y = functools.partial(shear, axis="y")
translate_x = functools.partial(translate, axis="x")
translate_y = functools.partial(translate, axis="y")
