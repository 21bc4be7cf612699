r"""Loss landscape of a BNext model around its weights: ``python -m larq_bnext.landscape``.

Examples::

    # The demo student (`python -m larq_bnext.train` with no flags) on the digits test set:
    python -m larq_bnext.landscape --weights=runs/demo/student/best.weights.h5 \
        --output=runs/landscape/student.npz

    # Without ELM-Attention, trained by `python -m larq_bnext.train --noelm_attention`:
    python -m larq_bnext.landscape --noelm_attention --weights=runs/no_elm/student/best.weights.h5 \
        --output=runs/landscape/no_elm.npz

    # Both side by side, on shared scales:
    python -m larq_bnext.landscape --compare=runs/landscape/student.npz,runs/landscape/no_elm.npz \
        --compare_names=BNext,"no ELM-Attention" --compare_stem=runs/landscape/comparison

The model is given as to ``python -m larq_bnext.evaluate`` (the same flags, plus the ablation
switches; without ``--weights``, a random initialisation drawn with ``--seed``). The grid
(``--dims``, ``--points``, ``--span``) is evaluated on ``--examples`` examples of the
evaluation split that ``--seed`` picks, along random filter-normalised directions that
``--seed`` draws (see :mod:`larq_bnext.analysis`). Writes ``--output`` (``.npz``, after every
row: a rerun with the same flags continues an interrupted grid) and beside it
``<output>_contour.png`` and ``<output>_surface.png`` (a plane) or ``<output>_line.png`` (a
line).
"""

from __future__ import annotations

import dataclasses
import os

from absl import app, flags

from larq_bnext._cli import define, define_config_flags, no_arguments, user_errors_exit
from larq_bnext.keras2 import set_random_seed
from larq_bnext.registry import IMAGENET_PREPROCESSING

FLAGS = flags.FLAGS

#: The flags that name the model and its data, taken from :mod:`larq_bnext.evaluate`.
EVALUATE_FLAGS = (
    "model",
    "stage_channels",
    "stem_stride",
    "weights",
    "dataset",
    "data_dir",
    "tfds_manual_dir",
    "image_size",
    "eval_crop_fraction",
)


def define_flags(flag_values: flags.FlagValues = FLAGS) -> flags.FlagValues:
    """Define this program's flags on ``flag_values``.

    Called when the module runs as a program, so that importing it claims no global flag
    names (:mod:`larq_bnext.train` and :mod:`larq_bnext.evaluate` have ``--model`` too).

    Args:
        flag_values: the absl flag registry to define the flags on.

    Returns:
        ``flag_values``.
    """
    f = flag_values
    # The model and its data are named as `python -m larq_bnext.evaluate` names them: its own
    # flag definitions, so that the two programs cannot drift apart.
    from larq_bnext import evaluate

    evaluate_flags = evaluate.define_flags(flags.FlagValues())
    for name in EVALUATE_FLAGS:
        flags.DEFINE_flag(evaluate_flags[name], flag_values=f)
    from larq_bnext.training.config import RunConfig

    define_config_flags(RunConfig, f, names=("elm_attention", "info_recoupling"))
    flags.DEFINE_integer(
        "examples",
        1000,
        "Evaluation examples per grid point, picked by --seed from the evaluation split "
        "(0: all of it; the digits test set has 360).",
        flag_values=f,
    )
    define(f, "batch_size", 128, "Evaluation batch size.")
    flags.DEFINE_enum("dims", "2", ["1", "2"], "1: a line, 2: a plane.", flag_values=f)
    flags.DEFINE_integer(
        "points", 21, "Grid points per direction (odd: the centre is the model).", flag_values=f
    )
    flags.DEFINE_float(
        "span", 1.0, "The grid covers [-span, span] of each direction.", flag_values=f
    )
    define(f, "seed", 0, "Picks the directions and the evaluation examples.")
    define(
        f,
        "output",
        "landscape.npz",
        "The landscape (.npz, written after every row; an existing one with the same "
        "settings is continued); the figures go beside it.",
    )
    flags.DEFINE_bool(
        "overwrite", False, "Start again even if --output holds a landscape.", flag_values=f
    )
    flags.DEFINE_string(
        "name", None, "The model's name in the figures (default: from the flags).", flag_values=f
    )
    flags.DEFINE_float(
        "max_loss", None, "Draw losses above this value at this value.", flag_values=f
    )
    flags.DEFINE_list(
        "compare",
        None,
        "Landscape .npz files to draw side by side (no evaluation; model flags unused).",
        flag_values=f,
    )
    flags.DEFINE_list(
        "compare_names",
        None,
        "Panel titles of --compare (default: the models' names).",
        flag_values=f,
    )
    flags.DEFINE_string(
        "compare_stem",
        "landscape_comparison",
        "--compare writes <stem>_surface.png and <stem>_contour.png (planes) or "
        "<stem>_line.png (lines).",
        flag_values=f,
    )
    return flag_values


def build_model(
    model_name: str,
    weights: str | None,
    num_classes: int,
    image_size: int,
    stage_channels=(16, 32, 64, 128),
    stem_stride: int | None = None,
    elm_attention: bool = True,
    info_recoupling: bool = True,
    seed: int = 0,
):
    """The BNext to analyse, built once and given its weights, returning logits.

    Args:
        model_name: ``"custom"`` or a registry model name (``"tiny"``, ``"bnext18"``, ...).
        weights: ``None`` (a random initialisation drawn with ``seed``), ``"imagenet"`` or a
            weights file.
        num_classes: the classifier's size (the dataset's class count).
        image_size: the input side.
        stage_channels: channels of a custom model.
        stem_stride: stem stride (default 1 for images up to 64 px, else 2).
        elm_attention: the ELM-Attention switch.
        info_recoupling: the information-recoupling switch.
        seed: seeds the random initialisation.
    """
    from larq_bnext.models import get_model
    from larq_bnext.training.recipe import default_stem_stride

    set_random_seed(seed)
    return get_model(
        model_name,
        [int(c) for c in stage_channels],
        input_shape=(image_size, image_size, 3),
        num_classes=num_classes,
        classifier_activation=None,
        stem_stride=stem_stride or default_stem_stride(image_size),
        elm_attention=elm_attention,
        info_recoupling=info_recoupling,
        weights=weights or None,
    )


def evaluation_data(
    dataset: str,
    data_dir: str | None,
    image_size: int,
    batch_size: int,
    examples: int,
    seed: int,
    crop_fraction: float = IMAGENET_PREPROCESSING.crop_fraction,
    tfds_manual_dir: str | None = None,
):
    """The evaluation split, with ``examples`` of it picked by ``seed`` where it can be cheap.

    Digits and image folders are cut to the picked examples before any image is decoded; a
    TFDS split is streamed and sampled by
    :func:`larq_bnext.analysis.examples.evaluation_batches`.

    Args:
        dataset: ``"digits"``, ``"folder"`` or a TFDS name.
        data_dir: the folder root or TFDS data dir.
        image_size: the model's input side.
        batch_size: the pipeline's batch size.
        examples: how many examples (0: all).
        seed: picks them.
        crop_fraction: the evaluation transform's crop fraction.
        tfds_manual_dir: TFDS manual download directory.

    Returns:
        ``(dataset of batches, examples still to pick from it (None: all), class count)``.
    """
    import numpy as np

    from larq_bnext.analysis.examples import select_indices
    from larq_bnext.training.data import datasets as data

    kwargs = {}
    if dataset not in ("digits", "folder"):
        kwargs["manual_dir"] = tfds_manual_dir
    _, source = data.load_dataset(dataset, data_dir, image_size=image_size, **kwargs)
    left_to_pick = examples or None
    if source.kind in ("array", "path"):
        keep = select_indices(source.num_examples, examples, seed)
        items = source.items[keep] if source.kind == "array" else [source.items[i] for i in keep]
        source = dataclasses.replace(
            source, items=items, labels=np.asarray(source.labels)[keep], num_examples=len(keep)
        )
        left_to_pick = None
    pipeline = data.eval_dataset(source, batch_size, image_size, crop_fraction)
    return pipeline, left_to_pick, source.num_classes


def _default_name() -> str:
    if FLAGS.model.lower() == "custom":
        name = "BNext " + "-".join(str(c) for c in FLAGS.stage_channels)
    else:
        name = FLAGS.model
    switches = [
        s for s, on in (("ELM", FLAGS.elm_attention), ("IR", FLAGS.info_recoupling)) if not on
    ]
    if switches:
        name += " without " + " and ".join(switches)
    return name


def _compare() -> None:
    from larq_bnext.analysis import Landscape, plot_comparison

    landscapes = [Landscape.load(path) for path in FLAGS.compare]
    kinds = ("surface", "contour") if landscapes[0].dims == 2 else ("line",)
    for kind in kinds:
        path = plot_comparison(
            landscapes,
            f"{FLAGS.compare_stem}_{kind}.png",
            kind=kind,
            names=FLAGS.compare_names,
            max_loss=FLAGS.max_loss,
        )
        print(f"wrote {path}")


def main(argv):
    """absl entry point.

    Args:
        argv: the command line left after absl parsed the flags (must hold no arguments).
    """
    no_arguments(argv)
    with user_errors_exit():
        if FLAGS.compare:
            _compare()
            return
        from larq_bnext.analysis import loss_landscape, plot_figures
        from larq_bnext.training.recipe import evaluation_input

        image_size, crop_fraction = evaluation_input(
            FLAGS.dataset, FLAGS.model, FLAGS.image_size, FLAGS.eval_crop_fraction
        )
        pipeline, examples, num_classes = evaluation_data(
            FLAGS.dataset,
            FLAGS.data_dir,
            image_size,
            FLAGS.batch_size,
            FLAGS.examples,
            FLAGS.seed,
            crop_fraction,
            FLAGS.tfds_manual_dir,
        )
        model = build_model(
            FLAGS.model,
            FLAGS.weights,
            num_classes,
            image_size,
            FLAGS.stage_channels,
            FLAGS.stem_stride,
            FLAGS.elm_attention,
            FLAGS.info_recoupling,
            FLAGS.seed,
        )
        landscape = loss_landscape(
            model,
            pipeline,
            dims=int(FLAGS.dims),
            points=FLAGS.points,
            span=FLAGS.span,
            seed=FLAGS.seed,
            examples=examples,
            batch_size=FLAGS.batch_size,
            output=FLAGS.output,
            overwrite=FLAGS.overwrite,
            name=FLAGS.name or _default_name(),
        )
        centre = landscape.centre()
        print(f"centre (the model): loss {centre['loss']:.4f}  top-1 {centre['top1']:.4f}")
        for path in plot_figures(landscape, os.path.splitext(FLAGS.output)[0], FLAGS.max_loss):
            print(f"wrote {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
