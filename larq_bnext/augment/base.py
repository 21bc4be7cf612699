"""The base of the augmentation layers: keras-cv's, seeded by stateless random ops.

:class:`SeededAugmentation` is keras-cv's ``VectorizedBaseImageAugmentationLayer`` (a batch of
images or a keras-cv ``{"images": ..., "labels": ...}`` dict, one transformation per image
drawn by ``get_random_transformation_batch``, ``value_range``, ``get_config``) whose draws are
stateless random ops of one seed per call:

* ``layer(images, seed=s)`` with a shape ``[2]`` integer seed: the output is a function of
  ``(images, s)``; the training pipeline passes ``(run seed, epoch, step)``'s, so a resumed run
  repeats an uninterrupted one bit for bit.
* ``layer(images)``: the call's seed comes from the layer's own generator, seeded by the
  constructor's ``seed`` (reproducible: two layers with the same seed give the same sequence
  of outputs), or from TensorFlow's global generator without one (``tf.random.set_seed``).

The ops compute on whole values on ``[0, 255]`` (PIL's uint8 images): images on another
``value_range`` are mapped there, rounded, transformed and mapped back.
"""

from __future__ import annotations

import contextlib
import io

import tensorflow as tf

# keras-cv's Keras 2 backend (keras-core) prints "Using TensorFlow backend" to stdout when it
# is first imported: keep the line out of the user's output.
with contextlib.redirect_stdout(io.StringIO()):
    import keras_cv

__all__ = ["SeededAugmentation", "split_seed"]

_PIL_RANGE = (0, 255)


def split_seed(seed, count: int):
    """``count`` independent shape ``[2]`` seeds from one (``stateless_split``).

    Args:
        seed: a shape ``[2]`` integer seed (or one integer).
        count: how many seeds.
    """
    return tf.unstack(tf.random.experimental.stateless_split(_as_seed(seed), count))


def _as_seed(seed):
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer:
        raise TypeError(
            f"A stateless seed is integers (shape [2], e.g. tf.constant([1, 2])), "
            f"got {seed.dtype.name}."
        )
    seed = tf.cast(seed, tf.int64)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.zeros([], tf.int64)])
    return seed


class SeededAugmentation(keras_cv.layers.VectorizedBaseImageAugmentationLayer):
    """A keras-cv augmentation layer whose randomness is a function of a per-call seed.

    Its hooks run as written, never converted by AutoGraph (they hold no Python condition on
    a tensor): in one long test session, AutoGraph's converted copy of ``augment_images``
    was called without its arguments on keras-cv's ragged path.

    Subclasses implement :meth:`draw` (the batch's random transformation, from a seed) and
    :meth:`transform` (images on ``[0, 255]``, float32). Calls take keras-cv's inputs (an
    image batch, one image, or a dict with ``"images"``) and an optional ``seed``.

    Args:
        value_range: the images' ``(low, high)`` range (``(0, 255)``: used as they are).
        seed: an integer seed of the layer's own generator (used when a call gives no seed).
        **kwargs: Keras layer arguments (the dtype is float32: the ops are PIL's integer
            arithmetic, exact in float32).
    """

    def __init__(self, value_range=_PIL_RANGE, seed: int | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        # keras-cv's __init__ takes TensorFlow's global generator when there is no seed, which
        # fails under op determinism; ours is drawn from only when a call has no seed.
        tf.keras.layers.Layer.__init__(self, **kwargs)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        low, high = (float(v) for v in value_range)
        if not low < high:
            raise ValueError(f"value_range is (low, high) with low < high, got {value_range}.")
        self.value_range = (low, high)
        self.seed = seed
        self._random_generator = None if seed is None else tf.random.Generator.from_seed(seed)
        self._call_seed = None

    def call(self, inputs, training=True, seed=None):
        """Augment ``inputs`` (keras-cv's formats); ``seed``: this call's shape ``[2]`` seed."""
        if training is False:
            return inputs
        self._call_seed = self.new_seed() if seed is None else _as_seed(seed)
        try:
            return super().call(inputs)
        finally:
            self._call_seed = None

    def new_seed(self):
        """A fresh shape ``[2]`` seed from the layer's generator (or the global one)."""
        if self._random_generator is None:
            return tf.random.uniform([2], 0, tf.int64.max, dtype=tf.int64)
        return tf.cast(self._random_generator.make_seeds(1)[:, 0], tf.int64)

    @tf.autograph.experimental.do_not_convert
    def get_random_transformation_batch(self, batch_size, **kwargs):
        """keras-cv's hook: :meth:`draw` from the call's seed.

        Args:
            batch_size: images in the batch.
            **kwargs: the batch's other inputs (unused).
        """
        return self.draw(batch_size, self._call_seed)

    def draw(self, batch_size, seed):
        """The batch's random transformation (a dict of per-image tensors) from ``seed``.

        Args:
            batch_size: images in the batch.
            seed: the call's shape ``[2]`` int64 seed.
        """
        return {}

    def transform(self, images, transformation):
        """Apply ``transformation`` to float32 images of whole values on ``[0, 255]``.

        Args:
            images: ``(B, H, W, C)`` images.
            transformation: what :meth:`draw` returned for the batch.
        """
        raise NotImplementedError

    @tf.autograph.experimental.do_not_convert
    def augment_images(self, images, transformations, **kwargs):
        images = tf.cast(images, tf.float32)
        if self.value_range == _PIL_RANGE:
            return self.transform(images, transformations)
        low, high = self.value_range
        pil = tf.round(tf.clip_by_value((images - low) * (255.0 / (high - low)), 0.0, 255.0))
        return self.transform(pil, transformations) * ((high - low) / 255.0) + low

    @tf.autograph.experimental.do_not_convert
    def augment_ragged_image(self, image, transformation, **kwargs):
        out = self.augment_images(
            image[None], tf.nest.map_structure(lambda t: t[None], transformation)
        )
        return out[0]

    def augment_labels(self, labels, transformations, **kwargs):
        return labels

    def augment_targets(self, targets, transformations, **kwargs):
        return targets

    def get_config(self):
        return {**super().get_config(), "value_range": self.value_range, "seed": self.seed}
