"""The BNext model family (BNext-T/S/M/L) as Keras functional models.

Signatures follow ``keras.applications`` and larq-zoo (see the example).

The architecture is the original's (``hpi-xnor/BNext``, ``src/bnext.py``), layer for layer,
channels-last. The stem is a float 3x3 convolution (stride 2, padding 1) and BatchNorm; blocks
1..13 (or more) follow the stage channel list; the head is PReLU, global average pooling and a
dense classifier. PReLUs that the original builds but never applies are left out.

Examples:
    >>> import larq_bnext
    >>> model = larq_bnext.BNextT(weights=None, input_shape=(64, 64, 3), num_classes=10)
    >>> model.name, model.output_shape
    ('bnext_tiny', (None, 10))
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import tensorflow as tf

from larq_bnext.models.arguments import check_arguments, model_input
from larq_bnext.models.blocks import batch_norm, bnext_block, classifier_head
from larq_bnext.models.construction import (
    initial_values_skipped,
    shape_only_calls,
    values_from_file,
)
from larq_bnext.registry import IMAGENET_PREPROCESSING, ModelInfo, block_configs, resolve_model
from larq_bnext.weights.loading import keras_weights_file, load_weights

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
            ``size``), or the path or ``https://`` URL (downloaded once) of an official PyTorch
            checkpoint or of Keras weights.
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
    info = None if size is None else resolve_model(size, family="bnext")
    check_arguments(
        weights=weights,
        model=info,
        include_top=include_top,
        num_classes=num_classes,
        pooling=pooling,
    )
    side = (info.preprocessing if info else IMAGENET_PREPROCESSING).image_size
    inputs, shape = model_input(input_shape, input_tensor, (side, side, 3), weights)
    _check_input_size(shape, stage_channels, stem_stride)

    # Weights given: no initial values are drawn that loading replaces, and a Keras weights
    # file on disk gives the variables their values as they are created (larq_bnext.models.
    # construction); layers are shaped without scratch-graph calls either way.
    source = keras_weights_file(weights, info)
    values = values_from_file(source) if source else initial_values_skipped(weights is not None)
    with shape_only_calls(), values as preloaded:
        layers = tf.keras.layers
        x = layers.ZeroPadding2D(1, name="stem_pad")(inputs)
        x = layers.Conv2D(
            stage_channels[0], 3, strides=stem_stride, use_bias=False, name="stem_conv"
        )(x)
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
        apply_weights(model, weights, size=size, preloaded=preloaded)
    return model


def _full_model(info: ModelInfo | None):
    """Builds the float32 published model with its top, for the ImageNet weights cache."""
    if info is None:
        return None
    return lambda: BNext(
        info.stage_channels,
        input_shape=(None, None, 3),
        classifier_activation=None,
        name=info.model_name,
    )


def apply_weights(model: tf.keras.Model, weights, size: str | None = None, preloaded=None) -> None:
    """Load ``weights`` into a BNext built beforehand (what ``BNext(weights=...)`` does).

    Args:
        model: a BNext Keras model.
        weights: ``"imagenet"``, or the path or ``https://`` URL of an official PyTorch
            checkpoint or of Keras HDF5 weights (see :func:`larq_bnext.weights.load_weights`).
        size: the published size of the model (required for ``"imagenet"``).
        preloaded: the :class:`~larq_bnext.models.construction.FileValues` the model was
            built with, if any (nothing is read twice).
    """
    info = None if size is None else resolve_model(size, family="bnext")
    load_weights(model, weights, info, full_model=_full_model(info), preloaded=preloaded)


def _sized(letter: str):
    """A keras.applications-style builder of a published size: BNext's signature without
    ``stage_channels`` and ``size``, which come from :mod:`larq_bnext.registry`."""
    info = resolve_model(letter, family="bnext")

    def builder(**kwargs) -> tf.keras.Model:
        current = resolve_model(info.name)  # read at call time: the registry is the truth
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

    Published ImageNet top-1 {info.top1}% (:func:`larq_bnext.registry.resolve_model`).

    Args:
        input_shape: ``(height, width, channels)``, default ``(224, 224, 3)``.
        input_tensor: optional Keras tensor to build the model on.
        weights: ``None``, ``"imagenet"`` (the official {info.display_name} checkpoint), a path
            or a URL.
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


BNextT = _sized("T")
BNextS = _sized("S")
BNextM = _sized("M")
BNextL = _sized("L")

_BUILDERS = {b.__name__: b for b in (BNextT, BNextS, BNextM, BNextL)}


def get_model(size: str, stage_channels: Sequence[int] | None = None, **kwargs) -> tf.keras.Model:
    """Build a model by name: any of the registry (``"tiny"``, ``"T"``, ``"bnext18"``, ...) or
    ``"custom"``, a BNext of ``stage_channels``; what every command-line program builds.

    ``"bnext18"`` builds :func:`~larq_bnext.models.bnext18.BNext18` (the original's
    ResNet-18-shaped BNext; no ImageNet checkpoint published). The arguments of the BNext
    builders that shape the stem and the ablations apply to it too: ``stem_stride=1`` is its
    CIFAR stem, ``stem_stride=2`` its ImageNet stem; ``elm_attention`` and ``info_recoupling``
    must stay on (it has no ablation switches).

    Args:
        size: ``"custom"`` or a model name (see :func:`larq_bnext.registry.resolve_model`).
        stage_channels: the channels of ``"custom"`` (ignored for the registry's models).
        **kwargs: the keyword arguments of :func:`BNext` (or of
            :func:`~larq_bnext.models.bnext18.BNext18`).

    Raises:
        ValueError: for an unknown name, ``"custom"`` without channels, or an ablation
            switched off for BNext-18.

    Examples:
        >>> get_model("bnext18", input_shape=(32, 32, 3), num_classes=10, stem_stride=1).name
        'bnext18'
        >>> get_model("custom", (8, 16), input_shape=(8, 8, 3), stem_stride=1).output_shape
        (None, 1000)
    """
    if str(size).strip().lower() == "custom":
        if not stage_channels:
            raise ValueError("size='custom' needs stage_channels, e.g. (16, 32, 64, 128).")
        return BNext(stage_channels, **kwargs)
    info = resolve_model(size)
    if info.family == "bnext":
        return _BUILDERS[f"BNext{info.letter}"](**kwargs)
    from larq_bnext.models.bnext18 import BNext18

    for switch in ("elm_attention", "info_recoupling"):
        if not kwargs.pop(switch, True):
            raise ValueError(
                f"{switch}=False: {info.display_name} has no such ablation switch (it is "
                "always on); build a BNext (larq_bnext.BNext or BNextT/S/M/L) for the ablation."
            )
    stem_stride = kwargs.pop("stem_stride", None)
    if stem_stride is not None:
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, not {stem_stride}.")
        kwargs.setdefault("stem", "cifar" if stem_stride == 1 else "imagenet")
    return BNext18(**kwargs)
