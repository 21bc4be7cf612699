"""Child process of tests/images/test_surfaces.py: one public surface over the whole matrix.

    python -m tests.images._surface_worker SURFACE ROOT OUT.json

Writes the matrix (:mod:`tests.images.matrix`) under ROOT, runs SURFACE over every case and
writes what happened to OUT.json, with the growth of this process's peak resident memory
(``ru_maxrss``) during each case (or during the whole call, for the folder surfaces). The
surface is warmed up on an ordinary image first, so that one-time costs (kernels, traces,
imports) are not charged to the first case.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys

import numpy as np


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# The tree's folder: a Latin-1 name, as a scraped data set may have (shown as ``tr\xe9e``).
TREE = b"tr\xe9e"


def _tree(root: bytes) -> bytes:
    """An image-folder tree, itself in a folder whose name is not UTF-8 (``TREE``): the matrix
    in class ``a`` of both splits, ordinary JPEGs in a class whose name is not UTF-8."""
    from tests.images import matrix

    tree = os.path.join(root, TREE)
    for split in (b"train", b"val"):
        matrix.write(os.path.join(tree, split, b"a"))
        other = os.path.join(tree, split, b"cl\xe4ss")
        os.makedirs(other)
        for i in range(4):
            matrix._pil("RGB", "JPEG", seed=20 + i)(os.path.join(other, b"%d.jpg" % i))
    return tree


def _warm_tree(root: bytes) -> bytes:
    """A tree of one ordinary JPEG per split, for the warm-up."""
    from tests.images import matrix

    warm = os.path.join(root, b"warm")
    for split in (b"train", b"val"):
        os.makedirs(os.path.join(warm, split, b"x"))
        matrix._pil("RGB", "JPEG")(os.path.join(warm, split, b"x", b"0.jpg"))
    return warm


def predict(root: bytes) -> dict:
    import larq_bnext
    from larq_bnext import predict
    from larq_bnext.keras2 import set_random_seed
    from tests.images import matrix

    paths = matrix.write(os.path.join(root, b"files"))
    set_random_seed(0)
    model = larq_bnext.BNext((8, 16), input_shape=(32, 32, 3), classifier_activation=None)
    predict.classify([paths[b"rgb.jpg"], paths[b"grey.png"]], model, top=3)  # warm-up
    results = {}
    for name, path in paths.items():
        before = _peak_mib()
        # The path as sys.argv gives it: str, undecodable bytes as surrogate escapes.
        (result,) = predict.classify([os.fsdecode(path)], model, top=3)
        results[matrix.shown(name)] = dict(
            error=result.error,
            classes=len(result.classes),
            name=result.name,
            rss_mib=_peak_mib() - before,
        )
    return results


def eval_transform(root: bytes) -> dict:
    import tensorflow as tf

    from larq_bnext.preprocessing import IMAGENET_STD, eval_transform

    rng = np.random.default_rng(0)
    cases = {
        "1x1": rng.integers(0, 256, (1, 1, 3), np.uint8),
        "1x20000": rng.integers(0, 256, (20000, 1, 3), np.uint8),
        "20000x1": rng.integers(0, 256, (1, 20000, 3), np.uint8),
        "2x200000": rng.integers(0, 256, (200000, 2, 3), np.uint8),
        "grey 5000x3": rng.integers(0, 256, (3, 5000, 1), np.uint8),
        "float64": rng.uniform(0, 255, (300, 400, 3)),
        "uint16": rng.integers(0, 256, (300, 400, 3)).astype(np.uint16),
        "4 channels": rng.integers(0, 256, (30, 40, 4), np.uint8),
        "a batch": rng.integers(0, 256, (2, 30, 40, 3), np.uint8),
    }
    eval_transform(cases["float64"])  # warm-up
    in_graph = tf.function(eval_transform, input_signature=[tf.TensorSpec([None, None, 3])])
    in_graph(tf.zeros([30, 40, 3]))
    results = {}
    for name, image in cases.items():
        before = _peak_mib()
        try:
            out = eval_transform(image).numpy()
            graph = in_graph(tf.cast(image, tf.float32)).numpy() if image.shape[-1] == 3 else out
            # In a graph the same arithmetic may round differently in the last bit, which moves
            # a value that sits on .5 by one grey level (1 / 255 / std after normalisation).
            grey_levels = np.abs(graph - out) * 255 * np.array(IMAGENET_STD)
            results[name] = dict(
                shape=list(out.shape),
                finite=bool(np.isfinite(out).all()),
                graph_max_grey_levels=float(grey_levels.max()),
                graph_changed=float((grey_levels > 0.01).mean()),
            )
        except ValueError as error:
            results[name] = dict(error=str(error))
        results[name]["rss_mib"] = _peak_mib() - before
    return results


class _Messages(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def load_folder(root: bytes) -> dict:
    from absl import logging as absl_logging

    from larq_bnext.training.data import datasets as data

    tree = _tree(root)
    data.load_folder(_warm_tree(root))
    messages = _Messages()
    absl_logging.get_absl_logger().addHandler(messages)
    before = _peak_mib()
    train, val = data.load_folder(os.fsdecode(tree))
    return dict(
        items=[os.fsencode(p).decode("utf-8", "backslashreplace") for p in train.items],
        labels=[int(x) for x in train.labels],
        skipped=train.skipped,
        val_items=len(val.items),
        class_names=train.class_names,
        log=messages.lines,
        rss_mib=_peak_mib() - before,
    )


def evaluate(root: bytes) -> dict:
    from larq_bnext import evaluate

    tree = os.fsdecode(_tree(root))
    csv = os.path.join(os.fsdecode(root), "per_class.csv")
    warm = _warm_tree(root)
    evaluate.evaluate("custom", None, "folder", warm, image_size=32, stage_channels=(8, 16))
    before = _peak_mib()
    scores = evaluate.evaluate(
        "custom",
        None,
        "folder",
        tree,
        image_size=32,
        batch_size=4,
        stage_channels=(8, 16),
        per_class_output=csv,
    )
    with open(csv, encoding="utf-8") as handle:
        table = handle.read()
    return dict(
        examples=scores["examples"],
        skipped=scores["skipped_files"],
        json=json.dumps(scores),
        table=table,
        rss_mib=_peak_mib() - before,
    )


if __name__ == "__main__":
    surface, root, out = sys.argv[1:4]
    result = globals()[surface](os.fsencode(root))
    with open(out, "w") as handle:
        json.dump(result, handle)
