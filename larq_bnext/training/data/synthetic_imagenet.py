"""A synthetic ImageNet-format image folder, for smoke tests of the real recipe offline.

:func:`write_imagenet_folder` writes ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (the
layout ``--dataset=folder`` reads) with images shaped like ImageNet's: sides of 300-500 px,
mostly landscape with some portrait and square ones, the longer side usually 500, JPEG
quality 90. The class folders are real ImageNet WordNet ids. Optionally the tree holds the
odd files that the real ILSVRC-2012 training set has too: a greyscale JPEG, a CMYK JPEG and a
PNG file named ``.JPEG``.

Each class has its own mean colour and stripe orientation under noise, so a model can learn
something from a few steps; the images are not meant to measure accuracy. Everything is drawn
from one seed: the same call writes the same bytes.

Used by the recipe smoke test (``tests/``) and ``benchmarks/recipe_smoke.py``::

    python -m larq_bnext.training.data.synthetic_imagenet /tmp/fake_imagenet --classes=4
"""

from __future__ import annotations

import io
import os

import numpy as np

__all__ = ["write_imagenet_folder", "ImageFolderInfo"]


class ImageFolderInfo(dict):
    """What :func:`write_imagenet_folder` wrote: a dict with ``root``, ``classes`` (the wnids,
    sorted), ``train``/``val`` (image counts), ``sizes`` (``(height, width)`` of every image)
    and ``quirks`` (the paths of the odd files)."""


def _image_size(rng: np.random.Generator, min_side: int, max_side: int) -> tuple[int, int]:
    """An ImageNet-like ``(height, width)``: usually 500 on the longer side, 3:4-ish."""
    longer = max_side if rng.random() < 0.7 else int(rng.integers(min_side, max_side + 1))
    ratio = float(rng.choice([4 / 3, 4 / 3, 4 / 3, 3 / 2, 1.0, 16 / 9]))
    shorter = int(np.clip(round(longer / ratio), min_side, longer))
    if rng.random() < 0.25:  # portrait
        return longer, shorter
    return shorter, longer


def _render(rng: np.random.Generator, label: int, num_classes: int, height: int, width: int):
    """An RGB uint8 image: the class's colour and stripes, a random blob, noise."""
    hue = 2 * np.pi * label / max(num_classes, 1)
    base = 128 + 80 * np.cos(hue + np.array([0.0, 2.1, 4.2]))
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = np.pi * label / max(num_classes, 1) + rng.normal(0, 0.1)
    period = rng.uniform(20, 60)
    stripes = np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)
    cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
    radius = rng.uniform(0.1, 0.35) * min(height, width)
    blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * radius**2))
    image = base + 40 * stripes[..., None] + 60 * blob[..., None] * rng.uniform(-1, 1, 3)
    image += rng.normal(0, 12, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _encode(image: np.ndarray, mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    from PIL import Image

    pil = Image.fromarray(image, "RGB")
    if mode != "RGB":
        pil = pil.convert(mode)
    buffer = io.BytesIO()
    pil.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _wnids(count: int) -> list[str]:
    from larq_bnext.preprocessing import imagenet_class_index

    index = imagenet_class_index()
    if not 1 <= count <= len(index):
        raise ValueError(f"classes must be between 1 and {len(index)}, not {count}.")
    step = len(index) // count  # spread over the hierarchy (fish, birds, ..., objects)
    return sorted(index[i * step][0] for i in range(count))


def write_imagenet_folder(
    root: str | os.PathLike,
    classes: int = 4,
    train_per_class: int = 8,
    val_per_class: int = 2,
    min_side: int = 300,
    max_side: int = 500,
    quirks: bool = True,
    seed: int = 0,
) -> ImageFolderInfo:
    """Write a synthetic ImageNet-format tree ``root/{train,val}/<wnid>/*.JPEG``.

    File names follow ILSVRC-2012 (``<wnid>_<n>.JPEG`` for training images,
    ``ILSVRC2012_val_<n>.JPEG`` for validation ones).

    Args:
        root: the folder to write (created; it must not hold a ``train`` or ``val`` folder).
        classes: number of classes (ImageNet wnids spread over the 1,000).
        train_per_class: training images per class.
        val_per_class: validation images per class.
        min_side: the smallest image side in pixels.
        max_side: the largest image side in pixels.
        quirks: replace three training images by the odd files of the real training set: a
            greyscale JPEG, a CMYK JPEG and a PNG named ``.JPEG``, the first training image
            of the first three classes (needs ``classes >= 3``).
        seed: the seed of every random choice.

    Returns:
        An :class:`ImageFolderInfo`.

    Raises:
        ValueError: for impossible sizes or counts, or when ``root`` already holds a tree.
    """
    if not 16 <= min_side <= max_side:
        raise ValueError(f"Need 16 <= min_side <= max_side, got {min_side} and {max_side}.")
    if train_per_class < 1 or val_per_class < 1:
        raise ValueError("train_per_class and val_per_class must be at least 1.")
    if quirks and classes < 3:
        raise ValueError("quirks=True needs at least 3 classes (one odd file in each of three).")
    root = os.fspath(root)
    for split in ("train", "val"):
        if os.path.exists(os.path.join(root, split)):
            raise ValueError(f"{root} already holds {split}/: write into an empty folder.")
    rng = np.random.default_rng(seed)
    wnids = _wnids(classes)
    info = ImageFolderInfo(root=root, classes=wnids, train=0, val=0, sizes=[], quirks=[])
    odd = ["L", "CMYK", "PNG"] if quirks else []
    val_number = 0
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for label, wnid in enumerate(wnids):
            folder = os.path.join(root, split, wnid)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                height, width = _image_size(rng, min_side, max_side)
                image = _render(rng, label, classes, height, width)
                if split == "train":
                    name = f"{wnid}_{i + 1}.JPEG"
                else:
                    val_number += 1
                    name = f"ILSVRC2012_val_{val_number:08d}.JPEG"
                path = os.path.join(folder, name)
                kind = odd.pop(0) if split == "train" and odd and i == 0 else "RGB"
                if kind == "PNG":
                    encoded = _encode(image, fmt="PNG")
                else:
                    encoded = _encode(image, mode=kind)
                with open(path, "wb") as f:
                    f.write(encoded)
                if kind != "RGB":
                    info["quirks"].append(path)
                info[split] += 1
                info["sizes"].append((height, width))
    return info


def main(argv=None) -> None:
    """Command line: ``python -m larq_bnext.training.data.synthetic_imagenet ROOT [...]``.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).
    """
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--train_per_class", type=int, default=8)
    parser.add_argument("--val_per_class", type=int, default=2)
    parser.add_argument("--min_side", type=int, default=300)
    parser.add_argument("--max_side", type=int, default=500)
    parser.add_argument("--noquirks", dest="quirks", action="store_false")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    info = write_imagenet_folder(**vars(args))
    counts = f"{info['train']} train / {info['val']} val images"
    print(f"{counts} of {len(info['classes'])} classes in {info['root']}")


if __name__ == "__main__":
    main()
