"""The random resized crop of BNext's training augmentation (timm's), decoding only what it keeps.

:func:`random_resized_crop_box` samples the window exactly as timm's
``RandomResizedCropAndInterpolation``: up to 10 tries of a uniform area and a log-uniform aspect
ratio, else a central crop clamped to the ratio range. :func:`decode_and_random_crop` decodes
only the window of a JPEG (``tf.image.decode_and_crop_jpeg``), at 1/2, 1/4 or 1/8 scale when the
crop is that many times the output (libjpeg's DCT-domain scaling, ``jpeg_dct_scaling``;
:mod:`larq_bnext.images.decode`), other formats whole, and resizes it bicubically with
anti-aliasing, like PIL (:mod:`larq_bnext.images.resampling`); the
horizontal flip is folded into the resize (its column matrix reversed). The window and the flip
are functions of the element's seed (stateless random ops). The settings are an
:class:`~larq_bnext.augment.config.AugmentConfig`. :class:`RandomResizedCrop` is the keras-cv
layer of the crop and flip of decoded images.

keras-cv's ``RandomCropAndResize`` is not used: it cannot resize bicubically with
anti-aliasing (PIL's resize), samples the ratio uniformly rather than log-uniformly and clips
the box instead of retrying; keras-cv's ``RandomFlip`` would cost a pass over the images that
the flip folded into the resize does not.
"""

from __future__ import annotations

import math

import tensorflow as tf

from larq_bnext.augment.base import SeededAugmentation
from larq_bnext.augment.config import IMAGENET_CONFIG, AugmentConfig
from larq_bnext.images import decode
from larq_bnext.images.files import MAX_IMAGE_PIXELS
from larq_bnext.images.resampling import resize_window

__all__ = [
    "random_resized_crop_box",
    "decode_and_random_crop",
    "random_resized_crop",
    "RandomResizedCrop",
]
# fold_in tag of a crop's flip draw (the box takes the seed's split into four).
_FLIP_DRAW = 5


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


@tf.keras.utils.register_keras_serializable("larq_bnext")
class RandomResizedCrop(SeededAugmentation):
    """timm's random resized crop (and flip) of decoded images, as a keras-cv layer.

    Each image of a batch (dense, or a ``tf.RaggedTensor`` of images of different sizes) gets
    its own window and flip (:func:`random_resized_crop`) from its own seed, split from the
    call's. Outputs are ``(B, image_size, image_size, 3)`` on ``value_range``.

    Args:
        image_size: side of the square output.
        scale: range of the crop's area as a fraction of the image's.
        ratio: range of the crop's aspect ratio (width / height).
        interpolation: resize method (``"bicubic"``: PIL's, with anti-aliasing).
        flip: mirror each crop with probability 0.5 (folded into the resize).
        **kwargs: ``value_range``, ``seed`` and Keras layer arguments (see
            :class:`~larq_bnext.augment.base.SeededAugmentation`).

    Example:

    >>> layer = RandomResizedCrop(16)
    >>> layer(tf.zeros([2, 40, 30, 3]), seed=[0, 1]).shape
    TensorShape([2, 16, 16, 3])
    """

    def __init__(
        self,
        image_size: int = IMAGENET_CONFIG.image_size,
        scale=IMAGENET_CONFIG.crop_scale,
        ratio=IMAGENET_CONFIG.crop_ratio,
        interpolation: str = IMAGENET_CONFIG.interpolation,
        flip: bool = IMAGENET_CONFIG.flip,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.config = AugmentConfig(
            image_size=int(image_size),
            crop_scale=tuple(scale),
            crop_ratio=tuple(ratio),
            interpolation=interpolation,
            flip=bool(flip),
            randaugment=False,
        )
        self.force_output_dense_images = True

    def draw(self, batch_size, seed):
        """The batch's draws (:meth:`SeededAugmentation.draw`).

        Args:
            batch_size: images in the batch.
            seed: the call's shape ``[2]`` int64 seed.
        """
        return {"seed": tf.random.experimental.stateless_split(seed, batch_size)}

    def transform(self, images, transformation):
        """Apply the batch's draws (:meth:`SeededAugmentation.transform`).

        Args:
            images: ``(B, H, W, 3)`` whole values on ``[0, 255]``.
            transformation: what :meth:`draw` returned.
        """
        config = self.config
        size = config.image_size
        signature = tf.TensorSpec([size, size, 3], tf.float32)
        return tf.map_fn(
            lambda args: random_resized_crop(args[0], config, args[1]),
            (images, transformation["seed"]),
            fn_output_signature=signature,
        )

    def compute_ragged_image_signature(self, images):
        size = self.config.image_size
        return tf.RaggedTensorSpec([size, size, 3], tf.float32, ragged_rank=1)

    def get_config(self):
        config = self.config
        fields = {"image_size": config.image_size, "scale": config.crop_scale}
        fields.update(ratio=config.crop_ratio, interpolation=config.interpolation, flip=config.flip)
        return {**super().get_config(), **fields}
