"""Loss and top-1 of a model on a grid of weights around its trained ones.

:func:`loss_landscape` evaluates a model at ``w + a d1`` (a line) or ``w + a d1 + b d2`` (a
plane) for a grid of ``a`` (and ``b``) in ``[-span, span]``, along the random filter-normalised
directions of :func:`larq_bnext.analysis.directions.random_directions`. How it keeps this cheap:

* the evaluation examples are chosen once (a seed picks them,
  :mod:`larq_bnext.analysis.examples`) and held in memory as tensors;
* the weights of a grid point are *assigned in place* (``w + a d1 + b d2``, one compiled
  function over the moved kernels): the model is built once, never rebuilt or reloaded;
* every batch runs through one compiled ``tf.function`` in inference mode (BatchNorm uses its
  stored running statistics, binary convolutions their current temperature regime).

The model's weights are restored when the grid is done, or stopped. With ``output``, the
:class:`~larq_bnext.analysis.results.Landscape` is saved after every row, and a rerun with the
same settings continues an interrupted grid.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

import numpy as np
import tensorflow as tf

from larq_bnext.analysis.directions import binary_regime, directed_variables, random_directions
from larq_bnext.analysis.examples import data_digest, evaluation_batches
from larq_bnext.analysis.results import Landscape, check_same_settings

__all__ = [
    "loss_landscape",
    "grid_coordinates",
    "logits_cross_entropy",
    "weights_digest",
]

#: What the directions are (recorded in the settings; a change would change every value).
DIRECTIONS = "gaussian, filter-normalised, ignore biasbn (Li et al. 2018)"


def logits_cross_entropy(labels: tf.Tensor, outputs: tf.Tensor) -> tf.Tensor:
    """Per-example cross-entropy of logits: the loss a BNext (built with
    ``classifier_activation=None``) is trained and evaluated with.

    Args:
        labels: integer class labels ``(n,)`` (or one-hot ``(n, classes)``).
        outputs: logits ``(n, classes)``.

    Returns:
        ``(n,)`` losses.
    """
    outputs = tf.cast(outputs, tf.float32)
    if labels.shape.rank == outputs.shape.rank and labels.shape[-1] != 1:
        return tf.keras.losses.categorical_crossentropy(
            tf.cast(labels, tf.float32), outputs, from_logits=True
        )
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
    return tf.keras.losses.sparse_categorical_crossentropy(labels, outputs, from_logits=True)


def grid_coordinates(points: int, span: float) -> np.ndarray:
    """``points`` evenly spaced coordinates from ``-span`` to ``span``, 0 in the middle.

    Args:
        points: an odd number of points (so that the trained weights are a grid point).
        span: the largest coordinate.

    Raises:
        ValueError: for an even or too small ``points``, or a ``span`` that is not positive.
    """
    if points < 3 or points % 2 == 0:
        raise ValueError(
            f"points must be odd and at least 3 (the middle point is the trained model), "
            f"not {points}."
        )
    if not span > 0:
        raise ValueError(f"span must be positive, not {span}.")
    coordinates = np.linspace(-span, span, points)
    coordinates[points // 2] = 0.0
    return coordinates


def weights_digest(model: tf.keras.Model) -> str:
    """SHA-256 of every weight of ``model`` (trainable or not), in ``model.weights`` order.

    Args:
        model: a built Keras model.
    """
    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()


class _Evaluator:
    """Moves the model's kernels to grid points and scores it on the cached batches."""

    def __init__(self, model, directions, batches, loss):
        index = {id(v): i for i, v in enumerate(model.trainable_variables)}
        directed = [
            d
            for d in directed_variables(model)
            if any(np.any(direction[index[id(d.variable)]]) for direction in directions)
        ]
        self.model = model
        self.loss = loss
        self.variables = [d.variable for d in directed]
        self.binary = [d.binary for d in directed]
        self.origin = [tf.constant(v.numpy()) for v in self.variables]
        self.directions = [
            [tf.constant(direction[index[id(v)]]) for v in self.variables]
            for direction in directions
        ]
        self.batches = [(tf.constant(x), tf.constant(y)) for x, y in batches]
        self.binary_weights = sum(
            int(np.prod(v.shape)) for v, b in zip(self.variables, self.binary, strict=True) if b
        )

    # No AutoGraph: the loops run over Python lists (unrolled), and Larq's quantized
    # variables cannot be converted (a warning per trace otherwise).
    @tf.function(autograph=False)
    def _move(self, coordinates):
        flips = tf.constant(0, tf.int64)
        for k, variable in enumerate(self.variables):
            weights = self.origin[k]
            for i, direction in enumerate(self.directions):
                weights = weights + tf.cast(coordinates[i], weights.dtype) * direction[k]
            variable.assign(weights)
            if self.binary[k]:
                changed = tf.not_equal(tf.sign(weights), tf.sign(self.origin[k]))
                flips += tf.math.count_nonzero(changed, dtype=tf.int64)
        return flips

    @tf.function(autograph=False, reduce_retracing=True)
    def _score(self, inputs, labels):
        outputs = self.model(inputs, training=False)
        losses = tf.cast(self.loss(labels, outputs), tf.float64)
        predicted = tf.argmax(outputs, axis=-1)
        if labels.shape.rank == outputs.shape.rank and labels.shape[-1] != 1:
            target = tf.argmax(labels, axis=-1)
        else:
            target = tf.cast(tf.reshape(labels, [-1]), tf.int64)
        correct = tf.math.count_nonzero(tf.equal(predicted, target), dtype=tf.int64)
        return tf.reduce_sum(losses), correct

    def at(self, coordinates) -> tuple[float, float, float]:
        """``(loss, top1, sign_flips)`` at ``coordinates`` (one per direction)."""
        flips = int(self._move(tf.constant(coordinates, tf.float64)))
        total_loss, correct, count = 0.0, 0, 0
        for inputs, labels in self.batches:
            batch_loss, batch_correct = self._score(inputs, labels)
            total_loss += float(batch_loss)
            correct += int(batch_correct)
            count += int(inputs.shape[0])
        flip_fraction = flips / self.binary_weights if self.binary_weights else float("nan")
        return total_loss / count, correct / count, flip_fraction

    def restore(self) -> None:
        """Put the trained weights back."""
        for variable, weights in zip(self.variables, self.origin, strict=True):
            variable.assign(weights)


def _check_outputs(model, batches, loss) -> None:
    """Refuse probabilities where the default loss expects logits (a silent wrong answer)."""
    if loss is not logits_cross_entropy:
        return
    outputs = np.asarray(model(batches[0][0][:8], training=False), np.float64)
    if outputs.ndim != 2:
        raise ValueError(
            f"The model returns outputs of shape {outputs.shape}; the default loss needs "
            "logits (batch, classes). Pass loss= for other outputs."
        )
    if np.all(outputs >= 0) and np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-4):
        raise ValueError(
            "The model returns probabilities (its outputs sum to 1), but the landscape's loss "
            "takes logits: build it with classifier_activation=None, or pass loss=."
        )


def _progress(verbose: int, stream):
    """``"bar"``, ``"lines"`` or ``None``, as
    :func:`larq_bnext.training.reporting.progress_mode` chooses for ``fit``."""
    from larq_bnext.training.reporting import progress_mode

    if verbose == 0:
        return None
    keras_verbose, lines = progress_mode(verbose, stream)
    return "lines" if lines or keras_verbose == 2 else "bar"


def loss_landscape(
    model: tf.keras.Model,
    data,
    *,
    dims: int = 2,
    points: int = 21,
    span: float = 1.0,
    seed: int = 0,
    examples: int | None = None,
    batch_size: int = 128,
    loss=None,
    output: str | None = None,
    overwrite: bool = False,
    name: str | None = None,
    verbose: int = 1,
    stream=None,
) -> Landscape:
    """Loss and top-1 of ``model`` on a line or a plane around its current weights.

    The grid is ``points`` coordinates from ``-span`` to ``span`` per direction; the
    directions are :func:`~larq_bnext.analysis.directions.random_directions` of ``seed``. The
    model is evaluated in inference mode: BatchNorm uses its stored statistics, binary
    convolutions compute in their current temperature regime (see
    :mod:`larq_bnext.analysis.directions`). Its weights are restored afterwards.

    Args:
        model: a built Keras model returning logits (or outputs that ``loss`` takes).
        data: a ``tf.data.Dataset`` of ``(inputs, labels)`` batches or an ``(inputs, labels)``
            pair of arrays (see :func:`evaluation_batches`).
        dims: 1 (a line) or 2 (a plane).
        points: grid points per direction (odd: the centre is the trained model).
        span: the grid covers ``[-span, span]`` in units of the filter-normalised directions.
        seed: picks the directions and the examples.
        examples: how many examples to evaluate each point on (``None``: all of ``data``).
        batch_size: evaluation batch size (it does not change the values).
        loss: ``loss(labels, outputs)`` returning per-example losses; default
            :func:`logits_cross_entropy`. Regularisation losses are not added.
        output: save the landscape to this ``.npz`` after every row; if it exists, continue
            it (its settings must equal these).
        overwrite: start again even if ``output`` holds a landscape.
        name: the model's name in the figures (stored in ``info``).
        verbose: 0 silent; 1 a progress bar on a terminal, one line per row elsewhere; 2
            one line per row.
        stream: where the lines go (``sys.stdout`` by default).

    Returns:
        The :class:`~larq_bnext.analysis.results.Landscape`.

    Raises:
        ValueError: for bad grid settings or data, a model without kernels, probabilities
            where logits are expected, or an ``output`` computed with other settings
            (:class:`~larq_bnext.analysis.results.SettingsMismatchError`).
    """
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 (a line) or 2 (a plane), not {dims}.")
    x = grid_coordinates(points, span)
    y = x.copy() if dims == 2 else None
    loss = loss or logits_cross_entropy
    batches = evaluation_batches(data, examples, seed, batch_size)
    count = sum(len(b[0]) for b in batches)
    _check_outputs(model, batches, loss)
    regime = binary_regime(model)
    directed = directed_variables(model)
    settings = {
        "dims": dims,
        "points": points,
        "span": float(span),
        "seed": int(seed),
        "examples": count,
        "loss": getattr(loss, "__name__", type(loss).__name__),
        "directions": DIRECTIONS,
        "weights_sha256": weights_digest(model),
        "examples_sha256": data_digest(batches),
    }
    info = {
        "name": name or model.name,
        "binary_regime": regime,
        "moved_kernels": len(directed),
        "moved_weights": int(sum(np.prod(d.variable.shape) for d in directed)),
        "held_variables": len(model.trainable_variables) - len(directed),
    }
    if output and os.path.exists(output) and not overwrite:
        landscape = Landscape.load(output)
        check_same_settings(output, landscape.settings, settings)
        landscape.info = {**landscape.info, **info}
    else:
        landscape = Landscape.empty(settings, x, y, info)
    stream = stream if stream is not None else sys.stdout
    mode = _progress(verbose, stream)
    if landscape.complete:
        if mode:
            print(f"{output}: complete; {landscape.cost_summary()}", file=stream, flush=True)
        return landscape
    if mode:
        _print_header(landscape, output, stream)
    evaluator = _Evaluator(model, random_directions(model, dims, seed), batches, loss)
    try:
        _run_rows(landscape, evaluator, output, mode, stream)
    finally:
        evaluator.restore()
    if mode:
        print(landscape.cost_summary(), file=stream, flush=True)
    return landscape


def _print_header(landscape: Landscape, output, stream) -> None:
    info, regime = landscape.info, landscape.info["binary_regime"]
    grid = "x".join(str(len(c)) for c in (landscape.x, landscape.y) if c is not None)
    done = f", continuing after {landscape.points_done} points" if landscape.points_done else ""
    binary = ""
    if regime["layers"]:
        binary = (
            f"; {regime['layers']} binary convolutions in the {regime['regime']} regime "
            f"(temperature {regime['min_temperature']:.3g}-{regime['max_temperature']:.3g})"
        )
    print(
        f"landscape of {info['name']}: {grid} grid over +-{landscape.settings['span']:g}, "
        f"{landscape.examples} examples, {info['moved_kernels']} kernels moved "
        f"({info['moved_weights']:,} weights), {info['held_variables']} variables held"
        f"{binary}{done}" + (f" -> {output}" if output else ""),
        file=stream,
        flush=True,
    )


def _rows(landscape: Landscape):
    """``(row, [(index, coordinates), ...])`` for each row not computed yet."""
    for r in np.flatnonzero(~landscape.rows_done):
        if landscape.y is None:
            yield r, [((r,), (landscape.x[r],))]
        else:
            yield r, [((r, i), (x, landscape.y[r])) for i, x in enumerate(landscape.x)]


def _run_rows(landscape: Landscape, evaluator: _Evaluator, output, mode, stream) -> None:
    bar = None
    if mode == "bar":
        bar = tf.keras.utils.Progbar(
            landscape.points, stateful_metrics=["loss", "top1"], unit_name="point"
        )
        bar.update(landscape.points_done)
    rows = len(landscape.rows_done)
    for r, cells in _rows(landscape):
        start = time.perf_counter()
        for index, coordinates in cells:
            values = evaluator.at(coordinates)
            landscape.loss[index], landscape.top1[index], landscape.sign_flips[index] = values
            if bar is not None:
                bar.add(1, [("loss", values[0]), ("top1", values[1])])
        landscape.rows_done[r] = True
        seconds = time.perf_counter() - start
        landscape.seconds += seconds
        if output:
            landscape.save(output)
        if mode == "lines":
            print(_row_line(landscape, r, rows, seconds), file=stream, flush=True)


def _row_line(landscape: Landscape, r: int, rows: int, seconds: float) -> str:
    width = len(str(rows))
    if landscape.y is None:
        head = f"point {r + 1:>{width}d}/{rows}  x {landscape.x[r]:+.3f}"
        loss, top1, flips = (np.atleast_1d(a[r]) for a in _values(landscape))
    else:
        head = f"row {r + 1:>{width}d}/{rows}  y {landscape.y[r]:+.3f}"
        loss, top1, flips = (a[r] for a in _values(landscape))
    line = f"{head}  loss {loss.min():.4f}-{loss.max():.4f}  top1 {top1.min():.4f}-{top1.max():.4f}"
    if np.isfinite(flips).any():
        line += f"  sign flips {100 * flips.min():.1f}-{100 * flips.max():.1f} %"
    done = landscape.rows_done.sum()
    left = landscape.seconds / done * (rows - done) if done else 0.0
    return f"{line}  {seconds:.1f} s (about {left:.0f} s left)"


def _values(landscape: Landscape):
    return landscape.loss, landscape.top1, landscape.sign_flips
