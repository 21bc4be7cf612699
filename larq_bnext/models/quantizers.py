"""BNext's quantizers: the HardSign input quantizer and the progressive kernel quantizer.

* :class:`HardSign` is the input quantizer: forward ``sign(x)``, backward straight-through
  with gradient 1 where ``|x| <= 1.5`` and 0 elsewhere.
* :class:`ProgressiveSign` is the kernel quantizer: ``clip(w / T, -1, 1)`` while the
  temperature ``T >= 1e-7`` and ``sign(w)`` below, with an identity straight-through gradient.

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

from larq_bnext.models.tracing import no_autograph
from larq_bnext.registry import BNEXT_ARCHITECTURE

__all__ = [
    "TEMPERATURE_THRESHOLD",
    "WEIGHT_CLIP",
    "ACTIVATION_CLIP",
    "HardSign",
    "progressive_sign",
    "sign_ste",
    "ProgressiveSign",
    "computes_in_half",
]


#: Below this kernel temperature the binary convolution uses ``sign(w)`` exactly (BNext-T/S/M/L;
#: each model's is :attr:`larq_bnext.registry.Architecture.sign_threshold`).
TEMPERATURE_THRESHOLD = BNEXT_ARCHITECTURE.sign_threshold


#: Latent binary weights are kept in ``[-WEIGHT_CLIP, WEIGHT_CLIP]`` during training.
WEIGHT_CLIP = BNEXT_ARCHITECTURE.weight_clip


#: The HardSign straight-through gradient is 1 for ``|x| <= ACTIVATION_CLIP``.
ACTIVATION_CLIP = BNEXT_ARCHITECTURE.activation_clip


_register = tf.keras.utils.register_keras_serializable(package="larq_bnext")


_HALF_DTYPES = (tf.float16, tf.bfloat16)


def computes_in_half(layer: tf.keras.layers.Layer) -> bool:
    """Whether ``layer`` computes in float16 or bfloat16 (a mixed-precision policy).

    Args:
        layer: a Keras layer.
    """
    return tf.as_dtype(layer.compute_dtype) in _HALF_DTYPES


def _register_quantizer(cls):
    # Larq looks quantizers up by bare class name when it deserializes a quantized layer.
    return lq.utils.register_keras_custom_object(_register(cls))


@_register_quantizer
class HardSign(lq.quantizers.SteSign):
    """BNext's activation quantizer: ``sign(x)`` with a straight-through gradient.

    The gradient passes unchanged where ``|x| <= clip_value`` (1.5 in BNext) and is zero
    elsewhere. ``sign(0)`` is ``0``, as ``torch.sign`` in the original (Larq's
    :class:`~larq.quantizers.SteSign` maps 0 to ``+1``; the LCE export does, too).

    Args:
        clip_value: half-width of the straight-through gradient window.
        **kwargs: passed to :class:`larq.quantizers.SteSign`.
    """

    precision = 1

    def __init__(self, clip_value: float = ACTIVATION_CLIP, **kwargs):
        super().__init__(clip_value=clip_value, **kwargs)

    @no_autograph
    def call(self, inputs):
        outputs = sign_ste(inputs, self.clip_value)
        # Skip SteSign.call (Larq's sign); the base quantizer adds the flip-ratio metric.
        return super(lq.quantizers.SteSign, self).call(outputs)


def sign_ste(x: tf.Tensor, clip_value: float | None = ACTIVATION_CLIP) -> tf.Tensor:
    """``tf.sign(x)`` (``sign(0) = 0``) with a straight-through gradient.

    The gradient is ``dy`` where ``|x| <= clip_value`` and 0 elsewhere (everywhere ``dy`` when
    ``clip_value`` is ``None``), as Larq's ``ste_sign``, whose forward maps 0 to ``+1``.

    Args:
        x: the tensor to binarize.
        clip_value: half-width of the straight-through window, or ``None`` for no window.

    Returns:
        A tensor of ``x``'s shape and dtype with values in ``{-1, 0, 1}``.
    """

    @tf.custom_gradient
    def _sign(x):
        if clip_value is None:
            return tf.sign(x), lambda dy: dy
        # The backward pass keeps only this boolean mask (a quarter of x's float32 bytes),
        # not x itself, which can then be freed after the forward pass.
        inside = tf.abs(x) <= tf.cast(clip_value, x.dtype)

        def grad(dy):
            return tf.where(inside, dy, tf.zeros_like(dy))

        return tf.sign(x), grad

    return _sign(tf.convert_to_tensor(x))


def progressive_sign(
    w: tf.Tensor, temperature: tf.Tensor, threshold: float = TEMPERATURE_THRESHOLD
) -> tf.Tensor:
    """Binarize ``w`` progressively: ``clip(w / T, -1, 1)`` while ``T >= threshold``, else sign.

    ``sign(0) = 0`` as in the original (``torch.sign``).

    The gradient with respect to ``w`` is the identity (straight-through), in both regimes;
    no gradient flows to the temperature.

    Args:
        w: latent weights.
        temperature: scalar temperature ``T`` (same dtype as ``w`` or castable to it).
        threshold: temperature below which the output is exactly ``sign(w)``.

    Returns:
        A tensor of ``w``'s shape and dtype with values in ``[-1, 1]``.
    """
    # Under mixed precision the comparison with the 1e-7 threshold and w / T run in float32
    # (float16 cannot represent temperatures near 1e-7); the result is cast back.
    w = tf.convert_to_tensor(w)  # also accept a (quantized) variable called eagerly
    dtype = tf.float32 if w.dtype in _HALF_DTYPES else w.dtype
    temperature = tf.cast(tf.stop_gradient(temperature), dtype)

    # Called eagerly (a forward pass outside tf.function, as predict's), the regime is known:
    # only its branch is computed, the same values as the select below at a third of the
    # passes over the kernel (BNext-L's binary kernels hold 327 million weights).
    regime = None
    if tf.executing_eagerly() and not isinstance(temperature, tf.Variable):
        regime = bool(temperature.numpy() < threshold)

    @tf.custom_gradient
    def _quantize(x):
        x32 = tf.cast(x, dtype)
        if regime is True:
            out = tf.sign(x32)
        elif regime is False:
            out = tf.clip_by_value(x32 / tf.maximum(temperature, 1e-8), -1.0, 1.0)
        else:
            hard = tf.sign(x32)  # sign(0) = 0, as torch.sign
            soft = tf.clip_by_value(x32 / tf.maximum(temperature, 1e-8), -1.0, 1.0)
            out = tf.where(temperature < threshold, hard, soft)
        return tf.cast(out, x.dtype), lambda dy: dy

    return _quantize(w)


@_register_quantizer
class ProgressiveSign(lq.quantizers.Quantizer):
    """BNext's kernel quantizer, tied to the temperature of the layer that owns it.

    :class:`BinaryConv2D` links the quantizer to its ``temperature`` weight when it is built;
    used on its own, the quantizer reads the fixed ``temperature`` given here.

    Args:
        threshold: temperature below which the kernel is ``sign(w)``.
        temperature: fixed temperature for stand-alone use (ignored once linked to a layer).
        **kwargs: passed to :class:`tf.keras.layers.Layer`.
    """

    precision = 1

    def __init__(
        self, threshold: float = TEMPERATURE_THRESHOLD, temperature: float = 1.0, **kwargs
    ):
        super().__init__(**kwargs)
        self.threshold = threshold
        self.temperature = temperature
        self._temperature_source = None

    def link(self, temperature_source) -> None:
        """Read the temperature from ``temperature_source()`` from now on.

        Args:
            temperature_source: a zero-argument callable returning the scalar temperature
                (``BinaryConv2D`` passes one that reads its ``temperature`` weight).
        """
        self._temperature_source = temperature_source

    @no_autograph
    def call(self, inputs):
        temperature = (
            self._temperature_source() if self._temperature_source is not None else self.temperature
        )
        return progressive_sign(inputs, temperature, self.threshold)

    def get_config(self):
        return {
            **super().get_config(),
            "threshold": self.threshold,
            "temperature": self.temperature,
        }
