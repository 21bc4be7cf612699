"""The batch stage of BNext's training augmentation: :class:`BatchAugmenter`.

RandAugment (timm's, :mod:`larq_bnext.training.randaugment`, or keras-cv's), the ImageNet
normalisation, and optionally mixup, cutmix and random erasing
(:mod:`larq_bnext.training.stateless_mix`), all functions of the batch's seed. It runs in
``tf.data`` or in the :class:`~larq_bnext.Distiller`'s train step on the accelerator.
"""

from __future__ import annotations

import tensorflow as tf

from larq_bnext.preprocessing import preprocess_input
from larq_bnext.training import randaugment as timm_randaugment
from larq_bnext.training.augmentation import AugmentConfig

__all__ = ["BatchAugmenter"]


class BatchAugmenter:
    """The batch stage of the training augmentation: RandAugment, normalise, mix, erase.

    Call it on ``(images, labels, seed)`` with images on ``[0, 255]`` (float,
    ``(B, S, S, 3)``), integer labels and a shape ``[2]`` integer seed; it returns normalised
    images and labels (one-hot when mixup or cutmix is on). It runs inside ``tf.data`` (the
    pipeline of :func:`larq_bnext.training.data.train_dataset` passes a seed that is a
    function of the run's seed, the epoch and the step) or inside the Distiller's train step
    on the accelerator (``Distiller(..., augmenter=augmenter)``, seeded by the optimizer step).

    The horizontal flip is not here but in the crop
    (:func:`~larq_bnext.training.crop.decode_and_random_crop`, where it
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
        images = preprocess_input(images)  # images are float32 already
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
