"""The projective (affine) transform: TensorFlow Addons where installed, else TensorFlow's op.

``tfa.image.transform`` is a wrapper of ``tf.raw_ops.ImageProjectiveTransformV3``. TensorFlow
Addons has no wheels for Python 3.12, and where Keras 3 is installed (TensorFlow 2.16 and later)
it fails on import (``No module named 'keras.src.engine'``), so there the op is called directly:
the same pixels (``tests/training/test_randaugment.py`` compares the two paths op by op).
"""

from __future__ import annotations

import importlib.util

import tensorflow as tf

from larq_bnext.keras2 import keras3_installed

__all__ = ["projective_transform"]


def projective_transform(images, transforms, interpolation: str = "bilinear", addons=None):
    """Sample ``images`` at the transformed positions, filling with 0 outside the image.

    Output pixel ``(x, y)`` takes input position ``((a x + b y + c) / k, (d x + e y + f) / k)``
    with ``k = g x + h y + 1``, in pixel indices, for ``transforms = [a, b, c, d, e, f, g, h]``.

    Args:
        images: ``(B, H, W, C)`` float32.
        transforms: ``(B, 8)`` (or ``(1, 8)`` for all) float32.
        interpolation: ``"bilinear"`` or ``"nearest"``.
        addons: True for ``tfa.image.transform``, False for the TensorFlow op; None (default):
            TensorFlow Addons when it is installed and Keras 3 is not (TensorFlow 2.15).

    Example:

    >>> shift = tf.constant([[1.0, 0, 1, 0, 1, 0, 0, 0]])  # x + 1: one column to the left
    >>> projective_transform(tf.reshape(tf.range(3.0), [1, 1, 3, 1]), shift)[0, 0, :, 0].numpy()
    array([1., 2., 0.], dtype=float32)
    """
    if addons is None:
        installed = importlib.util.find_spec("tensorflow_addons") is not None
        addons = installed and not keras3_installed()
    images = tf.convert_to_tensor(images, tf.float32)
    transforms = tf.convert_to_tensor(transforms, tf.float32)
    if addons:
        from larq_bnext.startup import quiet_addons_import

        with quiet_addons_import():
            import tensorflow_addons as tfa

        return tfa.image.transform(
            images, transforms, interpolation=interpolation, fill_mode="constant"
        )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=tf.constant(0.0, tf.float32),
        interpolation=interpolation.upper(),
        fill_mode="CONSTANT",
    )
