"""The official BNext ImageNet checkpoints in Keras: download, convert, cache and load.

``larq_bnext.BNextL(weights="imagenet")`` downloads the authors' PyTorch checkpoint of that size
(an ownCloud share of the Hasso Plattner Institute), checks it, converts it once to Keras weights
and caches both; later calls load the cached Keras weights. PyTorch is not needed: checkpoints are
read by :mod:`larq_bnext.pytorch_reader`, which never executes code from the file.

Files, in ``$LARQ_BNEXT_HOME`` or else ``~/.keras/models/larq_bnext/``:

* ``bnext_<size>_official.pth.tar``: the downloaded checkpoint, with ``.sha256`` next to it (the
  authors publish no checksums; this records what was downloaded);
* ``bnext_<size>_imagenet.h5``: the converted Keras weights (``model.save_weights`` HDF5 format).

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

import contextlib
import dataclasses
import hashlib
import os
import re
import sys
import urllib.error
import urllib.request
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from larq_bnext.models import STAGE_CHANNELS, block_configs, canonical_size
from larq_bnext.pytorch_reader import (
    ZIP_MAGIC,
    CheckpointError,
    LazyTensor,
    TorchCheckpoint,
)

__all__ = [
    "OFFICIAL_URLS",
    "OFFICIAL_SHARES",
    "OFFICIAL_TOP1",
    "HDF5_MAGIC",
    "WeightsMismatchError",
    "ConversionReport",
    "cache_dir",
    "checkpoint_path",
    "converted_weights_path",
    "official_state_dict_spec",
    "detect_size",
    "keras_weight_map",
    "load_state_dict_into_model",
    "load_official_checkpoint",
    "download_checkpoint",
    "validate_checkpoint",
    "convert_checkpoint",
    "load_keras_weights",
    "load_weights",
]

#: The ownCloud shares of the official checkpoints (from the BNext README).
OFFICIAL_SHARES = {
    "tiny": "https://owncloud.hpi.de/s/jKjwDk35vVRPQN0",
    "small": "https://owncloud.hpi.de/s/bHLM7lqfzm58kIW",
    "middle": "https://owncloud.hpi.de/s/jU5m9v4ADsJKZsa",
    "large": "https://owncloud.hpi.de/s/zQHrlxiQ6XbjCbz",
}
#: Direct download URLs (share + ``/download``).
OFFICIAL_URLS = {size: share + "/download" for size, share in OFFICIAL_SHARES.items()}
#: Published ImageNet top-1 accuracy (%) of each checkpoint.
OFFICIAL_TOP1 = {"tiny": 72.4, "small": 76.1, "middle": 78.3, "large": 80.57}
#: First bytes of an HDF5 file (Keras ``.h5`` weights).
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

_SIZE_LETTER = {"tiny": "T", "small": "S", "middle": "M", "large": "L"}
_ENV_HOME = "LARQ_BNEXT_HOME"


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
            whose temperature is below 1e-7 (PyTorch's ``sign(0) = 0``, Larq's ``+1``).
        checkpoint_size: the official size the checkpoint matches, or ``None``.
    """

    converted: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    clamped_scales: int = 0
    zero_sign_weights: dict = dataclasses.field(default_factory=dict)
    checkpoint_size: str | None = None

    def summary(self) -> str:
        """One line: counts of converted and skipped tensors, clamped scale values."""
        size = f"BNext-{_SIZE_LETTER[self.checkpoint_size]} " if self.checkpoint_size else ""
        return (
            f"{size}checkpoint: converted {len(self.converted)} tensors, skipped "
            f"{len(self.skipped)} never-applied ones (unused PReLUs, num_batches_tracked), "
            f"clamped {self.clamped_scales} FFN-1x1 scale values into [0, 1]"
        )


# --------------------------------------------------------------------------------------------
# Where files live
# --------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """``$LARQ_BNEXT_HOME`` if set, else ``~/.keras/models/larq_bnext`` (created on demand)."""
    home = os.environ.get(_ENV_HOME)
    path = Path(home).expanduser() if home else Path.home() / ".keras" / "models" / "larq_bnext"
    return path


def checkpoint_path(size: str) -> Path:
    """Where the official checkpoint of ``size`` is (or will be) stored.

    Args:
        size: a size name or alias.
    """
    return cache_dir() / f"bnext_{canonical_size(size)}_official.pth.tar"


def converted_weights_path(size: str) -> Path:
    """Where the converted Keras weights of ``size`` are cached.

    Args:
        size: a size name or alias.
    """
    return cache_dir() / f"bnext_{canonical_size(size)}_imagenet.h5"


# --------------------------------------------------------------------------------------------
# The official key layout
# --------------------------------------------------------------------------------------------
def _submodule_spec(prefix: str, c: int, k: int, recoupling: bool):
    spec = []
    if recoupling:
        spec.append((f"{prefix}.scale", (1, c, 1, 1)))
    spec += [
        (f"{prefix}.move.bias", (1, c, 1, 1)),
        (f"{prefix}.binary_activation.temperature", (1,)),
        (f"{prefix}.binary_conv.weight", (c, c, k, k)),
        (f"{prefix}.binary_conv.temperature", (1,)),
    ]
    for norm in ("norm1", "norm2"):
        spec += [(f"{prefix}.{norm}.{p}", (c,)) for p in ("weight", "bias")]
        spec += [(f"{prefix}.{norm}.{p}", (c,)) for p in ("running_mean", "running_var")]
        spec.append((f"{prefix}.{norm}.num_batches_tracked", ()))
    spec += [(f"{prefix}.activation1.weight", (c,)), (f"{prefix}.activation2.weight", (c,))]
    if recoupling:
        spec += [
            (f"{prefix}.se.se.1.weight", (c // 8, c, 1, 1)),
            (f"{prefix}.se.se.1.bias", (c // 8,)),
            (f"{prefix}.se.se.3.weight", (c, c // 8, 1, 1)),
            (f"{prefix}.se.se.3.bias", (c,)),
        ]
    return spec


def official_state_dict_spec(
    stage_channels: Sequence[int],
    num_classes: int = 1000,
    elm_attention: bool = True,
    info_recoupling: bool = True,
) -> OrderedDict:
    """The state-dict keys and shapes the original code produces for this architecture.

    Args:
        stage_channels: stem channels followed by each block's output channels.
        num_classes: classifier width.
        elm_attention: ELM-Attention switch (off: the first sub-module is named ``FFN_3x3``).
        info_recoupling: information-recoupling switch (off: no ``scale`` and ``se`` tensors).

    Returns:
        An ordered dict key -> shape tuple, in the original's order.
    """
    c0 = int(stage_channels[0])
    spec = [
        ("feature.0.conv1.weight", (c0, 3, 3, 3)),
        ("feature.0.bn1.weight", (c0,)),
        ("feature.0.bn1.bias", (c0,)),
        ("feature.0.bn1.running_mean", (c0,)),
        ("feature.0.bn1.running_var", (c0,)),
        ("feature.0.bn1.num_batches_tracked", ()),
        ("feature.0.prelu.weight", (c0,)),
    ]
    for i, c_in, c_out, _, _ in block_configs(stage_channels):
        first = "Attention" if elm_attention else "FFN_3x3"
        spec += _submodule_spec(f"feature.{i}.{first}", c_in, 3, info_recoupling)
        ffns = ("FFN",) if c_in == c_out else ("FFN_1", "FFN_2")
        for ffn in ffns:
            spec += _submodule_spec(f"feature.{i}.{ffn}", c_in, 1, info_recoupling)
    c_last = int(stage_channels[-1])
    spec += [
        ("prelu.weight", (c_last,)),
        ("fc.weight", (int(num_classes), c_last)),
        ("fc.bias", (int(num_classes),)),
    ]
    return OrderedDict(spec)


def _is_bookkeeping(key: str) -> bool:
    return key.endswith(".num_batches_tracked")


def detect_size(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """The official size whose architecture these state-dict keys and shapes are, or ``None``.

    ``num_batches_tracked`` entries are ignored; so is the classifier's class count.

    Args:
        shapes: key -> shape (``module.`` prefix already removed).
    """
    got = {k: tuple(s) for k, s in shapes.items() if not _is_bookkeeping(k)}
    num_classes = got.get("fc.bias", (1000,))[0]
    for size, channels in STAGE_CHANNELS.items():
        want = {
            k: s
            for k, s in official_state_dict_spec(channels, num_classes).items()
            if not _is_bookkeeping(k)
        }
        if "fc.bias" not in got:
            want = {k: s for k, s in want.items() if not k.startswith("fc.")}
        if want == got:
            return size
    return None


def _guess_size(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """Best guess of an official size from stem width and block count (for error messages)."""
    stem = shapes.get("feature.0.conv1.weight")
    blocks = {int(m.group(1)) for k in shapes if (m := re.match(r"feature\.(\d+)\.", k))}
    if stem is None or not blocks:
        return None
    for size, channels in STAGE_CHANNELS.items():
        if tuple(stem)[0] == channels[0] and max(blocks) == len(channels) - 1:
            return size
    return None


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
    for size, official in STAGE_CHANNELS.items():
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
    targets = []
    for layer in model.layers:
        if not layer.weights:
            continue
        match = _LAYER_RE.match(layer.name)
        if layer.name in _TOP_LEVEL:
            table, prefix = _TOP_LEVEL[layer.name], ""
        elif match and match.group(3) in _PART_WEIGHTS:
            i, sub, part = int(match.group(1)), match.group(2), match.group(3)
            module = first_submodule.get(i, "Attention") if sub == "attention" else _SUBMODULES[sub]
            table, prefix = _PART_WEIGHTS[part], f"feature.{i}.{module}."
        else:
            raise ValueError(
                f"Layer {layer.name!r} has weights but no counterpart in the official BNext "
                "checkpoints; only models built by larq_bnext.BNext can load them."
            )
        for variable in layer.weights:
            name = _weight_name(variable)
            if name not in table:
                raise ValueError(
                    f"Weight {variable.name!r} has no counterpart in the official checkpoints."
                )
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
        state: key -> tensor (:class:`~larq_bnext.pytorch_reader.LazyTensor`, NumPy array or
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
    state = OrderedDict(
        (k[len("module.") :] if k.startswith("module.") else k, v) for k, v in state.items()
    )
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
        letter = _SIZE_LETTER[ckpt_size]
        raise WeightsMismatchError(
            f"{source} holds BNext-{letter} ({ckpt_size}) weights, but the model is "
            f"BNext-{_SIZE_LETTER[model_size]} ({model_size}). Build larq_bnext.BNext{letter}"
            f"(weights=...) for this checkpoint, or use the {model_size} checkpoint."
        )

    problems = []
    used = set()
    for t in targets:
        want = t.official_shape()
        keras_name = t.variable.name.split(":")[0]
        if t.key not in state:
            problems.append(f"missing: {t.key} (expected shape {want}, for {keras_name})")
            continue
        used.add(t.key)
        got = shapes[t.key]
        ok = got == want or (t.kind == "scalar" and int(np.prod(got)) == 1)
        if not ok:
            problems.append(
                f"wrong shape: {t.key} is {got}, expected {want} (for {keras_name} "
                f"{tuple(t.variable.shape)})"
            )
    for key in state:
        if key in used:
            continue
        if _allowed_unused(key, layer_names):
            report.skipped.append(key)
        else:
            problems.append(f"unexpected: {key} {shapes[key]} (no such weight in the model)")

    if problems:
        detail = "\n  ".join(problems[:25])
        more = f"\n  ... and {len(problems) - 25} more" if len(problems) > 25 else ""
        hint = ""
        if report.checkpoint_size:
            hint = f" The checkpoint is an official BNext-{_SIZE_LETTER[report.checkpoint_size]}."
        message = (
            f"{source} does not fit the model {model.name!r} ({len(problems)} problems).{hint}"
            f"\n  {detail}{more}\nBuild the model with the architecture the checkpoint was "
            "trained with (size, num_classes, elm_attention, info_recoupling)."
        )
        if strict:
            raise WeightsMismatchError(message)
        warnings.warn(message, stacklevel=2)

    for t in targets:
        if t.key not in state or t.key not in used:
            continue
        got = shapes[t.key]
        if not (got == t.official_shape() or (t.kind == "scalar" and int(np.prod(got)) == 1)):
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
    if report.zero_sign_weights:
        listed = ", ".join(f"{k} ({n})" for k, n in list(report.zero_sign_weights.items())[:5])
        warnings.warn(
            f"{source}: {sum(report.zero_sign_weights.values())} binary weights are exactly 0 "
            f"in layers binarized with sign(w) ({listed}). PyTorch binarizes them to 0, Larq to "
            "+1, so the Keras model's outputs can differ slightly from the original's.",
            stacklevel=2,
        )
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


def validate_checkpoint(path, size: str, read_data: bool = True) -> None:
    """Check that ``path`` is a complete official checkpoint of ``size``.

    Args:
        path: the file.
        size: the expected official size.
        read_data: also read every state-dict tensor (checks the zip CRCs, so truncated or
            corrupted data is found) and check it is finite.

    Raises:
        CheckpointError: unreadable, truncated, corrupt, or another architecture.
    """
    size = canonical_size(size)
    with TorchCheckpoint(path) as ckpt:
        state = ckpt.state_dict()
        shapes = {k: v.shape for k, v in state.items()}
        found = detect_size(shapes)
        if found != size:
            what = f"an official BNext-{_SIZE_LETTER[found]}" if found else "not a BNext"
            raise CheckpointError(
                f"{path} is {what} checkpoint; expected BNext-{_SIZE_LETTER[size]} ({size})."
            )
        if read_data:
            for key, tensor in state.items():
                values = tensor.numpy()
                if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
                    raise CheckpointError(f"{path}: tensor {key} holds NaN or infinite values.")


def _sha256(path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _write_sha256(path: Path, hexdigest: str) -> None:
    Path(str(path) + ".sha256").write_text(f"{hexdigest}  {path.name}\n", encoding="utf-8")


def _offline_message(size: str, url: str, dest: Path, reason) -> str:
    return (
        f"Could not download the official BNext-{_SIZE_LETTER[size]} checkpoint from {url} "
        f"({reason}). Without internet access here, download {url} elsewhere (it is the "
        f"authors' PyTorch checkpoint, shared at {OFFICIAL_SHARES[size]}) and put the file at "
        f"{dest}; it will be checked and converted from there. (Set ${_ENV_HOME} to use "
        "another directory.)"
    )


def _download(url: str, dest: Path, description: str) -> str:
    """Stream ``url`` into ``dest`` with a progress bar; return the SHA-256 of the bytes."""
    from tqdm.auto import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "larq_bnext"})
    digest = hashlib.sha256()
    with urllib.request.urlopen(request, timeout=60) as response, open(dest, "wb") as out:
        total = response.headers.get("Content-Length")
        with tqdm(
            total=int(total) if total else None,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=description,
            file=sys.stderr,
        ) as bar:
            while block := response.read(1 << 20):
                out.write(block)
                digest.update(block)
                bar.update(len(block))
    return digest.hexdigest()


def download_checkpoint(size: str, force: bool = False) -> Path:
    """Make sure the official checkpoint of ``size`` is on disk and valid; return its path.

    An existing file is checked (structure and shapes) and used. Otherwise the file is
    downloaded to a temporary name, validated completely (a readable zip holding the expected
    state dict, every tensor readable and finite), its SHA-256 written next to it, and only then
    renamed into place. A failed or corrupt download is removed and reported.

    Args:
        size: a size name or alias.
        force: download again even if a valid file exists.

    Raises:
        OSError: the download failed (offline); the message names the URL and the path.
        CheckpointError: the downloaded file is not a valid checkpoint of that size.
    """
    size = canonical_size(size)
    dest = checkpoint_path(size)
    url = OFFICIAL_URLS[size]
    if dest.exists() and not force:
        try:
            validate_checkpoint(dest, size, read_data=False)
        except CheckpointError as err:
            warnings.warn(
                f"Removing the unusable cached checkpoint {dest} ({err}); downloading it again.",
                stacklevel=2,
            )
            dest.unlink()
        else:
            if not Path(str(dest) + ".sha256").exists():
                _write_sha256(dest, _sha256(dest))
            return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.part{os.getpid()}")
    try:
        try:
            digest = _download(url, partial, f"BNext-{_SIZE_LETTER[size]}")
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise OSError(_offline_message(size, url, dest, err)) from err
        try:
            validate_checkpoint(partial, size, read_data=True)
        except CheckpointError as err:
            raise CheckpointError(
                f"The file downloaded from {url} is not a valid BNext-{_SIZE_LETTER[size]} "
                f"checkpoint and was removed ({err}). Try again later, or download it by hand "
                f"and put it at {dest}."
            ) from err
        _write_sha256(dest, digest)
        os.replace(partial, dest)
    finally:
        if partial.exists():
            partial.unlink()
    return dest


# --------------------------------------------------------------------------------------------
# Keras weight files
# --------------------------------------------------------------------------------------------
def _file_magic(path) -> bytes:
    with open(path, "rb") as f:
        return f.read(8)


def load_keras_weights(model: tf.keras.Model, path) -> None:
    """Load Keras HDF5 weights (``model.save_weights(".h5")``) into ``model``, by layer name.

    Every layer of ``model`` that has weights must be in the file (layers of the file that the
    model lacks, such as the classifier for ``include_top=False``, are ignored). Files in the
    Keras 3 ``.weights.h5`` layout are handed to ``model.load_weights``.

    Args:
        model: the Keras model.
        path: the ``.h5`` file.

    Raises:
        WeightsMismatchError: a layer of the model is missing from the file or its weights differ.
    """
    import h5py

    path = os.fspath(path)
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in group.attrs:
            legacy = False
        else:
            legacy = True
            names = {_as_str(n) for n in group.attrs["layer_names"]}
            problems = []
            for layer in model.layers:
                if not layer.weights:
                    continue
                if layer.name not in names:
                    problems.append(f"missing layer {layer.name!r}")
                    continue
                stored = [_as_str(n) for n in group[layer.name].attrs.get("weight_names", [])]
                for variable, name in zip(layer.weights, stored, strict=False):
                    shape = tuple(group[layer.name][name].shape)
                    if shape != tuple(variable.shape):
                        problems.append(
                            f"{name}: file has shape {shape}, model {tuple(variable.shape)}"
                        )
                if len(stored) != len(layer.weights):
                    problems.append(
                        f"layer {layer.name!r}: file has {len(stored)} weights, "
                        f"model {len(layer.weights)}"
                    )
            if problems:
                raise WeightsMismatchError(
                    f"{path} does not fit the model {model.name!r}:\n  "
                    + "\n  ".join(problems[:25])
                    + "\nUse weights saved from a model of the same architecture."
                )
    if legacy:
        model.load_weights(path, by_name=True)
    else:
        model.load_weights(path)


def _as_str(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


@contextlib.contextmanager
def _floatx(dtype: str):
    previous = tf.keras.backend.floatx()
    tf.keras.backend.set_floatx(dtype)
    try:
        yield
    finally:
        tf.keras.backend.set_floatx(previous)


def _published_keys(size: str) -> set[str]:
    """Official keys that the published architecture of ``size`` loads (no unused ones)."""
    elm = {i for i, *_, mode in block_configs(STAGE_CHANNELS[size]) if mode == "scale"}

    def used(key: str) -> bool:
        if _is_bookkeeping(key) or key == "feature.0.prelu.weight":
            return False
        m = re.match(r"^feature\.(\d+)\.(\w+)\.activation1\.", key)
        return not m or (m.group(2) == "Attention" and int(m.group(1)) in elm)

    return {k for k in official_state_dict_spec(STAGE_CHANNELS[size]) if used(k)}


def _check_published_architecture(model: tf.keras.Model, size: str) -> list[_Target]:
    """Refuse ``weights="imagenet"`` for ablation variants; return the model's targets."""
    targets = keras_weight_map(model)
    mapped = {t.key for t in targets}
    published = _published_keys(size)
    without_top = {k for k in published if not k.startswith("fc.")}
    if mapped - {"fc.weight", "fc.bias"} != without_top:
        raise WeightsMismatchError(
            f"weights='imagenet' holds the published BNext-{_SIZE_LETTER[size]}, with "
            "ELM-Attention and information recoupling; this model differs from it "
            f"({len(mapped ^ published)} weights differ). Build it with elm_attention=True and "
            "info_recoupling=True, or use weights=None."
        )
    return targets


def _save_weights_atomically(model: tf.keras.Model, dest: Path, attrs: Mapping[str, str]) -> None:
    import h5py

    tmp = dest.with_name(f"{dest.stem}.tmp{os.getpid()}.h5")
    try:
        model.save_weights(str(tmp), save_format="h5")
        with h5py.File(tmp, "a") as f:
            for k, v in attrs.items():
                f.attrs[k] = v
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def convert_checkpoint(checkpoint, output, size: str | None = None) -> ConversionReport:
    """Convert an official checkpoint file to Keras HDF5 weights (full model, float32).

    Args:
        checkpoint: the PyTorch checkpoint file.
        output: the ``.h5`` file to write (loadable with ``weights=output`` or
            ``model.load_weights(output, by_name=True)``).
        size: the official size; detected from the checkpoint when ``None``.

    Returns:
        A :class:`ConversionReport`.

    Raises:
        WeightsMismatchError: the checkpoint is not of ``size`` (or of no official size).
    """
    from larq_bnext.models import BNext

    output = Path(output)
    if output.suffix != ".h5" or output.name.endswith(".weights.h5"):
        raise ValueError(
            f"The output must end in '.h5' (Keras HDF5 weights, loadable by layer name), not "
            f"{output.name!r}; e.g. bnext_tiny_imagenet.h5."
        )
    with TorchCheckpoint(checkpoint) as ckpt:
        state = ckpt.state_dict()
        shapes = {k: v.shape for k, v in state.items()}
        detected = detect_size(shapes)
        if size is None:
            if detected is None:
                guess = _guess_size(shapes)
                raise WeightsMismatchError(
                    f"{checkpoint} is not an official BNext checkpoint"
                    + (f" (it resembles BNext-{_SIZE_LETTER[guess]})" if guess else "")
                    + "; pass the size explicitly to see which tensors differ."
                )
            size = detected
        size = canonical_size(size)
        num_classes = shapes.get("fc.bias", (1000,))[0]
        with _floatx("float32"):
            model = BNext(
                STAGE_CHANNELS[size],
                input_shape=(None, None, 3),
                num_classes=num_classes,
                classifier_activation=None,
                name=f"bnext_{size}",
            )
            report = load_state_dict_into_model(model, state, size=size, source=str(checkpoint))
    output.parent.mkdir(parents=True, exist_ok=True)
    _save_weights_atomically(
        model, output, {"larq_bnext_size": size, "larq_bnext_source": Path(checkpoint).name}
    )
    report.checkpoint_size = report.checkpoint_size or size
    return report


def _load_imagenet(model: tf.keras.Model, size: str) -> None:
    _check_published_architecture(model, size)
    cached = converted_weights_path(size)
    if cached.exists():
        try:
            load_keras_weights(model, cached)
            return
        except (OSError, KeyError, ValueError) as err:
            if isinstance(err, WeightsMismatchError):
                raise
            warnings.warn(
                f"Removing the unreadable converted weights {cached} ({err}); converting again.",
                stacklevel=3,
            )
            cached.unlink()
    ckpt = download_checkpoint(size)
    sha = Path(str(ckpt) + ".sha256")
    attrs = {
        "larq_bnext_size": size,
        "larq_bnext_source": OFFICIAL_URLS[size],
        "larq_bnext_source_sha256": sha.read_text().split()[0] if sha.exists() else "",
    }
    targets = _check_published_architecture(model, size)
    has_top = any(t.key == "fc.weight" for t in targets)
    if has_top and all(t.variable.dtype == tf.float32 for t in targets):
        load_official_checkpoint(model, ckpt, size=size)
        _save_weights_atomically(model, cached, attrs)
        return
    # The model lacks part of the weights (no top) or is not float32: convert into a full
    # float32 model once, cache that, and load by name.
    from larq_bnext.models import BNext

    with _floatx("float32"):
        full = BNext(
            STAGE_CHANNELS[size],
            input_shape=(None, None, 3),
            classifier_activation=None,
            name=f"bnext_{size}",
        )
        load_official_checkpoint(full, ckpt, size=size)
    _save_weights_atomically(full, cached, attrs)
    del full
    load_keras_weights(model, cached)


def load_weights(model: tf.keras.Model, weights, size: str | None = None) -> None:
    """Load ``weights`` into a BNext model (what ``larq_bnext.BNext(weights=...)`` calls).

    Args:
        model: the Keras model.
        weights: ``"imagenet"`` (the official checkpoint of ``size``: downloaded, converted and
            cached on first use), or the path of an official PyTorch checkpoint (zip file) or
            of Keras HDF5 weights (told apart by their first bytes).
        size: the official size of the model (required for ``"imagenet"``).

    Raises:
        ValueError: ``"imagenet"`` without a size, or a file of neither kind.
        WeightsMismatchError: the weights do not fit the model.
        OSError: the download failed (the message says which URL to fetch and where to put it).
        larq_bnext.pytorch_reader.CheckpointError: a corrupt, truncated or unsafe checkpoint.
    """
    if isinstance(weights, str) and weights == "imagenet":
        if size is None:
            raise ValueError(
                "weights='imagenet' needs one of the official sizes: use larq_bnext.BNextT/S/M/L."
            )
        _load_imagenet(model, canonical_size(size))
        return
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ValueError(f"weights={path!r}: no such file.")
    magic = _file_magic(path)
    if magic.startswith(ZIP_MAGIC):
        load_official_checkpoint(model, path, size=size)
    elif magic == HDF5_MAGIC:
        load_keras_weights(model, path)
    else:
        raise ValueError(
            f"weights={path!r} is neither a PyTorch checkpoint (a zip archive from torch.save) "
            f"nor Keras HDF5 weights (first bytes {magic!r}). Pass the official .pth.tar file, "
            "a file written by `python -m larq_bnext.convert`, or model.save_weights('x.h5')."
        )
