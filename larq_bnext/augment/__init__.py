"""BNext's training augmentation (timm's recipe) as keras-cv preprocessing layers.

* :func:`bnext_augmentation`: the recipe's whole training stage as one layer
  (:class:`BNextAugmentation`): random resized crop and flip, RandAugment
  ``rand-m7-mstd0.5-inc1``, normalisation, optional mixup/CutMix and random erasing.
* One layer per concern, each a keras-cv ``VectorizedBaseImageAugmentationLayer`` seeded by
  stateless random ops (:class:`~larq_bnext.augment.base.SeededAugmentation`):
  :class:`RandomResizedCrop`, :class:`RandAugment`, timm's 15 ops
  (:mod:`~larq_bnext.augment.layers`), :class:`MixUpCutMix`, :class:`RandomErasing`.
* The functions under them: :mod:`~larq_bnext.augment.crop`,
  :mod:`~larq_bnext.augment.randaugment`, :mod:`~larq_bnext.augment.randaugment_ops`,
  :mod:`~larq_bnext.augment.mix`; the settings :class:`AugmentConfig`
  (:mod:`~larq_bnext.augment.config`).

Every layer takes ``seed=`` per call (a shape ``[2]`` integer tensor: the output is a function
of it) and ``seed=`` at construction (the generator used when a call has none).
"""

from larq_bnext.augment.base import SeededAugmentation
from larq_bnext.augment.config import IMAGENET_CONFIG, AugmentConfig
from larq_bnext.augment.crop import RandomResizedCrop
from larq_bnext.augment.layers import (
    AutoContrast,
    Brightness,
    Color,
    Contrast,
    Equalize,
    Invert,
    Posterize,
    Rotate,
    Sharpness,
    ShearX,
    ShearY,
    Solarize,
    SolarizeAdd,
    TimmOp,
    TranslateX,
    TranslateY,
)
from larq_bnext.augment.mix import MixUpCutMix, RandomErasing
from larq_bnext.augment.randaugment_layer import RandAugment
from larq_bnext.augment.stage import BNextAugmentation, bnext_augmentation

__all__ = [
    "AugmentConfig",
    "IMAGENET_CONFIG",
    "bnext_augmentation",
    "BNextAugmentation",
    "SeededAugmentation",
    "RandomResizedCrop",
    "RandAugment",
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
    "MixUpCutMix",
    "RandomErasing",
]
