"""guarded_map: failures become the fallback, in place, whatever their place in a chunk."""

import numpy as np
import pytest
import tensorflow as tf

from larq_bnext.training.skipped import guarded_map


def _fails_on(bad):
    bad = tf.constant(bad, tf.int64)

    def fn(i, name):
        # An op error, like a corrupt JPEG's, for the elements in `bad`.
        check = tf.debugging.assert_equal(tf.reduce_any(tf.equal(bad, i)), False)
        with tf.control_dependencies([check]):
            return tf.cast(i, tf.float32) * tf.ones([2, 2]), name, tf.constant(True)

    def fallback(i, name):
        return -tf.ones([2, 2]), name, tf.constant(False)

    return fn, fallback


@pytest.mark.parametrize("chunk", [1, 4, 16])
def test_failures_are_replaced_in_order(chunk):
    count = 37  # the last chunk is partial
    bad = [0, 5, 6, 7, 16, 35, 36]  # first, a run inside a chunk, a chunk start, the tail
    names = [f"file{i}" for i in range(count)]
    ds = tf.data.Dataset.from_tensor_slices((tf.range(count, dtype=tf.int64), names))
    fn, fallback = _fails_on(bad)
    out = list(guarded_map(ds, fn, fallback, chunk=chunk).as_numpy_iterator())
    assert [name.decode() for _, name, _ in out] == names
    for i, (image, _, ok) in enumerate(out):
        assert ok == (i not in bad)
        np.testing.assert_array_equal(image, np.full([2, 2], -1.0 if i in bad else float(i)))


def test_a_chunk_of_failures_only():
    ds = tf.data.Dataset.from_tensor_slices((tf.range(8, dtype=tf.int64), ["a"] * 8))
    fn, fallback = _fails_on(list(range(8)))
    oks = [ok for _, _, ok in guarded_map(ds, fn, fallback, chunk=4).as_numpy_iterator()]
    assert oks == [False] * 8
