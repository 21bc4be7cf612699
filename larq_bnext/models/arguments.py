"""The ``keras.applications`` arguments every builder takes, checked in one place.

:func:`~larq_bnext.BNext` (and its sized forms) and :func:`~larq_bnext.BNext18` take the same
``input_shape``, ``input_tensor``, ``weights``, ``include_top``, ``num_classes`` and ``pooling``
arguments; :func:`check_arguments` refuses the bad ones before a layer is built, and
:func:`model_input` makes the input layer. Weights then reach the built model through one
loader, :func:`larq_bnext.weights.load_weights`.

Examples:
    >>> check_arguments(weights="imagenet", model=None)
    Traceback (most recent call last):
    ...
    ValueError: weights='imagenet' exists only for the published models (BNext-T, BNext-S, BNext-M, BNext-L): use larq_bnext.BNextT/BNextS/BNextM/BNextL, or weights=None for a custom width.
"""  # noqa: E501

from __future__ import annotations

import os

import tensorflow as tf

from larq_bnext.registry import ModelInfo, list_models
from larq_bnext.weights.loading import URL_SCHEMES

__all__ = ["POOLINGS", "check_arguments", "model_input"]

#: The values of ``pooling``.
POOLINGS = (None, "avg", "max")


def _published_builders() -> tuple[str, str]:
    published = [m for m in list_models() if m.published]
    names = ", ".join(m.display_name for m in published)
    builders = "/".join(f"BNext{m.letter}" for m in published)
    return names, builders


def check_arguments(
    *,
    weights=None,
    model: ModelInfo | None = None,
    include_top: bool = True,
    num_classes: int = 1000,
    pooling: str | None = None,
) -> None:
    """Refuse builder arguments that cannot work, with what to do instead.

    Args:
        weights: ``None``, ``"imagenet"``, or the path or ``https://`` URL of a weights file.
        model: the registry entry of the model being built (``None``: a custom width).
        include_top: whether the model gets its classifier.
        num_classes: classifier size.
        pooling: ``None``, ``"avg"`` or ``"max"``.

    Raises:
        ValueError: for an unknown pooling, a ``weights`` of another type, ImageNet weights
            of a model that has none or with a classifier of another size, or a missing file.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be None, 'avg' or 'max', not {pooling!r}.")
    if weights is None:
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            "weights must be None, 'imagenet' or the path of a weights file; "
            f"got {type(weights).__name__}."
        )
    if weights == "imagenet":
        if model is None:
            names, builders = _published_builders()
            raise ValueError(
                f"weights='imagenet' exists only for the published models ({names}): use "
                f"larq_bnext.{builders}, or weights=None for a custom width."
            )
        _ = model.url  # raises where no checkpoint is published, saying what to do
        if include_top and num_classes != 1000:
            raise ValueError(
                f"weights='imagenet' with include_top=True has 1000 classes, not {num_classes}. "
                "Use include_top=False and add your own classifier, or num_classes=1000."
            )
    elif not os.path.exists(weights) and not str(weights).startswith(URL_SCHEMES):
        raise ValueError(
            f"weights={str(weights)!r} is neither None, 'imagenet', an existing file nor an "
            "https:// or http:// URL. Check the path."
        )


def model_input(input_shape, input_tensor, default_shape: tuple, weights=None):
    """The input of a model: ``(inputs, shape)``, a Keras tensor and its per-example shape.

    Args:
        input_shape: ``(height, width, channels)`` or ``None`` for ``default_shape``.
        input_tensor: a tensor to build on (``input_shape`` is then read from it), or ``None``.
        default_shape: the shape when neither is given.
        weights: the builder's ``weights`` (``"imagenet"`` needs 3 input channels).

    Raises:
        ValueError: for a shape that is not ``(height, width, channels)``, or ImageNet weights
            on other than RGB input.
    """
    if input_tensor is not None:
        if not tf.keras.backend.is_keras_tensor(input_tensor):
            input_tensor = tf.keras.layers.Input(tensor=input_tensor, shape=input_shape)
        inputs, shape = input_tensor, tuple(input_tensor.shape[1:])
    else:
        shape = tuple(default_shape if input_shape is None else input_shape)
        if len(shape) != 3:
            raise ValueError(
                f"input_shape must be (height, width, channels), channels last; got {shape}."
            )
        inputs = tf.keras.layers.Input(shape=shape)
    if weights == "imagenet" and shape[-1] != 3:
        raise ValueError(
            f"weights='imagenet' needs 3 input channels (RGB), but the input has {shape[-1]}. "
            "Convert the images to RGB, or use weights=None to train from scratch."
        )
    return inputs, shape
