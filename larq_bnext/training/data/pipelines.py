"""The input pipelines: the training stream (a function of seed, epoch and step) and evaluation.

:func:`train_dataset` and :func:`eval_dataset` turn a
:class:`~larq_bnext.training.data.datasets.DataSource` into batched ``tf.data`` pipelines
(parallel, autotuned) with the training augmentation or the
evaluation transform of :mod:`larq_bnext.preprocessing`. Unreadable files, and images over
the pixel limit, are skipped and recorded in a :class:`~larq_bnext.training.data.skipped.SkipLog`
at whatever stage they fail. Paths go to TensorFlow as the bytes the operating system gave
(``os.fsencode``), so names that are not UTF-8 are read like any other. Both are also
exported by :mod:`larq_bnext.training.data.datasets`.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from larq_bnext.augment.config import AugmentConfig
from larq_bnext.augment.crop import decode_and_random_crop, random_resized_crop
from larq_bnext.augment.stage import BNextAugmentation
from larq_bnext.images.files import MAX_IMAGE_PIXELS
from larq_bnext.preprocessing import decode_and_center_crop, preprocess_input
from larq_bnext.registry import IMAGENET_PREPROCESSING
from larq_bnext.training.runtime.distribute import op_determinism_enabled

__all__ = ["train_dataset", "eval_dataset", "stream_seed"]

# Functions of the pipelines are plain TensorFlow (no Python control flow on tensors): skip
# AutoGraph's source conversion, which costs seconds per function.
_plain = tf.autograph.experimental.do_not_convert
# Stream tags: independent seeds for the shuffles, the crops and the batch stage.
_SHUFFLE, _CROP, _BATCH = 1, 2, 3


def stream_seed(seed: int, tag: int, epoch, index) -> tf.Tensor:
    """The shape ``[2]`` int64 seed of one random draw of the training stream.

    A pure function of the run's ``seed``, the draw's kind (``tag``: shuffle, crop, batch),
    the ``epoch`` and an ``index`` (the pass over the data, the element's position in the
    epoch or the step): the stream after a restart is the one an uninterrupted run sees.

    Args:
        seed: the run's seed.
        tag: the kind of draw.
        epoch: the epoch (int or scalar tensor).
        index: the position within the epoch (int or scalar tensor).
    """
    base = tf.constant([seed, tag], tf.int64)
    folded = tf.random.experimental.stateless_fold_in(base, tf.cast(epoch, tf.int64))
    return tf.random.experimental.stateless_fold_in(folded, tf.cast(index, tf.int64))


def _epoch_order(source, seed: int, epoch, passes: int | None):
    """``(position, index)`` of an epoch: fresh permutations of the examples, pass after pass.

    Args:
        source: an array or path source.
        seed: the run's seed.
        epoch: the epoch (scalar tensor).
        passes: number of passes (``None``: endless, for epochs that skip unreadable files).
    """
    n = source.num_examples

    def one_pass(r):
        return tf.data.Dataset.from_tensor_slices(_pass_order(n, seed, epoch, r))

    passes_ds = tf.data.Dataset.range(passes) if passes else tf.data.Dataset.range(2**62)
    return passes_ds.flat_map(_plain(one_pass)).enumerate()


def _pass_order(n: int, seed: int, epoch, r) -> tf.Tensor:
    """The permutation of the ``n`` examples in pass ``r`` of an epoch."""
    return tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int64), stream_seed(seed, _SHUFFLE, epoch, r)
    )


def _epoch_item(n: int, seed: int, epoch, position) -> tf.Tensor:
    """The example index at ``position`` of an epoch of :func:`_epoch_order` (a failed file's
    name is looked up with it; the permutation is recomputed, so only for failures)."""
    position = tf.cast(position, tf.int64)
    return _pass_order(n, seed, epoch, position // n)[position % n]


def train_dataset(
    source,
    batch_size: int,
    config: AugmentConfig,
    augment_on_device: bool = False,
    seed: int | None = None,
    repeat: bool = False,
    steps_per_epoch: int | None = None,
    initial_epoch: int = 0,
    initial_step: int = 0,
    skip_log=None,
    deterministic: bool | None = True,
    max_image_pixels=MAX_IMAGE_PIXELS,
):
    """The training pipeline: shuffle, decode + random resized crop + flip, batch, augment.

    Every random draw is a function of ``(seed, epoch, position)`` (stateless random ops):
    epoch ``e`` is a permutation of the examples drawn from ``(seed, e)``, the crop of its
    ``p``-th element is drawn from ``(seed, e, p)``, and the batch stage of its ``s``-th batch
    gets the seed ``(seed, e, s)`` (see :class:`~larq_bnext.augment.BNextAugmentation`).
    A run restarted at ``(initial_epoch, initial_step)`` therefore sees exactly the batches an
    uninterrupted run sees from there. Unreadable files are skipped, recorded in
    ``skip_log`` and replaced by the next files of the epoch's order (a further permutation
    when the epoch runs out), so every epoch has ``steps_per_epoch`` full batches.

    Args:
        source: the training split.
        batch_size: the global batch size.
        config: the augmentation settings.
        augment_on_device: leave the batch stage (RandAugment, normalisation, mixup,
            cutmix, erasing) to the model (``Distiller(augmenter=BNextAugmentation(...))``): the
            pipeline then yields crops (flipped, as ``config.flip`` says) on ``[0, 255]``.
        seed: the run's seed (``None``: 0).
        repeat: epochs after epoch after epoch (then pass ``steps_per_epoch`` to ``fit``);
            otherwise one epoch.
        steps_per_epoch: batches per epoch; defaults to the full batches of the split.
        initial_epoch: the first epoch of the stream (a resumed run's).
        initial_step: batches of the first epoch to skip (a run resumed mid-epoch).
        skip_log: a :class:`larq_bnext.training.data.skipped.SkipLog` that receives the
            unreadable files.
        deterministic: keep the element order of the parallel stages fixed (the default:
            needed for an exact resume; the stages stay parallel). ``False`` lets a slow image
            not hold up the batch (faster, but batches then depend on timing); ``None``
            follows TensorFlow's op determinism (``--deterministic``).
        max_image_pixels: images whose header gives more pixels are skipped without being
            decoded (``None`` or 0: no limit); PIL's default.

    Returns:
        A ``tf.data.Dataset`` of ``(images, labels)``, ``drop_remainder`` batches.
    """
    from larq_bnext.training.data.skipped import guarded_map

    autotune = tf.data.AUTOTUNE
    seed = 0 if seed is None else int(seed)
    full_steps = source.num_examples // batch_size
    steps = int(steps_per_epoch or full_steps)
    if steps < 1:
        raise ValueError(
            f"The batch of {batch_size} is larger than the {source.num_examples} examples."
        )
    augmenter = None
    if not augment_on_device:
        augmenter = BNextAugmentation(config, source.num_classes)

    if source.kind == "array":
        items = tf.constant(source.items)
    elif source.kind == "path":
        items = tf.constant(_path_bytes(source.items))
    if source.kind != "tfds":
        labels = tf.constant(np.asarray(source.labels, np.int64))

    def crop(position, item, label, element_seed):
        if source.kind == "array":
            image = random_resized_crop(item, config, seed=element_seed)
        else:
            encoded = tf.io.read_file(item) if source.kind == "path" else item
            image = decode_and_random_crop(encoded, config, element_seed, max_image_pixels)
        return image, label

    def epoch_batches(epoch):
        def name_at(position):
            if source.kind == "path":
                return tf.gather(items, _epoch_item(source.num_examples, seed, epoch, position))
            return tf.strings.format("{}#{}", (source.name or source.kind, position))

        if source.kind == "tfds":
            # Chunks of 16k examples permuted with stateless ops, a function of (seed, epoch,
            # chunk). TFDS's own file shuffle (`shuffle_files`) is not: see the docs' limits.
            def permute(chunk, element):
                order = tf.random.experimental.stateless_shuffle(
                    tf.range(tf.shape(element[1])[0]), stream_seed(seed, _SHUFFLE, epoch, chunk)
                )
                return tf.gather(element[0], order), tf.gather(element[1], order)

            elements = source.items.batch(16 * 1024).enumerate().map(_plain(permute)).unbatch()
            elements = elements.repeat().enumerate()
            elements = elements.map(
                _plain(
                    lambda p, e: (
                        p,
                        e[0],
                        tf.cast(e[1], tf.int64),
                        stream_seed(seed, _CROP, epoch, p),
                    )
                )
            )
        else:
            passes = None if source.kind == "path" else 1
            elements = _epoch_order(source, seed, epoch, passes).map(
                _plain(
                    lambda p, i: (
                        p,
                        tf.gather(items, i),
                        tf.gather(labels, i),
                        stream_seed(seed, _CROP, epoch, p),
                    )
                ),
                num_parallel_calls=autotune,
            )
        if source.kind == "array":
            elements = elements.map(_plain(crop), num_parallel_calls=autotune)
        else:
            elements = guarded_map(elements, crop, name_at, skip_log)
        batches = elements.batch(batch_size, drop_remainder=True, num_parallel_calls=autotune)
        batches = batches.take(steps).enumerate()
        return batches.map(_plain(lambda step, batch: (epoch, step, batch)))

    epochs = tf.data.Dataset.range(initial_epoch, 2**62 if repeat else initial_epoch + 1)
    ds = epochs.flat_map(_plain(epoch_batches))
    if initial_step:
        ds = ds.skip(initial_step)
    if augmenter is None:
        ds = ds.map(_plain(lambda epoch, step, batch: batch))
    else:

        def augment(epoch, step, batch):
            return augmenter(*batch, seed=stream_seed(seed, _BATCH, epoch, step))

        ds = ds.map(_plain(augment), num_parallel_calls=autotune)
    if deterministic is None:
        deterministic = op_determinism_enabled()
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    return ds.with_options(options).prefetch(autotune)


def eval_dataset(
    source,
    batch_size: int,
    image_size: int,
    crop_fraction: float = IMAGENET_PREPROCESSING.crop_fraction,
    skip_log=None,
    max_image_pixels=MAX_IMAGE_PIXELS,
    jpeg_dct_scaling: bool = True,
):
    """The evaluation pipeline: decode, resize + centre crop (or just resize), normalise, batch.

    Files and TFDS images get :func:`larq_bnext.preprocessing.decode_and_center_crop` (the
    evaluation transform, decoding only the window of a JPEG); in-memory arrays (digits) are
    resized to ``image_size`` if needed and normalised. Files that fail to read or decode,
    and images over the pixel limit, are skipped and recorded in ``skip_log``.

    Args:
        source: the evaluation split.
        batch_size: batch size (the last batch may be smaller).
        image_size: side of the model's input.
        crop_fraction: centre-crop fraction of the evaluation transform (0.95 in BNext).
        skip_log: a :class:`larq_bnext.training.data.skipped.SkipLog` that receives the
            unreadable files.
        max_image_pixels: images whose header gives more pixels are skipped without being
            decoded (``None`` or 0: no limit); PIL's default.
        jpeg_dct_scaling: let libjpeg decode large JPEG windows at 1/2, 1/4 or 1/8 scale (see
            :func:`~larq_bnext.preprocessing.decode_and_center_crop`).
    """
    from larq_bnext.training.data.skipped import guarded_map

    autotune = tf.data.AUTOTUNE
    if source.kind == "tfds":
        ds = source.items.enumerate().map(_plain(lambda p, e: (p, e[0], e[1])))
    elif source.kind == "array":
        ds = tf.data.Dataset.from_tensor_slices((source.items, source.labels))
    else:
        ds = tf.data.Dataset.from_tensor_slices((_path_bytes(source.items), source.labels))
        ds = ds.enumerate().map(_plain(lambda p, e: (p, e[0], e[1])))
    if source.kind == "array":

        def prepare(x, y):
            x = tf.cast(x, tf.float32)
            if x.shape[0] != image_size or x.shape[1] != image_size:
                x = tf.image.resize(
                    x,
                    [image_size, image_size],
                    method=IMAGENET_PREPROCESSING.interpolation,
                    antialias=True,
                )
            return preprocess_input(tf.clip_by_value(x, 0.0, 255.0)), y

        ds = ds.map(prepare, num_parallel_calls=autotune)
        return ds.batch(batch_size).prefetch(autotune)

    names = tf.constant(_path_bytes(source.items)) if source.kind == "path" else None

    def name_at(position):
        if source.kind == "path":
            return tf.gather(names, position)
        return tf.strings.format("{}#{}", (source.name or source.kind, position))

    def decode(position, item, label):
        encoded = tf.io.read_file(item) if source.kind == "path" else item
        image = decode_and_center_crop(
            encoded, image_size, crop_fraction, max_image_pixels, jpeg_dct_scaling
        )
        return image, label

    blank = tf.zeros([image_size, image_size, 3], tf.float32)

    def fallback(position, item, label):
        return blank, label

    # Files: the sentinel after the last one also catches failures at the end. (TFDS splits
    # are decoded when written; a failure after the last good example is not seen.)
    count = len(source.items) if source.kind == "path" else None
    ds = guarded_map(ds, decode, name_at, skip_log, count=count, fallback=fallback)
    return ds.batch(batch_size).prefetch(autotune)


def _path_bytes(paths) -> list[bytes]:
    """File paths as the operating system's bytes, for TensorFlow (a ``str`` with undecodable
    bytes, as ``os.listdir`` gives them, cannot become a string tensor)."""
    return [os.fsencode(p) for p in paths]
