"""Dataset loaders: the image-folder tree (with a corrupt JPEG), the embedded digits, TFDS."""

import os

import numpy as np
import pytest
import tensorflow as tf

from larq_bnext.augment import AugmentConfig
from larq_bnext.training.data import datasets as data
from larq_bnext.training.data.skipped import SkipLog


def _jpeg(path, seed, size=(40, 56)):
    image = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    tf.io.write_file(str(path), tf.io.encode_jpeg(image))


def make_tree(root, classes=("cat", "ant"), per_class=3, val_per_class=1):
    """train/<class>/*.JPEG and val/<class>/*.JPEG of random images."""
    seed = 0
    for split, count in (("train", per_class), ("val", val_per_class)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                seed += 1
                _jpeg(folder / f"{name}_{i}.JPEG", seed)
    return root


def test_folder_loader_skips_and_counts_a_corrupt_jpeg(tmp_path):
    root = make_tree(tmp_path)
    corrupt = root / "train" / "cat" / "broken.JPEG"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(300))  # JPEG header, no end marker
    (root / "train" / "ant" / "notes.txt").write_text("not an image")
    train, val = data.load_folder(str(root))
    assert train.class_names == ["ant", "cat"] and train.num_classes == 2
    assert train.num_examples == 6 and val.num_examples == 2
    assert train.skipped == [str(corrupt)] and val.skipped == []
    assert sorted(np.bincount(train.labels)) == [3, 3]
    assert all("/ant/" in p for p, y in zip(train.items, train.labels, strict=True) if y == 0)

    config = AugmentConfig(image_size=32, randaugment=False)
    batches = list(data.train_dataset(train, 3, config, seed=0))
    assert len(batches) == 2
    for images, labels in batches:
        assert images.shape == (3, 32, 32, 3) and labels.dtype == tf.int64
    images, labels = next(iter(data.eval_dataset(val, 8, 32)))
    assert images.shape == (2, 32, 32, 3) and sorted(labels.numpy()) == [0, 1]

    # A corrupt file the header check did not see is skipped by the pipeline, not fatal, and
    # recorded; the epoch still has its 7 full batches (the next files of the order fill in).
    unchecked, _ = data.load_folder(str(root), verify=False)
    assert unchecked.num_examples == 7 and unchecked.skipped == []
    log = SkipLog("train", unchecked.num_examples)
    stream = data.train_dataset(unchecked, 1, config, seed=0, skip_log=log)
    assert sum(int(x.shape[0]) for x, _ in stream) == 7
    assert log.paths == [str(corrupt)]


def test_folder_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_folder(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="train/ and val/"):
        data.load_folder(str(tmp_path / "empty"))
    flat = tmp_path / "flat"
    (flat / "val" / "a").mkdir(parents=True)
    (flat / "train").mkdir()
    _jpeg(flat / "train" / "x.JPEG", 1)
    with pytest.raises(ValueError, match="own sub-folder"):
        data.load_folder(str(flat))
    nofiles = tmp_path / "nofiles"
    (nofiles / "train" / "a").mkdir(parents=True)
    (nofiles / "val" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="No images"):
        data.load_folder(str(nofiles))
    extra = make_tree(tmp_path / "extra")
    (extra / "val" / "zebra").mkdir()
    with pytest.raises(ValueError, match="zebra"):
        data.load_folder(str(extra))
    with pytest.raises(ValueError, match="--data_dir"):
        data.load_dataset("folder", None)


def test_embedded_digits():
    train, test = data.load_digits(image_size=32)
    assert train.items.shape == (1437, 32, 32, 3) and test.items.shape == (360, 32, 32, 3)
    assert train.items.dtype == np.uint8 and train.items.max() == 255 and train.items.min() == 0
    np.testing.assert_array_equal(train.items[..., 0], train.items[..., 2])  # grey as RGB
    assert train.num_classes == 10 and sorted(set(test.labels)) == list(range(10))
    assert np.bincount(test.labels).min() >= 35  # stratified split
    images, labels = next(iter(data.eval_dataset(test, 360, 32)))
    assert images.shape == (360, 32, 32, 3)
    np.testing.assert_array_equal(labels.numpy(), test.labels)


def test_tfds_source_reads_encoded_images(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        train, val = data.load_tfds("imagenet2012", data_dir=str(tmp_path))
        assert train.num_classes == 1000 and len(train.class_names) == 1000
        config = AugmentConfig(image_size=32, randaugment=False, flip=False)
        images, labels = next(iter(data.train_dataset(train, 2, config, seed=0)))
        assert images.shape == (2, 32, 32, 3) and labels.shape == (2,)
        images, labels = next(iter(data.eval_dataset(val, 3, 32)))
        assert images.shape[1:] == (32, 32, 3)
