"""The sparse-matrix bicubic resize against TensorFlow's own ``ScaleAndTranslate`` kernel."""

import numpy as np
import pytest
import tensorflow as tf

from larq_bnext.images.resampling import keys_cubic, resample_matrix, resize_window


def _image(height, width, seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(0, 255, (height, width, 3)), tf.float32)


def test_keys_kernel_hand_values():
    # a = -0.5: k(0) = 1, k(1) = k(2) = 0, k(0.5) = 0.5625, k(1.5) = -0.0625.
    x = tf.constant([0.0, 0.5, 1.0, 1.5, 2.0, -0.5, 3.0])
    np.testing.assert_allclose(keys_cubic(x), [1, 0.5625, 0, -0.0625, 0, 0.5625, 0], atol=1e-7)


@pytest.mark.parametrize(
    "shape", [(60, 90), (375, 500), (500, 375), (17, 300), (224, 224), (120, 100), (1, 1), (2, 5)]
)
def test_resize_is_tensorflows_antialiased_bicubic(shape):
    image = _image(*shape)
    ours = resize_window(image, 224)
    theirs = tf.image.resize(image, [224, 224], "bicubic", antialias=True)
    # The same weights and order of sums; float32 rounding of the weights differs slightly.
    np.testing.assert_allclose(ours, theirs, atol=0.02)
    assert ours.shape == (224, 224, 3) and ours.dtype == tf.float32


def test_rows_of_the_matrix_are_normalised_spans():
    sparse = resample_matrix(100, 40)  # shrinking: kernel 2.5x wider
    tf.debugging.assert_equal(tf.sparse.reorder(sparse).indices, sparse.indices)  # canonical
    matrix = tf.sparse.to_dense(sparse)  # raises on a repeated index
    np.testing.assert_allclose(tf.reduce_sum(matrix, axis=1), 1.0, atol=1e-6)
    taps = tf.reduce_sum(tf.cast(matrix != 0, tf.int32), axis=1).numpy()
    assert taps.max() == 10  # 4 taps x 2.5
    upscale = tf.sparse.to_dense(resample_matrix(10, 40)).numpy()
    assert (np.count_nonzero(upscale, axis=1) <= 4).all()
    np.testing.assert_allclose(upscale.sum(axis=1), 1.0, atol=1e-6)
    # Spans cut by the edges: the first and last rows keep only the taps inside the axis.
    assert np.count_nonzero(upscale[0]) < 4 and np.count_nonzero(upscale[-1]) < 4


def test_flip_mirrors_the_output_exactly():
    image = _image(70, 130)
    np.testing.assert_array_equal(
        resize_window(image, 48, flip=True), resize_window(image, 48)[:, ::-1]
    )
    np.testing.assert_array_equal(
        resize_window(image, 48, flip=tf.constant(False)), resize_window(image, 48)
    )


@pytest.mark.parametrize(
    "window", [(0.0, 0.0, 80.0, 120.0), (10.5, 3.25, 40.0, 71.5), (30.0, 60.0, 12.5, 9.75)]
)
def test_fractional_windows_sample_where_scale_and_translate_samples(window):
    # ScaleAndTranslate maps output x to input (x + 0.5) / scale - translation / scale.
    image = _image(80, 120, seed=3)
    top, left, height, width = window
    size = 32
    scale = tf.constant([size / height, size / width])
    translation = -tf.constant([top, left]) * scale
    theirs = tf.raw_ops.ScaleAndTranslate(
        images=image[None],
        size=[size, size],
        scale=scale,
        translation=translation,
        kernel_type="keyscubic",
        antialias=True,
    )[0]
    np.testing.assert_allclose(resize_window(image, size, window=window), theirs, atol=0.02)


def test_large_images_are_resampled_in_blocks_to_the_same_bits(monkeypatch):
    from larq_bnext.images import resampling

    image = tf.constant(np.random.default_rng(4).integers(0, 256, (90, 130, 3)), tf.uint8)
    window = (10.5, 3.25, 70.0, 101.5)
    whole = resize_window(image, 48, window, flip=True)
    monkeypatch.setattr(resampling, "BLOCK_PIXELS", 90 * 7)  # blocks of 7 columns, 19 in all
    np.testing.assert_array_equal(resize_window(image, 48, window, flip=True), whole)
