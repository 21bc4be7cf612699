"""Directions of a loss landscape: filter-normalised kernels, nothing else moves (Li et al.)."""

import numpy as np
import pytest
import tensorflow as tf

import larq_bnext
from larq_bnext.analysis import binary_regime, directed_variables, random_directions
from larq_bnext.models import BinaryConv2D

# Every kind of BNext block: a stride-2 block, channel doubling, ELM-Attention and FFN-3x3.
CHANNELS = (8, 16, 16)


def _bnext():
    return larq_bnext.BNext(
        CHANNELS, input_shape=(16, 16, 3), num_classes=4, classifier_activation=None, stem_stride=1
    )


def _per_output_filter_norms(array, output_axes):
    """Norms of each output filter, computed from scratch: move the output axes last, flatten."""
    array = np.asarray(array, np.float64)
    rest = [a for a in range(array.ndim) if a not in output_axes]
    moved = np.transpose(array, rest + list(output_axes))
    return np.linalg.norm(
        moved.reshape(-1, int(np.prod([array.shape[a] for a in output_axes]))), axis=0
    )


def test_bnext_kernels_are_filter_normalised_and_bn_bias_prelu_get_no_direction():
    model = _bnext()
    rng = np.random.default_rng(0)
    for v in model.trainable_weights:  # trained-looking weights: filters of different sizes
        v.assign(rng.normal(0.0, rng.uniform(0.01, 2.0), v.shape))
    d1, d2 = random_directions(model, count=2, seed=5)
    kernels = {
        id(layer.kernel)
        for layer in model.submodules
        if isinstance(layer, tf.keras.layers.Conv2D | tf.keras.layers.Dense)
    }
    moved, held = 0, 0
    for variable, a, b in zip(model.trainable_variables, d1, d2, strict=True):
        assert a.shape == tuple(variable.shape) and a.dtype == np.float32
        if id(variable) in kernels:
            # A Conv2D/BinaryConv2D kernel is (kh, kw, in, out), a Dense one (in, out):
            # one filter per output channel, the last axis.
            expected = _per_output_filter_norms(variable.numpy(), [variable.shape.rank - 1])
            np.testing.assert_allclose(
                _per_output_filter_norms(a, [a.ndim - 1]), expected, rtol=1e-5
            )
            np.testing.assert_allclose(
                _per_output_filter_norms(b, [b.ndim - 1]), expected, rtol=1e-5
            )
            assert not np.allclose(a, b)
            moved += 1
        else:
            # BatchNorm gamma/beta, biases, PReLU slopes, move biases, recoupling scales.
            assert not np.any(a) and not np.any(b), variable.name
            held += 1
    names = [v.name for v in model.trainable_variables]
    assert sum("binary_conv" in n for n in names) == len(
        [m for m in model.submodules if isinstance(m, BinaryConv2D)]
    )
    assert any("norm1/gamma" in n for n in names) and any("activation2/alpha" in n for n in names)
    assert moved == len(directed_variables(model)) and held > moved


def test_directions_follow_the_seed():
    model = _bnext()
    first = random_directions(model, 1, seed=1)[0]
    again = random_directions(model, 1, seed=1)[0]
    other = random_directions(model, 1, seed=2)[0]
    kernel = [i for i, d in enumerate(first) if np.any(d)][0]
    np.testing.assert_array_equal(first[kernel], again[kernel])
    assert not np.allclose(first[kernel], other[kernel])


def test_depthwise_filters_are_one_input_channel_times_multiplier():
    inputs = tf.keras.Input((6, 6, 3))
    x = tf.keras.layers.DepthwiseConv2D(3, depth_multiplier=2)(inputs)
    x = tf.keras.layers.Conv2DTranspose(5, 3)(x)
    model = tf.keras.Model(inputs, x)
    depthwise, transpose = model.layers[1], model.layers[2]
    directions = random_directions(model, 1, seed=0)[0]
    by_id = dict(zip((id(v) for v in model.trainable_variables), directions, strict=True))
    d = by_id[id(depthwise.depthwise_kernel)]  # (3, 3, in=3, multiplier=2): 6 filters
    np.testing.assert_allclose(
        _per_output_filter_norms(d, [2, 3]),
        _per_output_filter_norms(depthwise.depthwise_kernel.numpy(), [2, 3]),
        rtol=1e-5,
    )
    d = by_id[id(transpose.kernel)]  # (3, 3, out=5, in=6): the output channels are axis 2
    np.testing.assert_allclose(
        _per_output_filter_norms(d, [2]),
        _per_output_filter_norms(transpose.kernel.numpy(), [2]),
        rtol=1e-5,
    )
    assert not np.any(by_id[id(depthwise.bias)]) and not np.any(by_id[id(transpose.bias)])


def test_binary_regime_reads_the_temperatures():
    model = _bnext()
    layers = [m for m in model.submodules if isinstance(m, BinaryConv2D)]
    assert binary_regime(model)["regime"] == "clip"  # T = 1 at initialisation
    for layer in layers:
        layer.temperature.assign(1e-8)
    regime = binary_regime(model)
    assert regime["regime"] == "sign" and regime["layers"] == len(layers)
    layers[0].temperature.assign(0.5)
    assert binary_regime(model)["regime"] == "mixed"
    plain = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
    assert binary_regime(plain)["regime"] == "none"


def test_a_model_without_kernels_is_refused():
    model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.BatchNormalization()])
    with pytest.raises(ValueError, match="no Conv or Dense kernel"):
        random_directions(model, 1)
