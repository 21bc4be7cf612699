"""Operation counts of a model, the way the BNext authors count them: BOPs, FLOPs, OPs.

The multiply-accumulates (MACs) of each convolution and dense layer come from Larq's own
profiler (:class:`larq.models.ModelProfile`, the counts of ``lq.models.summary``): a layer
whose inputs and kernel are both binary does binary MACs (BOPs), any other does real-valued
MACs. Larq also counts the MACs of a layer's scalar non-trainable weights (the temperature
buffers of :class:`~larq_bnext.models.layers.BinaryConv2D`) as if they were kernels; only
kernels (weights of rank 2 or more) are kept here.

The BNext README's "degree of binarization" is ``BOPs / (64 * OPs)`` with
``OPs = BOPs / 64 + FLOPs``. Its OPs for BNext-T/S/M come out of these counts when the
real-valued MACs (stem, squeeze-and-excitation, classifier; BNext-18's downsampling too) are
8-bit, as in the authors' quantized models (``src/bnext_quant.py``, ``birealnet_quant.py``),
and an 8-bit MAC counts as 1/8 FLOP: ``int8_bits=True``, the default. With ``int8_bits=False``
every real-valued MAC is one FLOP (the convention of Bi-Real Net and ReActNet). BatchNorm,
PReLU, pooling and element-wise operations are not counted, by either convention.

The README's degrees are computed from rounded figures, BOPs to 0.01 G over 64 times OPs to
0.001 G (:func:`rounded_binarization`): that gives its BNext-T/S/M/L degrees exactly from their
published OPs, where the unrounded ratio (:attr:`OpCount.binarization`) is up to 0.02 points
off. See docs/comparison.md for the comparison with the published figures.

Examples:
    >>> import tensorflow as tf, larq as lq
    >>> x = inputs = tf.keras.Input((8, 8, 16))
    >>> x = lq.layers.QuantConv2D(16, 3, padding="same", input_quantizer="ste_sign",
    ...                           kernel_quantizer="ste_sign", use_bias=False)(x)
    >>> x = tf.keras.layers.GlobalAveragePooling2D()(x)
    >>> counts = count_ops(tf.keras.Model(inputs, tf.keras.layers.Dense(10)(x)))
    >>> counts.bops, counts.real_macs             # 8*8*16*16*3*3 binary, 16*10 real-valued
    (147456, 160)
    >>> counts.ops == counts.bops / 64 + counts.real_macs / 8
    True
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

__all__ = ["OpCount", "count_ops", "rounded_binarization"]

#: Binary MACs one real-valued operation is worth (a 64-bit word of XNOR-popcount).
BOPS_PER_OP = 64
#: 8-bit MACs one real-valued operation is worth, in the authors' counts.
INT8_MACS_PER_OP = 8


@dataclasses.dataclass(frozen=True)
class OpCount:
    """The MACs of a model at one input size, by kind, and the counts derived from them.

    Args:
        bops: binary multiply-accumulates (binary inputs and binary kernel).
        real_macs: multiply-accumulates of every other convolution and dense layer.
        int8_bits: whether ``real_macs`` are counted as 8-bit (1/8 FLOP each, the authors'
            quantized models) or as float (1 FLOP each).
        layers: ``(layer name, bops, real MACs)`` of each layer that does MACs, in order.
    """

    bops: int
    real_macs: int
    int8_bits: bool = True
    layers: tuple[tuple[str, int, int], ...] = ()

    @property
    def flops(self) -> float:
        """Real-valued operations: ``real_macs``, divided by 8 when they are 8-bit."""
        return self.real_macs / INT8_MACS_PER_OP if self.int8_bits else float(self.real_macs)

    @property
    def ops(self) -> float:
        """``BOPs / 64 + FLOPs``."""
        return self.bops / BOPS_PER_OP + self.flops

    @property
    def binarization(self) -> float:
        """Degree of binarization, ``BOPs / (64 * OPs)``, as a fraction (0 without BOPs)."""
        return self.bops / BOPS_PER_OP / self.ops if self.ops else 0.0

    @property
    def rounded_binarization(self) -> float:
        """The degree the README's way, from this count's BOPs and OPs rounded
        (:func:`rounded_binarization`); NaN where the OPs round to 0 G (under 0.0005 G)."""
        if round(self.ops / 1e9, 3) == 0:
            return float("nan")
        return rounded_binarization(self.bops, self.ops)


def rounded_binarization(bops: float, ops: float) -> float:
    """The degree of binarization as the BNext README computes it, from rounded figures.

    ``round(BOPs / 1e9, 2) / (64 * round(OPs / 1e9, 3))``: BOPs in G to two decimals (4.82 G
    for BNext-T), OPs in G to the three decimals the README prints (0.077 G).

    Args:
        bops: binary MACs.
        ops: ``BOPs / 64 + FLOPs``, unrounded or already rounded (the published OPs times 1e9).

    Returns:
        The degree as a fraction.

    Example:
        >>> round(100 * rounded_binarization(4_816_896_000, 0.077e9), 2)   # BNext-T's 97.81 %
        97.81
    """
    rounded_ops = round(ops / 1e9, 3)
    if rounded_ops <= 0:
        raise ValueError(
            f"ops={ops:g} rounds to {rounded_ops} G: the README's rounding gives no degree below "
            "0.0005 G OPs; use OpCount.binarization for small models."
        )
    return round(bops / 1e9, 2) / BOPS_PER_OP / rounded_ops


def _profiles(profile):
    """Every layer profile of a (nested) :class:`larq.models.ModelProfile`."""
    for layer_profile in profile.layer_profiles:
        if hasattr(layer_profile, "layer_profiles"):
            yield from _profiles(layer_profile)
        else:
            yield layer_profile


def _kernel_macs(layer_profile) -> list[tuple[int, int]]:
    """``(MACs, precision)`` of the layer's kernels: Larq's operation profiles, which follow
    the layer's non-bias weights one to one, less those of scalar buffers."""
    if not layer_profile.op_profiles:  # no convolution or dense layer
        return []
    weights = [w for w in layer_profile.weight_profiles if not w.is_bias()]
    return [
        (op.n, op.precision)
        for weight, op in zip(weights, layer_profile.op_profiles, strict=True)
        if weight._weight.shape.rank >= 2
    ]


def count_ops(model: tf.keras.Model, int8_bits: bool = True) -> OpCount:
    """Count the BOPs and real-valued MACs of ``model`` at its input size.

    Works for any built Keras model (a registry model, a custom-width
    :func:`larq_bnext.BNext`, a :func:`larq_bnext.BNext18` or any Larq network); a model
    wrapped in another (a distiller's student) is counted through. Count at another input
    size by building the model with that ``input_shape``.

    Args:
        model: the model; its layers need static output shapes (a functional model).
        int8_bits: count the real-valued MACs as 8-bit, 1/8 FLOP each (the authors'
            figures); ``False``: 1 FLOP each.

    Returns:
        An :class:`OpCount`.
    """
    from larq.models import ModelProfile

    rows = []
    for layer_profile in _profiles(ModelProfile(model)):
        macs = _kernel_macs(layer_profile)
        if macs:
            binary = sum(n for n, precision in macs if precision == 1)
            real = sum(n for n, precision in macs if precision != 1)
            rows.append((layer_profile.name, binary, real))
    return OpCount(
        bops=sum(r[1] for r in rows),
        real_macs=sum(r[2] for r in rows),
        int8_bits=int8_bits,
        layers=tuple(rows),
    )
