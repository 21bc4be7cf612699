"""Deploy BNext to edge devices with Larq Compute Engine (LCE), and measure it.

A trained BNext ends its progressive binarization with every kernel temperature below
``1e-7``, where each binary convolution is exactly ``sign(x) * sign(w)``.
:func:`larq_bnext.deploy.lce.convert` rebuilds a model in that *inference form* and converts it
with LCE into a TFLite flatbuffer
whose binary convolutions are ``LceBconv2d`` ops (bit-packed weights, XNOR-popcount kernels);
see :mod:`larq_bnext.deploy` for an example.

The inference form (:func:`inference_model`) is a clone in which

* every stride-1 ``BinaryConv2D`` becomes a plain :class:`larq.layers.QuantConv2D` with
  ``input_quantizer="ste_sign"``, its kernel stored as ``sign(w)`` (+-1 floats, which is
  what ``kernel_quantizer="ste_sign"`` would compute, minus the ops the converter would fold)
  and ``"same"`` zero padding, which LCE converts to ``LceBconv2d`` with ``padding=SAME,
  pad_values=0``;
* every stride-2 ``BinaryConv2D`` becomes a :class:`SymmetricPadQuantConv2D`. PyTorch pads a
  stride-2 3x3 convolution by one pixel on *every* side, so on even sizes it samples rows
  ``2i-1, 2i, 2i+1``, while TensorFlow's ``"same"`` padding samples ``2i, 2i+1, 2i+2``. An
  explicit ``tf.pad`` of the binarized input followed by a ``"valid"`` convolution has the
  right numbers, but LCE (0.16) cannot turn ``pad -> conv`` into a binary convolution, and,
  worse, its padding-fusion pass rewrites a symmetric ``(1, 1)`` pad before a stride-2
  ``"valid"`` convolution into ``"same"`` padding (it checks only that the pad is centred),
  which silently shifts the sampling grid by one pixel. The layer instead flips the input
  spatially, runs a ``"same"`` binary convolution with the flipped kernel and flips the
  result back: exactly PyTorch's symmetric zero padding, recognised as ``LceBconv2d``, at the
  cost of two ``REVERSE_V2`` ops per stride-2 binary layer (four such layers in every size);
* for the same reason the stem's symmetric ``ZeroPadding2D(1)`` before its stride-2 float
  convolution becomes a top/left-only ``ZeroPadding2D(((1, 0), (1, 0)))``, which samples the
  same pixels on even input sizes (the bottom/right pad is never read) and is left alone by
  LCE's padding fusion.

LCE's binary values are ``+-1`` only, while the Keras model binarizes as the original does,
``sign(0) = 0`` (:mod:`larq_bnext.models.quantizers`). The inference form therefore maps a
latent kernel weight that is exactly 0 in a sign-regime layer to ``+1``
(:func:`zero_sign_weights` counts them; :func:`inference_model`, and so
:func:`larq_bnext.deploy.lce.convert`, warns with the count; the export command prints it),
and its ``ste_sign`` input quantizers, which LCE recognises, map exact-zero activations to
``+1``. This is the export's one approximation of the original's function.

A model still in the ``clip(w / T, -1, 1)`` regime (a temperature ``>= 1e-7``) is refused,
unless ``allow_float_kernels=True``: then those layers keep their real-valued kernels and
stay float ``CONV_2D`` ops on binarized inputs (correct numbers, no binary speed-up).
"""

from __future__ import annotations

import warnings

import larq as lq
import numpy as np
import tensorflow as tf

from larq_bnext.models.layers import BinaryConv2D, binary_conv_layers
from larq_bnext.models.quantizers import TEMPERATURE_THRESHOLD

__all__ = [
    "SymmetricPadQuantConv2D",
    "unbinarized_layers",
    "zero_sign_weights",
    "binarize_for_demo",
    "inference_model",
    "float_model",
]


_register = tf.keras.utils.register_keras_serializable(package="larq_bnext")


@_register
class SymmetricPadQuantConv2D(lq.layers.QuantConv2D):
    """A quantized convolution with PyTorch's symmetric zero padding, in an LCE-friendly form.

    Computes ``conv(pad(q(x)), q(w))`` with ``kernel_size // 2`` zeros on every side of the
    quantized input (PyTorch's ``padding=k//2``) for any stride, as
    ``reverse(conv_same(q(reverse(x)), reverse(w)))``: flipping the image and the kernel
    turns TensorFlow's bottom/right ``"same"`` padding into top/left padding, and for the odd
    kernels used here the flipped ``"same"`` grid samples exactly PyTorch's pixels. LCE
    recognises the inner convolution as ``LceBconv2d`` (``padding=SAME, pad_values=0``).

    The kernel this layer holds is the *flipped* kernel; :func:`inference_model` flips the
    original kernel when it copies the weights.

    Args:
        filters: number of output channels.
        kernel_size: an odd kernel size.
        strides: the convolution stride.
        **kwargs: other :class:`larq.layers.QuantConv2D` arguments (``padding`` is forced to
            ``"same"`` with zero padding).
    """

    def __init__(self, filters, kernel_size, strides=1, **kwargs):
        kwargs.pop("padding", None)
        kwargs.pop("pad_values", None)
        super().__init__(
            filters, kernel_size, strides=strides, padding="same", pad_values=0.0, **kwargs
        )
        if any(k % 2 == 0 for k in self.kernel_size):
            raise ValueError(
                f"SymmetricPadQuantConv2D needs odd kernel sizes, got {self.kernel_size}."
            )

    def call(self, inputs):
        flipped = tf.reverse(inputs, axis=[1, 2])
        # Explicit base-class call: autograph can mis-resolve a zero-argument super() here.
        return tf.reverse(lq.layers.QuantConv2D.call(self, flipped), axis=[1, 2])


def unbinarized_layers(model: tf.keras.Model) -> dict[str, float]:
    """Binary layers whose kernel is still ``clip(w / T, -1, 1)`` (temperature ``>= 1e-7``).

    Args:
        model: a BNext Keras model.

    Returns:
        ``{layer name: temperature}`` for every such layer; empty when all kernels are
        ``sign(w)``.
    """
    return {
        layer.name: float(layer.temperature.numpy())
        for layer in binary_conv_layers(model)
        if float(layer.temperature.numpy()) >= _threshold(layer)
    }


def zero_sign_weights(model: tf.keras.Model) -> dict[str, int]:
    """Latent kernel weights that are exactly 0 in sign-regime binary layers, per layer.

    The Keras model binarizes them to 0 (``sign(0) = 0``, as the original); the inference form
    (:func:`inference_model`, used by :func:`larq_bnext.deploy.lce.convert`) sets them to
    ``+1``, since Larq Compute Engine's binary values are ``+-1`` only. These are the weights
    an export changes.

    Args:
        model: a BNext Keras model.

    Returns:
        ``{layer name: number of exact-zero weights}`` for the layers that have any (kernel
        temperature below ``1e-7``); empty when the export changes no weight.
    """
    found = {}
    for layer in binary_conv_layers(model):
        if _sign_kernel_quantized(layer):
            zeros = int(np.count_nonzero(layer.kernel.numpy() == 0))
            if zeros:
                found[layer.name] = zeros
    return found


def _warn_zero_sign_weights(model: tf.keras.Model) -> None:
    zeros = zero_sign_weights(model)
    if zeros:
        listed = ", ".join(f"{k} ({n})" for k, n in list(zeros.items())[:5])
        warnings.warn(
            f"{sum(zeros.values())} binary kernel weights are exactly 0 in sign-regime layers "
            f"({listed}). The model binarizes them to 0, as the original PyTorch code; Larq "
            "Compute Engine's binary values are +-1 only, so the export sets them to +1 (its "
            "outputs can differ slightly from the Keras model's). "
            "larq_bnext.deploy.zero_sign_weights(model) lists them.",
            stacklevel=3,
        )


def binarize_for_demo(model: tf.keras.Model) -> tf.keras.Model:
    """Set every kernel temperature to 0, as at the end of training (kernels become ``sign(w)``).

    Meant for randomly initialised models (demos, latency measurements); a trained checkpoint
    already carries its annealed temperatures.

    Args:
        model: a BNext Keras model, modified in place.

    Returns:
        ``model``.
    """
    for layer in binary_conv_layers(model):
        layer.temperature.assign(0.0)
        layer.input_temperature.assign(0.0)
    return model


def _consumers(layer) -> list:
    return [node.outbound_layer for node in layer._outbound_nodes]


def _is_pytorch_stem_pad(layer) -> bool:
    """A symmetric ``k // 2``-pixel ZeroPadding2D whose only reader is a k x k stride-2 "valid"
    float conv (BNext's 3x3 stem, BNext-18's 7x7 one), on an even-sized input."""
    if not isinstance(layer, tf.keras.layers.ZeroPadding2D):
        return False
    (top, bottom), (left, right) = map(tuple, layer.padding)
    if not (top == bottom == left == right >= 1):
        return False
    consumers = _consumers(layer)
    if len(consumers) != 1 or not isinstance(consumers[0], tf.keras.layers.Conv2D):
        return False
    conv = consumers[0]
    spatial = layer.input_shape[1:3]
    return (
        conv.padding == "valid"
        and tuple(conv.kernel_size) == (2 * top + 1, 2 * top + 1)
        and tuple(conv.strides) == (2, 2)
        and all(s is not None and s % 2 == 0 for s in spatial)
    )


def _top_left_stem_pad(layer) -> tf.keras.layers.ZeroPadding2D:
    """PyTorch's symmetric stem pad as LCE keeps it: on an even input the last of the
    bottom/right rows is never read, and a pad that is not centred is not fused into a
    ``"same"`` convolution (which would pad bottom/right: another function)."""
    p = layer.padding[0][0]
    return tf.keras.layers.ZeroPadding2D(((p, p - 1), (p, p - 1)), name=layer.name)


def _clone(model: tf.keras.Model, replace) -> tf.keras.Model:
    """Clone ``model`` layer by layer, letting ``replace(layer)`` swap layers; copy weights."""
    replaced = {}

    def clone_function(layer):
        new = replace(layer)
        if new is None:
            new = layer.__class__.from_config(layer.get_config())
        else:
            replaced[layer.name] = new
        return new

    clone = tf.keras.models.clone_model(model, clone_function=clone_function)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        new = clone.get_layer(layer.name)
        weights = getattr(new, "_bnext_weights", None)
        if weights is not None:
            new.set_weights(weights)
            del new._bnext_weights
        elif layer.weights:
            new.set_weights(layer.get_weights())
    return clone


def _threshold(layer: BinaryConv2D) -> float:
    """The layer's own sign threshold (1e-7 in BNext-T/S/M/L, 1e-5 in BNext-18)."""
    return float(getattr(layer.kernel_quantizer, "threshold", TEMPERATURE_THRESHOLD))


def _sign_kernel_quantized(layer: BinaryConv2D) -> bool:
    return float(layer.temperature.numpy()) < _threshold(layer)


def _inference_conv(layer: BinaryConv2D):
    """The inference-form replacement of one BinaryConv2D, with its weights attached."""
    kernel = layer.kernel.numpy()
    common = dict(
        filters=layer.filters,
        kernel_size=layer.kernel_size,
        strides=layer.strides,
        use_bias=False,
        input_quantizer="ste_sign",
        kernel_quantizer=None,
        name=layer.name,
    )
    if _sign_kernel_quantized(layer):
        # Stored already binarized, with sign(0) = +1 (LCE's binary values are +-1 only; the
        # Keras model's sign(0) is 0, see zero_sign_weights): LCE recognises a convolution
        # whose constant kernel is all +-1, and the converter has no sign ops to fold, which
        # saves it a few full-size copies of the weights.
        kernel = np.where(kernel >= 0, 1.0, -1.0).astype(kernel.dtype)
    else:
        temperature = float(layer.temperature.numpy())
        kernel = np.clip(kernel / temperature, -1.0, 1.0)
    if layer._explicit_padding:
        new = SymmetricPadQuantConv2D(**common)
        new._bnext_weights = [kernel[::-1, ::-1].copy()]
    else:
        new = lq.layers.QuantConv2D(padding="same", pad_values=0.0, **common)
        new._bnext_weights = [kernel]
    return new


def inference_model(model: tf.keras.Model, allow_float_kernels: bool = False) -> tf.keras.Model:
    """Rebuild a BNext model in the inference form that LCE converts to binary ops.

    See the module docstring for the rewrite. The clone computes the same function as
    ``model`` in inference mode except at exact zeros, which it binarizes to ``+1`` (as Larq
    and LCE) where ``model`` gives 0 (as the original): latent kernel weights (counted by
    :func:`zero_sign_weights`; a warning gives the count) and pre-activations.

    Args:
        model: a BNext Keras model (with :class:`~larq_bnext.models.layers.BinaryConv2D` layers).
        allow_float_kernels: keep binary layers whose temperature is still ``>= 1e-7`` as
            float convolutions with kernel ``clip(w / T, -1, 1)`` on binarized inputs,
            instead of refusing the model.

    Returns:
        A new :class:`tf.keras.Model` sharing no variables with ``model``.

    Raises:
        ValueError: if ``model`` has no binary layers, or if some binary layer is still
            progressive and ``allow_float_kernels`` is False.
    """
    binary = binary_conv_layers(model)
    if not binary:
        raise ValueError(
            f"Model {model.name!r} has no larq_bnext BinaryConv2D layers: it is not a BNext "
            "model. Convert other Larq models with "
            "larq_compute_engine.convert_keras_model (or larq_bnext.deploy.convert)."
        )
    if any(isinstance(layer, tf.keras.Model) for layer in model.layers):
        raise ValueError(
            "Nested models are not supported by inference_model; build BNext with "
            "input_tensor=... instead of wrapping it in another model."
        )
    progressive = unbinarized_layers(model)
    if progressive and not allow_float_kernels:
        examples = ", ".join(f"{n} (T={t:.3g})" for n, t in list(progressive.items())[:3])
        raise ValueError(
            f"{len(progressive)} of {len(binary)} binary layers still have a kernel "
            f"temperature >= {TEMPERATURE_THRESHOLD:g} (e.g. {examples}), so their kernels are "
            "clip(w / T, -1, 1), not sign(w), and cannot become binary convolutions. Finish "
            "training (temperatures decay to below 1e-7 after about 153 epochs), or pass "
            "allow_float_kernels=True (CLI: --allow_float_binary_layers) to keep those layers "
            "as float convolutions on binarized inputs (correct outputs, no binary speed-up)."
        )

    _warn_zero_sign_weights(model)

    def replace(layer):
        if isinstance(layer, BinaryConv2D):
            return _inference_conv(layer)
        if _is_pytorch_stem_pad(layer):
            return _top_left_stem_pad(layer)
        return None

    return _clone(model, replace)


@_register
class _TopLeftPaddedConv2D(tf.keras.layers.Layer):
    """A float convolution with PyTorch's padding for stride 2: pad top/left, then "valid".

    For even input sizes PyTorch's bottom/right pad is never read, so this samples exactly
    the pixels of ``Conv2d(padding=k//2)``.
    """

    def __init__(self, filters, kernel_size, strides, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(kernel_size)
        self.strides = tuple(strides)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(*self.kernel_size, int(input_shape[-1]), self.filters)
        )
        super().build(input_shape)

    def call(self, inputs):
        pad_h, pad_w = (k // 2 for k in self.kernel_size)
        x = tf.pad(inputs, [[0, 0], [pad_h, 0], [pad_w, 0], [0, 0]])
        return tf.nn.conv2d(x, self.kernel, strides=self.strides, padding="VALID")

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
        }


def float_model(model: tf.keras.Model) -> tf.keras.Model:
    """The same architecture with every binary convolution as a float convolution.

    The float baseline of :func:`benchmark`: ``BinaryConv2D`` layers become
    :class:`tf.keras.layers.Conv2D` (no sign on inputs or kernels, real-valued kernels copied
    from the latent weights), with PyTorch's padding. Its outputs are not those of the
    binary network; it measures what the same network costs in float32.

    Args:
        model: a BNext Keras model.

    Returns:
        A new float :class:`tf.keras.Model`.
    """

    def replace(layer):
        if isinstance(layer, BinaryConv2D):
            if layer._explicit_padding:
                new = _TopLeftPaddedConv2D(
                    layer.filters, layer.kernel_size, layer.strides, name=layer.name
                )
            else:
                new = tf.keras.layers.Conv2D(
                    layer.filters,
                    layer.kernel_size,
                    strides=layer.strides,
                    padding="same",
                    use_bias=False,
                    name=layer.name,
                )
            new._bnext_weights = [layer.kernel.numpy()]
            return new
        if _is_pytorch_stem_pad(layer):
            return _top_left_stem_pad(layer)
        return None

    return _clone(model, replace)
