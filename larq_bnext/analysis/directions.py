"""Random, filter-normalised directions in a model's weight space (Li et al., NeurIPS 2018).

A loss landscape is drawn along directions ``d`` around the trained weights ``w``: the loss at
``w + a d1 + b d2``. Li, Xu, Taylor, Studer and Goldstein ("Visualizing the Loss Landscape of
Neural Nets", NeurIPS 2018) draw each direction from a Gaussian and rescale it *filter by
filter* so that each filter of ``d`` has the norm of the same filter of ``w``. A step of 1 then
moves every filter by its own size, and landscapes of networks whose weights have different
scales (BatchNorm makes a network invariant to the scale of the filters before it) can be
compared.

What gets a direction, as the paper's "ignore biasbn" setting:

* every kernel with output filters: ``Conv`` layers (``Conv2D``, Larq's ``QuantConv2D`` and
  BNext's :class:`~larq_bnext.models.layers.BinaryConv2D`; a filter is one output channel,
  the kernel's last axis), ``Dense`` (one output unit, the last axis), ``DepthwiseConv2D``
  (one input channel times one multiplier, the last two axes), the two kernels of a
  ``SeparableConv`` and the transposed convolutions (output channels on the second-last axis);
* nothing else: BatchNorm's scale and offset, biases, PReLU slopes, BNext's learnable biases
  (``move``) and recoupling scales are held at their trained values (their direction is zero),
  and BatchNorm evaluates with its stored running statistics.

The paper's code decides by the number of dimensions (a PyTorch parameter with one dimension
is a bias or a BatchNorm weight). Here the decision is by role, because Keras and the original
store some of these vectors with more dimensions (a PReLU slope is ``(1, 1, C)``, BNext's
``move`` and recoupling scale are ``(1, C, 1, 1)`` in the original).

Binary convolutions get a direction on their *latent* weights ``w``; what the network computes
depends on the kernel quantizer's regime (:func:`binary_regime`): ``clip(w / T, -1, 1)`` while
the temperature ``T >= 1e-7``, ``sign(w)`` below. In the sign regime the loss is piecewise
constant in the latent weights: only the signs that flip between ``w`` and ``w + a d`` change
it, and the filter normalisation against the latent filter norm sets how many flip per step
(for Gaussian-like ``w`` and ``d`` of equal norm, about ``arctan(|a|) / pi`` of them: 3 % at
``a = 0.1``, 25 % at ``a = 1``). :mod:`larq_bnext.analysis.grid` records that fraction at
every grid point.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from larq_bnext.models.layers import binary_conv_layers

__all__ = [
    "DirectedVariable",
    "directed_variables",
    "random_directions",
    "filter_normalize",
    "binary_regime",
]

_layers = tf.keras.layers


@dataclasses.dataclass(frozen=True)
class DirectedVariable:
    """A variable that directions move, with the axes that one filter spans.

    Args:
        variable: the trainable kernel.
        filter_axes: the axes summed over for one filter's norm (all but the output-filter
            axes).
        binary: whether the variable is the latent kernel of a binary convolution.
    """

    variable: tf.Variable
    filter_axes: tuple
    binary: bool


def _all_axes_but(ndim: int, *kept: int) -> tuple:
    kept = {k % ndim for k in kept}
    return tuple(i for i in range(ndim) if i not in kept)


def _kernels_of(layer) -> list:
    """``(variable, filter_axes)`` of the kernels of ``layer`` that take a direction."""
    found = []
    if isinstance(layer, _layers.SeparableConv1D | _layers.SeparableConv2D):
        depthwise = layer.depthwise_kernel
        found.append((depthwise, _all_axes_but(depthwise.shape.rank, -2, -1)))
        found.append((layer.pointwise_kernel, _all_axes_but(layer.pointwise_kernel.shape.rank, -1)))
    elif isinstance(layer, _layers.DepthwiseConv1D | _layers.DepthwiseConv2D):
        kernel = layer.depthwise_kernel
        found.append((kernel, _all_axes_but(kernel.shape.rank, -2, -1)))
    elif isinstance(
        layer, _layers.Conv1DTranspose | _layers.Conv2DTranspose | _layers.Conv3DTranspose
    ):
        found.append((layer.kernel, _all_axes_but(layer.kernel.shape.rank, -2)))
    elif isinstance(layer, _layers.Conv1D | _layers.Conv2D | _layers.Conv3D | _layers.Dense):
        found.append((layer.kernel, _all_axes_but(layer.kernel.shape.rank, -1)))
    return found


def directed_variables(model: tf.keras.Model) -> list[DirectedVariable]:
    """The kernels of ``model`` that landscape directions move, in ``trainable_variables`` order.

    Every other trainable variable (BatchNorm, biases, PReLU slopes, learnable biases,
    recoupling scales) keeps its value: see the module's documentation.

    Args:
        model: a built Keras model.

    Returns:
        One :class:`DirectedVariable` per kernel; empty if the model has no kernel.
    """
    binary = {id(layer.kernel) for layer in binary_conv_layers(model)}
    axes_of = {}
    for layer in [model, *model.submodules]:
        if not isinstance(layer, _layers.Layer) or not layer.built:
            continue
        for variable, axes in _kernels_of(layer):
            if variable.trainable:
                axes_of[id(variable)] = axes
    return [
        DirectedVariable(v, axes_of[id(v)], id(v) in binary)
        for v in model.trainable_variables
        if id(v) in axes_of
    ]


def filter_normalize(direction: np.ndarray, weights: np.ndarray, filter_axes) -> np.ndarray:
    """Rescale each filter of ``direction`` to the norm of the same filter of ``weights``.

    ``d_f <- d_f * ||w_f|| / (||d_f|| + 1e-10)`` for every filter ``f`` (Li et al., 2018);
    a filter of zero weights gets a zero direction.

    Args:
        direction: a direction of the variable's shape.
        weights: the variable's values.
        filter_axes: the axes one filter spans (see :class:`DirectedVariable`).

    Returns:
        The rescaled direction (float64 arithmetic, the weights' dtype).
    """
    direction = np.asarray(direction, np.float64)
    weights = np.asarray(weights)
    axes = tuple(filter_axes)
    d_norm = np.sqrt(np.sum(direction**2, axis=axes, keepdims=True))
    w_norm = np.sqrt(np.sum(np.asarray(weights, np.float64) ** 2, axis=axes, keepdims=True))
    return (direction * (w_norm / (d_norm + 1e-10))).astype(weights.dtype)


def random_directions(model: tf.keras.Model, count: int = 2, seed: int = 0) -> list[list]:
    """``count`` independent Gaussian directions, filter-normalised, over ``trainable_variables``.

    The directions are drawn with NumPy's ``default_rng(seed)``, one direction after the other,
    each variable in ``model.trainable_variables`` order, so a seed and the model's weights
    fix them.

    Args:
        model: a built Keras model, at the weights the landscape is centred on.
        count: the number of directions (1 for a line, 2 for a plane).
        seed: the random seed.

    Returns:
        ``count`` lists, each with one array per variable of ``model.trainable_variables``:
        the filter-normalised direction for the kernels of :func:`directed_variables`, zeros
        for every other variable.

    Raises:
        ValueError: if the model has no kernel to move, or ``count`` is below 1.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}.")
    directed = {id(d.variable): d for d in directed_variables(model)}
    if not directed:
        raise ValueError(
            "The model has no Conv or Dense kernel for a loss-landscape direction to move."
        )
    rng = np.random.default_rng(seed)
    directions = []
    for _ in range(count):
        direction = []
        for variable in model.trainable_variables:
            dtype = variable.dtype.as_numpy_dtype
            if id(variable) not in directed:
                direction.append(np.zeros(variable.shape, dtype))
                continue
            weights = variable.numpy()
            draw = rng.standard_normal(weights.shape)
            direction.append(filter_normalize(draw, weights, directed[id(variable)].filter_axes))
        directions.append(direction)
    return directions


def binary_regime(model: tf.keras.Model) -> dict:
    """Which regime the binary convolutions of ``model`` compute in.

    Args:
        model: a Keras model (a BNext, or any model; one without binary convolutions is
            ``"none"``).

    Returns:
        ``{"regime", "layers", "min_temperature", "max_temperature"}``, where ``regime`` is
        ``"sign"`` (every kernel is ``sign(w)``: temperatures below the quantizer's threshold),
        ``"clip"`` (every kernel is ``clip(w / T, -1, 1)``), ``"mixed"`` or ``"none"``.
    """
    layers = binary_conv_layers(model)
    if not layers:
        return {"regime": "none", "layers": 0, "min_temperature": None, "max_temperature": None}
    temperatures, signs = [], []
    for layer in layers:
        temperature = float(layer.temperature.numpy())
        threshold = getattr(layer.kernel_quantizer, "threshold", None)
        temperatures.append(temperature)
        signs.append(threshold is not None and temperature < threshold)
    regime = "sign" if all(signs) else "clip" if not any(signs) else "mixed"
    return {
        "regime": regime,
        "layers": len(layers),
        "min_temperature": min(temperatures),
        "max_temperature": max(temperatures),
    }
