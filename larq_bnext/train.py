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

This module holds the flags; the run itself is :func:`larq_bnext.training.run.run`, and the
defaults of unset flags (per dataset, and per published model from :mod:`larq_bnext.registry`)
are :mod:`larq_bnext.training.recipe`.
"""

from __future__ import annotations

from absl import app, flags

from larq_bnext._cli import no_arguments, user_errors_exit
from larq_bnext.images.files import MAX_IMAGE_PIXELS

FLAGS = flags.FLAGS
_FLAGS_BEFORE = set(FLAGS)

# --------------------------------------------------------------------------- model
flags.DEFINE_string(
    "model", "custom", "BNext size: tiny, small, middle, large (or T/S/M/L), bnext18, or custom."
)
flags.DEFINE_list(
    "stage_channels",
    ["16", "32", "64", "128"],
    "Stage channels of --model=custom (the stem's first, then each block's).",
)
flags.DEFINE_integer("stem_stride", None, "Stem stride; default 1 for images <= 64 px, else 2.")
flags.DEFINE_string(
    "init_weights", None, "Start the student from these weights ('imagenet' or a file)."
)
flags.DEFINE_bool("elm_attention", True, "ELM-Attention (the paper's ablation switch).")
flags.DEFINE_bool("info_recoupling", True, "Information recoupling (ablation switch).")
# --------------------------------------------------------------------------- data
flags.DEFINE_string(
    "dataset", "digits", "digits (embedded), folder (--data_dir tree) or a TFDS name."
)
flags.DEFINE_string("data_dir", None, "Image-folder root (train/, val/) or TFDS data_dir.")
flags.DEFINE_string("tfds_manual_dir", None, "TFDS manual download dir (imagenet2012 tars).")
flags.DEFINE_integer("image_size", None, "Training/eval crop side; default 32 digits, else 224.")
flags.DEFINE_float("eval_crop_fraction", 0.95, "Eval: centre crop / resized shorter side.")
flags.DEFINE_bool(
    "verify_images", True, "Folder datasets: check every file's header before training."
)
flags.DEFINE_float(
    "max_skipped_fraction",
    0.01,
    "Stop with an error when more than this fraction of a split's images cannot be read "
    "(they are skipped, counted and listed in metrics.json and skipped_images.json).",
)
flags.DEFINE_integer(
    "max_image_pixels",
    MAX_IMAGE_PIXELS,
    "Skip images whose header gives more pixels (width x height), before decoding them "
    "(PIL's Image.MAX_IMAGE_PIXELS); 0: no limit.",
    lower_bound=0,
)
# --------------------------------------------------------------------------- recipe
flags.DEFINE_integer("epochs", None, "Epochs; default 30 on digits, 512 otherwise.")
flags.DEFINE_integer("batch_size", None, "Global batch; default 64 on digits, 512 (L: 128).")
flags.DEFINE_integer("steps_per_epoch", None, "Limit the steps per epoch (for smoke runs).")
flags.DEFINE_integer(
    "initial_epoch",
    0,
    "Resume the student at this epoch (with --init_weights=.../last.weights.h5, whose "
    "temperatures are then annealed once, as the epoch after it starts; --backup resumes by "
    "itself).",
)
flags.DEFINE_float("lr", 1e-3, "Peak learning rate (AdamW).")
flags.DEFINE_float("weight_decay", 1e-3, "AdamW decay of all but 4-D conv kernels.")
flags.DEFINE_float("conv_weight_decay", 1e-8, "AdamW decay of the 4-D conv kernels.")
flags.DEFINE_float("warmup_epochs", 5, "Linear warm-up epochs.")
flags.DEFINE_float("warmup_lr", 1e-5, "Learning rate at the start of the warm-up.")
flags.DEFINE_float("min_lr", 1e-7, "Floor of the cosine.")
flags.DEFINE_bool("lr_per_step", False, "Update the LR every step (default: per epoch).")
flags.DEFINE_float("clip_norm", 5.0, "Clip gradients to this global norm (0: off).")
flags.DEFINE_float(
    "temperature_decay",
    None,
    "Temperature factor per epoch; default 0.9, faster for short runs so that weights are "
    "exactly binary (T < 1e-7) after 80 % of the epochs.",
)
flags.DEFINE_enum(
    "distill_weighting",
    "per_sample",
    ["per_sample", "batch_mean", "constant"],
    "Teacher weights: per_sample (the paper), batch_mean (the released runs), constant (0.5).",
)
flags.DEFINE_string(
    "teachers",
    "auto",
    "auto (digits: train a float CNN; ImageNet: the original's per-size teachers), none, or "
    "a comma list of Keras teachers, assistants first and the main teacher last, e.g. "
    "efficientnet_b0,efficientnet_b2.",
)
flags.DEFINE_enum(
    "teacher_weights",
    "imagenet",
    ["imagenet", "none"],
    "Weights of the Keras ImageNet teachers: imagenet (downloaded once into ~/.keras/models) or "
    "none: the same architectures UNTRAINED (random weights), to smoke-test the recipe offline "
    "(the student then learns nothing useful).",
)
flags.DEFINE_integer("teacher_epochs", 30, "Epochs of the float teacher on digits.")
flags.DEFINE_bool(
    "baseline", None, "Also train the student without distillation (default: on for digits)."
)
# --------------------------------------------------------------------------- augmentation
flags.DEFINE_float(
    "crop_scale_min", None, "Random resized crop min area; default 0.08 (digits 0.5)."
)
flags.DEFINE_float("crop_scale_max", 1.0, "Random resized crop max area.")
flags.DEFINE_list("crop_ratio", ["0.75", "1.3333333"], "Random resized crop ratio range.")
flags.DEFINE_bool(
    "jpeg_dct_scaling",
    True,
    "Decode JPEG crops of at least 2x the image size at 1/2, 1/4 or 1/8 scale (libjpeg's "
    "DCT scaling, faster; evaluation crops of at least 4x at a scale that keeps 2x); "
    "--nojpeg_dct_scaling decodes at full size like the original.",
)
flags.DEFINE_bool("flip", None, "Horizontal flips; default on (off for digits).")
flags.DEFINE_bool("randaugment", None, "RandAugment; default on (off for digits).")
flags.DEFINE_string(
    "randaugment_policy",
    "rand-m7-mstd0.5-inc1",
    "timm RandAugment string (BNext's: rand-m7-mstd0.5-inc1), or keras-cv for keras-cv's.",
)
flags.DEFINE_integer("randaugment_ops", 2, "keras-cv RandAugment: ops per image.")
flags.DEFINE_float("randaugment_rate", 0.5, "keras-cv RandAugment: probability of each op.")
flags.DEFINE_float("randaugment_magnitude", 0.7, "keras-cv RandAugment: magnitude on [0, 1].")
flags.DEFINE_float("randaugment_magnitude_stddev", 0.05, "keras-cv RandAugment: noise.")
flags.DEFINE_float("mixup", 0.0, "Mixup alpha (0: off, as in BNext).")
flags.DEFINE_float("cutmix", 0.0, "CutMix alpha (0: off, as in BNext).")
flags.DEFINE_float("random_erasing", 0.0, "Random erasing probability (0: off, as in BNext).")
flags.DEFINE_bool(
    "augment_on_device",
    False,
    "Run RandAugment/normalise/mix in the train step (the flip stays in the crop).",
)
# --------------------------------------------------------------------------- run
flags.DEFINE_string("output_dir", "runs/demo", "Run directory.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_integer(
    "verbose",
    1,
    "Keras verbosity: 1 is a progress bar on a terminal and one line per epoch elsewhere "
    "(logs, CI, Slurm); 2 is Keras' own line per epoch; 0 is silent.",
)
# --------------------------------------------------------------------------- scale-out
flags.DEFINE_enum(
    "strategy",
    "auto",
    ["auto", "mirrored", "multi_worker", "tpu", "one_device", "default"],
    "tf.distribute strategy; auto: tpu if a TPU is configured, multi_worker if TF_CONFIG names "
    "a cluster, mirrored if several GPUs are visible, else default.",
)
flags.DEFINE_list("devices", None, "Devices of --strategy=mirrored/one_device (/gpu:0,/gpu:1).")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address ('local' on a TPU VM).")
flags.DEFINE_enum("collective", "auto", ["auto", "ring", "nccl"], "multi_worker all-reduce.")
flags.DEFINE_bool("sync_batchnorm", False, "BatchNorm statistics over the global batch.")
flags.DEFINE_enum(
    "mixed_precision",
    "float32",
    ["float32", "mixed_float16", "mixed_bfloat16"],
    "Compute dtype policy (quantizers and loss stay float32; float16 uses loss scaling).",
)
flags.DEFINE_bool("jit_compile", False, "XLA-compile the train step.")
flags.DEFINE_enum(
    "lr_scaling",
    "none",
    ["none", "linear", "sqrt"],
    "Scale --lr by (global batch / --lr_reference_batch) or its square root; none: as written.",
)
flags.DEFINE_integer(
    "lr_reference_batch", None, "Global batch --lr is meant for; default the recipe's batch."
)
flags.DEFINE_bool(
    "backup",
    True,
    "Back up the whole training state every epoch (<output_dir>/<model>/backup); the same "
    "command run again after a kill resumes there. Deleted when the run completes.",
)
flags.DEFINE_string("backup_freq", "epoch", "'epoch' or a number of steps between backups.")
flags.DEFINE_bool(
    "deterministic",
    None,
    "Deterministic TF ops (run one at a time) and input pipeline: the same command gives "
    "bitwise the same run on the same machine. Unset: on for the embedded digits (the demo), "
    "off elsewhere (a deterministic tf.data pipeline runs random augmentation one image at a "
    "time).",
)

_OWN_FLAGS = sorted(set(FLAGS) - _FLAGS_BEFORE)


def main(argv):
    """absl entry point.

    Args:
        argv: the command line left after absl parsed the flags (must hold no arguments).
    """
    no_arguments(argv)
    from larq_bnext.training.run import run

    with user_errors_exit():
        run(_OWN_FLAGS)


if __name__ == "__main__":
    app.run(main)
