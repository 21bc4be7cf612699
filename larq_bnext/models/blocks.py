"""BNext's building blocks as functional Keras sub-graphs.

Each function takes a Keras tensor and returns one, naming every layer
``{name}_{part}`` so that the official PyTorch checkpoint keys map onto the Keras layers
one-to-one (see :mod:`larq_bnext.weights.mapping`). Parts, as in the original module names:

``move`` (learnable bias), ``binary_conv`` (HardSign + progressive binary convolution),
``norm1``, ``activation2`` (PReLU), ``mix`` (recoupling scale), ``se_reduce``/``se_expand``
(SE 1x1 convolutions), ``norm2``, ``activation1`` (the ELM-Attention residual PReLU).

A BNext block ``i >= 1`` is ``Attention`` (ELM-Attention or FFN-3x3) followed by ``FFN``
(one FFN-1x1 when the channel count stays) or ``FFN_1``/``FFN_2`` (two FFN-1x1 on the same
input, concatenated on channels, doubling them).
"""

from __future__ import annotations

import tensorflow as tf

from larq_bnext.models.layers import BinaryConv2D, LearnableBias, RecouplingMix
from larq_bnext.models.tracing import no_autograph
from larq_bnext.registry import BNEXT_ARCHITECTURE

__all__ = [
    "binary_unit",
    "information_recoupling",
    "elm_attention",
    "ffn_3x3",
    "ffn_1x1",
    "bnext_block",
    "classifier_head",
    "BN_EPSILON",
    "BN_MOMENTUM",
    "SE_RATIO",
]

#: BatchNorm settings of the original (PyTorch momentum 0.1 is Keras momentum 0.9).
BN_EPSILON = BNEXT_ARCHITECTURE.batchnorm_epsilon
BN_MOMENTUM = BNEXT_ARCHITECTURE.batchnorm_momentum
#: Squeeze-and-excitation reduction ratio.
SE_RATIO = BNEXT_ARCHITECTURE.se_ratio

layers = tf.keras.layers


def batch_norm(name: str) -> layers.Layer:
    """A BatchNormalization layer with the original's epsilon and momentum."""
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


@tf.keras.utils.register_keras_serializable(package="larq_bnext")
class PReLU(layers.PReLU):
    """Keras' PReLU with a cheaper training graph: ``where(x > 0, x, alpha * x)``.

    Keras computes ``relu(x) - alpha * relu(-x)`` (five full-size element-wise ops forward and
    more backward); the select is three, with the same values. Its input gradient at exactly
    ``x = 0`` is ``alpha`` like PyTorch's ``nn.PReLU`` (Keras' formula gives 0 there).
    Inference keeps Keras' formula, which converters (TFLite, Larq Compute Engine) fuse into
    one PReLU op.

    Args:
        **kwargs: :class:`tf.keras.layers.PReLU` arguments.
    """

    @no_autograph
    def call(self, inputs, training=None):
        if not training:
            return super().call(inputs)
        return _prelu(inputs, tf.cast(self.alpha, inputs.dtype))


@tf.custom_gradient
def _prelu(x, alpha):
    positive = x > 0
    out = tf.where(positive, x, alpha * x)

    def grad(dy):
        dx = tf.where(positive, dy, alpha * dy)
        # alpha is (1, 1, C) or (H, W, C) against x's (B, H, W, C): sum the broadcast axes.
        axes = [0] + [i + 1 for i, d in enumerate(alpha.shape) if d == 1]
        dalpha = tf.reduce_sum(dy * tf.minimum(x, 0), axis=axes)
        return dx, tf.reshape(dalpha, tf.shape(alpha))

    return out, grad


def prelu(name: str) -> layers.Layer:
    """A per-channel PReLU (PyTorch ``nn.PReLU(C)``: slope 0.25, shared over H and W)."""
    return PReLU(
        alpha_initializer=tf.keras.initializers.Constant(0.25), shared_axes=[1, 2], name=name
    )


def _pool(x, strides: int, name: str):
    if strides == 1:
        return x
    return layers.AveragePooling2D(pool_size=strides, strides=strides, name=name)(x)


def binary_unit(x, kernel_size: int, strides: int, name: str):
    """``move -> HardSign -> binary conv -> norm1 -> activation2``; keeps the channel count.

    Args:
        x: input tensor, channels last.
        kernel_size: 3 (ELM-Attention, FFN-3x3) or 1 (FFN-1x1).
        strides: 1 or 2.
        name: prefix of the layer names.
    """
    channels = int(x.shape[-1])
    y = LearnableBias(name=f"{name}_move")(x)
    y = BinaryConv2D(channels, kernel_size, strides=strides, name=f"{name}_binary_conv")(y)
    y = batch_norm(f"{name}_norm1")(y)
    return prelu(f"{name}_activation2")(y)


def information_recoupling(shortcut, y, name: str):
    """``y * SE(gamma * shortcut + (1 - gamma) * y)`` with a sigmoid SE of ratio 8.

    Args:
        shortcut: the sub-block's input, average-pooled to ``y``'s size when it strides.
        y: the binary unit's output.
        name: prefix of the layer names.
    """
    channels = int(y.shape[-1])
    mix = RecouplingMix(name=f"{name}_mix")([shortcut, y])
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(mix)
    s = layers.Conv2D(channels // SE_RATIO, 1, name=f"{name}_se_reduce")(s)
    s = layers.ReLU(name=f"{name}_se_relu")(s)
    s = layers.Conv2D(channels, 1, name=f"{name}_se_expand")(s)
    s = layers.Activation("sigmoid", name=f"{name}_se_sigmoid")(s)
    return layers.Multiply(name=f"{name}_se_scale")([s, y])


def elm_attention(x, strides: int = 1, info_recoupling: bool = True, name: str = "attention"):
    """ELM-Attention: a binary 3x3 unit whose output multiplies a PReLU'd residual.

    ``residual = pool(activation1(x))``; ``y = recouple(binary_unit(x))``;
    ``out = norm2(y * residual) + residual``.

    Args:
        x: input tensor, channels last.
        strides: 1 or 2.
        info_recoupling: apply information recoupling (the paper's ablation switch).
        name: prefix of the layer names.
    """
    residual = _pool(prelu(f"{name}_activation1")(x), strides, f"{name}_residual_pool")
    y = binary_unit(x, 3, strides, name)
    if info_recoupling:
        y = information_recoupling(_pool(x, strides, f"{name}_shortcut_pool"), y, name)
    y = layers.Multiply(name=f"{name}_attend")([y, residual])
    y = batch_norm(f"{name}_norm2")(y)
    return layers.Add(name=f"{name}_add")([y, residual])


def _ffn(x, kernel_size: int, strides: int, info_recoupling: bool, name: str):
    residual = _pool(x, strides, f"{name}_residual_pool")
    y = binary_unit(x, kernel_size, strides, name)
    if info_recoupling:
        y = information_recoupling(residual, y, name)
        y = batch_norm(f"{name}_norm2")(y)
    return layers.Add(name=f"{name}_add")([y, residual])


def ffn_3x3(x, strides: int = 1, info_recoupling: bool = True, name: str = "attention"):
    """FFN-3x3: ``out = norm2(recouple(binary_unit_3x3(x))) + pool(x)``.

    Without recoupling, ``norm2`` is not applied (as in the original).

    Args:
        x: input tensor, channels last.
        strides: 1 or 2.
        info_recoupling: apply information recoupling and ``norm2``.
        name: prefix of the layer names.
    """
    return _ffn(x, 3, strides, info_recoupling, name)


def ffn_1x1(x, info_recoupling: bool = True, name: str = "ffn"):
    """FFN-1x1: ``out = norm2(recouple(binary_unit_1x1(x))) + x``.

    Args:
        x: input tensor, channels last.
        info_recoupling: apply information recoupling and ``norm2``.
        name: prefix of the layer names.
    """
    return _ffn(x, 1, 1, info_recoupling, name)


def bnext_block(
    x,
    out_channels: int,
    strides: int,
    mode: str,
    elm_attention_enabled: bool = True,
    info_recoupling: bool = True,
    name: str = "block",
):
    """One BNext block.

    Args:
        x: input tensor with ``C`` channels.
        out_channels: ``C`` or ``2 * C``.
        strides: 1 or 2 (applied by the first sub-block).
        mode: ``"scale"`` (ELM-Attention) or ``"bias"`` (FFN-3x3) for the first sub-block;
            with ``elm_attention_enabled=False`` it is always FFN-3x3.
        elm_attention_enabled: the paper's ELM-Attention ablation switch.
        info_recoupling: the paper's information-recoupling ablation switch.
        name: prefix of every layer name.
    """
    in_channels = int(x.shape[-1])
    if out_channels not in (in_channels, 2 * in_channels):
        raise ValueError(
            f"A BNext block maps C channels to C or 2C; got {in_channels} -> {out_channels}. "
            "Use stage channel lists whose consecutive entries are equal or double."
        )
    if mode not in ("scale", "bias"):
        raise ValueError(f"mode must be 'scale' or 'bias', not {mode!r}.")
    first = elm_attention if (mode == "scale" and elm_attention_enabled) else ffn_3x3
    y = first(x, strides, info_recoupling, name=f"{name}_attention")
    if out_channels == in_channels:
        return ffn_1x1(y, info_recoupling, name=f"{name}_ffn")
    y1 = ffn_1x1(y, info_recoupling, name=f"{name}_ffn_1")
    y2 = ffn_1x1(y, info_recoupling, name=f"{name}_ffn_2")
    return layers.Concatenate(name=f"{name}_concat")([y1, y2])


def classifier_head(
    x,
    inputs,
    input_tensor,
    include_top: bool,
    num_classes: int,
    classifier_activation,
    pooling,
    name: str,
) -> tf.keras.Model:
    """The ``keras.applications`` ending shared by every BNext: head PReLU, then either the
    classifier (average pool, dense, optional activation in float32) or the optional pooling of
    a feature extractor; returns the ``tf.keras.Model`` from ``inputs`` (or the source inputs of
    ``input_tensor``).

    Args:
        x: the last block's output.
        inputs: the model's ``Input``.
        input_tensor: the caller's ``input_tensor`` argument (``None`` if not given).
        include_top: add the classifier.
        num_classes: classes of the classifier.
        classifier_activation: activation on the logits (``None`` for logits).
        pooling: ``None``, ``"avg"`` or ``"max"`` without the top.
        name: the model's name.
    """
    x = prelu("final_prelu")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(num_classes, name="logits")(x)
        if classifier_activation is not None:
            x = layers.Activation(classifier_activation, dtype="float32", name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    model_inputs = inputs
    if input_tensor is not None:
        model_inputs = tf.keras.utils.get_source_inputs(input_tensor)
    return tf.keras.Model(model_inputs, x, name=name)
