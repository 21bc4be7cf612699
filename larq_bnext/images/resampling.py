"""Bicubic resampling of a window of an image, as two sparse matrix products.

The training crop and the evaluation crop are resized the way PIL (and so timm) resizes:
Keys' cubic kernel (``a = -0.5``), widened by the scale factor when shrinking (anti-aliasing),
weights renormalised where the kernel runs past the image's edge. ``tf.image.resize(..., "bicubic",
antialias=True)`` computes exactly this (its ``ScaleAndTranslate`` kernel), but at 2-4 ms per
ImageNet crop on one core it was the most expensive stage of the input pipeline. Each pass
of the separable filter is a sparse ``(out, in)`` matrix with a few non-zeros per row, so
:func:`resize_window` runs it as ``tf.sparse.sparse_dense_matmul``, whose inner loop adds
whole rows of pixels (vectorised): the same arithmetic in the same order (rows, then
columns), about half the time (``benchmarks/input_pipeline.py`` reports the stage).

Two things come free with the matrices:

* a **window** with fractional corners (the crop box of an image that libjpeg decoded at
  1/2, 1/4 or 1/8 scale, see :func:`larq_bnext.images.decode.decode_jpeg_window`; the
  evaluation's centre crop, whose window in the source is fractional): the sampling
  positions are shifted and scaled, no pixel is resampled twice;
* a **horizontal flip**: the column matrix with its output columns reversed.

Example:

>>> import numpy as np, tensorflow as tf
>>> image = tf.constant(np.random.default_rng(0).uniform(0, 255, (60, 90, 3)), tf.float32)
>>> ours = resize_window(image, 32)
>>> theirs = tf.image.resize(image, [32, 32], "bicubic", antialias=True)
>>> float(tf.reduce_max(tf.abs(ours - theirs))) < 1e-3
True
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["KEYS_A", "keys_cubic", "resample_matrix", "resize_window", "BLOCK_PIXELS"]

#: The ``a`` of Keys' cubic convolution that PIL's and TensorFlow's bicubic resampling use.
KEYS_A = -0.5
#: Images with more pixels are resampled in blocks of columns of about this many pixels (48 MiB
#: of float32 RGB).
BLOCK_PIXELS = 1 << 22


def keys_cubic(x: tf.Tensor) -> tf.Tensor:
    """Keys' cubic convolution kernel with ``a =`` :data:`KEYS_A` (PIL's and TensorFlow's
    bicubic): ``(a + 2)|x|^3 - (a + 3)|x|^2 + 1`` below 1, ``a|x|^3 - 5a|x|^2 + 8a|x| - 4a``
    below 2, else 0.

    Args:
        x: distances in input pixels (float32).
    """
    a = KEYS_A
    x = tf.abs(x)
    near = (((a + 2.0) * x - (a + 3.0)) * x) * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return tf.where(x >= 2.0, 0.0, tf.where(x >= 1.0, far, near))


def resample_matrix(
    in_size, out_size: int, start=0.0, length=None, mirror=False
) -> tf.SparseTensor:
    """The ``(out_size, in_size)`` matrix that resamples one axis bicubically.

    Output pixel ``x`` samples the input at ``start + (x + 0.5) * length / out_size`` (pixel
    ``i`` covers ``[i, i + 1)``), so the window ``[start, start + length)`` of the axis fills
    the output. The kernel is widened by ``length / out_size`` when that exceeds 1 (shrinking,
    anti-aliased); taps outside ``[0, in_size)`` are dropped and the rest renormalised. The
    weights are computed as TensorFlow's ``ScaleAndTranslate`` computes them.

    Args:
        in_size: pixels along the input axis (scalar int tensor).
        out_size: pixels along the output axis.
        start: left edge of the window, in input pixels (float, may be fractional).
        length: width of the window in input pixels (float); default ``in_size``.
        mirror: reverse the output (a flip of the resampled axis; scalar bool tensor).

    Returns:
        A ``tf.SparseTensor`` of shape ``(out_size, in_size)`` in canonical order (rows, and
        columns within a row, ascending; no repeated index).
    """
    in_size = tf.cast(in_size, tf.int32)
    length = tf.cast(in_size if length is None else length, tf.float32)
    inv_scale = length / float(out_size)
    kernel_scale = tf.maximum(inv_scale, 1.0)
    radius = 2.0 * kernel_scale
    taps = tf.minimum(2 * tf.cast(tf.math.ceil(radius), tf.int32) + 1, in_size)
    x = tf.range(out_size, dtype=tf.float32)
    x = tf.where(tf.cast(mirror, tf.bool), float(out_size - 1) - x, x)
    sample = (x + 0.5) * inv_scale + tf.cast(start, tf.float32)
    first = tf.clip_by_value(tf.cast(tf.math.ceil(sample - radius - 0.5), tf.int32), 0, in_size - 1)
    end = tf.clip_by_value(tf.cast(tf.math.floor(sample + radius - 0.5), tf.int32), 0, in_size - 1)
    # `taps` distinct positions inside the axis that cover [first, end]; the others weigh 0.
    start = tf.minimum(first, in_size - taps)
    positions = start[:, None] + tf.range(taps)[None, :]
    inside = (positions >= first[:, None]) & (positions <= end[:, None])
    weights = keys_cubic((tf.cast(positions, tf.float32) + 0.5 - sample[:, None]) / kernel_scale)
    weights = tf.where(inside, weights, 0.0)
    weights = weights * (1.0 / tf.reduce_sum(weights, axis=1, keepdims=True))
    rows = tf.broadcast_to(tf.range(out_size)[:, None], tf.shape(positions))
    indices = tf.stack([tf.reshape(rows, [-1]), tf.reshape(positions, [-1])], axis=1)
    return tf.SparseTensor(
        tf.cast(indices, tf.int64),
        tf.reshape(weights, [-1]),
        tf.cast(tf.stack([out_size, in_size]), tf.int64),
    )


def resize_window(image: tf.Tensor, size: int, window=None, flip=False) -> tf.Tensor:
    """Resample a window of ``image`` to ``(size, size)``, bicubic with anti-aliasing.

    Args:
        image: ``(H, W, C)`` image (any real dtype; computed in float32).
        size: side of the square output.
        window: ``[top, left, height, width]`` of the region to resample, in (fractional)
            pixels of ``image``; default the whole image.
        flip: mirror the output left-right (scalar bool tensor or Python bool).

    Images of more than :data:`BLOCK_PIXELS` pixels have their rows resampled one block of
    columns at a time, so that only that block is held in float32 (the same sums: the
    result is the same to the bit).

    Returns:
        float32 ``(size, size, C)``, not rounded or clipped (bicubic overshoots).
    """
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    height, width, channels = shape[0], shape[1], shape[2]
    if window is None:
        window = tf.cast(tf.stack([0, 0, height, width]), tf.float32)
    top, left, window_h, window_w = tf.unstack(tf.cast(window, tf.float32))
    row_matrix = resample_matrix(height, size, top, window_h)
    column_matrix = resample_matrix(width, size, left, window_w, mirror=flip)

    def rows_of(part):  # (H, w, C) -> (w, size, C): the part's rows resampled
        part_width = tf.shape(part)[1]
        pixels = tf.reshape(tf.cast(part, tf.float32), [height, -1])
        rows = tf.sparse.sparse_dense_matmul(row_matrix, pixels)
        return tf.transpose(tf.reshape(rows, [size, part_width, channels]), [1, 0, 2])

    def in_blocks():
        block = tf.maximum(BLOCK_PIXELS // height, 1)
        count = (width + block - 1) // block
        parts = tf.TensorArray(tf.float32, size=count, infer_shape=False)

        def step(i, parts):
            return i + 1, parts.write(i, rows_of(image[:, i * block : (i + 1) * block]))

        _, parts = tf.while_loop(lambda i, _: i < count, step, [0, parts])
        return parts.concat()

    big = tf.cast(height, tf.int64) * tf.cast(width, tf.int64) > BLOCK_PIXELS
    columns = tf.cond(big, in_blocks, lambda: rows_of(image))
    # Columns: (W, size, C) -> (W, size * C), resample, back to (size, size, C).
    columns = tf.reshape(columns, [width, -1])
    out = tf.sparse.sparse_dense_matmul(column_matrix, columns)
    return tf.transpose(tf.reshape(out, [size, size, channels]), [1, 0, 2])
