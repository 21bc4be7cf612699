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

import re
import warnings
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from larq_bnext.registry import BNEXT_ARCHITECTURE, list_models, resolve_model
from larq_bnext.weights.matching import (
    BN_PARTS,
    PART_WEIGHTS,
    ConversionReport,
    Target,
    WeightsMismatchError,
    fits,
    format_problems,
    match_state_to_targets,
    shape_of,
    strip_module_prefix,
    targets_from_layers,
    to_numpy,
)
from larq_bnext.weights.pytorch_reader import TorchCheckpoint
from larq_bnext.weights.spec import detect_size, guess_size, is_bookkeeping

__all__ = [
    "keras_weight_map",
    "load_state_dict_into_model",
    "load_official_checkpoint",
]


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
    for size, official in ((m.name, m.stage_channels) for m in list_models("bnext")):
        if channels is not None and tuple(channels) == tuple(official):
            return size
    return None


# --------------------------------------------------------------------------------------------
# Keras weight <-> official key
# --------------------------------------------------------------------------------------------
_TOP_LEVEL = {
    "stem_conv": {"kernel": ("feature.0.conv1.weight", "conv")},
    "stem_bn": {k: (f"feature.0.bn1.{v}", "vector") for k, v in BN_PARTS.items()},
    "final_prelu": {"alpha": ("prelu.weight", "prelu")},
    "logits": {"kernel": ("fc.weight", "dense"), "bias": ("fc.bias", "vector")},
}


_SUBMODULES = {"ffn": "FFN", "ffn_1": "FFN_1", "ffn_2": "FFN_2"}


_LAYER_RE = re.compile(r"^block(\d+)_(attention|ffn_1|ffn_2|ffn)_(\w+)$")


def keras_weight_map(
    model: tf.keras.Model, first_submodule: Mapping[int, str] | None = None
) -> list[Target]:
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
        if match and match.group(3) in PART_WEIGHTS:
            i, sub, part = int(match.group(1)), match.group(2), match.group(3)
            module = first_submodule.get(i, "Attention") if sub == "attention" else _SUBMODULES[sub]
            return PART_WEIGHTS[part], f"feature.{i}.{module}."
        return None

    return targets_from_layers(model, locate, "the official BNext checkpoints", "larq_bnext.BNext")


def _allowed_unused(key: str, layer_names: set[str]) -> bool:
    """Official tensors that the original builds but never applies (or the model left out)."""
    if is_bookkeeping(key) or key == "feature.0.prelu.weight":
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
    shapes = {k: shape_of(v) for k, v in state.items()}
    layer_names = {layer.name for layer in model.layers}
    first = {
        int(m.group(1)): "FFN_3x3"
        for k in state
        if (m := re.match(r"^feature\.(\d+)\.FFN_3x3\.", k))
    }
    targets = keras_weight_map(model, first)

    report = ConversionReport(checkpoint_size=detect_size(shapes))
    ckpt_size = report.checkpoint_size or guess_size(shapes)
    model_size = resolve_model(size, family="bnext").name if size else _model_size(model)
    if ckpt_size and model_size and ckpt_size != model_size:
        found = resolve_model(ckpt_size)
        raise WeightsMismatchError(
            f"{source} holds {found.display_name} ({ckpt_size}) weights, but the model is "
            f"{resolve_model(model_size).display_name} ({model_size}). "
            f"Build larq_bnext.BNext{found.letter}"
            f"(weights=...) for this checkpoint, or use the {model_size} checkpoint."
        )

    problems, used = match_state_to_targets(
        shapes, targets, lambda key: _allowed_unused(key, layer_names), report
    )
    if problems:
        hint = ""
        if report.checkpoint_size:
            official = resolve_model(report.checkpoint_size).display_name
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
        array = to_numpy(state[t.key])
        if re.match(r"^feature\.\d+\.FFN(_1|_2)?\.scale$", t.key):
            report.clamped_scales += int(np.sum((array < 0) | (array > 1)))
            array = np.clip(array, 0.0, 1.0)
        if t.key.endswith("binary_conv.weight"):
            temperature = state.get(t.key[: -len("weight")] + "temperature")
            threshold = BNEXT_ARCHITECTURE.sign_threshold
            if temperature is not None and float(np.ravel(to_numpy(temperature))[0]) < threshold:
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
