r"""Classify image files with a BNext: ``python -m larq_bnext.predict IMAGE... [--flags]``.

Examples::

    # The official BNext-T (downloaded and converted once), the 5 most likely classes:
    python -m larq_bnext.predict cat.jpg dog.png --model bnext_tiny

    # Weights of your own (a converted checkpoint or Keras weights), top 3:
    python -m larq_bnext.predict cat.jpg --model bnext_small --weights bnext_small.h5 --top 3

Each image gets the official evaluation transform (:func:`larq_bnext.eval_transform`: shorter
side to 235 bicubic, centre crop 224, ImageNet normalisation), decoding only what the crop
needs (:func:`larq_bnext.preprocessing.decode_and_center_crop`), so a strip of 1 x 20000
pixels costs what a photograph costs; the printed probabilities are the softmax of the
model's logits, named with the ImageNet class index shipped with the package
(:func:`larq_bnext.decode_predictions`). Every image PIL reads is read (JPEG, PNG, GIF, BMP,
TIFF, WebP, ...; grey, palette, CMYK, 16-bit and transparent images become RGB). An image
whose header gives more pixels than ``--max_image_pixels`` (PIL's limit, 89,478,485) is
refused before it is decoded. A missing, unreadable or refused file is reported on stderr
with what to do, the other files are still classified, and the command then exits with
status 2. File names are printed in a printable form (bytes that are not UTF-8 as ``\xNN``).

:func:`classify` is the library function behind the command.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import sys

import numpy as np
from absl import app, flags

from larq_bnext.images.files import (
    MAX_IMAGE_PIXELS,
    ImageFileError,
    check_image_file,
    display_path,
    not_an_image,
)
from larq_bnext.registry import list_models, models_text, resolve_model

__all__ = ["Prediction", "build_classifier", "classify", "define_flags", "main"]

FLAGS = flags.FLAGS

#: Spellings of ``--weights`` that mean "random initialisation".
_RANDOM = ("", "none", "random")
#: The model ``--model`` names by default: the smallest published BNext.
DEFAULT_MODEL = next(m.model_name for m in list_models() if m.published)


@dataclasses.dataclass
class Prediction:
    """The result for one file: its classes, or the error that kept it from being classified.

    Args:
        path: the file, as given (``bytes`` and path objects become ``str``, undecodable bytes
            as the operating system's surrogate escapes).
        classes: ``(wnid, description, probability)`` tuples, most likely first (empty on
            error).
        error: why the file could not be classified (``None`` on success); it names the file
            by :attr:`name`.
    """

    path: str
    classes: list = dataclasses.field(default_factory=list)
    error: str | None = None

    @property
    def name(self) -> str:
        """The file's printable name (:func:`larq_bnext.images.files.display_path`)."""
        return display_path(self.path)


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


def _read(path, max_image_pixels):
    """The file's bytes (a string tensor: one copy), once its header says it is a whole image
    within the pixel limit."""
    import tensorflow as tf

    check_image_file(path, max_image_pixels)
    try:
        return tf.io.read_file(os.fsencode(path))
    except tf.errors.OpError as error:
        raise ImageFileError(f"{display_path(path)}: cannot be read ({error.message}).") from None


def _decoded(path, decode):
    """``decode()``, with a decoder's failure turned into an error naming ``path``."""
    import tensorflow as tf

    try:
        return decode()
    except ImageFileError as error:  # PIL's decoding, which does not know the name
        raise ImageFileError(f"{display_path(path)}: {error}") from None
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        reason = re.sub(r"\{\{.*?\}\}|\[Op:.*", "", str(error.message or "")).strip() or "unknown"
        raise ImageFileError(not_an_image(path, reason)) from None


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
    max_image_pixels=MAX_IMAGE_PIXELS,
) -> list[Prediction]:
    """Classify image files with a model: the ``top`` most likely classes of each.

    Each file is read with :func:`larq_bnext.preprocessing.decode_and_center_crop` (only the
    crop's window of a JPEG is decoded), after its header was checked against the pixel limit.

    Args:
        paths: image file paths (``str``, ``bytes`` or path objects; names need not be UTF-8).
        model: a Keras classifier that returns logits (``classifier_activation=None``); a
            model ending in a softmax is used as it is. See :func:`build_classifier`.
        top: how many classes to return per image.
        batch_size: images per forward pass.
        image_size: side of the evaluation crop; defaults to the model's input size (224).
        class_names: names of the model's classes in output order; defaults to the ImageNet
            classes ``(wnid, description)`` for a 1000-class model. Plain strings are
            returned as ``(name, name, probability)``.
        max_image_pixels: refuse images with more pixels (``None`` or 0: no limit); PIL's
            default.

    Returns:
        One :class:`Prediction` per path, in order: ``classes`` holds ``(wnid, description,
        probability)`` tuples (probabilities are the softmax over all classes), or
        ``error`` says why the file could not be read (naming it and the fix).

    Raises:
        ValueError: if ``top`` is out of range, or the model has neither 1000 outputs nor
            ``class_names``.
    """
    import tensorflow as tf

    from larq_bnext.preprocessing import (
        EVAL_IMAGE_SIZE,
        decode_and_center_crop,
        imagenet_class_index,
    )

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

    results = [Prediction(os.fsdecode(p)) for p in paths]
    ready = []
    for result in results:
        try:
            x = _decoded(
                result.path,
                functools.partial(
                    decode_and_center_crop,
                    _read(result.path, max_image_pixels),
                    image_size,
                    max_image_pixels=max_image_pixels,
                ),
            )
            ready.append((result, x))
        except (OSError, ValueError) as error:
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
    from larq_bnext._cli import define  # the programs' shared vocabulary

    f = flag_values
    define(f, "model", DEFAULT_MODEL, f"{models_text()}.")
    define(f, "weights", "imagenet")  # the vocabulary's: imagenet, a file or none
    flags.DEFINE_integer("top", 5, "How many classes to print per image.", flag_values=f)
    define(f, "batch_size", 16, "Images per forward pass.", lower_bound=1)
    flags.DEFINE_integer(
        "max_image_pixels",
        MAX_IMAGE_PIXELS,
        "Refuse images whose header gives more pixels (width x height), before decoding them "
        "(PIL's Image.MAX_IMAGE_PIXELS); 0: no limit.",
        flag_values=flag_values,
        lower_bound=0,
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
    # Names are printable, but a terminal's encoding may still lack a letter of one.
    sys.stdout.reconfigure(errors="backslashreplace")
    failed = 0
    results = classify(
        paths,
        model,
        top=FLAGS.top,
        batch_size=FLAGS.batch_size,
        max_image_pixels=FLAGS.max_image_pixels,
    )
    for result in results:
        if result.error is not None:
            failed += 1
            print(f"error: {result.error}", file=sys.stderr)
            continue
        print(result.name)
        for rank, (wnid, description, prob) in enumerate(result.classes, 1):
            print(f"  {rank}. {prob:7.2%}  {wnid}  {description}")
    if failed:
        print(f"{failed} of {len(paths)} files could not be classified.", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    from larq_bnext._cli import run_then_exit

    define_flags()
    run_then_exit(main)  # without TensorFlow's teardown at exit (about a second)
