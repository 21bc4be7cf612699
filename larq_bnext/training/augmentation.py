"""BNext's training augmentation (timm's recipe) with keras-cv, and the evaluation transform.

Training, per image (in ``tf.data`` on the CPU, where images still have their own sizes):

1. **Random resized crop** (scale 0.08-1 of the area, aspect ratio 3/4-4/3, bicubic) sampled
   exactly as timm's ``RandomResizedCropAndInterpolation``: up to 10 tries of a uniform area
   and a log-uniform aspect ratio, else a central crop clamped to the ratio range. For JPEGs
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
:class:`~larq_bnext.Distiller`, by choice):

3. **RandAugment**: timm's ``rand-m7-mstd0.5-inc1`` itself (:mod:`larq_bnext.training.randaugment`:
   2 of timm's 15 ops per image with replacement, each with probability 0.5, magnitude
   ``N(7, 0.5)`` clipped to ``[0, 10]``, timm's argument mappings and random signs, fill of the
   ImageNet mean; PIL's computations, bilinear where the original resamples bicubically).
   ``randaugment_policy="keras-cv"`` picks keras-cv's 10-op ``RandAugment`` instead.
4. Normalisation with the ImageNet mean and std (on ``[0, 1]`` RGB).
5. Optional, off in BNext: **mixup** and **cutmix** (timm's batch mode; labels become
   one-hot) and **random erasing** (timm's per-pixel noise, applied with a probability), from
   :mod:`larq_bnext.training.stateless_mix`.

Every random draw of the training augmentation except keras-cv's RandAugment is a function of
a seed (stateless random ops): the crop and flip of the element's seed, the batch stage of the
batch's seed (see :class:`BatchAugmenter`).

Evaluation is :mod:`larq_bnext.preprocessing`'s (:func:`~larq_bnext.preprocessing.eval_transform`,
:func:`~larq_bnext.preprocessing.decode_and_center_crop`); decoding and the JPEG window at DCT
scale are :mod:`larq_bnext.images.decode`'s, the resize :mod:`larq_bnext.images.resampling`'s.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from larq_bnext.images import decode
from larq_bnext.images.files import MAX_IMAGE_PIXELS
from larq_bnext.images.resampling import resize_window
from larq_bnext.preprocessing import preprocess_input
from larq_bnext.training import randaugment as timm_randaugment

# fold_in tag of a crop's flip draw (the box takes the seed's split into four).
_FLIP_DRAW = 5

__all__ = [
    "AugmentConfig",
    "BatchAugmenter",
    "random_resized_crop_box",
    "decode_and_random_crop",
    "random_resized_crop",
    "IMAGENET_CONFIG",
]


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
            see :func:`larq_bnext.training.randaugment.parse_policy`), or ``"keras-cv"`` for
            keras-cv's ``RandAugment`` with the four settings below.
        randaugment_fill: fill colour of the geometric ops (the original: the ImageNet mean).
        randaugment_interpolation: resampling of the geometric ops, ``"bilinear"`` or
            ``"nearest"`` (the original's bicubic is not available in TensorFlow).
        randaugment_ops: ops per image (keras-cv policy only).
        randaugment_rate: probability that each op is applied (keras-cv policy only).
        randaugment_magnitude: mean magnitude on keras-cv's ``[0, 1]`` scale (keras-cv only).
        randaugment_magnitude_stddev: magnitude noise (keras-cv policy only).
        mixup_alpha: Beta parameter of mixup; 0 disables it.
        cutmix_alpha: Beta parameter of cutmix; 0 disables it.
        random_erasing: probability of erasing a random rectangle; 0 disables it.
    """

    image_size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = "bicubic"
    jpeg_dct_scaling: bool = True
    flip: bool = True
    randaugment: bool = True
    randaugment_policy: str = "rand-m7-mstd0.5-inc1"
    randaugment_fill: tuple[int, int, int] = timm_randaugment.IMAGENET_MEAN_FILL
    randaugment_interpolation: str = "bilinear"
    randaugment_ops: int = 2
    randaugment_rate: float = 0.5
    randaugment_magnitude: float = 0.7
    randaugment_magnitude_stddev: float = 0.05
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
        if self.randaugment_policy != "keras-cv":
            _ = self.timm_policy  # raises on a bad policy string, fill or interpolation

    @property
    def timm_policy(self) -> timm_randaugment.RandAugmentPolicy | None:
        """The timm RandAugment policy (``None`` for ``randaugment_policy="keras-cv"``)."""
        if self.randaugment_policy == "keras-cv":
            return None
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


def random_resized_crop_box(
    height: tf.Tensor,
    width: tf.Tensor,
    scale=(0.08, 1.0),
    ratio=(3 / 4, 4 / 3),
    attempts: int = 10,
    seed: tf.Tensor | None = None,
) -> tf.Tensor:
    """Sample a random-resized-crop window as timm does: ``[top, left, crop_h, crop_w]``.

    Up to ``attempts`` candidates with area uniform in ``scale x area`` and aspect ratio
    log-uniform in ``ratio``; the first that fits in the image wins, at a uniform position.
    If none fits, a central crop of the whole image clamped to the ratio range.

    Args:
        height: image height (scalar int tensor).
        width: image width (scalar int tensor).
        scale: range of the crop area as a fraction of the image area.
        ratio: range of the aspect ratio (width / height).
        attempts: number of tries before the fallback.
        seed: a shape ``[2]`` integer seed: the window is then a function of it (stateless
            random ops, reproducible across runs and restarts); ``None`` draws from
            TensorFlow's global generator.

    Returns:
        An int32 tensor ``[top, left, crop_height, crop_width]``.
    """
    uniform = _uniform_sampler(seed)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    area = h * w
    target_area = area * uniform(0, [attempts], scale[0], scale[1])
    log_ratio = uniform(1, [attempts], math.log(ratio[0]), math.log(ratio[1]))
    aspect = tf.exp(log_ratio)
    crop_w = tf.cast(tf.round(tf.sqrt(target_area * aspect)), tf.int32)
    crop_h = tf.cast(tf.round(tf.sqrt(target_area / aspect)), tf.int32)
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    fits = (crop_w > 0) & (crop_h > 0) & (crop_w <= width) & (crop_h <= height)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)

    def sampled():
        ch, cw = crop_h[first], crop_w[first]
        top = uniform(2, [], 0, height - ch + 1, dtype=tf.int32)
        left = uniform(3, [], 0, width - cw + 1, dtype=tf.int32)
        return tf.stack([top, left, ch, cw])

    def fallback():
        in_ratio = w / h
        cw = tf.where(
            in_ratio < ratio[0],
            w,
            tf.where(in_ratio > ratio[1], tf.round(h * ratio[1]), w),
        )
        ch = tf.where(
            in_ratio < ratio[0],
            tf.round(w / ratio[0]),
            tf.where(in_ratio > ratio[1], h, h),
        )
        ch = tf.cast(ch, tf.int32)
        cw = tf.cast(cw, tf.int32)
        return tf.stack([(height - ch) // 2, (width - cw) // 2, ch, cw])

    return tf.cond(tf.reduce_any(fits), sampled, fallback)


def _uniform_sampler(seed):
    """``uniform(k, shape, lo, hi, dtype)``: the k-th independent draw of a seed, or stateful."""
    if seed is None:
        return lambda k, shape, lo, hi, dtype=tf.float32: tf.random.uniform(shape, lo, hi, dtype)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)

    def uniform(k, shape, lo, hi, dtype=tf.float32):
        return tf.random.stateless_uniform(shape, seeds[k], lo, hi, dtype)

    return uniform


def _resize(image: tf.Tensor, config: AugmentConfig, window=None, flip=False) -> tf.Tensor:
    """Resample (a window of) a crop to ``config.image_size``; whole values on ``[0, 255]``."""
    size = config.image_size
    if config.interpolation == "bicubic":
        out = resize_window(image, size, window=window, flip=flip)
    else:  # another tf.image.resize method, on the (integer) crop
        out = tf.image.resize(
            tf.cast(image, tf.float32), [size, size], method=config.interpolation, antialias=True
        )
        out = tf.where(flip, tf.reverse(out, [1]), out)
    # Whole values, like the uint8 image PIL's resize gives timm.
    return tf.round(tf.clip_by_value(out, 0.0, 255.0))


def _flip_draw(config: AugmentConfig, seed):
    """Whether the crop is mirrored: probability 0.5 when ``config.flip`` (else ``False``)."""
    if not config.flip:
        return tf.constant(False)
    if seed is None:
        return tf.random.uniform([]) < 0.5
    flip_seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), _FLIP_DRAW)
    return tf.random.stateless_uniform([], flip_seed) < 0.5


def random_resized_crop(
    image: tf.Tensor, config: AugmentConfig = IMAGENET_CONFIG, seed: tf.Tensor | None = None
) -> tf.Tensor:
    """Random resized crop (and flip) of a decoded ``(H, W, 3)`` image.

    Args:
        image: a decoded image (uint8 or float on ``[0, 255]``).
        config: the crop's settings (``config.flip``: mirrored with probability 0.5).
        seed: optional shape ``[2]`` seed of the window and the flip (see
            :func:`random_resized_crop_box`).

    Returns:
        A ``(size, size, 3)`` float32 image of whole values on ``[0, 255]``.
    """
    return _resize(_random_crop(image, config, seed), config, flip=_flip_draw(config, seed))


def _random_crop(image: tf.Tensor, config: AugmentConfig, seed) -> tf.Tensor:
    """The random resized crop's window of a decoded image, not yet resized."""
    shape = tf.shape(image)
    top, left, ch, cw = tf.unstack(
        random_resized_crop_box(shape[0], shape[1], config.crop_scale, config.crop_ratio, seed=seed)
    )
    return image[top : top + ch, left : left + cw]


def decode_and_random_crop(
    encoded: tf.Tensor,
    config: AugmentConfig = IMAGENET_CONFIG,
    seed: tf.Tensor | None = None,
    max_image_pixels=MAX_IMAGE_PIXELS,
):
    """Decode an image file's bytes straight into a random resized crop.

    JPEGs decode only the crop window, and, when ``config.jpeg_dct_scaling`` is on and the
    crop is at least twice the output on both sides, at 1/2, 1/4 or 1/8 scale (libjpeg scales
    in the DCT domain: the coarsest scale that keeps the crop at least ``image_size`` pixels;
    :func:`larq_bnext.images.decode.decode_jpeg_window`); the box is then resampled with its
    fractional corners. Other formats decode fully (:func:`larq_bnext.images.decode.decode_rgb`:
    PNG and BMP by TensorFlow, GIF, TIFF, WebP and the rest by PIL), then crop. An image whose
    header gives more than ``max_image_pixels`` pixels is refused before decoding (an op
    error: the pipeline skips the file). The flip (``config.flip``) is part of the resize.

    Args:
        encoded: a scalar string tensor holding the file's bytes.
        config: the crop's settings.
        seed: optional shape ``[2]`` seed of the window and the flip (see
            :func:`random_resized_crop_box`).
        max_image_pixels: the pixel limit (``None`` or 0: none); PIL's default.

    Returns:
        A ``(size, size, 3)`` float32 image of whole values on ``[0, 255]``.
    """
    flip = _flip_draw(config, seed)

    def jpeg():
        shape = tf.image.extract_jpeg_shape(encoded)
        with tf.control_dependencies([decode.check_limit(shape[:2], max_image_pixels)]):
            box = random_resized_crop_box(
                shape[0], shape[1], config.crop_scale, config.crop_ratio, seed=seed
            )
        if not (config.jpeg_dct_scaling and config.interpolation == "bicubic"):
            crop = tf.image.decode_and_crop_jpeg(
                encoded, box, channels=3, dct_method=decode.DCT_METHOD
            )
            return _resize(crop, config, flip=flip)
        index = decode.jpeg_scale_index(box[2], box[3], config.image_size)
        crop, box_in_crop = decode.decode_jpeg_window(encoded, shape[:2], box, index)
        return _resize(crop, config, window=box_in_crop, flip=flip)

    def other():
        image = decode.decode_rgb(encoded, max_image_pixels)
        return _resize(_random_crop(image, config, seed), config, flip=flip)

    crop = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
    crop.set_shape([config.image_size, config.image_size, 3])
    return crop


class BatchAugmenter:
    """The batch stage of the training augmentation: RandAugment, normalise, mix, erase.

    Call it on ``(images, labels, seed)`` with images on ``[0, 255]`` (float,
    ``(B, S, S, 3)``), integer labels and a shape ``[2]`` integer seed; it returns normalised
    images and labels (one-hot when mixup or cutmix is on). It runs inside ``tf.data`` (the
    pipeline of :func:`larq_bnext.training.data.train_dataset` passes a seed that is a
    function of the run's seed, the epoch and the step) or inside the Distiller's train step
    on the accelerator (``Distiller(..., augmenter=augmenter)``, seeded by the optimizer step).

    The horizontal flip is not here but in the crop (:func:`decode_and_random_crop`, where it
    costs nothing: it reverses the resize's column matrix); ``flip=True`` adds one here for
    crops made otherwise. It comes before RandAugment either way, as in timm.

    The flip, timm's RandAugment (:mod:`larq_bnext.training.randaugment`), mixup/cutmix
    (:mod:`larq_bnext.training.stateless_mix`, timm's batch mode) and random erasing are
    functions of the seed (stateless random ops): the same seed gives the same batch, so a
    resumed run repeats an uninterrupted one exactly. Only keras-cv's ``RandAugment``
    (``randaugment_policy="keras-cv"``, not BNext's) draws from its own generator and is not
    reproducible across a restart. Without a seed (``seed=None``) one is drawn from
    TensorFlow's global generator.

    Args:
        config: the augmentation settings.
        num_classes: number of classes (needed for one-hot labels with mixup/cutmix).
        seed: optional seed of keras-cv's RandAugment layer (``randaugment_policy="keras-cv"``).
        flip: flip each image left-right with probability 0.5 (off: the pipeline's crops are
            flipped already when ``config.flip``).

    Example:

    >>> augmenter = BatchAugmenter(AugmentConfig(image_size=8), num_classes=10)
    >>> images, labels = tf.fill([2, 8, 8, 3], 128.0), tf.constant([1, 2])
    >>> out, _ = augmenter(images, labels, seed=tf.constant([3, 7]))
    >>> bool(tf.reduce_all(out == augmenter(images, labels, seed=tf.constant([3, 7]))[0]))
    True
    """

    def __init__(
        self,
        config: AugmentConfig,
        num_classes: int,
        seed: int | None = None,
        flip: bool = False,
    ):
        self.config = config
        self.num_classes = int(num_classes)
        self.flip = bool(flip)
        self.policy = config.timm_policy if config.randaugment else None
        self.randaugment = None
        if config.randaugment and self.policy is None:
            import keras_cv

            self.randaugment = keras_cv.layers.RandAugment(
                value_range=(0, 255),
                augmentations_per_image=config.randaugment_ops,
                magnitude=config.randaugment_magnitude,
                magnitude_stddev=config.randaugment_magnitude_stddev,
                rate=config.randaugment_rate,
                seed=seed,
            )

    def __call__(self, images, labels, seed=None):
        """Augment a batch; returns ``(normalised images, labels)``.

        Args:
            images: ``(B, S, S, 3)`` images on ``[0, 255]``.
            labels: ``(B,)`` integer labels.
            seed: shape ``[2]`` integer seed of this batch's randomness.
        """
        from larq_bnext.training import stateless_mix

        if seed is None:
            seed = tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int64)
        flip_seed, ra_seed, mix_seed, erase_seed = tf.unstack(
            tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
        )
        config = self.config
        images = tf.cast(images, tf.float32)
        if self.flip:
            images = tf.image.stateless_random_flip_left_right(images, flip_seed)
        if self.policy is not None:
            images = timm_randaugment.rand_augment(images, ra_seed, self.policy)
        if self.randaugment is not None:
            if isinstance(self.randaugment, tf.keras.layers.Layer):
                images = self.randaugment(images, training=True)
            else:
                images = self.randaugment(images, ra_seed)
        images = preprocess_input(images)
        if config.mixes_labels:
            labels = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), self.num_classes)
            choice_seed, mix_seed = tf.unstack(tf.random.experimental.stateless_split(mix_seed))
            mix = lambda: stateless_mix.mixup(images, labels, config.mixup_alpha, mix_seed)  # noqa: E731
            cut = lambda: stateless_mix.cutmix(images, labels, config.cutmix_alpha, mix_seed)  # noqa: E731
            if config.mixup_alpha and config.cutmix_alpha:
                # One of the two per batch, like timm's switch (probability 0.5).
                use_cutmix = tf.random.stateless_uniform([], choice_seed) < 0.5
                images, labels = tf.cond(use_cutmix, cut, mix)
            elif config.cutmix_alpha:
                images, labels = cut()
            else:
                images, labels = mix()
        if config.random_erasing:
            images = stateless_mix.random_erasing(images, config.random_erasing, erase_seed)
        return images, labels
