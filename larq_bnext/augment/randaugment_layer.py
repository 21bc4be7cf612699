"""timm's RandAugment as a keras-cv preprocessing layer: :class:`RandAugment`.

It composes the op layers of :mod:`larq_bnext.augment.layers` with timm's policy (a
``rand-...`` string; BNext's ``rand-m7-mstd0.5-inc1``): for each image, ``n`` ops drawn with
replacement, each applied with probability ``p`` at a magnitude from ``N(m, mstd)`` clipped.

keras-cv's ``RandomAugmentationPipeline`` has these semantics (``augmentations_per_image``
layers drawn per image, each applied with probability ``rate``) but is not used: it draws
from a stateful generator (so a resumed run would not repeat its batches) and maps over the
images one at a time. This layer draws all choices of a batch from the call's seed
(:func:`larq_bnext.augment.randaugment.sample_ops`) and runs each op once on the images that
drew it (:func:`larq_bnext.augment.randaugment.rand_augment`).
"""

from __future__ import annotations

import tensorflow as tf

from larq_bnext.augment import randaugment as policy_lib
from larq_bnext.augment.base import SeededAugmentation
from larq_bnext.augment.layers import OP_LAYERS
from larq_bnext.augment.randaugment_ops import IMAGENET_MEAN_FILL

__all__ = ["RandAugment"]


@tf.keras.utils.register_keras_serializable("larq_bnext")
class RandAugment(SeededAugmentation):
    """timm's RandAugment (BNext's ``rand-m7-mstd0.5-inc1`` by default), seeded.

    Args:
        policy: a timm RandAugment string (see
            :func:`larq_bnext.augment.randaugment.parse_policy`).
        fill: fill colour of the geometric ops, on ``[0, 255]`` (the original: the ImageNet
            mean).
        interpolation: resampling of the geometric ops, ``"bilinear"`` or ``"nearest"``
            (the original's bicubic is not in TensorFlow's projective transform).
        **kwargs: ``value_range``, ``seed`` and Keras layer arguments (see
            :class:`~larq_bnext.augment.base.SeededAugmentation`).

    Example:

    >>> import tensorflow as tf
    >>> layer = RandAugment(value_range=(0, 1))
    >>> images = tf.random.stateless_uniform([4, 16, 16, 3], [0, 1])
    >>> a, b = layer(images, seed=[1, 2]), layer(images, seed=[1, 2])
    >>> bool(tf.reduce_all(a == b)), float(tf.reduce_max(a)) <= 1.0
    (True, True)
    """

    def __init__(
        self,
        policy: str = "rand-m7-mstd0.5-inc1",
        fill=IMAGENET_MEAN_FILL,
        interpolation: str = "bilinear",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.policy_string = policy
        self.fill = tuple(int(v) for v in fill)
        self.interpolation = interpolation
        self.policy = policy_lib.parse_policy(policy, fill=self.fill, interpolation=interpolation)
        self.op_layers = {}
        for name in self.policy.ops:
            layer, increasing = OP_LAYERS[name]
            self.op_layers[name] = layer(
                increasing=increasing,
                fill=self.fill,
                interpolation=interpolation,
                translate_pct=self.policy.translate_pct,
                name=f"{self.name}_{name}",
            )

    def draw(self, batch_size, seed):
        """The batch's draws (:meth:`SeededAugmentation.draw`).

        Args:
            batch_size: images in the batch.
            seed: the call's shape ``[2]`` int64 seed.
        """
        return {"seed": tf.tile(seed[None], tf.stack([batch_size, 1]))}

    def transform(self, images, transformation):
        """Apply the batch's draws (:meth:`SeededAugmentation.transform`).

        Args:
            images: ``(B, H, W, 3)`` whole values on ``[0, 255]``.
            transformation: what :meth:`draw` returned.
        """

        def apply(name, subset, magnitude, sign):
            return self.op_layers[name].apply(subset, magnitude, sign)

        return policy_lib.rand_augment(images, transformation["seed"][0], self.policy, apply)

    def get_config(self):
        return {
            **super().get_config(),
            "policy": self.policy_string,
            "fill": self.fill,
            "interpolation": self.interpolation,
        }
