"""Map an official BNext state dict onto the weights of a Keras BNext, and load it.

Conversion, official key -> Keras weight (``i`` = block, ``M`` = ``Attention``/``FFN_3x3``/
``FFN``/``FFN_1``/``FFN_2`` -> ``attention``/``attention``/``ffn``/``ffn_1``/``ffn_2``):

* ``feature.0.conv1.weight`` -> ``stem_conv/kernel`` (OIHW -> HWIO); ``feature.0.bn1.*`` ->
  ``stem_bn`` (``weight, bias, running_mean, running_var`` -> ``gamma, beta, moving_mean,
  moving_variance``);
* ``feature.i.M.move.bias`` (1, C, 1, 1) -> ``block{i}_{m}_move/bias`` (C,);
* ``feature.i.M.binary_conv.weight`` -> ``block{i}_{m}_binary_conv/kernel`` (OIHW -> HWIO);
  ``binary_conv.temperature`` -> its ``temperature``; ``binary_activation.temperature`` -> its
  ``input_temperature``;
* ``norm1``/``norm2`` -> ``block{i}_{m}_norm1``/``_norm2``; ``activation2.weight`` (C,) ->
  ``block{i}_{m}_activation2/alpha`` (1, 1, C); ELM-Attention's ``activation1`` likewise;
* ``scale`` (1, C, 1, 1) -> ``block{i}_{m}_mix/scale`` (C,); ``se.se.1``/``se.se.3`` (1x1 convs
  with bias) -> ``block{i}_{m}_se_reduce``/``_se_expand``;
* ``prelu.weight`` -> ``final_prelu/alpha``; ``fc.weight`` (out, in) -> ``logits/kernel`` (in, out);
  ``fc.bias`` -> ``logits/bias``.

Never-applied tensors of the original are skipped: the stem PReLU, every FFN's ``activation1``,
the ``activation1`` of FFN-3x3 sub-blocks and BatchNorm's ``num_batches_tracked`` (plus ``fc.*``
for a model without top, and the unused ``norm2`` of FFNs built without recoupling). Anything
else that is missing, unexpected or mis-shaped is an error naming the key and the expected shape.

Recoupling scales: the original clamps the FFN-1x1 scales to [0, 1] in every forward pass, even in
evaluation, but uses the ELM-Attention/FFN-3x3 scales unclamped in evaluation. The converter
therefore clamps the ``FFN``/``FFN_1``/``FFN_2`` scales and copies the others as they are, so the
Keras model computes what the original computes (``RecouplingMix`` applies its [0, 1] constraint
only after optimizer steps, as the original clamps only in training).
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from larq_bnext import registry
from larq_bnext.registry import canonical_size
from larq_bnext.weights.pytorch_reader import (
    LazyTensor,
    TorchCheckpoint,
)
from larq_bnext.weights.spec import (
    _guess_size,
    _is_bookkeeping,
    detect_size,
)

__all__ = [
    "WeightsMismatchError",
    "ConversionReport",
    "keras_weight_map",
    "load_state_dict_into_model",
    "load_official_checkpoint",
    "strip_module_prefix",
    "match_state_to_targets",
    "format_problems",
    "targets_from_layers",
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
        size = f"BNext-{registry.get(self.checkpoint_size).letter} " if self.checkpoint_size else ""
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


def _model_stage_channels(model: tf.keras.Model) -> list[int] | None:
    """Recover the stage channel list of a BNext Keras model from its layer names."""
    names = {layer.name: layer for layer in model.layers}
    if "stem_conv" not in names:
        return None
    channels = [int(names["stem_conv"].filters)]
    i = 1
    while f"block{i}_attention_binary_conv" in names:
        c_in = int(names[f"block{i}_attention_binary_conv"].filters)
        channels.append(2 * c_in if f"block{i}_ffn_1_binary_conv" in names else c_in)
        i += 1
    return channels


def _model_size(model: tf.keras.Model) -> str | None:
    channels = _model_stage_channels(model)
    for size, official in ((m.name, m.stage_channels) for m in registry.list_models("bnext")):
        if channels is not None and tuple(channels) == tuple(official):
            return size
    return None


# --------------------------------------------------------------------------------------------
# Keras weight <-> official key
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Target:
    key: str  # official key without the module. prefix
    variable: tf.Variable
    kind: str  # conv | dense | vector | vector4d | prelu | scalar

    def official_shape(self) -> tuple:
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
        if self.kind == "conv":
            array = np.transpose(array, (2, 3, 1, 0))
        elif self.kind == "dense":
            array = array.T
        array = np.reshape(array, tuple(int(d) for d in self.variable.shape))
        return np.array(array, dtype=self.variable.dtype.as_numpy_dtype, order="C")


_BN_PARTS = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


_PART_WEIGHTS = {
    # keras part -> {keras weight name: (official suffix, kind)}
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
    "norm1": {k: (f"norm1.{v}", "vector") for k, v in _BN_PARTS.items()},
    "norm2": {k: (f"norm2.{v}", "vector") for k, v in _BN_PARTS.items()},
}


_TOP_LEVEL = {
    "stem_conv": {"kernel": ("feature.0.conv1.weight", "conv")},
    "stem_bn": {k: (f"feature.0.bn1.{v}", "vector") for k, v in _BN_PARTS.items()},
    "final_prelu": {"alpha": ("prelu.weight", "prelu")},
    "logits": {"kernel": ("fc.weight", "dense"), "bias": ("fc.bias", "vector")},
}


_SUBMODULES = {"ffn": "FFN", "ffn_1": "FFN_1", "ffn_2": "FFN_2"}


_LAYER_RE = re.compile(r"^block(\d+)_(attention|ffn_1|ffn_2|ffn)_(\w+)$")


def _weight_name(variable) -> str:
    return variable.name.split("/")[-1].split(":")[0]


def keras_weight_map(
    model: tf.keras.Model, first_submodule: Mapping[int, str] | None = None
) -> list[_Target]:
    """Map every weight of a BNext Keras model to its official state-dict key.

    Args:
        model: a model built by :func:`larq_bnext.BNext` (any size, with or without top).
        first_submodule: official name of block ``i``'s first sub-module (``"Attention"``, the
            default, or ``"FFN_3x3"`` for the original's no-ELM-Attention ablation).

    Returns:
        A list of targets with ``.key``, ``.variable`` and ``.kind``.

    Raises:
        ValueError: for a layer with weights that has no official counterpart.
    """
    first_submodule = first_submodule or {}

    def locate(name):
        match = _LAYER_RE.match(name)
        if name in _TOP_LEVEL:
            return _TOP_LEVEL[name], ""
        if match and match.group(3) in _PART_WEIGHTS:
            i, sub, part = int(match.group(1)), match.group(2), match.group(3)
            module = first_submodule.get(i, "Attention") if sub == "attention" else _SUBMODULES[sub]
            return _PART_WEIGHTS[part], f"feature.{i}.{module}."
        return None

    return targets_from_layers(model, locate, "the official BNext checkpoints", "larq_bnext.BNext")


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
            targets.append(_Target(prefix + suffix, variable, kind))
    return targets


def _allowed_unused(key: str, layer_names: set[str]) -> bool:
    """Official tensors that the original builds but never applies (or the model left out)."""
    if _is_bookkeeping(key) or key == "feature.0.prelu.weight":
        return True
    if key.startswith("fc.") and "logits" not in layer_names:
        return True  # include_top=False
    m = re.match(r"^feature\.(\d+)\.(Attention|FFN_3x3|FFN_1|FFN_2|FFN)\.(\w+)\.", key)
    if not m:
        return False
    i, module, part = int(m.group(1)), m.group(2), m.group(3)
    keras = "attention" if module in ("Attention", "FFN_3x3") else module.lower()
    prefix = f"block{i}_{keras}"
    if part == "activation1":
        # Applied only by ELM-Attention; the FFN's and FFN-3x3's are never used.
        return f"{prefix}_activation1" not in layer_names
    if part == "norm2":
        # FFNs without recoupling build norm2 but skip it.
        return f"{prefix}_norm2" not in layer_names and f"{prefix}_mix" not in layer_names
    return False


def _shape_of(value) -> tuple:
    return (
        tuple(int(d) for d in np.shape(value)) if not isinstance(value, LazyTensor) else value.shape
    )


def _to_numpy(value) -> np.ndarray:
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
    """Whether a checkpoint tensor of ``shape`` fits ``target`` (a scalar may be ``(1,)``)."""
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


def load_state_dict_into_model(
    model: tf.keras.Model,
    state: Mapping[str, object],
    size: str | None = None,
    strict: bool = True,
    source: str = "checkpoint",
) -> ConversionReport:
    """Copy an official-layout state dict into a BNext Keras model.

    Every check runs before any weight changes, so a mismatch leaves the model untouched.

    Args:
        model: the Keras model (built by :func:`larq_bnext.BNext` or a sized builder).
        state: key -> tensor (:class:`~larq_bnext.weights.pytorch_reader.LazyTensor`, NumPy array or
            torch tensor); a ``module.`` prefix is removed.
        size: the official size the model is meant to be (improves the error message when the
            checkpoint is of another size); inferred from the model when ``None``.
        strict: raise on missing, unexpected or mis-shaped tensors (``False``: load what fits and
            report the rest in a warning).
        source: name of the checkpoint for messages.

    Returns:
        A :class:`ConversionReport`.

    Raises:
        WeightsMismatchError: checkpoint of another size, or (with ``strict``) missing,
            unexpected or mis-shaped tensors; the message names keys and expected shapes.
    """
    state = strip_module_prefix(state)
    shapes = {k: _shape_of(v) for k, v in state.items()}
    layer_names = {layer.name for layer in model.layers}
    first = {
        int(m.group(1)): "FFN_3x3"
        for k in state
        if (m := re.match(r"^feature\.(\d+)\.FFN_3x3\.", k))
    }
    targets = keras_weight_map(model, first)

    report = ConversionReport(checkpoint_size=detect_size(shapes))
    ckpt_size = report.checkpoint_size or _guess_size(shapes)
    model_size = canonical_size(size) if size else _model_size(model)
    if ckpt_size and model_size and ckpt_size != model_size:
        letter = registry.get(ckpt_size).letter
        raise WeightsMismatchError(
            f"{source} holds BNext-{letter} ({ckpt_size}) weights, but the model is "
            f"{registry.get(model_size).display_name} ({model_size}). "
            f"Build larq_bnext.BNext{letter}"
            f"(weights=...) for this checkpoint, or use the {model_size} checkpoint."
        )

    problems, used = match_state_to_targets(
        shapes, targets, lambda key: _allowed_unused(key, layer_names), report
    )
    if problems:
        hint = ""
        if report.checkpoint_size:
            official = registry.get(report.checkpoint_size).display_name
            hint = f" The checkpoint is an official {official}."
        message = (
            f"{source} does not fit the model {model.name!r} ({len(problems)} problems).{hint}"
            f"{format_problems(problems)}\nBuild the model with the architecture the "
            "checkpoint was trained with (size, num_classes, elm_attention, info_recoupling)."
        )
        if strict:
            raise WeightsMismatchError(message)
        warnings.warn(message, stacklevel=2)

    for t in targets:
        if t.key not in state or t.key not in used:
            continue
        if not fits(t, shapes[t.key]):
            continue
        array = _to_numpy(state[t.key])
        if re.match(r"^feature\.\d+\.FFN(_1|_2)?\.scale$", t.key):
            report.clamped_scales += int(np.sum((array < 0) | (array > 1)))
            array = np.clip(array, 0.0, 1.0)
        if t.key.endswith("binary_conv.weight"):
            temperature = state.get(t.key[: -len("weight")] + "temperature")
            if temperature is not None and float(np.ravel(_to_numpy(temperature))[0]) < 1e-7:
                zeros = int(np.count_nonzero(array == 0))
                if zeros:
                    report.zero_sign_weights[t.key] = zeros
        t.variable.assign(t.to_keras(array))
        report.converted.append(t.key)
    return report


# --------------------------------------------------------------------------------------------
# Official checkpoints
# --------------------------------------------------------------------------------------------
def load_official_checkpoint(
    model: tf.keras.Model, path, size: str | None = None, strict: bool = True
) -> ConversionReport:
    """Load an official (or same-layout) PyTorch checkpoint file into ``model``.

    Args:
        model: a BNext Keras model.
        path: a ``torch.save`` file: a training checkpoint dict with ``state_dict`` or a bare
            state dict, keys with or without ``module.``.
        size: the model's official size, if any (for clearer errors).
        strict: see :func:`load_state_dict_into_model`.

    Returns:
        A :class:`ConversionReport`.
    """
    with TorchCheckpoint(path) as ckpt:
        return load_state_dict_into_model(
            model, ckpt.state_dict(), size=size, strict=strict, source=str(path)
        )
