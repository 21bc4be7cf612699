"""How far the digits demo's test top-1 moves when a few indifferent binary weights flip.

    python benchmarks/sign_flips.py RUN_DIR [--part=student] [--seed=0] [--trials=3]

``RUN_DIR`` is the output folder of a digits run (``python -m larq_bnext.train``) with the
given ``--seed``. The script loads ``RUN_DIR/<part>/last.weights.h5``, counts the latent
binary weights near zero (the ones a step at the floor learning rate can still flip), then
flips ``k`` of the 200 weights nearest zero, chosen at random, for several ``k``, and prints
the test top-1 each time (BatchNorm statistics re-estimated on the training images, as the
demo evaluates). The spread of those scores is the resolution of the 360-image test split
for sign noise of weights the loss does not care about.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import tensorflow as tf

from larq_bnext.training import RunConfig
from larq_bnext.training.builders import build_datasets, build_student
from larq_bnext.training.method.batchnorm_stats import reestimate_batchnorm
from larq_bnext.training.recipe import resolve


def _top1(model, data) -> float:
    reestimate_batchnorm(model, data.train_stats)
    hits = count = 0
    for images, labels in data.eval_ds:
        predicted = tf.argmax(model(images, training=False), -1)
        labels = tf.reshape(labels, [-1]) if labels.shape.rank == 1 else tf.argmax(labels, -1)
        hits += int(tf.reduce_sum(tf.cast(predicted == tf.cast(labels, predicted.dtype), tf.int32)))
        count += int(images.shape[0])
    return 100.0 * hits / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--part", default="student", help="student or baseline (labels only)")
    parser.add_argument("--seed", type=int, default=0, help="the run's --seed")
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()

    config = resolve(
        RunConfig(dataset="digits", seed=args.seed, output_dir=args.run_dir, verbose=0)
    )
    data = build_datasets(config)
    model = build_student(config, data, name=args.part)
    model.load_weights(os.path.join(args.run_dir, args.part, "last.weights.h5"))
    kernels = [v for v in model.trainable_variables if v.shape.rank == 4 and "binary" in v.name]
    saved = [v.numpy() for v in kernels]
    magnitudes = np.concatenate([np.abs(s).ravel() for s in saved])
    print(f"binary kernels: {len(kernels)}, {magnitudes.size} weights")
    for threshold in (7e-7, 2.2e-6, 1e-5):
        print(f"  |w| < {threshold:g}: {(magnitudes < threshold).sum()} weights")
    base = _top1(model, data)
    print(f"test top-1 as saved: {base:.2f} %")
    nearest = np.argsort(magnitudes)[:200]
    rng = np.random.default_rng(0)
    for k in (5, 10, 20, 50):
        scores = []
        for _ in range(args.trials):
            picked = rng.choice(nearest, k, replace=False)
            offset = 0
            for variable, values in zip(kernels, saved, strict=True):
                flat = values.copy().ravel()
                local = picked[(picked >= offset) & (picked < offset + flat.size)] - offset
                flat[local] = -flat[local]
                variable.assign(flat.reshape(values.shape))
                offset += flat.size
            scores.append(_top1(model, data))
        for variable, values in zip(kernels, saved, strict=True):
            variable.assign(values)
        print(f"flip {k:2d} of the 200 nearest zero: " + ", ".join(f"{s:.2f}" for s in scores))


if __name__ == "__main__":
    main()
