"""Throughput of BNext's training input pipeline on generated ImageNet-sized JPEGs.

    python benchmarks/input_pipeline.py [--images=256] [--batches=12] [--threads=N]

Writes ``--images`` random-content JPEGs at ImageNet's typical size (500x375 and 375x500,
quality 90, ~85 kB; ImageNet's average is ~110 kB) into a temporary class-folder tree, then
times the training pipeline of :mod:`larq_bnext.training.data` (read, decode the crop window, random
resized crop 224 bicubic, flip, normalise) without RandAugment, with keras-cv's RandAugment
and with timm's (BNext's ``rand-m7-mstd0.5-inc1``, the default). It prints images per
second, per ``tf.data`` thread (``--threads``), and per CPU second of the process (the per-core
figure that holds even when other jobs share the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from larq_bnext.training import data
from larq_bnext.training.augmentation import AugmentConfig


def make_jpegs(root: str, count: int, seed: int = 0) -> None:
    """Write ``count`` JPEGs of ImageNet-like size under ``root/train/<class>/``.

    Args:
        root: output folder.
        count: number of images.
        seed: random seed.
    """
    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = os.path.join(root, "train", f"n{i % 4:08d}")
        os.makedirs(folder, exist_ok=True)
        shape = (375, 500) if i % 2 == 0 else (500, 375)
        # Smooth random content compresses like a photograph rather than like noise.
        low = rng.uniform(0, 255, size=(shape[0] // 8, shape[1] // 8, 3))
        image = tf.image.resize(low, shape, method="bicubic")
        image += rng.normal(0, 9, size=(*shape, 3))
        image = tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)
        encoded = tf.io.encode_jpeg(image, quality=90)
        tf.io.write_file(os.path.join(folder, f"{i}.JPEG"), encoded)
    os.makedirs(os.path.join(root, "val", "n00000000"), exist_ok=True)


def measure(source, config: AugmentConfig, batch_size: int, batches: int, threads: int):
    """Images per wall-clock second and per CPU second of the training pipeline.

    Timed after two warm-up batches. Images per CPU second (the process's CPU time, all
    threads) is the per-core throughput even when other jobs share the machine.

    Args:
        source: a :class:`larq_bnext.training.data.DataSource`.
        config: augmentation settings.
        batch_size: batch size.
        batches: batches to time.
        threads: ``tf.data`` private thread pool size.
    """
    ds = data.train_dataset(source, batch_size, config, seed=0, repeat=True)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    iterator = iter(ds.with_options(options))
    for _ in range(2):
        next(iterator)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    images = batches * batch_size
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return images / wall, images / cpu


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--output", default=None, help="write the figures as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as root:
        make_jpegs(root, args.images)
        sizes = [
            os.path.getsize(os.path.join(d, f))
            for d, _, files in os.walk(os.path.join(root, "train"))
            for f in files
        ]
        source = data.scan_image_folder(os.path.join(root, "train"))
        source = data.DataSource("path", source[0], source[1], len(source[0]), 4, source[2])
        results = {"threads": args.threads, "mean_jpeg_kb": round(np.mean(sizes) / 1024, 1)}
        variants = (
            ("without_randaugment", dict(randaugment=False)),
            ("with_randaugment_keras_cv", dict(randaugment_policy="keras-cv")),
            ("with_randaugment_timm", dict(randaugment_policy="rand-m7-mstd0.5-inc1")),
        )
        for name, settings in variants:
            config = AugmentConfig(image_size=224, **settings)
            ips, per_cpu_second = measure(
                source, config, args.batch_size, args.batches, args.threads
            )
            results[name] = {
                "images_per_second": round(ips, 1),
                "images_per_second_per_thread": round(ips / args.threads, 1),
                "images_per_cpu_second": round(per_cpu_second, 1),
            }
    print(json.dumps(results, indent=2))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
