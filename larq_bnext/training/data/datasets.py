"""Datasets for training and evaluating BNext: ImageNet (TFDS or an image folder) and digits.

* :func:`load_folder` reads an ImageNet-style tree (``train/<class>/*.JPEG``,
  ``val/<class>/*.JPEG``, the layout the original reads with ``ImageFolder``); classes are the
  sorted sub-folder names of ``train``. Unreadable files, and images over the pixel limit, are
  skipped and counted; names need not be UTF-8.
* :func:`load_tfds` reads ``imagenet2012`` (or another TFDS image classification set) with
  its manual download directory.
* :func:`load_digits` is the embedded default: scikit-learn's handwritten digits (1,797 8x8
  grey images of 10 classes, shipped with scikit-learn), upsampled to RGB, split 80/20.

Each returns a :class:`DataSource`; :func:`train_dataset` and :func:`eval_dataset` turn one
into batched ``tf.data`` pipelines with the training augmentation
(:mod:`larq_bnext.augment`) or the evaluation transform
(:mod:`larq_bnext.preprocessing`).
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf
from absl import logging

from larq_bnext.images.files import MAX_IMAGE_PIXELS, display_path, unreadable_reason

__all__ = [
    "DataSource",
    "load_digits",
    "load_folder",
    "load_tfds",
    "load_dataset",
    "train_dataset",
    "eval_dataset",
    "stream_seed",
    "scan_image_folder",
    "IMAGE_EXTENSIONS",
]

#: File extensions read from an image folder (those of torchvision's ImageFolder).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclasses.dataclass
class DataSource:
    """One split of a dataset, before decoding and augmentation.

    Args:
        kind: ``"array"`` (``items`` is a uint8 array of images), ``"path"`` (file paths) or
            ``"tfds"`` (``items`` is a ``tf.data.Dataset`` of ``(encoded bytes, label)``).
        items: the images, paths (as the operating system gives them) or dataset.
        labels: integer labels (``None`` for ``"tfds"``, whose dataset carries them).
        num_examples: number of examples.
        num_classes: number of classes.
        class_names: class names in label order (printable:
            :func:`larq_bnext.images.files.display_path`).
        skipped: printable names of the files left out because they could not be read.
        name: the dataset's name, for logs.
    """

    kind: str
    items: object
    labels: np.ndarray | None
    num_examples: int
    num_classes: int
    class_names: list
    skipped: list = dataclasses.field(default_factory=list)
    name: str = ""


# ----------------------------------------------------------------------------- digits
def load_digits(image_size: int = 32, test_fraction: float = 0.2, seed: int = 0):
    """scikit-learn's handwritten digits as ``(train, test)`` RGB :class:`DataSource` s.

    The 8x8 images (values 0-16) are scaled to 0-255, upsampled bilinearly to
    ``image_size`` and repeated over three channels; the split is stratified and fixed by
    ``seed`` (1,437 train / 360 test images with the defaults).

    Args:
        image_size: side of the upsampled images.
        test_fraction: fraction of the images held out for testing.
        seed: seed of the split.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    images = digits.images.astype(np.float32) * (255.0 / 16.0)
    images = tf.image.resize(images[..., None], [image_size, image_size], method="bilinear")
    images = np.repeat(np.clip(np.round(images.numpy()), 0, 255).astype(np.uint8), 3, axis=-1)
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    names = [str(d) for d in range(10)]
    return (
        DataSource("array", x_train, y_train, len(y_train), 10, names, name="digits"),
        DataSource("array", x_test, y_test, len(y_test), 10, names, name="digits"),
    )


# ----------------------------------------------------------------------------- folders
def _class_dirs(split_dir: str) -> list[str]:
    return sorted(
        entry.name
        for entry in os.scandir(split_dir)
        if entry.is_dir() and not entry.name.startswith(".")
    )


def _image_files(folder: str) -> list[str]:
    """The image files under ``folder`` (links followed, each directory once), sorted by
    directory and name."""
    found, seen = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        try:
            info = os.stat(root)
        except OSError:
            dirs[:] = []
            continue
        if (info.st_dev, info.st_ino) in seen:  # a link back to a folder already walked
            dirs[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        dirs.sort()
        found += [
            os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return found


def scan_image_folder(
    split_dir: str,
    class_names: list[str] | None = None,
    verify: bool = True,
    max_image_pixels=MAX_IMAGE_PIXELS,
):
    """List the images of one split of an image-folder tree.

    Files whose names end in :data:`IMAGE_EXTENSIONS` are the split's images (torchvision's
    ``ImageFolder`` rule), at any depth under a class folder; links are followed, each folder
    once. Names are taken as the operating system gives them (``str`` with undecodable bytes
    escaped, which every reader of the package accepts).

    Args:
        split_dir: the split's folder, holding one sub-folder per class (``str``, ``bytes``
            or a path object).
        class_names: the classes (label order, printable names as returned for the training
            split); defaults to the sorted sub-folders.
        verify: check every file's header (:func:`larq_bnext.images.files.unreadable_reason`,
            in threads): empty, truncated, not an image, a broken link, or more pixels than
            ``max_image_pixels``; such files are skipped, and the first ten logged with why.
        max_image_pixels: the pixel limit of the check (``None`` or 0: none).

    Returns:
        ``(paths, labels, class_names, skipped)``: ``class_names`` and ``skipped`` hold
        printable names (:func:`larq_bnext.images.files.display_path`).

    Raises:
        FileNotFoundError: when ``split_dir`` does not exist.
        ValueError: when it has no class folders, a class folder is unknown, or no images.
    """
    split_dir = os.fsdecode(split_dir)
    where = display_path(split_dir)
    if not os.path.isdir(split_dir):
        raise FileNotFoundError(
            f"{where} does not exist. An image-folder dataset needs train/<class>/*.JPEG and "
            "val/<class>/*.JPEG under --data_dir."
        )
    found = _class_dirs(split_dir)
    if not found:
        loose = [f for f in os.listdir(split_dir) if f.lower().endswith(IMAGE_EXTENSIONS)]
        hint = (
            f" It holds {len(loose)} images directly: put each class's images in its own "
            "sub-folder (train/<class>/*.JPEG)."
            if loose
            else ""
        )
        raise ValueError(f"{where} has no class sub-folders.{hint}")
    if class_names is None:
        class_names = [display_path(name) for name in found]
    else:
        unknown = sorted({display_path(name) for name in found} - set(class_names))
        if unknown:
            raise ValueError(
                f"{where} has class folders that the training split lacks: {unknown[:5]}"
                f"{' ...' if len(unknown) > 5 else ''}. Both splits need the same class folders."
            )
    index = {name: i for i, name in enumerate(class_names)}
    paths, labels = [], []
    for name in found:
        files = _image_files(os.path.join(split_dir, name))
        paths += files
        labels += [index[display_path(name)]] * len(files)
    if not paths:
        raise ValueError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders of {where}."
        )
    skipped = []
    if verify:
        with ThreadPoolExecutor(max_workers=16) as pool:
            reasons = list(pool.map(lambda p: unreadable_reason(p, max_image_pixels), paths))
        bad = [reason for reason in reasons if reason is not None]
        if bad:
            logging.warning(
                "Skipping %d of the %d images of %s that cannot be read%s:\n  %s",
                len(bad),
                len(paths),
                where,
                " (the first ten)" if len(bad) > 10 else "",
                "\n  ".join(bad[:10]),
            )
        skipped = [display_path(p) for p, r in zip(paths, reasons, strict=True) if r is not None]
        labels = [lab for lab, r in zip(labels, reasons, strict=True) if r is None]
        paths = [p for p, r in zip(paths, reasons, strict=True) if r is None]
        if not paths:
            raise ValueError(f"None of the images in {where} is readable (see the log).")
    return paths, np.asarray(labels, np.int64), list(class_names), skipped


def load_folder(
    data_dir: str,
    verify: bool = True,
    val_name: str | None = None,
    max_image_pixels=MAX_IMAGE_PIXELS,
):
    """An image-folder tree (``train/<class>/*``, ``val/<class>/*``) as ``(train, val)``.

    Args:
        data_dir: the tree's root (``str``, ``bytes`` or a path object).
        verify: check each file's header and skip (and count) unreadable ones.
        val_name: the validation folder's name; defaults to ``val`` (or ``validation``).
        max_image_pixels: files whose header gives more pixels are skipped (``None`` or 0:
            no limit); PIL's default. Pass the same limit to the pipelines.

    Raises:
        FileNotFoundError: when ``data_dir``, ``train`` or the validation folder is missing.
        ValueError: for an empty or mis-laid tree.
    """
    data_dir = os.fsdecode(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"--data_dir {display_path(data_dir)} does not exist.")
    if val_name is None:
        val_name = next(
            (n for n in ("val", "validation") if os.path.isdir(os.path.join(data_dir, n))), "val"
        )
    train_dir, val_dir = os.path.join(data_dir, "train"), os.path.join(data_dir, val_name)
    if not os.path.isdir(train_dir) or not os.path.isdir(val_dir):
        present = [display_path(n) for n in sorted(os.listdir(data_dir))[:10]]
        raise FileNotFoundError(
            f"{display_path(data_dir)} must hold train/ and val/ folders with one sub-folder per "
            f"class (found {present}). For ImageNet from TensorFlow Datasets use "
            "--dataset=imagenet2012."
        )
    check = dict(verify=verify, max_image_pixels=max_image_pixels)
    paths, labels, classes, skipped = scan_image_folder(train_dir, **check)
    vpaths, vlabels, _, vskipped = scan_image_folder(val_dir, classes, **check)
    name = display_path(os.path.basename(os.path.normpath(data_dir)))
    return (
        DataSource("path", paths, labels, len(paths), len(classes), classes, skipped, name),
        DataSource("path", vpaths, vlabels, len(vpaths), len(classes), classes, vskipped, name),
    )


# ----------------------------------------------------------------------------- TFDS
def load_tfds(
    name: str = "imagenet2012", data_dir: str | None = None, manual_dir: str | None = None
):
    """A TensorFlow Datasets image classification set as ``(train, validation)`` sources.

    For ``imagenet2012`` TFDS needs ``ILSVRC2012_img_train.tar`` and
    ``ILSVRC2012_img_val.tar`` in ``manual_dir`` (default ``<data_dir>/downloads/manual``)
    the first time; it then prepares the TFRecords once (hours) into ``data_dir``.

    Args:
        name: the TFDS name.
        data_dir: TFDS data directory.
        manual_dir: where the manually downloaded archives are.

    Raises:
        ImportError: without ``tensorflow-datasets`` (``pip install larq_bnext[datasets]``).
        RuntimeError: when the dataset is not prepared and cannot be.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "TFDS datasets need tensorflow-datasets: pip install 'larq_bnext[datasets]'."
        ) from error
    builder = tfds.builder(name, data_dir=data_dir)
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    except Exception as error:
        raise RuntimeError(
            f"TFDS could not prepare {name!r} ({error}). For imagenet2012, download "
            "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org into "
            "--tfds_manual_dir (or <data_dir>/downloads/manual), or use --dataset=folder with an "
            "extracted train/ and val/ tree."
        ) from error
    splits = builder.info.splits
    val_split = "test" if splits and "validation" not in splits else "validation"
    num_classes = builder.info.features["label"].num_classes
    class_names = list(builder.info.features["label"].names)

    def source(split, shuffle):
        ds = builder.as_dataset(
            split=split,
            shuffle_files=shuffle,
            decoders={"image": tfds.decode.SkipDecoding()},
            as_supervised=True,
        )
        count = splits[split].num_examples if split in splits else int(ds.cardinality())
        if count < 0:
            raise RuntimeError(f"TFDS does not know the size of {name}/{split}.")
        return DataSource("tfds", ds, None, count, num_classes, class_names, name=name)

    return source("train", True), source(val_split, False)


def load_dataset(name: str, data_dir: str | None = None, image_size: int = 32, **kwargs):
    """Load ``(train, eval)`` sources by name: ``"digits"``, ``"folder"`` or a TFDS name.

    Args:
        name: ``"digits"`` (embedded), ``"folder"`` (an image tree at ``data_dir``) or a TFDS
            dataset name such as ``"imagenet2012"``.
        data_dir: root of the folder tree, or the TFDS data directory.
        image_size: image side for ``"digits"``.
        **kwargs: passed to the loader (``manual_dir`` for TFDS, ``verify`` for folders).
    """
    if name == "digits":
        return load_digits(image_size=image_size)
    if name == "folder":
        if not data_dir:
            raise ValueError("--dataset=folder needs --data_dir (the folder with train/ and val/).")
        return load_folder(data_dir, **kwargs)
    return load_tfds(name, data_dir=data_dir, **kwargs)


# ----------------------------------------------------------------------------- pipelines
from larq_bnext.training.data.pipelines import eval_dataset, stream_seed, train_dataset  # noqa: E402
