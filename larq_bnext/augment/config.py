"""The settings of BNext's training augmentation (timm's recipe): :class:`AugmentConfig`.

Training, per image (in ``tf.data`` on the CPU, where images still have their own sizes):

1. **Random resized crop** (:mod:`~larq_bnext.augment.crop`; scale 0.08-1 of the area,
   aspect ratio 3/4-4/3, bicubic) sampled exactly as timm's
   ``RandomResizedCropAndInterpolation``: up to 10 tries of a uniform area and a log-uniform
   aspect ratio, else a central crop clamped to the ratio range. For JPEGs
   only the crop window is decoded (``tf.image.decode_and_crop_jpeg``), at 1/2, 1/4 or 1/8
   scale when the crop is that many times the output (libjpeg's DCT-domain scaling,
   ``jpeg_dct_scaling``). The resize is bicubic with anti-aliasing, like PIL's
   (:mod:`larq_bnext.images.resampling`: the arithmetic of ``tf.image.resize(...,
   antialias=True)`` as two sparse matrix products, about twice as fast). (keras-cv's
   ``RandomCropAndResize`` cannot resize bicubically and samples the ratio uniformly,
   clipping the box instead of retrying.)
2. **Horizontal flip** with probability 0.5, folded into the resize (its column matrix
   reversed), so it costs nothing.

Then per batch (in ``tf.data``, or on the accelerator as a model-side stage of the
:class:`~larq_bnext.Distiller`, by choice), keras-cv preprocessing layers
(:class:`~larq_bnext.augment.BNextAugmentation`):

3. **RandAugment**: timm's ``rand-m7-mstd0.5-inc1`` itself
   (:class:`~larq_bnext.augment.RandAugment`: 2 of timm's 15 ops per image with replacement,
   each with probability 0.5, magnitude ``N(7, 0.5)`` clipped to ``[0, 10]``, timm's argument
   mappings and random signs, fill of the ImageNet mean; PIL's computations, bilinear where the
   original resamples bicubically).
4. Normalisation with the ImageNet mean and std (on ``[0, 1]`` RGB).
5. Optional, off in BNext: **mixup** and **cutmix** (timm's batch mode; labels become
   one-hot) and **random erasing** (timm's per-pixel noise, applied with a probability), from
   :mod:`larq_bnext.augment.mix`.

Every random draw of the training augmentation is a function of a seed (stateless random
ops): the crop and flip of the element's seed, the batch stage of the batch's seed.

This module holds the settings (:class:`AugmentConfig`); steps 1-2 are
:mod:`larq_bnext.augment.crop`, steps 3-5 :class:`~larq_bnext.augment.BNextAugmentation`.

Evaluation is :mod:`larq_bnext.preprocessing`'s (:func:`~larq_bnext.preprocessing.eval_transform`,
:func:`~larq_bnext.preprocessing.decode_and_center_crop`); decoding and the JPEG window at DCT
scale are :mod:`larq_bnext.images.decode`'s, the resize :mod:`larq_bnext.images.resampling`'s.
"""

from __future__ import annotations

import dataclasses

from larq_bnext.augment import randaugment as timm_randaugment
from larq_bnext.registry import IMAGENET_PREPROCESSING

__all__ = ["AugmentConfig", "IMAGENET_CONFIG"]


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """The training augmentation's settings (the defaults are BNext's ImageNet recipe).

    Args:
        image_size: side of the square training crop.
        crop_scale: range of the crop's area as a fraction of the image's.
        crop_ratio: range of the crop's aspect ratio (width / height).
        interpolation: resize method of the crop (``"bicubic"`` in BNext).
        jpeg_dct_scaling: decode large JPEG crops at 1/2, 1/4 or 1/8 scale (libjpeg's
            DCT-domain scaling) when the crop keeps at least ``image_size`` pixels on both
            sides; ``False`` decodes at full size, as PIL does for the original.
        flip: random horizontal flips (of the crop, folded into its resize).
        randaugment: apply RandAugment.
        randaugment_policy: a timm RandAugment string (BNext's ``"rand-m7-mstd0.5-inc1"``,
            see :func:`larq_bnext.augment.randaugment.parse_policy`).
        randaugment_fill: fill colour of the geometric ops (the original: the ImageNet mean).
        randaugment_interpolation: resampling of the geometric ops, ``"bilinear"`` or
            ``"nearest"`` (the original's bicubic is not available in TensorFlow).
        mixup_alpha: Beta parameter of mixup; 0 disables it.
        cutmix_alpha: Beta parameter of cutmix; 0 disables it.
        random_erasing: probability of erasing a random rectangle; 0 disables it.
    """

    image_size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = IMAGENET_PREPROCESSING.interpolation
    jpeg_dct_scaling: bool = True
    flip: bool = True
    randaugment: bool = True
    randaugment_policy: str = "rand-m7-mstd0.5-inc1"
    randaugment_fill: tuple[int, int, int] = timm_randaugment.IMAGENET_MEAN_FILL
    randaugment_interpolation: str = "bilinear"
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    random_erasing: float = 0.0

    def __post_init__(self):
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}.")
        lo, hi = self.crop_ratio
        if not 0 < lo <= hi:
            raise ValueError(f"crop_ratio must satisfy 0 < min <= max, got {self.crop_ratio}.")
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}.")
        for name in ("mixup_alpha", "cutmix_alpha"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if not 0 <= self.random_erasing <= 1:
            raise ValueError(f"random_erasing must be in [0, 1], got {self.random_erasing}.")
        _ = self.timm_policy  # raises on a bad policy string, fill or interpolation

    @property
    def timm_policy(self) -> timm_randaugment.RandAugmentPolicy:
        """The timm RandAugment policy of ``randaugment_policy`` and its fill and resampling."""
        if len(self.randaugment_fill) != 3:
            raise ValueError(f"randaugment_fill is an RGB colour, got {self.randaugment_fill}.")
        return timm_randaugment.parse_policy(
            self.randaugment_policy,
            fill=tuple(self.randaugment_fill),
            interpolation=self.randaugment_interpolation,
        )

    @property
    def mixes_labels(self) -> bool:
        """Whether mixup or cutmix is on (labels become one-hot vectors)."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0


#: BNext's ImageNet recipe.
IMAGENET_CONFIG = AugmentConfig()
