"""The BNext model family (BNext-T/S/M/L) as Keras functional models.

Signatures follow ``keras.applications`` and larq-zoo::

    model = larq_bnext.BNextT(weights=None, input_shape=(224, 224, 3), num_classes=1000)

The architecture is the original's (``hpi-xnor/BNext``, ``src/bnext.py``), layer for layer,
channels-last. The stem is a float 3x3 convolution (stride 2, padding 1) and BatchNorm; blocks
1..13 (or more) follow the stage channel list; the head is PReLU, global average pooling and a
dense classifier. PReLUs that the original builds but never applies are left out.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence

import tensorflow as tf

from larq_bnext import registry
from larq_bnext.models.blocks import batch_norm, bnext_block, classifier_head
from larq_bnext.registry import block_configs, canonical_size
from larq_bnext.weights.loading import load_weights

__all__ = [
    "BNext",
    "BNextT",
    "BNextS",
    "BNextM",
    "BNextL",
    "get_model",
    "apply_weights",
]


def _check_input_size(input_shape, stage_channels, stem_stride: int) -> None:
    """Refuse spatial sizes that the stride-2 blocks cannot halve exactly."""
    n_halvings = sum(1 for *_, s, _ in block_configs(stage_channels) if s == 2)
    reduction = stem_stride * 2**n_halvings
    for axis, size in zip(("height", "width"), input_shape[:2], strict=True):
        if size is None:
            continue
        s = -(-int(size) // stem_stride)
        ok = s >= 2**n_halvings
        for _ in range(n_halvings):
            ok = ok and s % 2 == 0
            s //= 2
        if not ok:
            suggestion = max(reduction, round(int(size) / reduction) * reduction)
            raise ValueError(
                f"Input {axis} {size} is not supported: this BNext reduces the resolution "
                f"{reduction}x (stem stride {stem_stride}, then {n_halvings} stride-2 blocks "
                f"that need an even size each time), so the {axis} must be at least "
                f"{reduction} and divisible by {reduction}; try {suggestion}"
                + (", or stem_stride=1 for small images." if stem_stride != 1 else ".")
            )


def _resolve_input(input_shape, input_tensor):
    if input_tensor is not None:
        if not tf.keras.backend.is_keras_tensor(input_tensor):
            input_tensor = tf.keras.layers.Input(tensor=input_tensor, shape=input_shape)
        return input_tensor, tuple(input_tensor.shape[1:])
    if input_shape is None:
        input_shape = (224, 224, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"input_shape must be (height, width, channels), channels last; got {input_shape}."
        )
    return tf.keras.layers.Input(shape=input_shape), input_shape


def BNext(
    stage_channels: Sequence[int],
    *,
    input_shape: tuple | None = None,
    input_tensor=None,
    weights: str | None = None,
    include_top: bool = True,
    num_classes: int = 1000,
    pooling: str | None = None,
    classifier_activation: str | None = "softmax",
    elm_attention: bool = True,
    info_recoupling: bool = True,
    stem_stride: int = 2,
    name: str = "bnext",
    size: str | None = None,
) -> tf.keras.Model:
    """Build a BNext network.

    Args:
        stage_channels: channels of the stem followed by those of each block; consecutive
            entries must be equal or double (see :mod:`larq_bnext.registry`).
        input_shape: ``(height, width, channels)``; defaults to ``(224, 224, 3)``. Use
            ``None`` entries for a variable size.
        input_tensor: optional Keras tensor (output of ``tf.keras.Input``) to build on.
        weights: ``None`` (random initialisation), ``"imagenet"`` (the official checkpoint of
            ``size``) or the path of an official PyTorch checkpoint or of Keras weights.
        include_top: whether to add the global pooling and dense classifier.
        num_classes: number of classes of the classifier (with ``include_top``).
        pooling: with ``include_top=False``: ``None`` (4-D feature map), ``"avg"`` or ``"max"``.
        classifier_activation: activation of the top layer; ``None`` returns logits, which is
            what the original model and distillation use.
        elm_attention: use ELM-Attention in the "scale" blocks (``False``: FFN-3x3 everywhere,
            the paper's ablation).
        info_recoupling: use information recoupling (``False``: the paper's ablation).
        stem_stride: stride of the stem convolution: 2 for ImageNet, 1 for small images such as
            CIFAR's 32x32 (the original switches to 1 when the class count is not 1000).
        name: model name.
        size: the official size these channels belong to, for ``weights="imagenet"``.

    Returns:
        A :class:`tf.keras.Model`.

    Raises:
        ValueError: for an unsupported input size, channel count, class count, pooling or
            weights argument, each with what to do instead.
    """
    stage_channels = tuple(int(c) for c in stage_channels)
    if len(stage_channels) < 2:
        raise ValueError("stage_channels needs the stem's channels and at least one block's.")
    if stem_stride not in (1, 2):
        raise ValueError(f"stem_stride must be 1 or 2, not {stem_stride}.")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', not {pooling!r}.")
    _check_weights_argument(weights, size, input_shape, input_tensor, include_top, num_classes)

    inputs, shape = _resolve_input(input_shape, input_tensor)
    if weights == "imagenet" and shape[-1] != 3:
        raise ValueError(
            f"weights='imagenet' needs 3 input channels (RGB), but the input has {shape[-1]}. "
            "Convert the images to RGB, or use weights=None to train from scratch."
        )
    _check_input_size(shape, stage_channels, stem_stride)

    layers = tf.keras.layers
    x = layers.ZeroPadding2D(1, name="stem_pad")(inputs)
    x = layers.Conv2D(stage_channels[0], 3, strides=stem_stride, use_bias=False, name="stem_conv")(
        x
    )
    x = batch_norm("stem_bn")(x)
    for i, _, c_out, strides, mode in block_configs(stage_channels):
        x = bnext_block(
            x,
            c_out,
            strides,
            mode,
            elm_attention_enabled=elm_attention,
            info_recoupling=info_recoupling,
            name=f"block{i}",
        )
    model = classifier_head(
        x, inputs, input_tensor, include_top, num_classes, classifier_activation, pooling, name
    )

    if weights is not None:
        apply_weights(model, weights, size=size)
    return model


def _full_model(size: str | None):
    """Builds the float32 published model with its top, for the ImageNet weights cache."""
    if size is None:
        return None
    info = registry.get(size)
    return lambda: BNext(
        info.stage_channels,
        input_shape=(None, None, 3),
        classifier_activation=None,
        name=info.model_name,
    )


def apply_weights(model: tf.keras.Model, weights, size: str | None = None) -> None:
    """Load ``weights`` into a BNext built beforehand (what ``BNext(weights=...)`` does).

    Args:
        model: a BNext Keras model.
        weights: ``"imagenet"``, or the path of an official PyTorch checkpoint or of Keras
            HDF5 weights (see :func:`larq_bnext.weights.load_weights`).
        size: the published size of the model (required for ``"imagenet"``).
    """
    load_weights(model, weights, size=size, full_model=_full_model(size))


def _check_weights_argument(weights, size, input_shape, input_tensor, include_top, num_classes):
    if weights is None:
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            "weights must be None, 'imagenet' or the path of a weights file; "
            f"got {type(weights).__name__}."
        )
    if weights == "imagenet":
        if size is None:
            raise ValueError(
                "weights='imagenet' exists only for the four official sizes: use "
                "larq_bnext.BNextT/BNextS/BNextM/BNextL, or weights=None for custom widths."
            )
        if include_top and num_classes != 1000:
            raise ValueError(
                f"weights='imagenet' with include_top=True has 1000 classes, not {num_classes}. "
                "Use include_top=False and add your own classifier, or num_classes=1000."
            )
    elif not os.path.exists(weights):
        raise ValueError(
            f"weights={str(weights)!r} is neither None, 'imagenet' nor an existing file. "
            "Check the path."
        )


def _sized(size: str):
    """A keras.applications-style builder of a published size: BNext's signature without
    ``stage_channels`` and ``size``, which come from :mod:`larq_bnext.registry`."""
    info = registry.get(size)

    def builder(**kwargs) -> tf.keras.Model:
        current = registry.get(info.name)  # read at call time: the registry is the truth
        kwargs.setdefault("name", current.model_name)
        return BNext(current.stage_channels, size=current.name, **kwargs)

    signature = inspect.signature(BNext)
    parameters = [
        p.replace(default=info.model_name) if p.name == "name" else p
        for p in signature.parameters.values()
        if p.name not in ("stage_channels", "size")
    ]
    builder.__signature__ = signature.replace(parameters=parameters)
    builder.__name__ = builder.__qualname__ = f"BNext{info.letter}"
    builder.__module__ = __name__
    builder.__doc__ = f"""{info.display_name}: stage channels {info.stage_channels}.

    Published ImageNet top-1 {info.top1}% (:func:`larq_bnext.registry.get`).

    Args:
        input_shape: ``(height, width, channels)``, default ``(224, 224, 3)``.
        input_tensor: optional Keras tensor to build the model on.
        weights: ``None``, ``"imagenet"`` (the official {info.display_name} checkpoint) or a path.
        include_top: whether to add the pooling and dense classifier.
        num_classes: classifier size (1000 with ImageNet weights and a top).
        pooling: ``None``, ``"avg"`` or ``"max"`` when ``include_top=False``.
        classifier_activation: ``"softmax"`` (default) or ``None`` for logits.
        elm_attention: ELM-Attention on (the paper's ablation switch).
        info_recoupling: information recoupling on (the paper's ablation switch).
        stem_stride: 2 for ImageNet-sized inputs, 1 for small images such as CIFAR.
        name: model name.

    Returns:
        A :class:`tf.keras.Model`. See :func:`BNext` for the errors it raises.
    """
    return builder


BNextT = _sized("tiny")
BNextS = _sized("small")
BNextM = _sized("middle")
BNextL = _sized("large")

_BUILDERS = {"tiny": BNextT, "small": BNextS, "middle": BNextM, "large": BNextL}


def get_model(size: str, **kwargs) -> tf.keras.Model:
    """Build the BNext of the named size (``"tiny"``, ``"T"``, ``"bnext_small"``, ...).

    Args:
        size: a size name or alias (see :func:`larq_bnext.registry.canonical_size`).
        **kwargs: the keyword arguments of :func:`BNextT`.

    ``"bnext18"`` builds :func:`~larq_bnext.models.bnext18.BNext18` (the original's
    ResNet-18-shaped BNext; no ImageNet checkpoint published).

    Raises:
        ValueError: for an unknown size name.
    """
    from larq_bnext.models.bnext18 import BNext18, is_bnext18

    if is_bnext18(size):
        return BNext18(**kwargs)
    return _BUILDERS[canonical_size(size)](**kwargs)
