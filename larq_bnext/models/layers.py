"""BNext's layers, written with Larq.

The binary unit of every BNext sub-block is

    x -> LearnableBias -> HardSign -> BinaryConv2D (progressive kernel) -> BN -> PReLU

and is followed by *information recoupling* (`RecouplingMix` plus a squeeze-and-excitation
branch built from standard Keras layers in :mod:`larq_bnext.models.blocks`).

Everything here follows the original PyTorch code (``hpi-xnor/BNext``, ``src/bnext.py``):

* :class:`HardSign` is the input quantizer: forward ``sign(x)``, backward straight-through
  with gradient 1 where ``|x| <= 1.5`` and 0 elsewhere.
* :class:`ProgressiveSign` is the kernel quantizer: ``clip(w / T, -1, 1)`` while the
  temperature ``T >= 1e-7`` and ``sign(w)`` below, with an identity straight-through gradient.
* :class:`BinaryConv2D` owns both temperature buffers of the original (``temperature`` for the
  kernel, ``input_temperature`` for the activation quantizer) as non-trainable weights, so they
  are saved, restored, converted from checkpoints and annealed by training.

Sign convention: as in the original (``torch.sign``), ``sign(0) = 0`` for kernels in the sign
regime and for activations, so a model loaded from an original checkpoint computes what the
original computes even where a latent weight or a pre-activation is exactly 0 (float32
``randn`` draws exactly 0 about once in 2**24, so the large models hold a few such weights).
Larq's own quantizers (``lq.math.sign``) and Larq Compute Engine map 0 to ``+1`` so that every
binary value is ``+-1``; that approximation is made only where it cannot be avoided, in the
LCE export (:mod:`larq_bnext.deploy`), which reports how many weights it changed.
"""

from __future__ import annotations

import larq as lq
import tensorflow as tf

from larq_bnext.models.quantizers import (
    WEIGHT_CLIP,
    HardSign,
    ProgressiveSign,
    computes_in_half,
)
from larq_bnext.models.tracing import no_autograph
from larq_bnext.registry import BNEXT_ARCHITECTURE

__all__ = [
    "BinaryConv2D",
    "LearnableBias",
    "RecouplingMix",
    "binary_conv_layers",
    "is_4d_in_original",
]


_register = tf.keras.utils.register_keras_serializable(package="larq_bnext")

# Variables that the original stores as 4-D ``(1, C, 1, 1)`` tensors although they are vectors
# here (the ``move`` bias, the recoupling scale): the original's optimizer puts every 4-D
# parameter in its small-decay group, so `larq_bnext.training.method.optimizer.is_conv_kernel` asks
# this set.
_ORIGINAL_4D = set()


def _variable_key(variable) -> str:
    """A key shared by a variable and its per-replica components under ``tf.distribute``."""
    container = getattr(variable, "_distributed_container", None)
    if container is not None:
        variable = container()
    return variable._unique_id


def _mark_original_4d(variable) -> None:
    _ORIGINAL_4D.add(_variable_key(variable))


def is_4d_in_original(variable) -> bool:
    """``True`` for a per-channel weight that the original stores as ``(1, C, 1, 1)``.

    That is the ``bias`` of :class:`LearnableBias` (BNext's ``move``) and the ``scale`` of
    :class:`RecouplingMix`; their optimizer weight decay follows the 4-D group.

    Args:
        variable: a variable (or a per-replica component of one).
    """
    return _variable_key(variable) in _ORIGINAL_4D


def _symmetric_padding(kernel_size: int):
    pad = kernel_size // 2
    return [[0, 0], [pad, pad], [pad, pad], [0, 0]]


@_register
class BinaryConv2D(lq.layers.QuantConv2D):
    """BNext's binary convolution (``HardBinaryConv`` with a ``HardSign`` input).

    The input is binarized by :class:`HardSign` and the kernel by :class:`ProgressiveSign`;
    there is no bias and no scaling factor. Padding is ``kernel_size // 2`` zeros on every side
    of the *binarized* input, as in PyTorch. (Keras' ``"same"`` padding would pad only the
    bottom/right for stride 2 and shift the sampling grid by one pixel.)

    The layer owns two non-trainable scalar weights: ``temperature`` (the kernel quantizer's,
    annealed during training) and ``input_temperature`` (the activation quantizer's buffer of
    the original, which does not change the forward pass but is kept and annealed alike).

    Args:
        filters: number of output channels.
        kernel_size: 1 or 3 in BNext.
        strides: 1 or 2.
        input_quantizer: defaults to :class:`HardSign` (``sign`` with a straight-through
            gradient in ``|x| <= 1.5``).
        kernel_quantizer: defaults to :class:`ProgressiveSign`, linked to this layer's
            ``temperature``.
        kernel_initializer: defaults to ``N(0, 0.001)`` as in the original.
        kernel_constraint: defaults to a weight clip at 1.5.
        **kwargs: other :class:`larq.layers.QuantConv2D` arguments.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        strides: int = 1,
        input_quantizer=None,
        kernel_quantizer=None,
        kernel_initializer=None,
        kernel_constraint=None,
        **kwargs,
    ):
        kernel_size = int(kernel_size[0] if isinstance(kernel_size, (tuple, list)) else kernel_size)
        strides = int(strides[0] if isinstance(strides, (tuple, list)) else strides)
        kwargs.pop("padding", None)
        kwargs.pop("use_bias", None)
        self._explicit_padding = strides != 1 and kernel_size > 1
        super().__init__(
            filters=filters,
            kernel_size=kernel_size,
            strides=strides,
            # Stride 1: Keras "same" pads k//2 on both sides, identical to PyTorch.
            # Stride > 1: pad explicitly in call() (see the class docstring).
            padding="valid" if self._explicit_padding else "same",
            use_bias=False,
            input_quantizer=input_quantizer or HardSign(),
            kernel_quantizer=kernel_quantizer or ProgressiveSign(),
            kernel_initializer=kernel_initializer
            or tf.keras.initializers.RandomNormal(stddev=BNEXT_ARCHITECTURE.kernel_init_stddev),
            kernel_constraint=kernel_constraint or lq.constraints.WeightClip(WEIGHT_CLIP),
            **kwargs,
        )
        self._half = computes_in_half(self)
        if self._half:
            # Mixed precision: binarize the (float32) input in float32, then convolve the
            # exact +-1 values in the compute dtype.
            self._autocast = False
            if isinstance(self.input_quantizer, tf.keras.layers.Layer):
                self.input_quantizer._set_dtype_policy("float32")

    def build(self, input_shape):
        unpadded = input_shape
        if self._explicit_padding:
            input_shape = tf.TensorShape(input_shape)
            pad = 2 * (self.kernel_size[0] // 2)
            input_shape = tf.TensorShape(
                [
                    input_shape[0],
                    None if input_shape[1] is None else input_shape[1] + pad,
                    None if input_shape[2] is None else input_shape[2] + pad,
                    input_shape[3],
                ]
            )
        super().build(input_shape)
        # The quantizers built as a call builds them (a model may be shaped without calls).
        for quantizer, shape in ((self.input_quantizer, unpadded), (self.kernel_quantizer, None)):
            if isinstance(quantizer, tf.keras.layers.Layer) and not quantizer.built:
                quantizer.build(tf.TensorShape(shape or self.kernel.shape))
        self.temperature = self.add_weight(
            name="temperature",
            shape=(),
            initializer="ones",
            trainable=False,
        )
        self.input_temperature = self.add_weight(
            name="input_temperature",
            shape=(),
            initializer="ones",
            trainable=False,
        )
        if isinstance(self.kernel_quantizer, ProgressiveSign):
            self.kernel_quantizer.link(lambda: self.temperature)

    @no_autograph
    def call(self, inputs):
        if not self._explicit_padding and not self._half:
            return super().call(inputs)
        x = self.input_quantizer(inputs)
        if self._half:
            x = tf.cast(x, self.compute_dtype)
        if self._explicit_padding:
            x = tf.pad(x, _symmetric_padding(self.kernel_size[0]))
        with lq.context.quantized_scope(True):
            # use_bias is False and activation is linear, so the convolution is the output.
            return self.convolution_op(x, tf.cast(self.kernel, x.dtype))

    def compute_output_shape(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        if not self._explicit_padding:
            return super().compute_output_shape(input_shape)
        stride = self.strides[0]
        spatial = [None if d is None else (d + stride - 1) // stride for d in input_shape[1:3]]
        return tf.TensorShape([input_shape[0], *spatial, self.filters])


@_register
class LearnableBias(tf.keras.layers.Layer):
    """Adds a learnable per-channel bias (BNext's ``move``), initialised to zero.

    Under a mixed-precision policy the layer computes in float32 (its output feeds the sign
    quantizer, whose threshold is ``-bias``).

    Args:
        **kwargs: passed to :class:`tf.keras.layers.Layer`.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if computes_in_half(self):
            self._set_dtype_policy("float32")

    def build(self, input_shape):
        self.bias = self.add_weight(
            name="bias", shape=(int(input_shape[-1]),), initializer="zeros", trainable=True
        )
        _mark_original_4d(self.bias)
        super().build(input_shape)

    @no_autograph
    def call(self, inputs):
        return inputs + tf.cast(self.bias, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)


@_register
class RecouplingMix(tf.keras.layers.Layer):
    """Information recoupling's mix: ``gamma * shortcut + (1 - gamma) * y``.

    ``gamma`` is a per-channel weight named ``scale`` (initial value 0.5) kept in ``[0, 1]`` by
    a constraint that the optimizer applies after every step.

    Call it on ``[shortcut, y]``, two tensors of the same shape.

    Args:
        initial_scale: initial value of ``gamma``.
        **kwargs: passed to :class:`tf.keras.layers.Layer`.
    """

    def __init__(self, initial_scale: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.initial_scale = initial_scale

    def build(self, input_shape):
        channels = int(input_shape[0][-1])
        self.scale = self.add_weight(
            name="scale",
            shape=(channels,),
            initializer=tf.keras.initializers.Constant(self.initial_scale),
            constraint=lambda g: tf.clip_by_value(g, 0.0, 1.0),
            trainable=True,
        )
        _mark_original_4d(self.scale)
        super().build(input_shape)

    @no_autograph
    def call(self, inputs):
        shortcut, y = inputs
        gamma = tf.cast(self.scale, y.dtype)
        return gamma * shortcut + (1.0 - gamma) * y

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "initial_scale": self.initial_scale}


def binary_conv_layers(model: tf.keras.Model) -> list[BinaryConv2D]:
    """All :class:`BinaryConv2D` layers of ``model`` (of its ``student`` for a Distiller).

    Args:
        model: a BNext model or a :class:`larq_bnext.Distiller`.
    """
    root = getattr(model, "student", model)
    layers = [m for m in root.submodules if isinstance(m, BinaryConv2D)]
    if isinstance(root, BinaryConv2D):
        layers.append(root)
    return layers
