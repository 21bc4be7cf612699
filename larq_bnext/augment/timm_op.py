"""The base of timm's RandAugment op layers: :class:`TimmOp`, an op with its magnitude draws.

A subclass names one of timm's ops (``timm_name``); the layer draws a magnitude per image from
``N(magnitude, magnitude_std)`` clipped to ``[0, magnitude_max]`` and timm's random sign, and
runs the op (:func:`larq_bnext.augment.randaugment.apply_op`, PIL's computation). The 15 ops
are :mod:`larq_bnext.augment.layers`.
"""

from __future__ import annotations

import math

import tensorflow as tf

from larq_bnext.augment import randaugment as policy_lib
from larq_bnext.augment.base import SeededAugmentation, split_seed
from larq_bnext.augment.randaugment_ops import IMAGENET_MEAN_FILL

__all__ = ["TimmOp"]


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
        **kwargs: ``value_range``, ``seed`` and Keras layer arguments (see
            :class:`~larq_bnext.augment.base.SeededAugmentation`).
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
        """The batch's draws (:meth:`SeededAugmentation.draw`).

        Args:
            batch_size: images in the batch.
            seed: the call's shape ``[2]`` int64 seed.
        """
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
        """Apply the batch's draws (:meth:`SeededAugmentation.transform`).

        Args:
            images: ``(B, H, W, 3)`` whole values on ``[0, 255]``.
            transformation: what :meth:`draw` returned.
        """
        return self.apply(images, transformation["magnitude"], transformation["sign"])

    def apply(self, images, magnitude, sign):
        """The op at given per-image magnitudes and signs (no randomness).

        Args:
            images: ``(B, H, W, 3)`` whole values on ``[0, 255]``.
            magnitude: ``(B,)`` magnitudes on ``[0, 10]``.
            sign: ``(B,)`` +1 or -1 (the signed ops' direction).
        """
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
