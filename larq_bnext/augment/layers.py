"""timm's 15 RandAugment ops as keras-cv preprocessing layers, one per op.

Each layer applies its op to every image of a batch at a magnitude on timm's ``[0, 10]``
scale drawn per image from ``N(magnitude, magnitude_std)`` clipped to ``[0, magnitude_max]``
(``magnitude_std=0``: fixed), with timm's random sign for the signed ops (rotation, shear,
translation, the enhancements' ``inc1`` variants): the computation is PIL's, as timm runs it
(:mod:`larq_bnext.augment.randaugment_ops`, the mappings of
:func:`larq_bnext.augment.randaugment.level_to_arg`). Randomness and ``value_range`` are
:class:`~larq_bnext.augment.base.SeededAugmentation`'s.

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

import math

import tensorflow as tf

from larq_bnext.augment import randaugment as policy_lib
from larq_bnext.augment.base import SeededAugmentation, split_seed
from larq_bnext.augment.randaugment_ops import IMAGENET_MEAN_FILL

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


class TimmOp(SeededAugmentation):
    """One of timm's RandAugment ops, with its magnitude distribution.

    Args:
        magnitude: mean magnitude on timm's ``[0, 10]`` scale.
        magnitude_std: per-image magnitude noise (``inf``: uniform on ``[0, magnitude]``).
        magnitude_max: magnitudes are clipped to ``[0, magnitude_max]``.
        increasing: timm's ``inc1`` variant where there is one (Posterize, Solarize, Color,
            Contrast, Brightness, Sharpness: stronger with the magnitude; BNext's).
        fill: fill colour of the geometric ops, on ``[0, 255]`` (the ImageNet mean).
        interpolation: resampling of the geometric ops, ``"bilinear"`` or ``"nearest"``.
        translate_pct: the translations' shift at magnitude 10, as a fraction of the side.
        value_range, seed, **kwargs: see :class:`~larq_bnext.augment.base.SeededAugmentation`.
    """

    #: timm's op name (``"Posterize"``; the ``inc1`` variant adds ``"Increasing"``).
    timm_name = ""
    #: whether timm has an ``inc1`` variant of the op.
    has_increasing = False

    def __init__(
        self,
        magnitude: float = 7.0,
        magnitude_std: float = 0.5,
        magnitude_max: float = 10.0,
        increasing: bool = True,
        fill=IMAGENET_MEAN_FILL,
        interpolation: str = "bilinear",
        translate_pct: float = 0.45,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.magnitude = float(magnitude)
        self.magnitude_std = float(magnitude_std)
        self.magnitude_max = float(magnitude_max)
        self.increasing = bool(increasing)
        self.fill = tuple(int(v) for v in fill)
        self.interpolation = interpolation
        self.translate_pct = float(translate_pct)
        self.policy = policy_lib.RandAugmentPolicy(
            ops=(self.op_name,),
            magnitude=self.magnitude,
            magnitude_std=self.magnitude_std,
            magnitude_max=self.magnitude_max,
            fill=self.fill,
            interpolation=interpolation,
            translate_pct=self.translate_pct,
        )

    @property
    def op_name(self) -> str:
        """timm's name of the op this layer runs (e.g. ``"PosterizeIncreasing"``)."""
        suffix = "Increasing" if self.has_increasing and self.increasing else ""
        return self.timm_name + suffix

    def draw(self, batch_size, seed):
        magnitude_seed, sign_seed = split_seed(seed, 2)
        shape = tf.reshape(batch_size, [1])
        if math.isinf(self.magnitude_std):
            magnitude = tf.random.stateless_uniform(
                shape, magnitude_seed, 0, self.magnitude, tf.float64
            )
        else:
            noise = tf.random.stateless_normal(shape, magnitude_seed, dtype=tf.float64)
            magnitude = self.magnitude + self.magnitude_std * noise
        magnitude = tf.clip_by_value(magnitude, 0.0, self.magnitude_max)
        negate = tf.random.stateless_uniform(shape, sign_seed, dtype=tf.float64) > 0.5
        return {"magnitude": magnitude, "sign": tf.where(negate, -1.0, 1.0)}

    def transform(self, images, transformation):
        return self.apply(images, transformation["magnitude"], transformation["sign"])

    def apply(self, images, magnitude, sign):
        """The op at given per-image magnitudes and signs (no randomness)."""
        return policy_lib.apply_op(self.op_name, images, magnitude, sign, self.policy)

    def get_config(self):
        return {
            **super().get_config(),
            "magnitude": self.magnitude,
            "magnitude_std": self.magnitude_std,
            "magnitude_max": self.magnitude_max,
            "increasing": self.increasing,
            "fill": self.fill,
            "interpolation": self.interpolation,
            "translate_pct": self.translate_pct,
        }


_serializable = tf.keras.utils.register_keras_serializable("larq_bnext")


@_serializable
class AutoContrast(TimmOp):
    """PIL's ``ImageOps.autocontrast``: each channel stretched to ``[0, 255]`` (no magnitude).

    Arguments: :class:`TimmOp`'s.
    """

    timm_name = "AutoContrast"


@_serializable
class Equalize(TimmOp):
    """PIL's ``ImageOps.equalize``: each channel's histogram equalised (no magnitude).

    Arguments: :class:`TimmOp`'s.
    """

    timm_name = "Equalize"


@_serializable
class Invert(TimmOp):
    """PIL's ``ImageOps.invert``: ``255 - x`` (no magnitude).

    Arguments: :class:`TimmOp`'s.
    """

    timm_name = "Invert"


@_serializable
class Rotate(TimmOp):
    """Rotation by ``magnitude * 3`` degrees either way about the centre, filled.

    Arguments: :class:`TimmOp`'s.
    """

    timm_name = "Rotate"


@_serializable
class Posterize(TimmOp):
    """Keep ``4 - floor(magnitude * 0.4)`` bits (``inc1``; without: ``floor(magnitude * 0.4)``).

    Arguments: :class:`TimmOp`'s.
    """

    timm_name = "Posterize"
    has_increasing = True


@_serializable
class Solarize(TimmOp):
    """Invert the values at or above ``256 - floor(magnitude * 25.6)`` (``inc1``).

    Arguments: :class:`TimmOp`'s.
    """

    timm_name = "Solarize"
    has_increasing = True


@_serializable
class SolarizeAdd(TimmOp):
    """Add ``floor(magnitude * 11)`` (capped at 255) to the values below 128.

    Arguments: :class:`TimmOp`'s.
    """

    timm_name = "SolarizeAdd"


@_serializable
class Color(TimmOp):
    """PIL's ``ImageEnhance.Color`` at ``1 +- magnitude * 0.09`` (``inc1``).

    Arguments: :class:`TimmOp`'s.
    """

    timm_name = "Color"
    has_increasing = True


@_serializable
class Contrast(TimmOp):
    """PIL's ``ImageEnhance.Contrast`` at ``1 +- magnitude * 0.09`` (``inc1``).

    Arguments: :class:`TimmOp`'s.
    """

    timm_name = "Contrast"
    has_increasing = True


@_serializable
class Brightness(TimmOp):
    """PIL's ``ImageEnhance.Brightness`` (a product) at ``1 +- magnitude * 0.09`` (``inc1``).

    Arguments: :class:`TimmOp`'s.
    """

    timm_name = "Brightness"
    has_increasing = True


@_serializable
class Sharpness(TimmOp):
    """PIL's ``ImageEnhance.Sharpness`` at ``1 +- magnitude * 0.09`` (``inc1``).

    Arguments: :class:`TimmOp`'s.
    """

    timm_name = "Sharpness"
    has_increasing = True


@_serializable
class ShearX(TimmOp):
    """Horizontal shear by ``magnitude * 0.03`` either way, filled.

    Arguments: :class:`TimmOp`'s.
    """

    timm_name = "ShearX"


@_serializable
class ShearY(TimmOp):
    """Vertical shear by ``magnitude * 0.03`` either way, filled.

    Arguments: :class:`TimmOp`'s.
    """

    timm_name = "ShearY"


@_serializable
class TranslateX(TimmOp):
    """Horizontal shift by ``magnitude / 10 * translate_pct`` of the width either way, filled.

    Arguments: :class:`TimmOp`'s.
    """

    timm_name = "TranslateXRel"


@_serializable
class TranslateY(TimmOp):
    """Vertical shift by ``magnitude / 10 * translate_pct`` of the height either way, filled.

    Arguments: :class:`TimmOp`'s.
    """

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
