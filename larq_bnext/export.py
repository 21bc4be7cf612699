"""Export a BNext model as a Larq Compute Engine TFLite flatbuffer.

    python -m larq_bnext.export --model bnext_tiny --weights imagenet --output bnext_tiny.tflite

``--weights`` is ``imagenet`` (the official checkpoint, downloaded once), the path of a
checkpoint or Keras weights file, or omitted for random weights whose temperatures are set
below the binarization threshold (a demo / latency model). The model is rebuilt in its
inference form and every binary convolution becomes an ``LceBconv2d`` op; see
:mod:`larq_bnext.deploy`. A checkpoint whose temperatures are still ``>= 1e-7`` is refused
unless ``--allow_float_binary_layers`` is given (those layers then stay float convolutions).

LCE's binary values are ``+-1``: latent kernel weights that are exactly 0 in sign-regime layers
(binarized to 0 by the Keras model, as by the original) become ``+1``; the command prints how
many (see :func:`larq_bnext.deploy.zero_sign_weights`).
"""

from __future__ import annotations

import os
from pathlib import Path

from absl import app, flags

from larq_bnext._cli import define, deprecated_alias, no_arguments, user_errors_exit
from larq_bnext.registry import BNEXT_ARCHITECTURE, model_names, models_text, resolve_model

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> flags.FlagValues:
    """Define the export flags (see :mod:`larq_bnext._cli`).

    Args:
        flag_values: the absl flag registry to define them on.

    Returns:
        ``flag_values``.
    """
    f = flag_values
    define(f, "model", model_names()[0], f"{models_text()}.")
    define(
        f,
        "weights",
        None,
        "'imagenet', the path of a checkpoint/Keras weights file, or empty for random weights "
        "with kernel temperatures set to 0 (demo).",
    )
    define(f, "output", None, "Where to write the .tflite file (default: <model>.tflite).")
    define(f, "image_size", None, "Square input side of the exported model; default the model's.")
    deprecated_alias("input_size", "image_size", f)
    flags.DEFINE_integer(
        "num_classes", 1000, "Classifier size (1000 for ImageNet weights).", flag_values=f
    )
    flags.DEFINE_bool(
        "softmax",
        True,
        "End with a softmax (probabilities); --nosoftmax exports logits.",
        flag_values=f,
    )
    flags.DEFINE_bool(
        "allow_float_binary_layers",
        False,
        "Convert a model whose kernel temperatures are still at or above its sign threshold "
        f"({BNEXT_ARCHITECTURE.sign_threshold:g} for BNext-T/S/M/L): those binary layers stay "
        "float convolutions on binarized inputs (correct outputs, no binary speed-up).",
        flag_values=f,
    )
    flags.DEFINE_enum(
        "target", "arm", ["arm", "xcore"], "Larq Compute Engine target.", flag_values=f
    )
    return flag_values


def export(
    model: str,
    output: str | os.PathLike,
    weights: str | None = None,
    input_size: int | None = None,
    num_classes: int = 1000,
    softmax: bool = True,
    allow_float_binary_layers: bool = False,
    target: str = "arm",
) -> dict:
    """Build, convert and write a BNext flatbuffer.

    Args:
        model: a registry model name (``"bnext_tiny"``, ``"T"``, ``"small"``, ``"bnext18"``, ...).
        output: path of the ``.tflite`` file to write (parent directories are created).
        weights: ``None`` (random, temperatures set below threshold), ``"imagenet"`` or a path.
        input_size: square input resolution; ``None``: the model's (registry preprocessing).
        num_classes: classifier size.
        softmax: end with a softmax; ``False`` exports logits.
        allow_float_binary_layers: see :func:`larq_bnext.deploy.inference_model`.
        target: LCE target, ``"arm"`` or ``"xcore"``.

    Returns:
        ``{"path", "bytes", "ops", "zero_weights_set_to_one"}``: the op counts of the written
        flatbuffer, and how many exact-zero sign-regime kernel weights (binarized to 0 by the
        Keras model, as by the original) the export set to ``+1``.
    """
    from larq_bnext import deploy, models

    info = resolve_model(model)
    input_size = input_size or info.preprocessing.image_size
    keras_model = models.get_model(
        info.name,
        input_shape=(input_size, input_size, 3),
        weights=weights or None,
        num_classes=num_classes,
        classifier_activation="softmax" if softmax else None,
    )
    if not weights:
        deploy.binarize_for_demo(keras_model)
    zero_weights = sum(deploy.zero_sign_weights(keras_model).values())
    flatbuffer = deploy.convert(
        keras_model, allow_float_kernels=allow_float_binary_layers, target=target
    )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(flatbuffer)
    return {
        "path": output,
        "bytes": len(flatbuffer),
        "ops": deploy.op_counts(flatbuffer),
        "zero_weights_set_to_one": zero_weights,
    }


def main(argv):
    """absl entry point: export ``--model`` to ``--output``.

    Args:
        argv: the command line left after absl parsed the flags (must hold no arguments).
    """
    no_arguments(argv)
    with user_errors_exit():
        output = FLAGS.output or f"{resolve_model(FLAGS.model).model_name}.tflite"
        result = export(
            FLAGS.model,
            output,
            weights=FLAGS.weights,
            input_size=FLAGS.image_size,
            num_classes=FLAGS.num_classes,
            softmax=FLAGS.softmax,
            allow_float_binary_layers=FLAGS.allow_float_binary_layers,
            target=FLAGS.target,
        )
    ops = result["ops"]
    print(
        f"Wrote {result['path']} ({result['bytes'] / 1e6:.2f} MB): "
        f"{ops.get('LceBconv2d', 0)} binary convolutions (LceBconv2d), "
        f"{ops.get('CONV_2D', 0)} float convolutions (stem and squeeze-excitation); "
        f"{result['zero_weights_set_to_one']} binary weights that are exactly 0 set to +1 "
        "(LCE binarizes to +-1; the Keras model, like the original, to 0 there)."
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
