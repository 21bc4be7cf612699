"""guarded_map: failed elements are dropped and recorded by name, wherever they fail."""

import numpy as np
import pytest
import tensorflow as tf

from larq_bnext.training.data.skipped import SkipLog, guarded_map


def _guard(count, bad, finite):
    names = tf.constant([f"file{i}" for i in range(count)])

    def fn(position, value):
        # An op error, like a corrupt JPEG's, for the positions in `bad`.
        check = tf.debugging.assert_equal(tf.reduce_any(tf.equal(bad, position)), False)
        with tf.control_dependencies([check]):
            return (value * 2.0,)

    ds = tf.data.Dataset.from_tensor_slices(tf.range(count, dtype=tf.float32)).enumerate()
    log = SkipLog("test", count)
    extra = dict(count=count, fallback=lambda position, value: (-value,)) if finite else {}
    out = guarded_map(ds, fn, lambda p: tf.gather(names, p), log, **extra)
    return [float(v) for (v,) in out.as_numpy_iterator()], log


@pytest.mark.parametrize(
    "bad", [[5], [0, 1, 2], [3, 4, 9, 10, 11], [0, 36], [30, 35, 36], list(range(37))]
)
def test_failures_are_dropped_and_named_in_order(bad):
    count = 37
    values, log = _guard(count, tf.constant(bad + [-1], tf.int64), finite=True)
    assert values == [2.0 * i for i in range(count) if i not in bad]
    assert log.paths == sorted(f"file{i}" for i in bad)


def test_endless_streams_see_failures_once_a_later_element_arrives():
    # Without a count, a failure is recorded when the next good element passes the check.
    values, log = _guard(12, tf.constant([4, 11], tf.int64), finite=False)
    assert values == [2.0 * i for i in range(12) if i not in (4, 11)]
    assert log.paths == ["file4"]  # the tail failure needs the count's sentinel


def test_a_count_needs_a_fallback():
    ds = tf.data.Dataset.range(3).enumerate()
    with pytest.raises(ValueError, match="fallback"):
        guarded_map(ds, lambda p, v: (v,), lambda p: tf.constant("x"), count=3)


def test_order_and_values_under_parallel_work():
    # Uneven work per element: the parallel map keeps the order.
    count = 64
    bad = tf.constant([7, 8, 40], tf.int64)

    def fn(position, value):
        check = tf.debugging.assert_equal(tf.reduce_any(tf.equal(bad, position)), False)
        work = tf.reduce_sum(tf.random.stateless_uniform([1 + (position % 5) * 20000], [1, 2]))
        with tf.control_dependencies([check]):
            return (value + 0.0 * work,)

    ds = tf.data.Dataset.range(count).map(lambda i: tf.cast(i, tf.float32)).enumerate()
    log = SkipLog("test", count)
    out = guarded_map(
        ds, fn, lambda p: tf.strings.as_string(p), log, count=count, fallback=lambda p, v: (v,)
    )
    values = np.array([v for (v,) in out.as_numpy_iterator()])
    np.testing.assert_array_equal(values, [i for i in range(count) if i not in (7, 8, 40)])
    assert log.paths == ["40", "7", "8"]
