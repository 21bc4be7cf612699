"""Matching a checkpoint's tensors to a Keras model's weights: what the loaders of BNext
(:mod:`larq_bnext.weights.mapping`) and BNext-18 (:mod:`larq_bnext.weights.bnext18`) share.

A loader maps every weight of the model to a checkpoint key (:func:`targets_from_layers`, a
:class:`Target` each), checks keys and shapes before changing anything
(:func:`match_state_to_targets`; mismatches raise :class:`WeightsMismatchError`), then copies
each tensor in the Keras layout (:meth:`Target.to_keras`) and reports what it did
(:class:`ConversionReport`).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from larq_bnext.registry import resolve_model
from larq_bnext.weights.pytorch_reader import LazyTensor

__all__ = [
    "WeightsMismatchError",
    "ConversionReport",
    "Target",
    "BN_PARTS",
    "PART_WEIGHTS",
    "targets_from_layers",
    "strip_module_prefix",
    "match_state_to_targets",
    "format_problems",
    "fits",
    "shape_of",
    "to_numpy",
]


class WeightsMismatchError(ValueError):
    """A checkpoint does not fit the model (other size, missing/unexpected/mis-shaped tensors)."""


@dataclasses.dataclass
class ConversionReport:
    """What :func:`load_state_dict_into_model` did.

    Attributes:
        converted: official keys loaded into the model, in order.
        skipped: official keys deliberately not loaded (tensors the original never applies).
        clamped_scales: number of FFN-1x1 scale values clamped into [0, 1].
        zero_sign_weights: binary-conv key -> number of weights that are exactly 0 in a layer
            whose temperature is below 1e-7. Information only: the model binarizes them to 0,
            as the original (``torch.sign``); an LCE export sets them to ``+1``
            (:func:`larq_bnext.deploy.zero_sign_weights`).
        checkpoint_size: the official size the checkpoint matches, or ``None``.
    """

    converted: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    clamped_scales: int = 0
    zero_sign_weights: dict = dataclasses.field(default_factory=dict)
    checkpoint_size: str | None = None

    def summary(self) -> str:
        """One line: counts of converted and skipped tensors, clamped scales, zero weights."""
        size = (
            f"{resolve_model(self.checkpoint_size).display_name} " if self.checkpoint_size else ""
        )
        zeros = sum(self.zero_sign_weights.values())
        zeros = (
            f"; {zeros} sign-regime binary weights are exactly 0 (binarized to 0 as in the "
            "original; an LCE export sets them to +1)"
            if zeros
            else ""
        )
        return (
            f"{size}checkpoint: converted {len(self.converted)} tensors, skipped "
            f"{len(self.skipped)} never-applied ones (unused PReLUs, num_batches_tracked), "
            f"clamped {self.clamped_scales} FFN-1x1 scale values into [0, 1]{zeros}"
        )


@dataclasses.dataclass
class Target:
    """A Keras weight and the checkpoint tensor it takes.

    Args:
        key: the checkpoint key, without the ``module.`` prefix.
        variable: the Keras variable.
        kind: how the layouts differ: ``conv`` (OIHW/HWIO), ``dense`` (transposed),
            ``vector``, ``vector4d`` (``(1, C, 1, 1)`` in the checkpoint), ``prelu`` or
            ``scalar``.
    """

    key: str
    variable: tf.Variable
    kind: str

    def official_shape(self) -> tuple:
        """The shape of the tensor in the checkpoint."""
        shape = tuple(int(d) for d in self.variable.shape)
        if self.kind == "conv":
            h, w, i, o = shape
            return (o, i, h, w)
        if self.kind == "dense":
            return (shape[1], shape[0])
        if self.kind == "vector4d":
            return (1, shape[0], 1, 1)
        if self.kind == "prelu":
            return (shape[-1],)
        if self.kind == "scalar":
            return (1,)
        return shape

    def to_keras(self, array: np.ndarray) -> np.ndarray:
        """The checkpoint's ``array`` in the variable's layout and dtype.

        Args:
            array: the checkpoint tensor.
        """
        if self.kind == "conv":
            array = np.transpose(array, (2, 3, 1, 0))
        elif self.kind == "dense":
            array = array.T
        array = np.reshape(array, tuple(int(d) for d in self.variable.shape))
        return np.array(array, dtype=self.variable.dtype.as_numpy_dtype, order="C")


#: Keras BatchNormalization weight -> PyTorch BatchNorm tensor.
BN_PARTS = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


#: Keras part of a sub-block -> {Keras weight name: (checkpoint key suffix, kind)}.
PART_WEIGHTS = {
    "move": {"bias": ("move.bias", "vector4d")},
    "binary_conv": {
        "kernel": ("binary_conv.weight", "conv"),
        "temperature": ("binary_conv.temperature", "scalar"),
        "input_temperature": ("binary_activation.temperature", "scalar"),
    },
    "activation1": {"alpha": ("activation1.weight", "prelu")},
    "activation2": {"alpha": ("activation2.weight", "prelu")},
    "mix": {"scale": ("scale", "vector4d")},
    "se_reduce": {"kernel": ("se.se.1.weight", "conv"), "bias": ("se.se.1.bias", "vector")},
    "se_expand": {"kernel": ("se.se.3.weight", "conv"), "bias": ("se.se.3.bias", "vector")},
    "norm1": {k: (f"norm1.{v}", "vector") for k, v in BN_PARTS.items()},
    "norm2": {k: (f"norm2.{v}", "vector") for k, v in BN_PARTS.items()},
}


def _weight_name(variable) -> str:
    return variable.name.split("/")[-1].split(":")[0]


def targets_from_layers(model: tf.keras.Model, locate, original: str, builder: str) -> list:
    """Map each weight of ``model``'s layers to a checkpoint key through ``locate``.

    Args:
        model: the Keras model.
        locate: ``layer name -> (table, key prefix)`` or ``None`` for a layer the original
            has no counterpart of; ``table`` maps a Keras weight name to ``(key suffix, kind)``.
        original: what the checkpoints are, for messages.
        builder: the function that builds models that fit them, for messages.

    Returns:
        A list of targets with ``.key``, ``.variable`` and ``.kind``.

    Raises:
        ValueError: for a layer or weight with no counterpart in ``original``.
    """
    targets = []
    for layer in model.layers:
        if not layer.weights:
            continue
        found = locate(layer.name)
        if found is None:
            raise ValueError(
                f"Layer {layer.name!r} has weights but no counterpart in {original}; only "
                f"models built by {builder} can load them."
            )
        table, prefix = found
        for variable in layer.weights:
            name = _weight_name(variable)
            if name not in table:
                raise ValueError(f"Weight {variable.name!r} has no counterpart in {original}.")
            suffix, kind = table[name]
            targets.append(Target(prefix + suffix, variable, kind))
    return targets


def shape_of(value) -> tuple:
    """The shape of a checkpoint tensor (lazy, NumPy or torch).

    Args:
        value: the tensor.
    """
    return (
        tuple(int(d) for d in np.shape(value)) if not isinstance(value, LazyTensor) else value.shape
    )


def to_numpy(value) -> np.ndarray:
    """A checkpoint tensor (lazy, NumPy or torch) as a NumPy array.

    Args:
        value: the tensor.
    """
    if isinstance(value, LazyTensor):
        return value.numpy()
    if hasattr(value, "detach"):  # a torch tensor handed in directly
        return value.detach().cpu().numpy()
    return np.asarray(value)


def strip_module_prefix(state: Mapping) -> OrderedDict:
    """``state`` with the ``module.`` prefix of ``DataParallel``/DDP checkpoints removed.

    Args:
        state: checkpoint key -> tensor.
    """
    return OrderedDict(
        (k[len("module.") :] if k.startswith("module.") else k, v) for k, v in state.items()
    )


def fits(target, shape: tuple) -> bool:
    """Whether a checkpoint tensor of ``shape`` fits ``target`` (a scalar may be ``(1,)``).

    Args:
        target: a :class:`Target`.
        shape: the tensor's shape in the checkpoint.
    """
    return shape == target.official_shape() or (
        target.kind == "scalar" and int(np.prod(shape)) == 1
    )


def match_state_to_targets(shapes: Mapping, targets, allowed_unused, report) -> tuple[list, set]:
    """Check a checkpoint's keys and shapes against the model's targets.

    Args:
        shapes: checkpoint key -> shape.
        targets: the model's weight targets (:func:`keras_weight_map` or BNext-18's map).
        allowed_unused: ``key -> bool``, whether a checkpoint key the model has no weight for
            may be left out (a head the model was built without, say).
        report: the :class:`ConversionReport`; left-out keys go to its ``skipped``.

    Returns:
        ``(problems, used)``: one line per missing, mis-shaped or unexpected tensor, and the
        checkpoint keys that have a target.
    """
    problems, used = [], set()
    for t in targets:
        want = t.official_shape()
        keras_name = t.variable.name.split(":")[0]
        if t.key not in shapes:
            problems.append(f"missing: {t.key} (expected shape {want}, for {keras_name})")
            continue
        used.add(t.key)
        if not fits(t, shapes[t.key]):
            problems.append(
                f"wrong shape: {t.key} is {shapes[t.key]}, expected {want} (for {keras_name} "
                f"{tuple(t.variable.shape)})"
            )
    for key in shapes:
        if key in used:
            continue
        if allowed_unused(key):
            report.skipped.append(key)
        else:
            problems.append(f"unexpected: {key} {shapes[key]} (no such weight in the model)")
    return problems, used


def format_problems(problems: list, most: int = 25) -> str:
    """The first ``most`` problem lines, indented, and how many more there are.

    Args:
        problems: one line per problem (:func:`match_state_to_targets`).
        most: how many lines to show.
    """
    more = f"\n  ... and {len(problems) - most} more" if len(problems) > most else ""
    return "\n  " + "\n  ".join(problems[:most]) + more
