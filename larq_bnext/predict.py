r"""Classify image files with a BNext: ``python -m larq_bnext.predict IMAGE... [--flags]``.

Examples::

    # The official BNext-T (downloaded and converted once), the 5 most likely classes:
    python -m larq_bnext.predict cat.jpg dog.png --model bnext_tiny

    # Weights of your own (a converted checkpoint or Keras weights), top 3:
    python -m larq_bnext.predict cat.jpg --model bnext_small --weights bnext_small.h5 --top 3

Each image gets the official evaluation transform (:func:`larq_bnext.eval_transform`: shorter
side to 235 bicubic, centre crop 224, ImageNet normalisation); the printed probabilities are
the softmax of the model's logits, named with the ImageNet class index shipped with the
package (:func:`larq_bnext.decode_predictions`). JPEG, PNG, BMP and GIF files are read
(grey and RGBA images become RGB). A missing or unreadable file is reported on stderr with
what to do, the other files are still classified, and the command then exits with status 2.

:func:`classify` is the library function behind the command.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys

import numpy as np
from absl import app, flags

from larq_bnext.registry import list_models, models_text, resolve_model

__all__ = ["Prediction", "build_classifier", "load_image", "classify", "define_flags", "main"]

FLAGS = flags.FLAGS

#: Spellings of ``--weights`` that mean "random initialisation".
_RANDOM = ("", "none", "random")
#: The model ``--model`` names by default: the smallest published BNext.
DEFAULT_MODEL = next(m.model_name for m in list_models() if m.published)


@dataclasses.dataclass
class Prediction:
    """The result for one file: its classes, or the error that kept it from being classified.

    Args:
        path: the file.
        classes: ``(wnid, description, probability)`` tuples, most likely first (empty on
            error).
        error: why the file could not be classified (``None`` on success).
    """

    path: str
    classes: list = dataclasses.field(default_factory=list)
    error: str | None = None


def build_classifier(model: str = DEFAULT_MODEL, weights: str | None = "imagenet"):
    """Build a 1000-class BNext that returns logits, with its weights.

    Args:
        model: a registry model name (``bnext_tiny``, ``small``, ``M``, ``bnext18``, ...; see
            :func:`larq_bnext.registry.resolve_model`).
        weights: ``"imagenet"`` (the official checkpoint), the path of a checkpoint or Keras
            weights file, or ``None`` / ``"none"`` for random weights (meaningless predictions;
            for trying the command out).

    Raises:
        ValueError: for an unknown model name or weights file.
        OSError: ``weights="imagenet"`` without internet access and without the checkpoint in
            the cache (the message names the URL and where to put the file).
    """
    from larq_bnext import models

    if weights is not None and str(weights).strip().lower() in _RANDOM:
        weights = None
    return models.get_model(resolve_model(model).name, weights=weights, classifier_activation=None)


def load_image(path: str):
    """Read an image file as an RGB ``uint8`` tensor ``(height, width, 3)``.

    Args:
        path: a JPEG, PNG, BMP or GIF file (the first frame of an animation).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a decodable image.
    """
    import tensorflow as tf

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file. Check the path.")
    try:
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        reason = re.sub(r"\{\{.*?\}\}|\[Op:.*", "", str(error.message or "")).strip() or "unknown"
        raise ValueError(
            f"{path}: not a readable image ({reason}). Give a JPEG, PNG, BMP or GIF file; "
            "re-save other formats (or a damaged file) as JPEG or PNG."
        ) from error
    return image


def _uses_softmax(model) -> bool:
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


def classify(
    paths,
    model,
    top: int = 5,
    batch_size: int = 16,
    image_size: int | None = None,
    class_names=None,
) -> list[Prediction]:
    """Classify image files with a model: the ``top`` most likely classes of each.

    Args:
        paths: image file paths.
        model: a Keras classifier that returns logits (``classifier_activation=None``); a
            model ending in a softmax is used as it is. See :func:`build_classifier`.
        top: how many classes to return per image.
        batch_size: images per forward pass.
        image_size: side of the evaluation crop; defaults to the model's input size (224).
        class_names: names of the model's classes in output order; defaults to the ImageNet
            classes ``(wnid, description)`` for a 1000-class model. Plain strings are
            returned as ``(name, name, probability)``.

    Returns:
        One :class:`Prediction` per path, in order: ``classes`` holds ``(wnid, description,
        probability)`` tuples (probabilities are the softmax over all classes), or
        ``error`` says why the file could not be read.

    Raises:
        ValueError: if ``top`` is out of range, or the model has neither 1000 outputs nor
            ``class_names``.
    """
    import tensorflow as tf

    from larq_bnext.preprocessing import EVAL_IMAGE_SIZE, eval_transform, imagenet_class_index

    num_classes = int(model.output_shape[-1])
    if class_names is None:
        if num_classes != 1000:
            raise ValueError(
                f"The model has {num_classes} outputs, not the 1000 ImageNet classes: pass "
                "class_names=[...] (its classes in output order)."
            )
        names = imagenet_class_index()
    else:
        names = [n if isinstance(n, tuple) else (str(n), str(n)) for n in class_names]
        if len(names) != num_classes:
            raise ValueError(
                f"class_names has {len(names)} names but the model has {num_classes} outputs."
            )
    if not 1 <= int(top) <= num_classes:
        raise ValueError(f"top must be between 1 and {num_classes}, not {top}.")
    if image_size is None:
        shape = model.input_shape
        image_size = shape[1] if shape[1] is not None else EVAL_IMAGE_SIZE

    results = [Prediction(str(p)) for p in paths]
    ready = []
    for result in results:
        try:
            ready.append((result, eval_transform(load_image(result.path), image_size)))
        except (FileNotFoundError, ValueError) as error:
            result.error = str(error)
    softmax_top = _uses_softmax(model)
    for start in range(0, len(ready), batch_size):
        chunk = ready[start : start + batch_size]
        outputs = model(tf.stack([x for _, x in chunk]), training=False)
        outputs = tf.cast(outputs, tf.float32)
        probs = (outputs if softmax_top else tf.nn.softmax(outputs, axis=-1)).numpy()
        for (result, _), row in zip(chunk, probs, strict=True):
            best = np.argsort(-row, kind="stable")[: int(top)]
            result.classes = [(names[i][0], names[i][1], float(row[i])) for i in best]
    return results


def define_flags(flag_values: flags.FlagValues = FLAGS) -> flags.FlagValues:
    """Define this command's flags on ``flag_values``.

    Called when the module runs as a program, so that importing it claims no global flag
    names.

    Args:
        flag_values: the absl flag registry to define them on.

    Returns:
        ``flag_values``.
    """
    flags.DEFINE_string(
        "model",
        DEFAULT_MODEL,
        f"{models_text()}.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "weights",
        "imagenet",
        "'imagenet' (the official checkpoint, downloaded once), the path of a checkpoint or "
        "Keras weights file, or 'none' for random weights (meaningless predictions).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer("top", 5, "How many classes to print per image.", flag_values=flag_values)
    flags.DEFINE_integer(
        "batch_size", 16, "Images per forward pass.", flag_values=flag_values, lower_bound=1
    )
    return flag_values


def main(argv):
    """absl entry point: classify the image files named on the command line.

    Args:
        argv: the program name followed by the image paths.
    """
    paths = argv[1:]
    if not paths:
        raise app.UsageError("Name at least one image file: python -m larq_bnext.predict IMG...")
    try:
        resolve_model(FLAGS.model)
        if not 1 <= FLAGS.top <= 1000:
            raise ValueError(f"--top must be between 1 and 1000, not {FLAGS.top}.")
        if str(FLAGS.weights).strip().lower() in _RANDOM:
            print("warning: random weights (--weights=none): the classes are meaningless.")
        model = build_classifier(FLAGS.model, FLAGS.weights)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    failed = 0
    for result in classify(paths, model, top=FLAGS.top, batch_size=FLAGS.batch_size):
        if result.error is not None:
            failed += 1
            print(f"error: {result.error}", file=sys.stderr)
            continue
        print(result.path)
        for rank, (wnid, description, prob) in enumerate(result.classes, 1):
            print(f"  {rank}. {prob:7.2%}  {wnid}  {description}")
    if failed:
        print(f"{failed} of {len(paths)} files could not be classified.", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    define_flags()
    app.run(main)
