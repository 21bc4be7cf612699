"""Quantizers and layers against hand-computed values and an independent PyTorch computation."""

import larq as lq
import numpy as np
import pytest
import tensorflow as tf
import torch

from larq_bnext.models import (
    BinaryConv2D,
    HardSign,
    LearnableBias,
    ProgressiveSign,
    RecouplingMix,
    progressive_sign,
)


def _value_and_grad(fn, x):
    x = tf.Variable(x, dtype=tf.float64)
    with tf.GradientTape() as tape:
        y = fn(x)
    return y.numpy(), tape.gradient(y, x).numpy()


def test_hard_sign_forward_and_gradient_window():
    x = np.array([-2.0, -1.5, -1.49, -0.3, 0.0, 0.7, 1.5, 1.51, 3.0])
    y, g = _value_and_grad(HardSign(), x)
    np.testing.assert_array_equal(y, [-1, -1, -1, -1, 0, 1, 1, 1, 1])  # sign(0) = 0 (PyTorch)
    # Straight-through where |x| <= 1.5, zero outside.
    np.testing.assert_array_equal(g, [0, 1, 1, 1, 1, 1, 1, 0, 0])
    assert HardSign().precision == 1


def test_progressive_sign_soft_regime():
    w = np.array([-1.2, -0.2, 0.0, 0.1, 0.3, 0.6])
    y, g = _value_and_grad(lambda v: progressive_sign(v, 0.5), w)
    np.testing.assert_allclose(y, [-1.0, -0.4, 0.0, 0.2, 0.6, 1.0])  # clip(w / 0.5, -1, 1)
    np.testing.assert_array_equal(g, np.ones_like(w))  # identity straight-through, no window


def test_progressive_sign_hard_regime_and_threshold():
    w = np.array([-1.2, -3e-8, 0.0, 3e-8, 0.6])
    y_hard, g = _value_and_grad(lambda v: progressive_sign(v, 9e-8), w)
    np.testing.assert_array_equal(y_hard, [-1, -1, 0, 1, 1])  # T < 1e-7: sign(w), sign(0) = 0
    np.testing.assert_array_equal(g, np.ones_like(w))
    y_edge, _ = _value_and_grad(lambda v: progressive_sign(v, 1e-7), w)
    np.testing.assert_allclose(y_edge, [-1.0, -0.3, 0.0, 0.3, 1.0])  # T = 1e-7 is still soft


@pytest.mark.parametrize("temperature", [0.5, 1e-7, 9e-8, 1e-9])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_progressive_sign_eager_branch_equals_the_traced_select(temperature, dtype):
    # Eagerly only the regime's branch runs; in a tf.function both, and a select picks one.
    w = tf.constant(np.random.default_rng(0).normal(0, 1e-3, (3, 3, 8, 8)), dtype)
    w = tf.tensor_scatter_nd_update(w, [[0, 0, 0, 0]], tf.zeros([1], dtype))  # an exact zero
    t = tf.constant(temperature, tf.float32)
    eager = progressive_sign(w, t).numpy()
    traced = tf.function(progressive_sign)(w, t).numpy()
    assert eager.dtype == traced.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(eager, traced)
    with tf.GradientTape() as tape:
        tape.watch(w)
        y = progressive_sign(w, t)
    np.testing.assert_array_equal(tape.gradient(y, w).numpy(), np.ones(w.shape, dtype))


def test_progressive_sign_quantizer_follows_its_layer_temperature():
    layer = BinaryConv2D(2, 1)
    layer.build((None, 4, 4, 2))
    assert isinstance(layer.kernel_quantizer, ProgressiveSign)
    layer.kernel.latent_variable.assign(np.array([[[[0.2, -0.05], [1.0, -0.8]]]]))
    layer.temperature.assign(0.5)
    with lq.context.quantized_scope(True):
        np.testing.assert_allclose(layer.kernel.numpy().ravel(), [0.4, -0.1, 1.0, -1.0])
    layer.temperature.assign(1e-9)
    with lq.context.quantized_scope(True):
        np.testing.assert_array_equal(layer.kernel.numpy().ravel(), [1, -1, 1, -1])
    layer.kernel.latent_variable.assign(np.array([[[[0.0, -0.05], [1.0, 0.0]]]]))
    with lq.context.quantized_scope(True):
        np.testing.assert_array_equal(layer.kernel.numpy().ravel(), [0, -1, 1, 0])
    # Temperatures are non-trainable weights of the layer, so they are saved with it.
    names = [w.name.split("/")[-1] for w in layer.non_trainable_weights]
    assert names == ["temperature:0", "input_temperature:0"]


@pytest.mark.parametrize("kernel_size, strides, size", [(3, 1, 6), (3, 2, 6), (1, 1, 5)])
@pytest.mark.parametrize("temperature", [0.3, 1e-8])
def test_binary_conv_matches_pytorch_conv(kernel_size, strides, size, temperature):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, size, size, 4))
    w = rng.normal(scale=0.5, size=(kernel_size, kernel_size, 4, 3))
    # Exact zeros, where sign(0) = 0 (torch.sign) and Larq's sign(0) = +1 differ.
    x[0, 1:4, :, 2] = 0.0
    x[1, :, 2, :] = 0.0
    w[..., 1, :] = 0.0
    w.reshape(-1)[::7] = 0.0
    tf.keras.backend.set_floatx("float64")
    layer = BinaryConv2D(3, kernel_size, strides=strides)
    layer.build(x.shape)
    layer.kernel.latent_variable.assign(w)
    layer.temperature.assign(temperature)
    y = layer(x).numpy()

    # Independent computation: PyTorch's conv2d with padding k // 2 on sign(x) and the
    # binarized kernel, in NCHW.
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    wt = torch.from_numpy(w).permute(3, 2, 0, 1)
    wb = torch.sign(wt) if temperature < 1e-7 else torch.clamp(wt / temperature, -1, 1)
    ref = torch.nn.functional.conv2d(
        torch.sign(xt), wb, stride=strides, padding=kernel_size // 2
    ).permute(0, 2, 3, 1)
    assert y.shape == tuple(ref.shape)
    np.testing.assert_allclose(y, ref.numpy(), rtol=0, atol=1e-12)


def test_binary_conv_exact_zeros_by_hand():
    """sign(0) = 0 for inputs and sign-regime kernels, in float32, float64 and mixed precision."""
    # One output pixel of a 1x1 convolution: sign(x) . sign(w) over 4 input channels.
    x = np.array([[[[0.0, 2.0, -0.5, 0.3]]]])
    w = np.array([[[[1.0], [0.0], [-0.2], [0.7]]]])  # (1, 1, in=4, out=1)
    # sign(x) = [0, 1, -1, 1], sign(w) = [1, 0, -1, 1]: 0 + 0 + 1 + 1 = 2
    # (with sign(0) = +1 on both sides it would be 1 + 1 + 1 + 1 = 4).
    for policy in ("float32", "float64", "mixed_float16"):
        tf.keras.mixed_precision.set_global_policy(policy)
        layer = BinaryConv2D(1, 1)
        layer.build(x.shape)
        layer.kernel.latent_variable.assign(w)
        layer.temperature.assign(1e-9)
        y = layer(tf.constant(x, layer.dtype))
        assert y.dtype == layer.compute_dtype
        np.testing.assert_array_equal(y.numpy().ravel(), [2.0], err_msg=policy)
    tf.keras.mixed_precision.set_global_policy(None)


def test_binary_conv_gradients():
    tf.keras.backend.set_floatx("float64")
    layer = BinaryConv2D(1, 1)
    x = tf.Variable([[[[0.5, 2.0]]]], dtype=tf.float64)
    layer.build(x.shape)
    layer.kernel.latent_variable.assign([[[[0.3], [-0.2]]]])
    layer.temperature.assign(0.5)
    with tf.GradientTape() as tape:
        y = layer(x)  # sign([0.5, 2.0]) . clip([0.6, -0.4]) = 0.6 - 0.4
    gx, gw = tape.gradient(y, [x, layer.kernel.latent_variable])
    np.testing.assert_allclose(y.numpy().ravel(), [0.2])
    # dL/dx = kernel value inside the HardSign window (|x| <= 1.5), 0 outside.
    np.testing.assert_allclose(gx.numpy().ravel(), [0.6, 0.0])
    # dL/dw = sign(x) (identity straight-through through the kernel quantizer).
    np.testing.assert_allclose(gw.numpy().ravel(), [1.0, 1.0])


def test_optimizer_step_applies_weight_clip_and_scale_range():
    conv = BinaryConv2D(2, 1)
    mix = RecouplingMix()
    x = tf.random.normal((4, 3, 3, 2))
    conv.build(x.shape)
    mix.build([x.shape, x.shape])
    conv.kernel.latent_variable.assign(tf.fill(conv.kernel.shape, 1.4))
    optimizer = tf.keras.optimizers.SGD(learning_rate=10.0)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_sum(conv(x) * 1e3) - tf.reduce_sum(mix([x, x * 0]) * 1e3)
    variables = [conv.kernel.latent_variable, mix.scale]
    grads = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(grads, variables, strict=True))
    kernel = conv.kernel.latent_variable.numpy()
    scale = mix.scale.numpy()
    assert np.abs(kernel).max() == pytest.approx(1.5)  # the step overshot; the clip held
    assert scale.min() >= 0.0 and scale.max() <= 1.0
    assert np.isin(scale, [0.0, 1.0]).any()  # pushed hard, so it hit a bound


def test_learnable_bias_and_recoupling_mix():
    x = np.arange(6, dtype="float32").reshape(1, 1, 2, 3)
    bias = LearnableBias()
    np.testing.assert_array_equal(bias(x).numpy(), x)  # initialised at zero
    bias.bias.assign([1.0, -1.0, 0.5])
    np.testing.assert_array_equal(bias(x).numpy(), x + np.array([1.0, -1.0, 0.5]))

    mix = RecouplingMix()
    a, b = np.ones((1, 1, 1, 2), "float32"), np.full((1, 1, 1, 2), 3.0, "float32")
    np.testing.assert_allclose(mix([a, b]).numpy(), 2.0)  # 0.5 * 1 + 0.5 * 3
    mix.scale.assign([0.25, 1.0])
    np.testing.assert_allclose(mix([a, b]).numpy().ravel(), [2.5, 1.0])
