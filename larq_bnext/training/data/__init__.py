"""The data side of a run: datasets, their ``tf.data`` pipelines, label ablations, bad files.

* :mod:`~larq_bnext.training.data.datasets`: digits, image folders and TFDS as a
  :class:`DataSource`, and its training and evaluation streams (re-exported here);
* :mod:`~larq_bnext.training.data.pipelines`: the ``tf.data`` training and evaluation pipelines;
* :mod:`~larq_bnext.training.data.labels`: label fractions and label noise (ablations);
* :mod:`~larq_bnext.training.data.skipped`: unreadable images, skipped, counted and listed;
* :mod:`~larq_bnext.training.data.synthetic_imagenet`: a fake ImageNet folder tree for smoke
  runs.

Examples:
    >>> from larq_bnext.training import data
    >>> train, test = data.load_digits(image_size=32)
    >>> train.num_classes
    10
"""

from larq_bnext.training.data.datasets import (
    IMAGE_EXTENSIONS,
    DataSource,
    eval_dataset,
    load_dataset,
    load_digits,
    load_folder,
    load_tfds,
    scan_image_folder,
    stream_seed,
    train_dataset,
)

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
