"""What an official BNext checkpoint holds: its keys and shapes, and which size a checkpoint is.

The spec is derived from the stage channels of :mod:`larq_bnext.registry` and the
architecture's rule (:func:`larq_bnext.registry.block_configs`), so it cannot drift from the
model builder. ``tests/weights`` checks it against the published state dicts.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from larq_bnext.registry import BNEXT_ARCHITECTURE, block_configs, list_models, resolve_model

__all__ = [
    "official_state_dict_spec",
    "detect_size",
    "guess_size",
    "is_bookkeeping",
    "published_keys",
]


# --------------------------------------------------------------------------------------------
# The official key layout
# --------------------------------------------------------------------------------------------
def _submodule_spec(prefix: str, c: int, k: int, recoupling: bool):
    reduced = c // BNEXT_ARCHITECTURE.se_ratio
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
            (f"{prefix}.se.se.1.weight", (reduced, c, 1, 1)),
            (f"{prefix}.se.se.1.bias", (reduced,)),
            (f"{prefix}.se.se.3.weight", (c, reduced, 1, 1)),
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


def is_bookkeeping(key: str) -> bool:
    """Whether ``key`` is BatchNorm's ``num_batches_tracked`` counter (no weight of a model).

    Args:
        key: a checkpoint key.
    """
    return key.endswith(".num_batches_tracked")


def detect_size(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """The official size whose architecture these state-dict keys and shapes are, or ``None``.

    ``num_batches_tracked`` entries are ignored; so is the classifier's class count.

    Args:
        shapes: key -> shape (``module.`` prefix already removed).
    """
    got = {k: tuple(s) for k, s in shapes.items() if not is_bookkeeping(k)}
    num_classes = got.get("fc.bias", (1000,))[0]
    for size, channels in ((m.name, m.stage_channels) for m in list_models("bnext")):
        want = {
            k: s
            for k, s in official_state_dict_spec(channels, num_classes).items()
            if not is_bookkeeping(k)
        }
        if "fc.bias" not in got:
            want = {k: s for k, s in want.items() if not k.startswith("fc.")}
        if want == got:
            return size
    return None


def guess_size(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """Best guess of an official size from stem width and block count (for error messages).

    Args:
        shapes: key -> shape of a checkpoint.
    """
    stem = shapes.get("feature.0.conv1.weight")
    blocks = {int(m.group(1)) for k in shapes if (m := re.match(r"feature\.(\d+)\.", k))}
    if stem is None or not blocks:
        return None
    for size, channels in ((m.name, m.stage_channels) for m in list_models("bnext")):
        if tuple(stem)[0] == channels[0] and max(blocks) == len(channels) - 1:
            return size
    return None


def published_keys(size: str) -> set[str]:
    """Official keys that the published architecture of ``size`` loads (no unused ones).

    Args:
        size: a size of the BNext family (any spelling).
    """
    channels = resolve_model(size, family="bnext").stage_channels
    elm = {i for i, *_, mode in block_configs(channels) if mode == "scale"}

    def used(key: str) -> bool:
        if is_bookkeeping(key) or key == "feature.0.prelu.weight":
            return False
        m = re.match(r"^feature\.(\d+)\.(\w+)\.activation1\.", key)
        return not m or (m.group(2) == "Attention" and int(m.group(1)) in elm)

    return {k for k in official_state_dict_spec(channels) if used(k)}
