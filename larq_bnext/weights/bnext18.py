"""BNext-18 weights: the original ``BNext18`` state-dict keys <-> the Keras model's weights.

The original (``hpi-xnor/BNext``, ``src/birealnet.py``) names its tensors ``conv1.weight``,
``bn1.*``, ``layer{s}.{i}.Attention.*`` / ``layer{s}.{i}.FFN.*`` (``s`` = 0..3, ``i`` = 0..1),
``layer{s}.0.Attention.downsample.1.weight`` (float 1x1 conv) and ``...downsample.2.*``
(its BatchNorm), ``prelu.weight`` and ``fc.*``. Checkpoints saved by its training script wrap
the state dict in ``{"state_dict": {"module." + key: tensor}}``; both forms load (through
:func:`larq_bnext.weights.load_weights`, which tells the file kinds apart).

Loading mirrors the original's inference forward: latent binary weights are clipped to
``[-1.5, 1.5]`` (:attr:`larq_bnext.registry.Architecture.weight_clip`) and FFN recoupling
scales to ``[0, 1]`` (the original clamps both in place on every forward, eval included);
ELM-Attention scales are used as stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from larq_bnext.registry import resolve_model
from larq_bnext.weights.matching import (
    BN_PARTS,
    PART_WEIGHTS,
    ConversionReport,
    Target,
    WeightsMismatchError,
    format_problems,
    match_state_to_targets,
    shape_of,
    strip_module_prefix,
    targets_from_layers,
    to_numpy,
)

__all__ = [
    "bnext18_weight_map",
    "load_bnext18_state_dict",
    "is_bnext18_state",
]

_TOP_LEVEL = {
    "stem_conv": {"kernel": ("conv1.weight", "conv")},
    "stem_bn": {k: (f"bn1.{v}", "vector") for k, v in BN_PARTS.items()},
    "final_prelu": {"alpha": ("prelu.weight", "prelu")},
    "logits": {"kernel": ("fc.weight", "dense"), "bias": ("fc.bias", "vector")},
}
_PARTS = {
    **PART_WEIGHTS,
    "downsample_conv": {"kernel": ("downsample.1.weight", "conv")},
    "downsample_bn": {k: (f"downsample.2.{v}", "vector") for k, v in BN_PARTS.items()},
}
_SUBMODULES = {"attention": "Attention", "ffn": "FFN"}
_LAYER_RE = re.compile(r"^layer(\d)_(\d)_(attention|ffn)_(\w+)$")


def is_bnext18_state(shapes: Mapping[str, tuple]) -> bool:
    """Whether a state dict's keys are those of the original ``BNext18`` (not BNext-T/S/M/L).

    Args:
        shapes: key -> shape (``module.`` prefix already removed).
    """
    return "conv1.weight" in shapes and "layer0.0.Attention.binary_conv.weight" in shapes


def bnext18_weight_map(model: tf.keras.Model) -> list[Target]:
    """Map every weight of a :func:`~larq_bnext.BNext18` model to its original state-dict key.

    Args:
        model: a model built by :func:`larq_bnext.BNext18` (with or without top).

    Returns:
        A list of targets with ``.key``, ``.variable`` and ``.kind``.

    Raises:
        ValueError: for a layer with weights that has no counterpart in ``BNext18``.
    """

    def locate(name):
        match = _LAYER_RE.match(name)
        if name in _TOP_LEVEL:
            return _TOP_LEVEL[name], ""
        if match and match.group(4) in _PARTS:
            stage, index, sub, part = match.groups()
            return _PARTS[part], f"layer{stage}.{index}.{_SUBMODULES[sub]}."
        return None

    return targets_from_layers(model, locate, "the original BNext18", "larq_bnext.BNext18")


def _allowed_unused(key: str, has_top: bool) -> bool:
    """Tensors the original builds but never applies, or that the model left out."""
    if key.endswith(".num_batches_tracked"):
        return True
    if re.match(r"^layer\d\.\d\.FFN\.activation1\.weight$", key):
        return True  # FFN_3x3's residual PReLU: built, never applied
    return key.startswith("fc.") and not has_top


def _hint(state_shapes: Mapping[str, tuple], targets: list[Target]) -> str:
    if any(k.startswith("feature.") for k in state_shapes):
        return (
            " It is a BNext-T/S/M/L checkpoint (keys 'feature.*'): load it with "
            "larq_bnext.BNextT/BNextS/BNextM/BNextL(weights=...)."
        )
    stem = next((t for t in targets if t.key == "conv1.weight"), None)
    got = state_shapes.get("conv1.weight")
    if stem is not None and got is not None and tuple(got) != stem.official_shape():
        ckpt = "ImageNet (7x7)" if tuple(got)[-1] == 7 else "CIFAR (3x3)"
        return (
            f" The checkpoint has the {ckpt} stem: build BNext18(stem="
            f"{'imagenet' if tuple(got)[-1] == 7 else 'cifar'!r}) (the original picks the "
            "ImageNet stem exactly when num_classes == 1000)."
        )
    fc = state_shapes.get("fc.weight")
    if fc is not None:
        return f" The checkpoint's classifier has {fc[0]} classes (num_classes={fc[0]})."
    return ""


def load_bnext18_state_dict(
    model: tf.keras.Model, state: Mapping[str, object], source: str = "checkpoint"
) -> ConversionReport:
    """Copy an original ``BNext18`` state dict into a Keras BNext-18, with strict checks.

    Every key and shape is checked before any weight changes, so a mismatch leaves the model
    untouched.

    Args:
        model: a model built by :func:`larq_bnext.BNext18`.
        state: key -> tensor (:class:`~larq_bnext.weights.pytorch_reader.LazyTensor`, NumPy array or
            torch tensor); a ``module.`` prefix is removed.
        source: name of the checkpoint for messages.

    Returns:
        A :class:`~larq_bnext.weights.matching.ConversionReport` (``clamped_scales`` counts the FFN
        scale values clipped into ``[0, 1]``).

    Raises:
        WeightsMismatchError: missing, unexpected or mis-shaped tensors; the message names the
            keys, the expected shapes and, where it can tell, the build that fits.
    """
    state = strip_module_prefix(state)
    shapes = {k: shape_of(v) for k, v in state.items()}
    targets = bnext18_weight_map(model)
    has_top = any(layer.name == "logits" for layer in model.layers)
    clip = resolve_model("bnext18").architecture.weight_clip
    report = ConversionReport()
    problems, _ = match_state_to_targets(
        shapes, targets, lambda key: _allowed_unused(key, has_top), report
    )
    if problems:
        raise WeightsMismatchError(
            f"{source} does not fit the BNext-18 model {model.name!r} ({len(problems)} "
            f"problems).{_hint(shapes, targets)}{format_problems(problems)}"
        )

    for t in targets:
        array = to_numpy(state[t.key])
        if t.key.endswith("binary_conv.weight"):
            array = np.clip(array, -clip, clip)
        elif re.match(r"^layer\d\.\d\.FFN\.scale$", t.key):
            report.clamped_scales += int(np.sum((array < 0) | (array > 1)))
            array = np.clip(array, 0.0, 1.0)
        t.variable.assign(t.to_keras(array))
        report.converted.append(t.key)
    return report
