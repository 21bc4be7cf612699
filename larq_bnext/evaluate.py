r"""Top-1/top-5 of a BNext model and weights on a dataset: ``python -m larq_bnext.evaluate``.

Examples::

    # The official BNext-T on the ImageNet validation folder (val/<wnid>/*.JPEG):
    python -m larq_bnext.evaluate --model=tiny --weights=imagenet \
        --dataset=folder --data_dir=/data/imagenet

    # A student trained by `python -m larq_bnext.train` (the demo's defaults):
    python -m larq_bnext.evaluate --weights=runs/demo/student/best.weights.h5

    # A BNext-18 trained with experiments/bnext18.flags:
    python -m larq_bnext.evaluate --model=bnext18 --weights=runs/bnext18/student/best.weights.h5 \
        --dataset=folder --data_dir=/data/imagenet

``--model`` is ``custom`` or any model of :mod:`larq_bnext.registry`. The evaluation transform
is the model's (registry) preprocessing: shorter side to ``image_size / crop_fraction``
bicubic, centre crop, ImageNet normalisation (see
:func:`larq_bnext.preprocessing.decode_and_center_crop`); the digits images are only
normalised. Files that cannot be read, and images whose header gives more pixels than
``--max_image_pixels``, are skipped and listed (``skipped_files``). Prints the scores and,
with ``--output``, writes them as JSON; writes the per-class table (examples, top-1, top-5,
the class most often predicted instead, ImageNet descriptions for WordNet-id classes) to
``--per_class_output`` (by default beside ``--output``).
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from larq_bnext._cli import define, define_config_flags, no_arguments, user_errors_exit
from larq_bnext.images.files import MAX_IMAGE_PIXELS
from larq_bnext.registry import models_text

FLAGS = flags.FLAGS
#: The flags that name the model and its data: the training run's settings of the same names
#: (:class:`~larq_bnext.training.RunConfig`'s fields), with its defaults.
RUN_CONFIG_FLAGS = (
    "model",
    "stage_channels",
    "stem_stride",
    "dataset",
    "data_dir",
    "tfds_manual_dir",
    "image_size",
    "eval_crop_fraction",
    "max_image_pixels",
)


def define_flags(flag_values: flags.FlagValues = FLAGS) -> flags.FlagValues:
    """Define this program's flags on ``flag_values``.

    Called when the module runs as a program, so that importing it (e.g. beside
    :mod:`larq_bnext.train`, which also has ``--model``) claims no global flag names.

    Args:
        flag_values: the absl flag registry to define the flags on.

    Returns:
        ``flag_values``.
    """
    from larq_bnext.training.config import RunConfig

    f = flag_values
    define_config_flags(
        RunConfig,
        f,
        names=RUN_CONFIG_FLAGS,
        helps={
            "model": f"{models_text()}, or custom (--stage_channels).",
            "data_dir": "Image-folder root (with val/) or TFDS data_dir.",
        },
    )
    define(f, "weights", None, "'imagenet', an official .pth checkpoint or Keras weights.")
    define(f, "batch_size", 64, "Batch size.")
    define(f, "output", None, "Write the scores to this JSON file.")
    flags.DEFINE_string(
        "per_class_output",
        None,
        "Write the per-class table (examples, top-1, top-5, most confused class) to this CSV "
        "file. Default: beside --output (scores.json -> scores_per_class.csv), else "
        "per_class_accuracy.csv; 'none': do not write it.",
        flag_values=f,
    )
    return flag_values


def evaluate(
    model_name: str,
    weights: str | None,
    dataset: str = "digits",
    data_dir: str | None = None,
    image_size: int | None = None,
    batch_size: int = 64,
    stage_channels=(16, 32, 64, 128),
    stem_stride: int | None = None,
    crop_fraction: float | None = None,
    tfds_manual_dir: str | None = None,
    per_class_output: str | None = None,
    max_image_pixels=MAX_IMAGE_PIXELS,
) -> dict:
    """Evaluate a BNext model on the evaluation split of a dataset.

    Args:
        model_name: ``"custom"`` or a registry model name (``"tiny"``, ``"bnext18"``, ...).
        weights: ``None``, ``"imagenet"`` or a weights file.
        dataset: ``"digits"``, ``"folder"`` or a TFDS name.
        data_dir: the folder root or TFDS data dir.
        image_size: the model's input side (default 32 for digits, else the model's).
        batch_size: evaluation batch size.
        stage_channels: channels of a custom model.
        stem_stride: stem stride (default 1 for images up to 64 px, else 2).
        crop_fraction: the evaluation transform's crop fraction (default the model's).
        tfds_manual_dir: TFDS manual download directory.
        per_class_output: write the per-class table to this CSV file
            (:func:`larq_bnext.training.reporting.write_per_class_csv`).
        max_image_pixels: skip images whose header gives more pixels (``None`` or 0: no
            limit); PIL's default.

    Returns:
        ``{"top1", "top5", "loss", "examples", "skipped_files", "per_class"}``, where
        ``skipped_files`` names (printably) every file that could not be read, and
        ``per_class`` is the table's summary
        (:func:`larq_bnext.training.reporting.summarize_per_class`) and, with
        ``per_class_output``, its ``path``.
    """
    import numpy as np

    from larq_bnext.models import get_model
    from larq_bnext.training import recipe, reporting
    from larq_bnext.training.data import datasets as data
    from larq_bnext.training.data.skipped import SkipLog

    recipe.model_info(model_name)  # resolves the name: an unknown one fails before the data
    image_size, crop_fraction = recipe.evaluation_input(
        dataset, model_name, image_size, crop_fraction
    )
    kwargs = {}
    if dataset == "folder":
        kwargs["max_image_pixels"] = max_image_pixels
    elif dataset != "digits":
        kwargs["manual_dir"] = tfds_manual_dir
    _, source = data.load_dataset(dataset, data_dir, image_size=image_size, **kwargs)
    common = dict(
        input_shape=(image_size, image_size, 3),
        num_classes=source.num_classes,
        classifier_activation=None,
        stem_stride=stem_stride or recipe.default_stem_stride(image_size),
        weights=weights or None,
    )
    model = get_model(model_name, [int(c) for c in stage_channels], **common)
    skipped = SkipLog("eval", source.num_examples + len(source.skipped), initial=source.skipped)
    ds = data.eval_dataset(
        source, batch_size, image_size, crop_fraction, skipped, max_image_pixels=max_image_pixels
    )
    # One pass gives the scores and the per-class table (the Distiller's test step computes
    # the same loss, top-1 and top-5; tests/training/test_reporting.py checks that they agree).
    labels, top_k, losses = reporting.collect_predictions(model, ds, k=5)
    rows = reporting.per_class_accuracy(labels, top_k, source.class_names)
    summary = reporting.summarize_per_class(rows)
    if per_class_output:
        summary["path"] = reporting.write_per_class_csv(rows, per_class_output)
    return {
        "top1": float(np.mean(top_k[:, 0] == labels)),
        "top5": float(np.mean((top_k == labels[:, None]).any(axis=1))),
        "loss": float(np.mean(losses)),
        "examples": int(len(labels)),
        "skipped_files": skipped.paths,
        "per_class": summary,
    }


def _per_class_path(per_class_output: str | None, output: str | None) -> str | None:
    if per_class_output is not None:
        return None if per_class_output.strip().lower() in ("", "none") else per_class_output
    if output:
        return os.path.splitext(output)[0] + "_per_class.csv"
    return "per_class_accuracy.csv"


def main(argv):
    """absl entry point.

    Args:
        argv: the command line left after absl parsed the flags (must hold no arguments).
    """
    no_arguments(argv)
    with user_errors_exit():
        scores = evaluate(
            FLAGS.model,
            FLAGS.weights,
            FLAGS.dataset,
            FLAGS.data_dir,
            FLAGS.image_size,
            FLAGS.batch_size,
            FLAGS.stage_channels,
            FLAGS.stem_stride,
            FLAGS.eval_crop_fraction,
            FLAGS.tfds_manual_dir,
            _per_class_path(FLAGS.per_class_output, FLAGS.output),
            FLAGS.max_image_pixels,
        )
    print(
        f"top-1 {scores['top1']:.4f}  top-5 {scores['top5']:.4f}  loss {scores['loss']:.4f}  "
        f"({scores['examples']} images, {len(scores['skipped_files'])} unreadable skipped)"
    )
    summary = scores["per_class"]
    worst = ", ".join(f"{name} {top1:.2%}" for name, top1 in summary["worst_classes"][:3])
    print(
        f"per class: mean top-1 {summary['mean_class_top1']:.4f} over "
        f"{summary['classes_evaluated']} classes; weakest: {worst}"
        + (f"; table in {summary['path']}" if "path" in summary else "")
    )
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(scores, f, indent=2)


if __name__ == "__main__":
    define_flags()
    app.run(main)
