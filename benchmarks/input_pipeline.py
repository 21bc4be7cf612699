"""Throughput of BNext's training input pipeline on generated ImageNet-sized JPEGs, end to
end and stage by stage.

    python benchmarks/input_pipeline.py [--images=256] [--batches=24] [--threads=2] \
        [--output=figures.json]

Writes ``--images`` random-content JPEGs at ImageNet's typical size (500x375 and 375x500,
quality 90, ~85 kB; ImageNet's average is ~110 kB) into a temporary class-folder tree, then:

* **end to end**: times the training pipeline of :mod:`larq_bnext.training.data.datasets` (read,
  decode the crop window, random resized crop 224 bicubic with the flip, batch, normalise)
  without RandAugment and with timm's (BNext's ``rand-m7-mstd0.5-inc1``, the default; the
  :mod:`larq_bnext.augment` layers); and once more without RandAugment on 1024x768
  JPEGs, with and without libjpeg's DCT-domain scaling (``jpeg_dct_scaling``);
* **per stage**: each stage on its own, one image (or one batch of 32) at a time in one
  thread: read, box + decode of the crop window, the resize (this package's sparse-matrix
  resize against ``tf.image.resize``, the kernel it replaced), the guard that turns an
  unreadable file into a recorded skip (a check of the positions after one parallel map,
  against the former one dataset per element, both around the whole crop stage in
  ``tf.data``), normalisation (``preprocess_input``'s tiled rows against the former
  broadcast of a 3-vector over the channels), the flip in the batch (what the flip folded
  into the resize saves) and timm's RandAugment.

Every rate is images per CPU second of the process (all threads), the per-core figure that
holds even when other jobs share the machine; the end-to-end rows also give images per
wall-clock second.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from larq_bnext.augment import AugmentConfig
from larq_bnext.augment.crop import decode_and_random_crop, random_resized_crop_box
from larq_bnext.augment.randaugment import rand_augment
from larq_bnext.images.resampling import resize_window
from larq_bnext.preprocessing import IMAGENET_MEAN, IMAGENET_STD, preprocess_input
from larq_bnext.training.data import datasets as data
from larq_bnext.training.data.skipped import guarded_map


def make_jpegs(root: str, count: int, seed: int = 0, size=(375, 500)) -> None:
    """Write ``count`` JPEGs of ImageNet-like size under ``root/train/<class>/``.

    Args:
        root: output folder.
        count: number of images.
        seed: random seed.
        size: ``(height, width)`` of the landscape images; every other image is portrait.
    """
    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = os.path.join(root, "train", f"n{i % 4:08d}")
        os.makedirs(folder, exist_ok=True)
        shape = tuple(size) if i % 2 == 0 else tuple(size[::-1])
        # Smooth random content compresses like a photograph rather than like noise.
        low = rng.uniform(0, 255, size=(shape[0] // 8, shape[1] // 8, 3))
        image = tf.image.resize(low, shape, method="bicubic")
        image += rng.normal(0, 9, size=(*shape, 3))
        image = tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)
        encoded = tf.io.encode_jpeg(image, quality=90)
        tf.io.write_file(os.path.join(folder, f"{i}.JPEG"), encoded)
    os.makedirs(os.path.join(root, "val", "n00000000"), exist_ok=True)


def measure(source, config: AugmentConfig, batch_size: int, batches: int, threads: int, rounds=3):
    """Images per wall-clock second and per CPU second of the training pipeline (medians).

    Each round builds a fresh iterator and takes warm-up batches until the pipeline runs in
    its steady state (the consumer here is far faster than the pipeline, so its prefetch
    buffers stay drained: work done ahead neither inflates nor deflates the count), times
    ``batches`` batches, and deletes the iterator before the next round (an idle iterator's
    threads would otherwise count in the next round's CPU time). Images per CPU second (the
    process's CPU time, all threads) is the per-core throughput even when other jobs share
    the machine.

    Args:
        source: a :class:`larq_bnext.training.data.datasets.DataSource`.
        config: augmentation settings.
        batch_size: batch size.
        batches: batches to time per round.
        threads: ``tf.data`` private thread pool size.
        rounds: rounds (the medians are returned).
    """
    per_wall, per_cpu = [], []
    for _ in range(rounds):
        ds = data.train_dataset(source, batch_size, config, seed=0, repeat=True)
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        iterator = iter(ds.with_options(options))
        for _ in range(6):
            next(iterator)
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(batches):
            next(iterator)
        images = batches * batch_size
        per_wall.append(images / (time.perf_counter() - start))
        per_cpu.append(images / (time.process_time() - cpu_start))
        del iterator, ds
        gc.collect()
        time.sleep(1.0)
    return float(np.median(per_wall)), float(np.median(per_cpu))


def _per_cpu_second(fn, inputs, repeats: int = 2, per_call: int = 1) -> float:
    """Images per CPU second of ``fn`` called on each of ``inputs`` (after one warm-up pass)."""
    for args in inputs:
        fn(*args)
    start = time.process_time()
    for _ in range(repeats):
        for args in inputs:
            fn(*args)
    return round(per_call * repeats * len(inputs) / (time.process_time() - start), 1)


def _guard_per_element(dataset, fn, fallback):
    """The guard ``guarded_map`` replaced: one dataset per element (the baseline row)."""

    def one(*element):
        good = tf.data.Dataset.from_tensors(element).map(lambda *e: fn(*e)).ignore_errors()
        bad = tf.data.Dataset.from_tensors(element).map(lambda *e: fallback(*e))
        return good.concatenate(bad).take(1)

    return dataset.interleave(one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def stages(paths, config: AugmentConfig, threads: int) -> dict:
    """Images per CPU second of each stage on its own: one image (or batch) per call, except
    the guard rows, which run the whole crop stage in ``tf.data`` behind either guard.

    Args:
        paths: JPEG files.
        config: augmentation settings (BNext's).
        threads: ``tf.data`` threads of the guard rows.
    """
    size = config.image_size
    encoded = [tf.io.read_file(p) for p in paths]
    seeds = [tf.constant([0, i], tf.int64) for i in range(len(paths))]
    image_spec = tf.TensorSpec([None, None, 3], tf.uint8)

    @tf.function
    def box_and_decode(contents, seed):
        shape = tf.image.extract_jpeg_shape(contents)
        box = random_resized_crop_box(
            shape[0], shape[1], config.crop_scale, config.crop_ratio, seed=seed
        )
        return tf.image.decode_and_crop_jpeg(
            contents, box, channels=3, dct_method="INTEGER_ACCURATE"
        )

    crops = [box_and_decode(e, s) for e, s in zip(encoded, seeds, strict=True)]
    sparse = tf.function(lambda c: resize_window(c, size, flip=True), input_signature=[image_spec])
    dense = tf.function(
        lambda c: tf.image.resize(tf.cast(c, tf.float32), [size, size], "bicubic", antialias=True),
        input_signature=[image_spec],
    )
    crop_stage = tf.function(lambda e, s: decode_and_random_crop(e, config, s))

    names = tf.constant([str(p) for p in paths])
    positions = tf.data.Dataset.range(len(paths)).repeat(10)

    def crop(i):
        contents = tf.io.read_file(tf.gather(names, i))
        return decode_and_random_crop(contents, config, tf.stack([tf.constant(0, tf.int64), i]))

    def per_cpu_second_of(ds):
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        start = time.process_time()
        count = sum(1 for _ in ds.with_options(options))
        return round(count / (time.process_time() - start), 1)

    def with_guard():
        # The crop stage (read, decode, crop, resize) behind the guard, in tf.data's threads.
        return guarded_map(
            positions.enumerate(),
            lambda position, i: (crop(i),),
            lambda position: tf.gather(names, position % len(paths)),
        )

    def with_former_guard():
        def fn(i):
            return crop(i), tf.gather(names, i), True

        def fallback(i):
            return tf.zeros([size, size, 3]), tf.gather(names, i), False

        return _guard_per_element(positions, fn, fallback)

    batch = tf.round(tf.random.uniform([32, size, size, 3], 0, 255, seed=1))
    batch_seeds = [(batch, tf.constant([1, i], tf.int64)) for i in range(6)]
    flip = tf.function(lambda x, s: tf.image.stateless_random_flip_left_right(x, s))
    timm = tf.function(lambda x, s: rand_augment(x, s, config.timm_policy))
    normalise = tf.function(lambda x, s: preprocess_input(x))
    mean = tf.reshape(tf.constant(IMAGENET_MEAN, tf.float32), [1, 1, 1, 3])
    std = tf.reshape(tf.constant(IMAGENET_STD, tf.float32), [1, 1, 1, 3])
    broadcast = tf.function(lambda x, s: (x / 255.0 - mean) / std)  # the former formula
    return {
        "read_file": _per_cpu_second(tf.function(tf.io.read_file), [(p,) for p in paths]),
        "box_and_decode_crop_window": _per_cpu_second(
            box_and_decode, list(zip(encoded, seeds, strict=True))
        ),
        "resize_sparse_with_flip": _per_cpu_second(sparse, [(c,) for c in crops]),
        "resize_tf_image_resize": _per_cpu_second(dense, [(c,) for c in crops]),
        "crop_stage_one_call_per_image": _per_cpu_second(
            crop_stage, list(zip(encoded, seeds, strict=True))
        ),
        "crop_stage_in_tf_data_guarded": per_cpu_second_of(with_guard()),
        "crop_stage_in_tf_data_guard_per_element_former": per_cpu_second_of(with_former_guard()),
        "normalize_tiled": _per_cpu_second(normalise, batch_seeds, per_call=32),
        "normalize_broadcast": _per_cpu_second(broadcast, batch_seeds, per_call=32),
        "flip_in_batch_former": _per_cpu_second(flip, batch_seeds, per_call=32),
        "randaugment_timm": _per_cpu_second(timm, batch_seeds, per_call=32),
    }


def _source(root):
    paths, labels, names, _ = data.scan_image_folder(os.path.join(root, "train"))
    return data.DataSource("path", paths, labels, len(paths), 4, names)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--output", default=None, help="write the figures as JSON")
    args = parser.parse_args()

    results = {"threads": args.threads, "cpu_count": os.cpu_count(), "tensorflow": tf.__version__}
    with tempfile.TemporaryDirectory() as root:
        make_jpegs(root, args.images)
        source = _source(root)
        sizes = [os.path.getsize(p) for p in source.items]
        results["mean_jpeg_kb"] = round(np.mean(sizes) / 1024, 1)
        variants = (
            ("without_randaugment", dict(randaugment=False)),
            ("with_randaugment_timm", dict(randaugment_policy="rand-m7-mstd0.5-inc1")),
        )
        for name, settings in variants:
            config = AugmentConfig(image_size=224, **settings)
            ips, per_cpu_second = measure(
                source, config, args.batch_size, args.batches, args.threads
            )
            results[name] = {
                "images_per_second": round(ips, 1),
                "images_per_cpu_second": round(per_cpu_second, 1),
            }
        results["stages_images_per_cpu_second"] = stages(
            source.items[:64], AugmentConfig(), args.threads
        )
    with tempfile.TemporaryDirectory() as root:
        make_jpegs(root, max(32, args.images // 4), size=(768, 1024))
        source = _source(root)
        for name, dct in (
            ("large_1024x768_dct_scaling", True),
            ("large_1024x768_full_decode", False),
        ):
            config = AugmentConfig(randaugment=False, jpeg_dct_scaling=dct)
            ips, per_cpu_second = measure(
                source, config, args.batch_size, max(4, args.batches // 3), args.threads
            )
            results[name] = {
                "images_per_second": round(ips, 1),
                "images_per_cpu_second": round(per_cpu_second, 1),
            }
    print(json.dumps(results, indent=2))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
