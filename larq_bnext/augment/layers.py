"""timm's 15 RandAugment ops as keras-cv preprocessing layers, one per op.

Each layer applies its op to every image of a batch at a magnitude on timm's ``[0, 10]``
scale drawn per image from ``N(magnitude, magnitude_std)`` clipped to ``[0, magnitude_max]``
(``magnitude_std=0``: fixed), with timm's random sign for the signed ops (rotation, shear,
translation, the enhancements' ``inc1`` variants): the computation is PIL's, as timm runs it
(:mod:`larq_bnext.augment.randaugment_ops`, the mappings of
:func:`larq_bnext.augment.randaugment.level_to_arg`). Randomness and ``value_range`` are
:class:`~larq_bnext.augment.base.SeededAugmentation`'s; every layer takes the arguments of
:class:`~larq_bnext.augment.timm_op.TimmOp`.

keras-cv has layers of the same names with other semantics, which is why these are not
keras-cv's classes: ``RandomBrightness`` adds instead of PIL's multiplication, ``Solarization``
adds to every value and then inverts (timm's SolarizeAdd adds only below 128 and does not
invert), ``RandomSharpness`` blends with a kernel but not PIL's rounding and border,
``AutoContrast`` does not truncate like PIL's lookup table, ``Equalization`` and
``Grayscale`` (Color's grey) round differently from PIL, ``Posterization`` and
``RandomRotation``/``RandomShear``/``RandomTranslation`` take one setting per batch or their
own ranges and fill modes instead of timm's per-image magnitude, sign and fill colour.

Example:

>>> import tensorflow as tf
>>> layer = Rotate(magnitude=10, magnitude_std=0, seed=1)
>>> layer(tf.zeros([2, 8, 8, 3])).shape
TensorShape([2, 8, 8, 3])
"""

from __future__ import annotations

import tensorflow as tf

from larq_bnext.augment.timm_op import TimmOp

__all__ = [
    "TimmOp",
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "OP_LAYERS",
]


_serializable = tf.keras.utils.register_keras_serializable("larq_bnext")


@_serializable
class AutoContrast(TimmOp):
    """PIL's ``ImageOps.autocontrast``: each channel stretched to ``[0, 255]`` (no magnitude)."""

    timm_name = "AutoContrast"


@_serializable
class Equalize(TimmOp):
    """PIL's ``ImageOps.equalize``: each channel's histogram equalised (no magnitude)."""

    timm_name = "Equalize"


@_serializable
class Invert(TimmOp):
    """PIL's ``ImageOps.invert``: ``255 - x`` (no magnitude)."""

    timm_name = "Invert"


@_serializable
class Rotate(TimmOp):
    """Rotation by ``magnitude * 3`` degrees either way about the centre, filled."""

    timm_name = "Rotate"


@_serializable
class Posterize(TimmOp):
    """Keep ``4 - floor(magnitude * 0.4)`` bits (``inc1``; without: ``floor(magnitude * 0.4)``)."""

    timm_name = "Posterize"
    has_increasing = True


@_serializable
class Solarize(TimmOp):
    """Invert the values at or above ``256 - floor(magnitude * 25.6)`` (``inc1``)."""

    timm_name = "Solarize"
    has_increasing = True


@_serializable
class SolarizeAdd(TimmOp):
    """Add ``floor(magnitude * 11)`` (capped at 255) to the values below 128."""

    timm_name = "SolarizeAdd"


@_serializable
class Color(TimmOp):
    """PIL's ``ImageEnhance.Color`` at ``1 +- magnitude * 0.09`` (``inc1``)."""

    timm_name = "Color"
    has_increasing = True


@_serializable
class Contrast(TimmOp):
    """PIL's ``ImageEnhance.Contrast`` at ``1 +- magnitude * 0.09`` (``inc1``)."""

    timm_name = "Contrast"
    has_increasing = True


@_serializable
class Brightness(TimmOp):
    """PIL's ``ImageEnhance.Brightness`` (a product) at ``1 +- magnitude * 0.09`` (``inc1``)."""

    timm_name = "Brightness"
    has_increasing = True


@_serializable
class Sharpness(TimmOp):
    """PIL's ``ImageEnhance.Sharpness`` at ``1 +- magnitude * 0.09`` (``inc1``)."""

    timm_name = "Sharpness"
    has_increasing = True


@_serializable
class ShearX(TimmOp):
    """Horizontal shear by ``magnitude * 0.03`` either way, filled."""

    timm_name = "ShearX"


@_serializable
class ShearY(TimmOp):
    """Vertical shear by ``magnitude * 0.03`` either way, filled."""

    timm_name = "ShearY"


@_serializable
class TranslateX(TimmOp):
    """Horizontal shift by ``magnitude / 10 * translate_pct`` of the width either way, filled."""

    timm_name = "TranslateXRel"


@_serializable
class TranslateY(TimmOp):
    """Vertical shift by ``magnitude / 10 * translate_pct`` of the height either way, filled."""

    timm_name = "TranslateYRel"


#: The layer of each of timm's op names (both variants of the ``inc1`` ops).
OP_LAYERS = {}
for _layer in (
    AutoContrast, Equalize, Invert, Rotate, Posterize, Solarize, SolarizeAdd, Color, Contrast,
    Brightness, Sharpness, ShearX, ShearY, TranslateX, TranslateY,
):  # fmt: skip
    OP_LAYERS[_layer.timm_name] = (_layer, False)
    if _layer.has_increasing:
        OP_LAYERS[_layer.timm_name + "Increasing"] = (_layer, True)
