"""The binary feature maps of a BNext layer for an image, and their figure (section 5 of the
authors' README: the diversity of BNext-T's binary features on a 1024x1024 input).

The binary features of a :class:`~larq_bnext.models.layers.BinaryConv2D` are its binarized
input: ``sign`` of the preceding activations after the learnable bias, the +-1 maps the
binary convolution multiplies.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from larq_bnext.models.layers import BinaryConv2D, binary_conv_layers
from larq_bnext.registry import IMAGENET_PREPROCESSING

__all__ = ["sample_image", "binary_features", "plot_binary_features"]


def sample_image(size: int) -> np.ndarray:
    """Matplotlib's sample photograph (Grace Hopper, 512x600, shipped with Matplotlib),
    resized to ``size x size`` with BNext's interpolation: a ``(size, size, 3)`` float array
    in [0, 255].

    Args:
        size: the square side.
    """
    from matplotlib import cbook
    from matplotlib.image import imread

    image = imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    method = IMAGENET_PREPROCESSING.interpolation
    resized = tf.image.resize(image[..., :3].astype("float32"), (size, size), method)
    return np.clip(resized.numpy(), 0, 255)


def _layer(model: tf.keras.Model, layer) -> BinaryConv2D:
    if isinstance(layer, str):
        found = model.get_layer(layer)
        if not isinstance(found, BinaryConv2D):
            raise ValueError(f"{layer!r} is a {type(found).__name__}, not a BinaryConv2D.")
        return found
    convs = binary_conv_layers(model)
    if not -len(convs) <= layer < len(convs):
        raise ValueError(f"layer={layer}: {model.name} has {len(convs)} binary convolutions.")
    return convs[layer]


def binary_features(model: tf.keras.Model, images, layer: int | str = 0) -> np.ndarray:
    """The binary feature maps that a binary convolution of ``model`` sees for ``images``.

    Args:
        model: a functional BNext (any input size it was built for).
        images: preprocessed images, ``(batch, height, width, 3)``.
        layer: the binary convolution: its index among the model's binary convolutions
            (0: the first, in block 1) or its layer name.

    Returns:
        ``(batch, height, width, channels)`` float array of the signs (+-1; 0 where the
        activation is exactly 0, as the original's ``torch.sign``).

    Raises:
        ValueError: for a layer that is no binary convolution of ``model``.
    """
    conv = _layer(model, layer)
    probe = tf.keras.Model(model.inputs, conv.input)
    activations = probe(tf.convert_to_tensor(images), training=False)
    return np.asarray(conv.input_quantizer(activations))


def plot_binary_features(path, features, title: str, channels: int = 32, columns: int = 8):
    """A grid of the first ``channels`` binary maps of one image (white +1, black -1).

    Args:
        path: the PNG to write.
        features: one image's maps, ``(height, width, channels)``.
        title: the figure's title (say there whether the weights are pretrained).
        channels: how many maps to draw.
        columns: maps per row.

    Returns:
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    channels = min(channels, features.shape[-1])
    rows = -(-channels // columns)
    figure = Figure(figsize=(1.6 * columns, 1.6 * rows + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    for index in range(channels):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(features[..., index], cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        axes.set_axis_off()
    figure.suptitle(title, fontsize="medium")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
