"""Draw the augmentation page's pictures (docs/augment/*.png) with larq_bnext.augment's layers.

    PYTHONPATH=. python docs/augment/make_figures.py

``ops.png``: each of timm's 15 RandAugment ops (BNext's ``inc1`` variants, the positive sign)
at magnitudes 0, 5 and 10 on scikit-learn's sample photograph ``china.jpg``; ``stage.png``:
BNext's whole training stage (:func:`larq_bnext.augment.bnext_augmentation`, crop, flip,
RandAugment) on the two sample photographs, four seeds each. Saved with an adaptive palette
to stay small.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw
from sklearn.datasets import load_sample_image

from larq_bnext.augment import bnext_augmentation
from larq_bnext.augment.layers import OP_LAYERS
from larq_bnext.augment.randaugment import INCREASING_OPS

HERE = os.path.dirname(os.path.abspath(__file__))
SIDE = 112
MAGNITUDES = (0.0, 5.0, 10.0)


def _photo(name: str, size) -> np.ndarray:
    return np.asarray(Image.fromarray(load_sample_image(name)).resize(size, Image.BICUBIC))


def _save(grid: np.ndarray, labels, columns, name: str, label_width: int) -> None:
    rows = len(labels)
    canvas = Image.new("RGB", (label_width + grid.shape[1], 16 + grid.shape[0]), "white")
    canvas.paste(Image.fromarray(grid.astype(np.uint8)), (label_width, 16))
    draw = ImageDraw.Draw(canvas)
    cell_h = grid.shape[0] // rows
    cell_w = grid.shape[1] // len(columns)
    for i, text in enumerate(labels):
        draw.text((4, 16 + i * cell_h + cell_h // 2 - 6), text, fill="black")
    for j, text in enumerate(columns):
        draw.text((label_width + j * cell_w + 4, 2), text, fill="black")
    canvas = canvas.quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    canvas.save(os.path.join(HERE, name), optimize=True)


def ops_grid() -> None:
    """Each op at magnitudes 0, 5 and 10: one row per op."""
    photo = tf.constant(_photo("china.jpg", (SIDE * 4 // 3, SIDE))[None], tf.float32)
    rows = []
    for name in INCREASING_OPS:
        layer_class, increasing = OP_LAYERS[name]
        layer = layer_class(increasing=increasing)
        cells = []
        for magnitude in MAGNITUDES:
            draw = {"magnitude": tf.constant([magnitude]), "sign": tf.constant([1.0])}
            cells.append(layer.augment_images(photo, draw)[0].numpy())
        rows.append(np.concatenate(cells, axis=1))
    labels = [f"{layer_class.__name__}" for layer_class, _ in map(OP_LAYERS.get, INCREASING_OPS)]
    columns = [f"magnitude {m:g}" for m in MAGNITUDES]
    _save(np.concatenate(rows, axis=0), labels, columns, "ops.png", 96)


def stage_grid() -> None:
    """The whole training stage (no normalisation shown) on two photographs, four seeds."""
    augment = bnext_augmentation(image_size=SIDE)
    stage = augment.crop, augment.randaugment
    rows = []
    for name in ("china.jpg", "flower.jpg"):
        photo = tf.constant(_photo(name, (320, 240))[None], tf.float32)
        cells = [tf.image.resize(photo, (SIDE, SIDE * 4 // 3))[0].numpy()[:, :SIDE]]
        for seed in range(4):
            crop_seed, ra_seed = tf.unstack(
                tf.random.experimental.stateless_split(tf.constant([seed, 0], tf.int64), 2)
            )
            image = stage[0](photo, seed=crop_seed)
            cells.append(stage[1](image, seed=ra_seed)[0].numpy())
        rows.append(np.concatenate(cells, axis=1))
    columns = ["original"] + [f"seed {s}" for s in range(4)]
    _save(np.concatenate(rows, axis=0), ["china", "flower"], columns, "stage.png", 48)


if __name__ == "__main__":
    ops_grid()
    stage_grid()
    for name in ("ops.png", "stage.png"):
        print(name, os.path.getsize(os.path.join(HERE, name)) // 1024, "kB")
