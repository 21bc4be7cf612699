"""The training augmentation: crop sampling, decoding, keras-cv stages, output ranges."""

import math

import numpy as np
import pytest
import tensorflow as tf

import larq_bnext
from larq_bnext.augment import AugmentConfig, BNextAugmentation, RandAugment
from larq_bnext.augment.crop import (
    decode_and_random_crop,
    random_resized_crop,
    random_resized_crop_box,
)
from larq_bnext.preprocessing import preprocess_input

LOW = (0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
HIGH = (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])


def test_crop_boxes_follow_timm_sampling():
    tf.random.set_seed(0)
    height, width = 120, 200
    sample = tf.function(lambda: random_resized_crop_box(height, width))
    boxes = np.array([sample().numpy() for _ in range(300)])
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    area = h * w / (height * width)
    ratio = w / h
    # Rounding to whole pixels moves area and ratio slightly off the sampled values.
    assert area.min() >= 0.08 * 0.9 and area.max() <= 1.0
    assert ratio.min() >= 0.75 * 0.95 and ratio.max() <= 4 / 3 * 1.05
    assert area.std() > 0.15 and len(set(map(tuple, boxes))) > 250  # really random

    # No candidate can fit (the whole area at ratio 1 needs a 155-pixel square): timm's
    # fallback, a central crop clamped to the ratio range: 120 x 120 at left (200-120)/2.
    box = random_resized_crop_box(height, width, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_array_equal(box.numpy(), [0, 40, 120, 120])
    box = random_resized_crop_box(200, 120, scale=(1.0, 1.0), ratio=(0.75, 0.75))
    np.testing.assert_array_equal(box.numpy(), [20, 0, 160, 120])  # w/h 0.6 < 0.75


def test_decoded_crops_have_the_right_shape_and_range():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(60, 90, 3), dtype=np.uint8)
    config = AugmentConfig(image_size=32)
    for encoded in (tf.io.encode_jpeg(image), tf.io.encode_png(image)):
        crop = decode_and_random_crop(encoded, config).numpy()
        assert crop.shape == (32, 32, 3) and crop.dtype == np.float32
        assert crop.min() >= 0 and crop.max() <= 255
        np.testing.assert_array_equal(crop, np.round(crop))
    crop = random_resized_crop(tf.constant(image), config).numpy()
    assert crop.shape == (32, 32, 3) and 0 <= crop.min() and crop.max() <= 255
    # The whole image at scale 1 and its own ratio: a bicubic resize of the image itself.
    whole = AugmentConfig(image_size=60, crop_scale=(1.0, 1.0), crop_ratio=(1.5, 1.5), flip=False)
    out = random_resized_crop(tf.constant(image), whole).numpy()
    expected = tf.image.resize(image.astype(np.float32), (60, 60), "bicubic", antialias=True)
    np.testing.assert_allclose(out, np.clip(np.round(expected.numpy()), 0, 255), atol=1)


def test_batch_stage_flip_randaugment_mixup_cutmix_erasing():
    config = AugmentConfig(
        image_size=32, randaugment=False, mixup_alpha=0.8, cutmix_alpha=1.0, random_erasing=0.5
    )
    augmenter = BNextAugmentation(config, num_classes=5, seed=1)
    images = np.random.default_rng(2).uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 4, 0])
    out, soft = augmenter(tf.constant(images), tf.constant(labels))
    assert out.shape == (6, 32, 32, 3) and out.dtype == tf.float32
    assert soft.shape == (6, 5)
    np.testing.assert_allclose(soft.numpy().sum(axis=1), 1.0, rtol=1e-5)

    plain = BNextAugmentation(AugmentConfig(image_size=32), num_classes=5, seed=1)
    # timm's rand-m7-mstd0.5-inc1 itself (augment.randaugment), with the ImageNet-mean fill.
    assert plain.policy.ops == larq_bnext.augment.randaugment.INCREASING_OPS
    assert isinstance(plain.randaugment, RandAugment)
    assert (plain.policy.magnitude, plain.policy.magnitude_std, plain.policy.prob) == (7, 0.5, 0.5)
    assert plain.policy.fill == (124, 116, 104)
    for augmenter in (plain,):
        out, same = augmenter(tf.constant(images), tf.constant(labels))
        np.testing.assert_array_equal(same.numpy(), labels)
        # Flip and RandAugment stay on [0, 255], so the normalised values stay in range.
        assert (out.numpy() >= LOW - 1e-4).all() and (out.numpy() <= HIGH + 1e-4).all()
    # With a seed, the batch stage is a pure function of (images, labels, seed).
    seeded = [plain(tf.constant(images), tf.constant(labels), seed=[4, 2])[0] for _ in range(2)]
    np.testing.assert_array_equal(seeded[0].numpy(), seeded[1].numpy())
    other = plain(tf.constant(images), tf.constant(labels), seed=[4, 3])[0]
    assert not np.array_equal(seeded[0].numpy(), other.numpy())
    # The pipeline's crops come flipped: the batch stage flips only when asked.
    config = AugmentConfig(image_size=32, randaugment=False)
    expected = preprocess_input(images)
    out, _ = BNextAugmentation(config, num_classes=5)(tf.constant(images), tf.constant(labels))
    np.testing.assert_array_equal(out, expected)
    flip_only = BNextAugmentation(config, num_classes=5, flip=True)
    out, _ = flip_only(tf.constant(images), tf.constant(labels), seed=[1, 1])
    flipped = [not np.array_equal(out[i], expected[i]) for i in range(6)]
    for i in range(6):
        np.testing.assert_array_equal(out[i], expected[i, :, ::-1] if flipped[i] else expected[i])
    assert 0 < sum(flipped) < 6


def test_model_side_stage_runs_inside_the_train_step():
    inputs = tf.keras.Input((32, 32, 3))
    x = tf.keras.layers.GlobalAveragePooling2D()(inputs)
    student = tf.keras.Model(inputs, tf.keras.layers.Dense(5)(x))
    config = AugmentConfig(image_size=32, randaugment=False, cutmix_alpha=1.0)
    augmenter = BNextAugmentation(config, 5, seed=0)
    distiller = larq_bnext.Distiller(student, augmenter=augmenter)
    distiller.compile(optimizer=larq_bnext.AdamW(1e-3))
    crops = np.random.default_rng(3).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    labels = np.arange(4)
    # What the student must see in the first step: the batch stage under that step's seed
    # (normalised, CutMix-ed images and mixed one-hot labels).
    images, soft_labels = augmenter(crops, labels, seed=distiller._augment_seed())
    expected = tf.keras.losses.categorical_crossentropy(
        soft_labels, student(images), from_logits=True
    )
    plain = tf.keras.losses.sparse_categorical_crossentropy(
        labels, student(crops), from_logits=True
    )
    logs = distiller.train_on_batch(crops, labels, return_dict=True)
    assert logs["loss"] == pytest.approx(float(tf.reduce_mean(expected)), rel=1e-5)
    # ... which is not the loss of the raw batch: a step without the stage fails the test.
    assert abs(float(tf.reduce_mean(expected)) - float(tf.reduce_mean(plain))) > 0.1


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="random_erasing"):
        AugmentConfig(random_erasing=2)
    with pytest.raises(ValueError, match="Unknown section"):
        AugmentConfig(randaugment_policy="rand-m7-q1")
    with pytest.raises(ValueError, match="bicubic"):
        AugmentConfig(randaugment_interpolation="bicubic")


def _smooth_jpeg(height, width):
    # A smooth photograph-like picture: a bicubic enlargement of coarse random colours.
    rng = np.random.default_rng(5)
    low = rng.uniform(0, 255, (height // 64 + 2, width // 64 + 2, 3))
    image = tf.image.resize(low, (height, width), "bicubic")
    return tf.io.encode_jpeg(tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8), quality=95)


def test_dct_scaled_crops_show_the_same_window_as_full_decoding():
    encoded = _smooth_jpeg(1200, 1600)
    full = AugmentConfig(jpeg_dct_scaling=False, flip=False)
    fast = AugmentConfig(flip=False)
    ratios = set()
    for i in range(12):
        seed = tf.constant([11, i], tf.int64)
        box = random_resized_crop_box(1200, 1600, seed=seed).numpy()
        ratios.add(int(2 ** float(tf.floor(tf.math.log(min(box[2:]) / 224.0) / math.log(2)))))
        exact = decode_and_random_crop(encoded, full, seed).numpy()
        scaled = decode_and_random_crop(encoded, fast, seed).numpy()
        # A window off by one full-size pixel shifts these ramps by several levels.
        assert np.abs(exact - scaled).mean() < 0.6, box  # measured 0.14-0.40
        np.testing.assert_array_equal(scaled, np.round(scaled))
    assert {2, 4} <= ratios  # both DCT scales ran
    # The bound sees a window one full-size pixel off: the same crops of the picture shifted.
    image = tf.image.decode_jpeg(encoded)
    shifted = tf.concat([image[:, 1:], image[:, -1:]], axis=1)
    for i in range(4):
        seed = tf.constant([11, i], tf.int64)
        moved = random_resized_crop(shifted, full, seed) - random_resized_crop(image, full, seed)
        assert np.abs(moved.numpy()).mean() > 0.6  # measured 1.3-1.4


def test_the_flip_is_part_of_the_crop():
    encoded = _smooth_jpeg(300, 400)
    plain = AugmentConfig(image_size=64, flip=False)
    flipping = AugmentConfig(image_size=64)
    flipped = []
    for i in range(16):
        seed = tf.constant([3, i], tf.int64)
        reference = decode_and_random_crop(encoded, plain, seed).numpy()
        out = decode_and_random_crop(encoded, flipping, seed).numpy()
        flipped.append(not np.array_equal(out, reference))
        np.testing.assert_array_equal(out, reference[:, ::-1] if flipped[-1] else reference)
        if flipped[-1]:  # decoded images (other formats, arrays) flip the same way
            image = tf.image.decode_jpeg(encoded)
            np.testing.assert_array_equal(
                random_resized_crop(image, flipping, seed),
                random_resized_crop(image, plain, seed)[:, ::-1],
            )
    assert 3 <= sum(flipped) <= 13
