"""The recipe's whole augmentation as one Keras layer: :class:`BNextAugmentation`.

The batch stage of BNext's training augmentation (timm's RandAugment
:class:`~larq_bnext.augment.RandAugment`, the ImageNet normalisation, and optionally mixup,
CutMix and random erasing, :mod:`larq_bnext.augment.mix`), each a keras-cv layer, all
functions of the batch's seed; with ``crop=True`` the random resized crop and flip
(:class:`~larq_bnext.augment.RandomResizedCrop`) come first. It runs in ``tf.data`` or in the
:class:`~larq_bnext.Distiller`'s train step on the accelerator.
:func:`bnext_augmentation` builds it for a Keras user's pipeline.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from larq_bnext.augment.base import split_seed
from larq_bnext.augment.config import IMAGENET_CONFIG, AugmentConfig
from larq_bnext.augment.crop import RandomResizedCrop
from larq_bnext.augment.mix import MixUpCutMix, RandomErasing
from larq_bnext.augment.randaugment_layer import RandAugment
from larq_bnext.preprocessing import preprocess_input

__all__ = ["BNextAugmentation", "bnext_augmentation"]


@tf.keras.utils.register_keras_serializable("larq_bnext")
class BNextAugmentation(tf.keras.layers.Layer):
    """BNext's training augmentation: (crop, flip,) RandAugment, normalise, mix, erase.

    Call it on images on ``[0, 255]`` (float, ``(B, S, S, 3)``; with ``crop=True`` any size,
    dense or ragged), optionally with integer labels, and a shape ``[2]`` integer ``seed``:

    * ``layer(images, seed=s)`` returns the normalised images;
    * ``layer(images, labels, seed=s)`` returns ``(images, labels)`` (one-hot when mixup or
      CutMix is on), what the training pipeline and the Distiller call;
    * ``layer({"images": ..., "labels": ...}, seed=s)`` returns such a dict (keras-cv's form).

    Everything is a function of the seed (stateless random ops): the pipeline of
    :func:`larq_bnext.training.data.datasets.train_dataset` passes one made of the run's
    seed, the epoch and the step; the Distiller's train step one made of the run's seed and
    the optimizer
    step, so a resumed run repeats an uninterrupted one exactly. Without a seed, one comes from
    the layer's generator (seeded by ``seed=``) or TensorFlow's global one.

    Args:
        config: the augmentation settings (``randaugment``, ``randaugment_policy``,
            ``randaugment_fill``, ``randaugment_interpolation``, ``mixup_alpha``,
            ``cutmix_alpha``, ``random_erasing``; with ``crop=True`` also the crop's).
        num_classes: number of classes (needed for one-hot labels with mixup/CutMix).
        flip: flip each image left-right with probability 0.5 (off: the pipeline's crops are
            flipped already when ``config.flip``).
        crop: start with the random resized crop and flip of ``config``.
        seed: seed of the layer's generator (used when a call gives no seed).
        **kwargs: Keras layer arguments.

    Example:

    >>> augment = BNextAugmentation(AugmentConfig(image_size=8), num_classes=10)
    >>> images, labels = tf.fill([2, 8, 8, 3], 128.0), tf.constant([1, 2])
    >>> out, _ = augment(images, labels, seed=tf.constant([3, 7]))
    >>> bool(tf.reduce_all(out == augment(images, labels, seed=tf.constant([3, 7]))[0]))
    True
    """

    def __init__(
        self,
        config: AugmentConfig = IMAGENET_CONFIG,
        num_classes: int | None = None,
        flip: bool = False,
        crop: bool = False,
        seed: int | None = None,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if isinstance(config, dict):  # from get_config
            config = AugmentConfig(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
            )
        self.config = config
        self.num_classes = None if num_classes is None else int(num_classes)
        if config.mixes_labels and self.num_classes is None:
            raise ValueError("Mixup and CutMix make one-hot labels: pass num_classes.")
        self.flip = bool(flip)
        self.seed = seed
        self._generator = None if seed is None else tf.random.Generator.from_seed(seed)
        self.crop = None
        if crop:
            self.crop = RandomResizedCrop(
                config.image_size,
                config.crop_scale,
                config.crop_ratio,
                config.interpolation,
                config.flip,
            )
        self.randaugment = None
        if config.randaugment:
            self.randaugment = RandAugment(
                config.randaugment_policy,
                config.randaugment_fill,
                config.randaugment_interpolation,
            )
        self.mix = None
        if config.mixes_labels:
            self.mix = MixUpCutMix(config.mixup_alpha, config.cutmix_alpha)
        self.erase = None
        if config.random_erasing:
            self.erase = RandomErasing(config.random_erasing)

    @property
    def policy(self):
        """The timm RandAugment policy (``None`` when RandAugment is off)."""
        return None if self.randaugment is None else self.randaugment.policy

    def call(self, inputs, labels=None, seed=None, training=True):
        """Augment a batch (see the class); ``seed``: shape ``[2]`` integers."""
        as_dict = isinstance(inputs, dict)
        images = inputs["images"] if as_dict else inputs
        if as_dict:
            labels = inputs.get("labels")
        if training is False:
            return inputs if labels is None or as_dict else (inputs, labels)
        if seed is None:
            seed = self._new_seed()
        flip_seed, ra_seed, mix_seed, erase_seed = split_seed(seed, 4)
        if self.crop is not None:
            images = self.crop(
                images, seed=tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), 7)
            )
        images = tf.cast(images, tf.float32)
        if self.flip:
            images = tf.image.stateless_random_flip_left_right(images, flip_seed)
        if self.randaugment is not None:
            images = self.randaugment(images, seed=ra_seed)
        images = preprocess_input(images)  # images are float32 already
        if self.mix is not None:
            if labels is None:
                raise ValueError("Mixup and CutMix mix labels too: call with labels.")
            labels = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), self.num_classes)
            mixed = self.mix({"images": images, "labels": labels}, seed=mix_seed)
            images, labels = mixed["images"], mixed["labels"]
        if self.erase is not None:
            images = self.erase(images, seed=erase_seed)
        if as_dict:
            out = {**inputs, "images": images}
            return out if labels is None else {**out, "labels": labels}
        return images if labels is None else (images, labels)

    def _new_seed(self):
        if self._generator is None:
            return tf.random.uniform([2], 0, tf.int64.max, dtype=tf.int64)
        return tf.cast(self._generator.make_seeds(1)[:, 0], tf.int64)

    def get_config(self):
        return {
            **super().get_config(),
            "config": dataclasses.asdict(self.config),
            "num_classes": self.num_classes,
            "flip": self.flip,
            "crop": self.crop is not None,
            "seed": self.seed,
        }


def bnext_augmentation(
    image_size: int = 224,
    num_classes: int | None = None,
    seed: int | None = None,
    **settings,
) -> BNextAugmentation:
    """BNext's whole training augmentation as one keras-cv-style layer.

    The random resized crop (timm's sampling, PIL's bicubic resize) and flip, timm's
    RandAugment ``rand-m7-mstd0.5-inc1`` with the ImageNet-mean fill, the ImageNet
    normalisation, and mixup, CutMix and random erasing when ``settings`` turn them on. Call
    it on decoded images on ``[0, 255]`` (a dense batch or a ragged one of any sizes), in
    ``tf.data.Dataset.map`` or in a model, with a per-batch ``seed`` for stateless
    randomness (or none: the layer's generator, seeded by ``seed``).

    Args:
        image_size: side of the square training crop.
        num_classes: number of classes (for mixup/CutMix's one-hot labels).
        seed: seed of the layer's generator.
        **settings: further :class:`~larq_bnext.augment.AugmentConfig` fields
            (``crop_scale``, ``randaugment``, ``mixup_alpha``, ...).

    Example:

    >>> augment = bnext_augmentation(image_size=32, seed=0)
    >>> augment(tf.zeros([2, 50, 40, 3])).shape
    TensorShape([2, 32, 32, 3])
    """
    config = AugmentConfig(image_size=image_size, **settings)
    return BNextAugmentation(config, num_classes, crop=True, seed=seed)
