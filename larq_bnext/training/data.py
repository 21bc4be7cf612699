"""Datasets for training and evaluating BNext: ImageNet (TFDS or an image folder) and digits.

* :func:`load_folder` reads an ImageNet-style tree (``train/<class>/*.JPEG``,
  ``val/<class>/*.JPEG``, the layout the original reads with ``ImageFolder``); classes are the
  sorted sub-folder names of ``train``. Unreadable files are skipped and counted.
* :func:`load_tfds` reads ``imagenet2012`` (or another TFDS image classification set) with
  its manual download directory.
* :func:`load_digits` is the embedded default: scikit-learn's handwritten digits (1,797 8x8
  grey images of 10 classes, shipped with scikit-learn), upsampled to RGB, split 80/20.

Each returns a :class:`DataSource`; :func:`train_dataset` and :func:`eval_dataset` turn one
into batched ``tf.data`` pipelines with the training augmentation or the evaluation transform
of :mod:`larq_bnext.training.augmentation`.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

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
    "is_readable_image",
    "IMAGE_EXTENSIONS",
]

#: File extensions read from an image folder (those of torchvision's ImageFolder).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_DECODABLE = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclasses.dataclass
class DataSource:
    """One split of a dataset, before decoding and augmentation.

    Args:
        kind: ``"array"`` (``items`` is a uint8 array of images), ``"path"`` (file paths) or
            ``"tfds"`` (``items`` is a ``tf.data.Dataset`` of ``(encoded bytes, label)``).
        items: the images, paths or dataset.
        labels: integer labels (``None`` for ``"tfds"``, whose dataset carries them).
        num_examples: number of examples.
        num_classes: number of classes.
        class_names: class names in label order.
        skipped: files left out because they could not be read.
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
def is_readable_image(path: str) -> bool:
    """A quick structural check of an image file: not empty, known header, JPEG end marker.

    It reads the first and last bytes only. Files that pass but still fail to decode are
    skipped by the pipelines and recorded in their :class:`larq_bnext.training.skipped.SkipLog`.

    Args:
        path: the file's path.
    """
    try:
        size = os.path.getsize(path)
        if size < 16:
            return False
        with open(path, "rb") as f:
            head = f.read(16)
            if head[:3] == b"\xff\xd8\xff":  # JPEG: the end-of-image marker must be there
                f.seek(max(0, size - 1024))
                return b"\xff\xd9" in f.read()
            return (
                head.startswith(b"\x89PNG\r\n\x1a\n")
                or head[:6] in (b"GIF87a", b"GIF89a")
                or head[:2] == b"BM"
            )
    except OSError:
        return False


def _class_dirs(split_dir: str) -> list[str]:
    return sorted(
        entry.name
        for entry in os.scandir(split_dir)
        if entry.is_dir() and not entry.name.startswith(".")
    )


def scan_image_folder(split_dir: str, class_names: list[str] | None = None, verify: bool = True):
    """List the images of one split of an image-folder tree.

    Args:
        split_dir: the split's folder, holding one sub-folder per class.
        class_names: the classes (label order); defaults to the sorted sub-folders.
        verify: check every file with :func:`is_readable_image` (in threads).

    Returns:
        ``(paths, labels, class_names, skipped)``.

    Raises:
        FileNotFoundError: when ``split_dir`` does not exist.
        ValueError: when it has no class folders, a class folder is unknown, or no images.
    """
    if not os.path.isdir(split_dir):
        raise FileNotFoundError(
            f"{split_dir} does not exist. An image-folder dataset needs train/<class>/*.JPEG and "
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
        raise ValueError(f"{split_dir} has no class sub-folders.{hint}")
    if class_names is None:
        class_names = found
    else:
        unknown = sorted(set(found) - set(class_names))
        if unknown:
            raise ValueError(
                f"{split_dir} has class folders that the training split lacks: {unknown[:5]}"
                f"{' ...' if len(unknown) > 5 else ''}. Both splits need the same class folders."
            )
    index = {name: i for i, name in enumerate(class_names)}
    paths, labels = [], []
    for name in found:
        folder = os.path.join(split_dir, name)
        for root, _, files in os.walk(folder, followlinks=True):
            for file in sorted(files):
                if file.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(root, file))
                    labels.append(index[name])
    if not paths:
        raise ValueError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders of {split_dir}."
        )
    skipped = []
    if verify:
        with ThreadPoolExecutor(max_workers=16) as pool:
            ok = list(pool.map(is_readable_image, paths))
        skipped = [p for p, good in zip(paths, ok, strict=True) if not good]
        paths = [p for p, good in zip(paths, ok, strict=True) if good]
        labels = [lab for lab, good in zip(labels, ok, strict=True) if good]
        if not paths:
            raise ValueError(f"None of the images in {split_dir} is readable.")
    return paths, np.asarray(labels, np.int64), list(class_names), skipped


def load_folder(data_dir: str, verify: bool = True, val_name: str | None = None):
    """An image-folder tree (``train/<class>/*``, ``val/<class>/*``) as ``(train, val)``.

    Args:
        data_dir: the tree's root.
        verify: check each file's header and skip (and count) unreadable ones.
        val_name: the validation folder's name; defaults to ``val`` (or ``validation``).

    Raises:
        FileNotFoundError: when ``data_dir``, ``train`` or the validation folder is missing.
        ValueError: for an empty or mis-laid tree.
    """
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"--data_dir {data_dir} does not exist.")
    if val_name is None:
        val_name = next(
            (n for n in ("val", "validation") if os.path.isdir(os.path.join(data_dir, n))), "val"
        )
    train_dir, val_dir = os.path.join(data_dir, "train"), os.path.join(data_dir, val_name)
    if not os.path.isdir(train_dir) or not os.path.isdir(val_dir):
        present = sorted(os.listdir(data_dir))[:10]
        raise FileNotFoundError(
            f"{data_dir} must hold train/ and val/ folders with one sub-folder per class "
            f"(found {present}). For ImageNet from TensorFlow Datasets use --dataset=imagenet2012."
        )
    paths, labels, classes, skipped = scan_image_folder(train_dir, verify=verify)
    vpaths, vlabels, _, vskipped = scan_image_folder(val_dir, classes, verify=verify)
    name = os.path.basename(os.path.normpath(data_dir))
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
from larq_bnext.training.pipelines import eval_dataset, stream_seed, train_dataset  # noqa: E402
