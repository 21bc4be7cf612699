"""Draw the binary feature maps of a BNext layer for a photograph.

    python -m larq_bnext.features --output docs/comparison/binary_features.png

builds ``--model`` at ``--image_size`` (BNext-T at 1024x1024 by default, as in the authors'
figure), with its ImageNet weights when they are in the local cache (or ``--weights``), else
randomly initialised, which the figure's title then says; feeds it Matplotlib's sample
photograph (or ``--image``) and draws the first ``--channels`` binary maps that binary
convolution number ``--layer`` multiplies. See :mod:`larq_bnext.analysis.features`.
"""

from __future__ import annotations

from absl import app, flags

from larq_bnext import registry
from larq_bnext._cli import define, no_arguments, user_errors_exit

FLAGS = flags.FLAGS

__all__ = ["define_flags", "draw", "main"]


def define_flags(flag_values: flags.FlagValues = FLAGS) -> flags.FlagValues:
    """Define the flags (see :mod:`larq_bnext._cli`).

    Args:
        flag_values: the absl flag registry to define them on.

    Returns:
        ``flag_values``.
    """
    f = flag_values
    define(f, "model", registry.list_models()[0].model_name, f"{registry.models_text()}.")
    define(f, "weights", None, "A path, or imagenet; default: imagenet when cached, else random.")
    define(f, "image_size", 1024, "Square input side.")
    flags.DEFINE_string(
        "image",
        None,
        "An image file (default: Matplotlib's sample photograph).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "layer", 0, "Index of the binary convolution (0: the first).", flag_values=flag_values
    )
    flags.DEFINE_integer("channels", 32, "Maps to draw.", flag_values=flag_values)
    define(f, "output", "binary_features.png", "The PNG to write.")
    return flag_values


def _cached_weights(info) -> str | None:
    from larq_bnext.weights.download import checkpoint_path, converted_weights_path

    if not info.published:
        return None
    cached = converted_weights_path(info.name).exists() or checkpoint_path(info.name).exists()
    return "imagenet" if cached else None


def draw(
    model_name: str,
    output: str,
    image_size: int = 1024,
    layer: int = 0,
    channels: int = 32,
    weights: str | None = None,
    image: str | None = None,
) -> str:
    """Build the model, compute its binary features for the image and draw them.

    Args:
        model_name: a registry model name.
        output: the PNG to write.
        image_size: square input side.
        layer: index of the binary convolution.
        channels: maps to draw.
        weights: a path or ``"imagenet"``; ``None``: ImageNet weights when cached, else a
            randomly initialised model (said in the title).
        image: an image file; ``None``: Matplotlib's sample photograph.

    Returns:
        ``output``.
    """
    import numpy as np
    import tensorflow as tf

    from larq_bnext.analysis.features import binary_features, plot_binary_features, sample_image
    from larq_bnext.models import get_model
    from larq_bnext.preprocessing import preprocess_input

    info = registry.resolve_model(model_name)
    weights = weights or _cached_weights(info)
    model = get_model(info.name, weights=weights, input_shape=(image_size, image_size, 3))
    if image is None:
        pixels = sample_image(image_size)
    else:
        decoded = tf.io.decode_image(tf.io.read_file(image), channels=3, expand_animations=False)
        side = (image_size, image_size)
        pixels = tf.image.resize(
            tf.cast(decoded, tf.float32), side, info.preprocessing.interpolation
        )
        pixels = np.clip(pixels.numpy(), 0, 255)
    maps = binary_features(model, preprocess_input(pixels[None]), layer)[0]
    origin = f"weights: {weights}" if weights else "randomly initialised (no pretrained weights)"
    title = (
        f"{info.display_name}, binary input of binary convolution {layer}, "
        f"{image_size}x{image_size} image -> {maps.shape[0]}x{maps.shape[1]} maps; {origin}"
    )
    return plot_binary_features(output, maps, title, channels=channels)


def main(argv):
    """absl entry point: :func:`draw` with the flags.

    Args:
        argv: the command line left after absl parsed the flags (must hold no arguments).
    """
    no_arguments(argv)
    with user_errors_exit():
        print(
            draw(
                FLAGS.model,
                FLAGS.output,
                FLAGS.image_size,
                FLAGS.layer,
                FLAGS.channels,
                FLAGS.weights,
                FLAGS.image,
            )  # fmt: skip
        )


if __name__ == "__main__":
    define_flags()
    app.run(main)
