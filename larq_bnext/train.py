r"""Train BNext the paper's way: ``python -m larq_bnext.train [--flags]``.

With no flags it runs the embedded default on the CPU in a few minutes: scikit-learn's
handwritten digits at 32x32, a small float CNN teacher trained first, then a narrow binary
BNext student (stage channels 16-32-64-128, stem stride 1) distilled from it, and the
same student trained on the labels alone; it prints the test top-1 of all three.

ImageNet, BNext-T with the original's recipe (see ``experiments/`` for all sizes)::

    python -m larq_bnext.train --model=tiny --dataset=folder --data_dir=/data/imagenet \
        --epochs=512 --batch_size=512 --output_dir=runs/bnext_tiny

Every choice of the recipe is a flag (``--helpfull`` lists them). Outputs in
``--output_dir``: per trained model (``teacher/``, ``student/``, ``baseline/``) the best and
last weights (``best.weights.h5``, ``last.weights.h5``), TensorBoard logs (``logs/``: loss,
top-1/5, lr, temperature, alpha) and ``history.csv``; a picture of each model's curves per epoch
(``student_curves.png``, ...: loss, top-1, learning rate, temperature, teacher weights);
``metrics.json`` with the final results and ``flags.txt``/``flags.json`` with the flags used.

This module holds the flags and maps them one to one onto the fields of a
:class:`larq_bnext.training.RunConfig` (of the same names, with its defaults); the run itself is
:func:`larq_bnext.training.run`, callable from Python with the same settings. The defaults of
unset flags (per dataset, and per model from :mod:`larq_bnext.registry`) are
:mod:`larq_bnext.training.recipe`.
"""

from __future__ import annotations

import dataclasses

from absl import app, flags

from larq_bnext._cli import no_arguments, user_errors_exit
from larq_bnext.registry import models_text
from larq_bnext.training.checks import COLLECTIVES, TEACHER_WEIGHTS, ConfigError
from larq_bnext.training.config import RunConfig
from larq_bnext.training.distiller import WEIGHTINGS
from larq_bnext.training.distribute import LR_SCALING_RULES, PRECISION_POLICIES, STRATEGY_KINDS
from larq_bnext.training.precision import TEACHER_PRECISIONS

FLAGS = flags.FLAGS
_FLAGS_BEFORE = set(FLAGS)
#: The defaults of the flags: those of :class:`~larq_bnext.training.RunConfig`'s fields.
DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}


def _listed(name: str):
    value = DEFAULTS[name]
    return None if value is None else [str(v) for v in value]


# --------------------------------------------------------------------------- model
flags.DEFINE_string("model", DEFAULTS["model"], f"{models_text()}, or custom (--stage_channels).")
flags.DEFINE_list(
    "stage_channels",
    _listed("stage_channels"),
    "Stage channels of --model=custom (the stem's first, then each block's).",
)
flags.DEFINE_integer("stem_stride", None, "Stem stride; default 1 for images <= 64 px, else 2.")
flags.DEFINE_string(
    "init_weights", None, "Start the student from these weights ('imagenet' or a file)."
)
flags.DEFINE_bool(
    "elm_attention", DEFAULTS["elm_attention"], "ELM-Attention (the paper's ablation switch)."
)
flags.DEFINE_bool(
    "info_recoupling", DEFAULTS["info_recoupling"], "Information recoupling (ablation switch)."
)
# --------------------------------------------------------------------------- data
flags.DEFINE_string(
    "dataset", DEFAULTS["dataset"], "digits (embedded), folder (--data_dir tree) or a TFDS name."
)
flags.DEFINE_string("data_dir", None, "Image-folder root (train/, val/) or TFDS data_dir.")
flags.DEFINE_string("tfds_manual_dir", None, "TFDS manual download dir (imagenet2012 tars).")
flags.DEFINE_integer(
    "image_size", None, "Training/eval crop side; default 32 on digits, else the model's."
)
flags.DEFINE_float(
    "eval_crop_fraction",
    None,
    "Eval: centre crop / resized shorter side; default the model's (registry preprocessing).",
)
flags.DEFINE_bool(
    "verify_images",
    DEFAULTS["verify_images"],
    "Folder datasets: check every file's header before training.",
)
flags.DEFINE_float(
    "max_skipped_fraction",
    DEFAULTS["max_skipped_fraction"],
    "Stop with an error when more than this fraction of a split's images cannot be read "
    "(they are skipped, counted and listed in metrics.json and skipped_images.json).",
)
flags.DEFINE_integer(
    "max_image_pixels",
    DEFAULTS["max_image_pixels"],
    "Skip images whose header gives more pixels (width x height), before decoding them "
    "(PIL's Image.MAX_IMAGE_PIXELS); 0: no limit.",
)
# --------------------------------------------------------------------------- label ablations
flags.DEFINE_float(
    "label_fraction",
    DEFAULTS["label_fraction"],
    "Train on this seeded (--seed), class-stratified fraction of the labelled training "
    "examples (digits or folder datasets); 1: all.",
)
flags.DEFINE_float(
    "label_noise",
    DEFAULTS["label_noise"],
    "Replace this fraction of the training labels with a seeded wrong class; 0: none.",
)
flags.DEFINE_bool(
    "eval_train_split",
    DEFAULTS["eval_train_split"],
    "Also score each model on its training examples (evaluation transform, true labels): "
    "train_split_top1 in metrics.json, for the train-validation gap.",
)
# --------------------------------------------------------------------------- recipe
flags.DEFINE_integer("epochs", None, "Epochs; default 30 on digits, else the model's recipe.")
flags.DEFINE_integer(
    "batch_size", None, "Global batch; default 64 on digits, else the model's recipe."
)
flags.DEFINE_integer("steps_per_epoch", None, "Limit the steps per epoch (for smoke runs).")
flags.DEFINE_integer(
    "initial_epoch",
    DEFAULTS["initial_epoch"],
    "Resume the student at this epoch (with --init_weights=.../last.weights.h5, whose "
    "temperatures are then annealed once, as the epoch after it starts; --backup resumes by "
    "itself).",
)
flags.DEFINE_float("lr", None, "Peak learning rate (AdamW); default the model's recipe.")
flags.DEFINE_float(
    "weight_decay", None, "AdamW decay of all but 4-D parameters; default the recipe's."
)
flags.DEFINE_float(
    "conv_weight_decay", None, "AdamW decay of the 4-D parameters; default the recipe's."
)
flags.DEFINE_float("warmup_epochs", None, "Linear warm-up epochs; default the recipe's.")
flags.DEFINE_float(
    "warmup_lr", None, "Learning rate at the start of the warm-up; default the recipe's."
)
flags.DEFINE_float("min_lr", None, "Floor of the cosine; default the recipe's.")
flags.DEFINE_bool(
    "lr_per_step", DEFAULTS["lr_per_step"], "Update the LR every step (default: per epoch)."
)
flags.DEFINE_bool(
    "cosine_to_end",
    None,
    "End the cosine with the run: it spans the epochs after the warm-up (else it lasts "
    "--epochs after it, the original's t_initial=epochs, which a 30-epoch run stops at a tenth "
    "of the peak). Default: on for digits, off elsewhere.",
)
flags.DEFINE_integer(
    "cooldown_epochs",
    None,
    "With --cosine_to_end: the last epochs of the run at --min_lr (timm's cooldown); the "
    "cosine ends this many epochs earlier. Default: 5 for digits, 0 elsewhere.",
)
flags.DEFINE_float(
    "clip_norm", None, "Clip gradients to this global norm (0: off); default the recipe's."
)
flags.DEFINE_float(
    "temperature_decay",
    None,
    "Temperature factor per epoch; default the recipe's, faster for short runs so that "
    "weights are exactly binary (T below the model's sign threshold) after 80 % of the epochs.",
)
flags.DEFINE_enum(
    "distill_weighting",
    DEFAULTS["distill_weighting"],
    list(WEIGHTINGS),
    "Teacher weights: per_sample (the paper), batch_mean (the released runs), constant (0.5).",
)
flags.DEFINE_string(
    "teachers",
    DEFAULTS["teachers"],
    "auto (digits: train a float CNN; ImageNet: the model's recipe teachers), none, or "
    "a comma list of Keras teachers, assistants first and the main teacher last, e.g. "
    "efficientnet_b0,efficientnet_b2.",
)
flags.DEFINE_enum(
    "teacher_weights",
    DEFAULTS["teacher_weights"],
    list(TEACHER_WEIGHTS),
    "Weights of the Keras ImageNet teachers: imagenet (downloaded once into ~/.keras/models) or "
    "none: the same architectures UNTRAINED (random weights), to smoke-test the recipe offline "
    "(the student then learns nothing useful).",
)
flags.DEFINE_integer(
    "teacher_epochs", DEFAULTS["teacher_epochs"], "Epochs of the float teacher on digits."
)
flags.DEFINE_bool(
    "baseline", None, "Also train the student without distillation (default: on for digits)."
)
flags.DEFINE_bool(
    "bn_reestimation",
    None,
    "Before each validation, set the binary student's BatchNorm moving statistics to those of "
    "the training images (evaluation transform) under its current weights. Default: on for "
    "digits, off elsewhere (the original).",
)
# --------------------------------------------------------------------------- augmentation
flags.DEFINE_float(
    "crop_scale_min", None, "Random resized crop min area; default 0.08 (digits 0.5)."
)
flags.DEFINE_float("crop_scale_max", DEFAULTS["crop_scale_max"], "Random resized crop max area.")
flags.DEFINE_list("crop_ratio", _listed("crop_ratio"), "Random resized crop ratio range.")
flags.DEFINE_bool(
    "jpeg_dct_scaling",
    DEFAULTS["jpeg_dct_scaling"],
    "Decode JPEG crops of at least 2x the image size at 1/2, 1/4 or 1/8 scale (libjpeg's "
    "DCT scaling, faster; evaluation crops of at least 4x at a scale that keeps 2x); "
    "--nojpeg_dct_scaling decodes at full size like the original.",
)
flags.DEFINE_bool("flip", None, "Horizontal flips; default on (off for digits).")
flags.DEFINE_bool("randaugment", None, "RandAugment; default on (off for digits).")
flags.DEFINE_string(
    "randaugment_policy",
    DEFAULTS["randaugment_policy"],
    "timm RandAugment string (BNext's is the default), or keras-cv for keras-cv's.",
)
flags.DEFINE_integer(
    "randaugment_ops", DEFAULTS["randaugment_ops"], "keras-cv RandAugment: ops per image."
)
flags.DEFINE_float(
    "randaugment_rate",
    DEFAULTS["randaugment_rate"],
    "keras-cv RandAugment: probability of each op.",
)
flags.DEFINE_float(
    "randaugment_magnitude",
    DEFAULTS["randaugment_magnitude"],
    "keras-cv RandAugment: magnitude on [0, 1].",
)
flags.DEFINE_float(
    "randaugment_magnitude_stddev",
    DEFAULTS["randaugment_magnitude_stddev"],
    "keras-cv RandAugment: noise.",
)
flags.DEFINE_float("mixup", DEFAULTS["mixup"], "Mixup alpha (0: off, as in BNext).")
flags.DEFINE_float("cutmix", DEFAULTS["cutmix"], "CutMix alpha (0: off, as in BNext).")
flags.DEFINE_float(
    "random_erasing",
    DEFAULTS["random_erasing"],
    "Random erasing probability (0: off, as in BNext).",
)
flags.DEFINE_bool(
    "augment_on_device",
    DEFAULTS["augment_on_device"],
    "Run RandAugment/normalise/mix in the train step (the flip stays in the crop).",
)
# --------------------------------------------------------------------------- run
flags.DEFINE_string("output_dir", DEFAULTS["output_dir"], "Run directory.")
flags.DEFINE_integer("seed", DEFAULTS["seed"], "Random seed.")
flags.DEFINE_integer(
    "verbose",
    DEFAULTS["verbose"],
    "Keras verbosity: 1 is a progress bar on a terminal and one line per epoch elsewhere "
    "(logs, CI, Slurm); 2 is Keras' own line per epoch; 0 is silent.",
)
# --------------------------------------------------------------------------- scale-out
flags.DEFINE_enum(
    "strategy",
    DEFAULTS["strategy"],
    list(STRATEGY_KINDS),
    "tf.distribute strategy; auto: tpu if a TPU is configured, multi_worker if TF_CONFIG names "
    "a cluster, mirrored if several GPUs are visible, else default.",
)
flags.DEFINE_list("devices", None, "Devices of --strategy=mirrored/one_device (/gpu:0,/gpu:1).")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address ('local' on a TPU VM).")
flags.DEFINE_enum(
    "collective", DEFAULTS["collective"], list(COLLECTIVES), "multi_worker all-reduce."
)
flags.DEFINE_bool(
    "sync_batchnorm", DEFAULTS["sync_batchnorm"], "BatchNorm statistics over the global batch."
)
flags.DEFINE_enum(
    "mixed_precision",
    DEFAULTS["mixed_precision"],
    list(PRECISION_POLICIES),
    "Compute dtype policy (quantizers and loss stay float32; float16 uses loss scaling).",
)
flags.DEFINE_enum(
    "teacher_precision",
    DEFAULTS["teacher_precision"],
    list(TEACHER_PRECISIONS),
    "The frozen teachers' policy: auto = float16 on GPUs as the released runs (the student keeps "
    "--mixed_precision), the student's policy on CPUs; or a policy of --mixed_precision.",
)
flags.DEFINE_bool("jit_compile", DEFAULTS["jit_compile"], "XLA-compile the train step.")
flags.DEFINE_enum(
    "lr_scaling",
    DEFAULTS["lr_scaling"],
    list(LR_SCALING_RULES),
    "Scale --lr by (global batch / --lr_reference_batch) or its square root; none: as written.",
)
flags.DEFINE_integer(
    "lr_reference_batch", None, "Global batch --lr is meant for; default the recipe's batch."
)
flags.DEFINE_bool(
    "backup",
    DEFAULTS["backup"],
    "Back up the whole training state every epoch (<output_dir>/<model>/backup); the same "
    "command run again after a kill resumes there. Deleted when the run completes.",
)
flags.DEFINE_string(
    "backup_freq", str(DEFAULTS["backup_freq"]), "'epoch' or a number of steps between backups."
)
flags.DEFINE_bool(
    "deterministic",
    None,
    "Deterministic TF ops (run one at a time) and input pipeline: the same command gives "
    "bitwise the same run on the same machine. Unset: on for the embedded digits (the demo), "
    "off elsewhere (a deterministic tf.data pipeline runs random augmentation one image at a "
    "time).",
)

#: The flags of this program: the fields of :class:`~larq_bnext.training.RunConfig`.
FLAG_NAMES = sorted(set(FLAGS) - _FLAGS_BEFORE)


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> RunConfig:
    """The :class:`~larq_bnext.training.RunConfig` of parsed flags: each flag to its field.

    Args:
        flag_values: the parsed flags (absl's global ``FLAGS`` by default).

    Raises:
        ConfigError: for a value that cannot work (the message names the flag).
    """
    return RunConfig(**{name: flag_values[name].value for name in FLAG_NAMES})


def main(argv):
    """absl entry point.

    Args:
        argv: the command line left after absl parsed the flags (must hold no arguments).
    """
    no_arguments(argv)
    from larq_bnext.training import run

    with user_errors_exit():
        try:
            run(config_from_flags())
        except ConfigError as error:  # name the flag as it is spelled on the command line
            raise ConfigError(error.field, f"--{error}") from None


if __name__ == "__main__":
    app.run(main)
