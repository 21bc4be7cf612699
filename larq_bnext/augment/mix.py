"""Mixup, CutMix and random erasing as functions of a seed, and their keras-cv layers.

The batch stage (:class:`larq_bnext.augment.BNextAugmentation`) is called with a per-batch
seed (a function of the run's seed, the epoch and the step), so that a run resumed after a
kill sees exactly the augmentation an uninterrupted run would have seen. keras-cv's ``MixUp``
and ``CutMix`` draw from a stateful generator that a restart resets, and with other
semantics (one ``lam`` per image, a shuffled partner); these draw from the seed alone, with
timm's:

* :func:`mixup` / :func:`cutmix`: one ``lam ~ Beta(alpha, alpha)`` per batch, each image
  mixed with the batch in reverse order (timm's ``Mixup(mode="batch")``); CutMix pastes one
  box of area ``1 - lam`` and corrects ``lam`` to the box's clipped area (``correct_lam``).
* :func:`random_erasing`: timm's ``RandomErasing(mode="pixel")`` on normalised images: with
  probability ``p`` per image, a rectangle of 2 %-33 % of the area and log-uniform aspect
  ratio 0.3-3.3 is replaced by standard normal noise.

:class:`MixUpCutMix` and :class:`RandomErasing` are the layers
(:class:`~larq_bnext.augment.base.SeededAugmentation`s).
"""

from __future__ import annotations

import math

import tensorflow as tf

from larq_bnext.augment.base import SeededAugmentation, split_seed

__all__ = ["beta_sample", "mixup", "cutmix", "random_erasing", "MixUpCutMix", "RandomErasing"]


def beta_sample(alpha: float, seed: tf.Tensor) -> tf.Tensor:
    """One ``Beta(alpha, alpha)`` sample from a shape ``[2]`` seed (two stateless gammas).

    Args:
        alpha: the Beta distribution's two (equal) parameters.
        seed: a shape ``[2]`` integer seed.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    a = tf.random.stateless_gamma([], seeds[0], alpha)
    b = tf.random.stateless_gamma([], seeds[1], alpha)
    return a / (a + b)


def _mix_labels(labels: tf.Tensor, lam: tf.Tensor) -> tf.Tensor:
    return lam * labels + (1.0 - lam) * tf.reverse(labels, [0])


def mixup(images: tf.Tensor, labels: tf.Tensor, alpha: float, seed: tf.Tensor):
    """timm's batch mixup: ``lam x + (1 - lam) x[::-1]`` for images and one-hot labels.

    Args:
        images: ``(B, H, W, C)`` float images.
        labels: ``(B, K)`` one-hot (or soft) float labels.
        alpha: Beta parameter.
        seed: a shape ``[2]`` integer seed.

    Returns:
        ``(images, labels)`` mixed.
    """
    lam = beta_sample(alpha, seed)
    images = lam * images + (1.0 - lam) * tf.reverse(images, [0])
    return images, _mix_labels(labels, lam)


def cutmix(images: tf.Tensor, labels: tf.Tensor, alpha: float, seed: tf.Tensor):
    """timm's batch CutMix: one box of ``x[::-1]`` pasted into every image.

    The box has sides ``sqrt(1 - lam)`` of the image's, a uniform centre, and is clipped to
    the image; the labels are mixed with the clipped box's true area (timm's ``correct_lam``).

    Args:
        images: ``(B, H, W, C)`` float images.
        labels: ``(B, K)`` one-hot (or soft) float labels.
        alpha: Beta parameter.
        seed: a shape ``[2]`` integer seed.

    Returns:
        ``(images, labels)`` mixed.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    lam = beta_sample(alpha, seeds[0])
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    ratio = tf.sqrt(1.0 - lam)
    cut_h = tf.cast(tf.cast(height, tf.float32) * ratio, tf.int32)
    cut_w = tf.cast(tf.cast(width, tf.float32) * ratio, tf.int32)
    cy = tf.random.stateless_uniform([], seeds[1], 0, height, dtype=tf.int32)
    cx = tf.random.stateless_uniform([], seeds[2], 0, width, dtype=tf.int32)
    top, bottom = tf.maximum(cy - cut_h // 2, 0), tf.minimum(cy + cut_h // 2, height)
    left, right = tf.maximum(cx - cut_w // 2, 0), tf.minimum(cx + cut_w // 2, width)
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    box = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    images = tf.where(box[None, :, :, None], tf.reverse(images, [0]), images)
    area = tf.cast((bottom - top) * (right - left), tf.float32)
    lam = 1.0 - area / tf.cast(height * width, tf.float32)
    return images, _mix_labels(labels, lam)


def random_erasing(
    images: tf.Tensor,
    probability: float,
    seed: tf.Tensor,
    area=(0.02, 1 / 3),
    log_ratio=(math.log(0.3), math.log(1 / 0.3)),
    attempts: int = 10,
) -> tf.Tensor:
    """timm's per-pixel random erasing of normalised images, a function of ``seed``.

    Each image, with probability ``probability``, gets one rectangle of noise: up to
    ``attempts`` candidates (area and log aspect ratio uniform), the first that fits wins;
    none fitting leaves the image unchanged (as in timm).

    Args:
        images: ``(B, H, W, C)`` normalised float images.
        probability: probability that an image is erased.
        seed: a shape ``[2]`` integer seed.
        area: range of the rectangle's area as a fraction of the image's.
        log_ratio: range of the rectangle's log aspect ratio.
        attempts: candidate rectangles per image.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 6)
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    target = h * w * tf.random.stateless_uniform([batch, attempts], seeds[0], area[0], area[1])
    aspect = tf.exp(tf.random.stateless_uniform([batch, attempts], seeds[1], *log_ratio))
    eh = tf.cast(tf.round(tf.sqrt(target * aspect)), tf.int32)
    ew = tf.cast(tf.round(tf.sqrt(target / aspect)), tf.int32)
    fits = (eh < height) & (ew < width)
    first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
    eh = tf.gather(eh, first, batch_dims=1)
    ew = tf.gather(ew, first, batch_dims=1)
    u = tf.random.stateless_uniform([batch, 2], seeds[2])
    top = tf.cast(u[:, 0] * tf.cast(height - eh + 1, tf.float32), tf.int32)
    left = tf.cast(u[:, 1] * tf.cast(width - ew + 1, tf.float32), tf.int32)
    apply = tf.random.stateless_uniform([batch], seeds[3]) < probability
    apply &= tf.reduce_any(fits, axis=1)
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    top, left, eh, ew = (v[:, None, None] for v in (top, left, eh, ew))
    mask = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
    mask &= apply[:, None, None]
    noise = tf.random.stateless_normal(shape, seeds[4], dtype=images.dtype)
    return tf.where(mask[..., None], noise, images)


@tf.keras.utils.register_keras_serializable("larq_bnext")
class MixUpCutMix(SeededAugmentation):
    """timm's ``Mixup(mode="batch")``: mixup or CutMix of ``{"images", "labels"}`` batches.

    With both alphas above 0, one of the two per batch (probability 0.5 each, timm's switch).
    Labels are one-hot (or soft) float vectors, as keras-cv's ``MixUp`` takes them.

    Args:
        mixup_alpha: Beta parameter of mixup (0: off).
        cutmix_alpha: Beta parameter of CutMix (0: off).
        **kwargs: ``seed`` and Keras layer arguments (see
            :class:`~larq_bnext.augment.base.SeededAugmentation`).

    Example:

    >>> layer = MixUpCutMix(mixup_alpha=0.8)
    >>> batch = {"images": tf.zeros([4, 8, 8, 3]), "labels": tf.one_hot([0, 1, 2, 3], 4)}
    >>> layer(batch, seed=[1, 2])["labels"].shape
    TensorShape([4, 4])
    """

    def __init__(self, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if mixup_alpha < 0 or cutmix_alpha < 0 or not (mixup_alpha or cutmix_alpha):
            raise ValueError(
                f"MixUpCutMix needs mixup_alpha and cutmix_alpha >= 0, one of them > 0; got "
                f"{mixup_alpha}, {cutmix_alpha}."
            )
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)

    def call(self, inputs, training=True, seed=None):
        if not isinstance(inputs, dict) or "labels" not in inputs:
            raise ValueError(
                'MixUpCutMix mixes labels too: call it on {"images": ..., "labels": ...} '
                f"(one-hot labels), got {type(inputs).__name__}."
            )
        if training is False:
            return inputs
        seed = self.new_seed() if seed is None else seed
        choice_seed, mix_seed = split_seed(seed, 2)
        images = tf.cast(inputs["images"], tf.float32)
        labels = tf.cast(inputs["labels"], tf.float32)
        mix = lambda: mixup(images, labels, self.mixup_alpha, mix_seed)  # noqa: E731
        cut = lambda: cutmix(images, labels, self.cutmix_alpha, mix_seed)  # noqa: E731
        if self.mixup_alpha and self.cutmix_alpha:
            use_cutmix = tf.random.stateless_uniform([], choice_seed) < 0.5
            images, labels = tf.cond(use_cutmix, cut, mix)
        else:
            images, labels = cut() if self.cutmix_alpha else mix()
        return {**inputs, "images": images, "labels": labels}

    def get_config(self):
        config = {**super().get_config(), "mixup_alpha": self.mixup_alpha}
        return {**config, "cutmix_alpha": self.cutmix_alpha}


@tf.keras.utils.register_keras_serializable("larq_bnext")
class RandomErasing(SeededAugmentation):
    """timm's ``RandomErasing(mode="pixel")`` of normalised images (:func:`random_erasing`).

    ``value_range`` does not apply: the noise is standard normal, for normalised images.

    Args:
        probability: probability that an image gets a rectangle of noise.
        **kwargs: ``seed`` and Keras layer arguments (see
            :class:`~larq_bnext.augment.base.SeededAugmentation`).
    """

    def __init__(self, probability: float = 0.25, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= probability <= 1:
            raise ValueError(f"probability must be in [0, 1], got {probability}.")
        self.probability = float(probability)

    def draw(self, batch_size, seed):
        """The batch's draws (:meth:`SeededAugmentation.draw`).

        Args:
            batch_size: images in the batch.
            seed: the call's shape ``[2]`` int64 seed.
        """
        return {"seed": tf.tile(seed[None], tf.stack([batch_size, 1]))}

    def augment_images(self, images, transformations, **kwargs):
        seed = transformations["seed"][0]
        return random_erasing(tf.cast(images, tf.float32), self.probability, seed)

    def get_config(self):
        return {**super().get_config(), "probability": self.probability}
