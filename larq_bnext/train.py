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
top-1/5, lr, temperature, alpha) and ``history.csv``; ``metrics.json`` with the final
results and ``flags.txt``/``flags.json`` with the flags used.

The run is split into :func:`build_datasets`, :func:`build_models`,
:func:`build_optimizer` and :func:`build_callbacks` so that a ``tf.distribute`` strategy scope
can wrap model and optimizer construction.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags, logging

FLAGS = flags.FLAGS
_FLAGS_BEFORE = set(FLAGS)

# --------------------------------------------------------------------------- model
flags.DEFINE_string(
    "model", "custom", "BNext size: tiny, small, middle, large (or T/S/M/L), or custom."
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
flags.DEFINE_bool("verify_images", True, "Folder datasets: skip and count unreadable files.")
# --------------------------------------------------------------------------- recipe
flags.DEFINE_integer("epochs", None, "Epochs; default 30 on digits, 512 otherwise.")
flags.DEFINE_integer("batch_size", None, "Global batch; default 64 on digits, 512 (L: 128).")
flags.DEFINE_integer("steps_per_epoch", None, "Limit the steps per epoch (for smoke runs).")
flags.DEFINE_integer(
    "initial_epoch",
    0,
    "Resume the student at this epoch (with --init_weights=.../last.weights.h5).",
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
flags.DEFINE_enum("alpha_weighting", "per_sample", ["per_sample", "batch_mean"], "See Distiller.")
flags.DEFINE_string(
    "teachers",
    "auto",
    "auto (digits: train a float CNN; ImageNet: the original's per-size teachers), none, or "
    "a comma list of Keras teachers, assistants first and the main teacher last, e.g. "
    "efficientnet_b0,efficientnet_b2.",
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
flags.DEFINE_bool("flip", None, "Horizontal flips; default on (off for digits).")
flags.DEFINE_bool("randaugment", None, "RandAugment; default on (off for digits).")
flags.DEFINE_integer("randaugment_ops", 2, "RandAugment ops per image.")
flags.DEFINE_float("randaugment_rate", 0.5, "Probability of each RandAugment op.")
flags.DEFINE_float("randaugment_magnitude", 0.7, "RandAugment magnitude on [0, 1] (timm m7).")
flags.DEFINE_float("randaugment_magnitude_stddev", 0.05, "Magnitude noise (timm mstd0.5).")
flags.DEFINE_float("mixup", 0.0, "Mixup alpha (0: off, as in BNext).")
flags.DEFINE_float("cutmix", 0.0, "CutMix alpha (0: off, as in BNext).")
flags.DEFINE_float("random_erasing", 0.0, "Random erasing probability (0: off, as in BNext).")
flags.DEFINE_bool(
    "augment_on_device", False, "Run flip/RandAugment/normalise/mix in the train step."
)
# --------------------------------------------------------------------------- run
flags.DEFINE_string("output_dir", "runs/demo", "Run directory.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_integer("verbose", 1, "Keras verbosity (1: progress bar, 2: one line per epoch).")
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
    "Deterministic TF ops and input pipeline: the same command gives bitwise the same run on "
    "the same machine. Unset: on for the embedded digits (the demo), off elsewhere (a "
    "deterministic tf.data pipeline runs random augmentation one image at a time).",
)

_OWN_FLAGS = sorted(set(FLAGS) - _FLAGS_BEFORE)

#: Defaults that depend on the dataset (flags left unset take them).
PRESETS = {
    "digits": dict(
        image_size=32,
        epochs=30,
        batch_size=64,
        crop_scale_min=0.5,
        flip=False,
        randaugment=False,
        baseline=True,
    ),
    "imagenet": dict(
        image_size=224,
        epochs=512,
        batch_size=512,
        crop_scale_min=0.08,
        flip=True,
        randaugment=True,
        baseline=False,
    ),
}


def resolved(name: str):
    """The value of flag ``name``, or its dataset preset when it was left unset.

    Args:
        name: a flag name with an entry in :data:`PRESETS`.
    """
    value = getattr(FLAGS, name)
    if value is not None:
        return value
    preset = PRESETS["digits" if FLAGS.dataset == "digits" else "imagenet"]
    if name == "batch_size" and FLAGS.dataset != "digits" and _size() == "large":
        return 128
    return preset[name]


def _size() -> str | None:
    from larq_bnext.models import canonical_size

    if FLAGS.model.lower() == "custom":
        return None
    return canonical_size(FLAGS.model)


def deterministic() -> bool:
    """``--deterministic``, or, left unset, whether the run is the embedded digits demo."""
    if FLAGS.deterministic is None:
        return FLAGS.dataset == "digits"
    return bool(FLAGS.deterministic)


def temperature_decay(epochs: int) -> float:
    """``--temperature_decay`` or, unset, ``min(0.9, (1e-7)^(1 / (0.8 * epochs)))``.

    0.9 (the original) for runs of 160+ epochs; faster for short runs, so that the kernels
    are exactly ``sign(w)`` (temperature below 1e-7) for the last fifth of the epochs.

    Args:
        epochs: the run's epochs.
    """
    if FLAGS.temperature_decay is not None:
        return FLAGS.temperature_decay
    return min(0.9, 1e-7 ** (1.0 / max(1.0, 0.8 * epochs)))


def augment_config():
    """The :class:`~larq_bnext.augmentation.AugmentConfig` of the flags."""
    from larq_bnext.augmentation import AugmentConfig

    ratio = tuple(float(r) for r in FLAGS.crop_ratio)
    if len(ratio) != 2:
        raise app.UsageError("--crop_ratio needs two values: min,max.")
    return AugmentConfig(
        image_size=resolved("image_size"),
        crop_scale=(resolved("crop_scale_min"), FLAGS.crop_scale_max),
        crop_ratio=ratio,
        flip=resolved("flip"),
        randaugment=resolved("randaugment"),
        randaugment_ops=FLAGS.randaugment_ops,
        randaugment_rate=FLAGS.randaugment_rate,
        randaugment_magnitude=FLAGS.randaugment_magnitude,
        randaugment_magnitude_stddev=FLAGS.randaugment_magnitude_stddev,
        mixup_alpha=FLAGS.mixup,
        cutmix_alpha=FLAGS.cutmix,
        random_erasing=FLAGS.random_erasing,
    )


# --------------------------------------------------------------------------- building blocks
def build_datasets():
    """Load the dataset of the flags; returns ``(train_ds, eval_ds, info)``.

    ``info`` holds ``num_classes``, ``image_size``, ``steps_per_epoch``, ``train_examples``,
    ``eval_examples``, ``skipped_files`` and the sources themselves.
    """
    import tensorflow as tf

    from larq_bnext import data

    config = augment_config()
    image_size = config.image_size
    kwargs = {}
    if FLAGS.dataset == "folder":
        kwargs["verify"] = FLAGS.verify_images
    elif FLAGS.dataset != "digits":
        kwargs["manual_dir"] = FLAGS.tfds_manual_dir
    train_src, eval_src = data.load_dataset(
        FLAGS.dataset, FLAGS.data_dir, image_size=image_size, **kwargs
    )
    batch_size = resolved("batch_size")
    full_steps = train_src.num_examples // batch_size
    if full_steps < 1:
        raise app.UsageError(
            f"--batch_size={batch_size} is larger than the {train_src.num_examples} training "
            "images: use a smaller batch."
        )
    steps = min(full_steps, FLAGS.steps_per_epoch or full_steps)
    from larq_bnext import distribute

    def pipeline(per_replica_batch, context):
        # One pipeline per worker, on its own shard, batching for one replica at a time.
        shard = distribute.shard_source(
            train_src, context.num_input_pipelines, context.input_pipeline_id
        )
        return data.train_dataset(
            shard,
            per_replica_batch,
            config,
            augment_on_device=FLAGS.augment_on_device,
            seed=FLAGS.seed + context.input_pipeline_id,
            repeat=True,
        )

    train_ds = distribute.distributed_dataset(tf.distribute.get_strategy(), pipeline, batch_size)
    eval_ds = data.eval_dataset(eval_src, batch_size, image_size, FLAGS.eval_crop_fraction)
    skipped = len(train_src.skipped) + len(eval_src.skipped)
    if skipped:
        logging.warning(
            "Skipped %d unreadable image files (listed in metrics.json): %s",
            skipped,
            (train_src.skipped + eval_src.skipped)[:5],
        )
    info = dict(
        num_classes=train_src.num_classes,
        image_size=image_size,
        steps_per_epoch=steps,
        batch_size=batch_size,
        train_examples=train_src.num_examples,
        eval_examples=eval_src.num_examples,
        skipped_files=sorted(train_src.skipped + eval_src.skipped),
        augment=config,
        train_source=train_src,
    )
    return train_ds, eval_ds, info


def build_student(info, name: str = "student"):
    """The BNext student of the flags (logits output).

    Args:
        info: the dataset description from :func:`build_datasets` (image size, classes).
        name: the model's name.
    """
    import larq_bnext

    size = _size()
    image_size = info["image_size"]
    stem_stride = FLAGS.stem_stride or (1 if image_size <= 64 else 2)
    common = dict(
        input_shape=(image_size, image_size, 3),
        num_classes=info["num_classes"],
        classifier_activation=None,
        elm_attention=FLAGS.elm_attention,
        info_recoupling=FLAGS.info_recoupling,
        stem_stride=stem_stride,
        name=name,
    )
    if size is None:
        channels = [int(c) for c in FLAGS.stage_channels]
        model = larq_bnext.BNext(channels, **common)
    else:
        model = larq_bnext.get_model(size, **common)
    if FLAGS.init_weights:
        from larq_bnext.pretrained import load_weights

        load_weights(model, FLAGS.init_weights, size=size)
    if FLAGS.sync_batchnorm:
        from larq_bnext.distribute import convert_to_sync_batchnorm

        model = convert_to_sync_batchnorm(model)
    return model


def build_float_teacher(info):
    """A small float CNN (the digits demo's teacher), outputting logits.

    Args:
        info: the dataset description from :func:`build_datasets` (image size, classes).
    """
    import tensorflow as tf

    layers = tf.keras.layers
    image_size = info["image_size"]
    inputs = tf.keras.Input((image_size, image_size, 3))
    x = inputs
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)  # few steps: fast statistics
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(info["num_classes"])(x)
    return tf.keras.Model(inputs, outputs, name="float_teacher")


def build_teachers(info):
    """The teachers of ``--teachers``: ``(assistants, main)`` or ``([], None)``.

    Args:
        info: the dataset description from :func:`build_datasets` (the image size).
    """
    from larq_bnext.distillation import default_teachers, imagenet_teacher

    spec = FLAGS.teachers.strip().lower()
    shape = (info["image_size"],) * 2 + (3,)
    if spec == "none":
        return [], None
    if spec == "auto":
        if FLAGS.dataset == "digits":
            raise ValueError("The digits teacher is trained by the run (see main()).")
        return default_teachers(_size() or "tiny", input_shape=shape)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    built = {}
    for n in names:
        if n not in built:
            built[n] = imagenet_teacher(n, input_shape=shape)
    return [built[n] for n in names[:-1]], built[names[-1]]


def _recipe_batch_size() -> int:
    """The global batch of the recipe (512; 128 for BNext-L; 64 for digits)."""
    if FLAGS.dataset == "digits":
        return PRESETS["digits"]["batch_size"]
    return 128 if _size() == "large" else PRESETS["imagenet"]["batch_size"]


def build_optimizer(info, epochs: int, base_lr: float | None = None):
    """AdamW with the warm-up cosine schedule of the flags.

    Args:
        info: the dataset description from :func:`build_datasets` (steps per epoch).
        epochs: epochs of the run (the length of the schedule).
        base_lr: peak learning rate; defaults to ``--lr``.
    """
    from larq_bnext.distribute import scaled_learning_rate
    from larq_bnext.training import AdamW, WarmupCosine

    reference = FLAGS.lr_reference_batch or _recipe_batch_size()
    peak = scaled_learning_rate(
        base_lr or FLAGS.lr, info["batch_size"], reference, FLAGS.lr_scaling
    )
    schedule = WarmupCosine(
        steps_per_epoch=info["steps_per_epoch"],
        epochs=epochs,
        base_lr=peak,
        warmup_epochs=min(FLAGS.warmup_epochs, max(epochs - 1, 0)),
        warmup_lr=FLAGS.warmup_lr,
        min_lr=FLAGS.min_lr,
        per_step=FLAGS.lr_per_step,
    )
    return AdamW(
        learning_rate=schedule,
        weight_decay=FLAGS.weight_decay,
        conv_weight_decay=FLAGS.conv_weight_decay,
    )


def build_models(info, teacher=None, assistants=(), with_student: bool = True, name="student"):
    """The :class:`~larq_bnext.Distiller` of a student (or the float teacher) and teachers.

    Args:
        info: from :func:`build_datasets`.
        teacher: main teacher or ``None``.
        assistants: assistant teachers.
        with_student: ``False`` builds the digits float teacher as the trained model.
        name: name of the trained model.
    """
    from larq_bnext.augmentation import BatchAugmenter
    from larq_bnext.distillation import Distiller

    model = build_student(info, name) if with_student else build_float_teacher(info)
    augmenter = None
    if FLAGS.augment_on_device:
        augmenter = BatchAugmenter(info["augment"], info["num_classes"], seed=FLAGS.seed)
    return Distiller(
        model,
        teacher=teacher,
        assistants=assistants,
        clip_norm=FLAGS.clip_norm or None,
        weighting=FLAGS.alpha_weighting,
        augmenter=augmenter,
    )


def build_callbacks(directory: str, epochs: int, anneal: bool, curriculum: bool):
    """Temperature, curriculum, lr logging, checkpoints, CSV and TensorBoard callbacks.

    Order matters: the callbacks that add ``temperature``/``lr``/``curriculum_phase`` to the
    logs and anneal the weights run before the checkpoint and the loggers.

    Args:
        directory: run directory of this model (checkpoints, ``history.csv``, ``logs/``).
        epochs: epochs of the run.
        anneal: add the temperature annealing (binary students).
        curriculum: add the assistant-teacher curriculum.
    """
    import tensorflow as tf

    from larq_bnext.distillation import AssistantCurriculum
    from larq_bnext.training import LearningRateLogger, StudentCheckpoint, TemperatureScheduler

    callbacks = []
    if curriculum:
        callbacks.append(AssistantCurriculum(epochs))
    if anneal:
        callbacks.append(TemperatureScheduler(temperature_decay(epochs)))
    from larq_bnext.distribute import ResumableBackup

    backup_dir = _backup_dir(directory)
    resuming = FLAGS.backup and tf.io.gfile.exists(os.path.join(backup_dir, "chief"))
    callbacks += [
        LearningRateLogger(),
        StudentCheckpoint(directory, monitor="val_top1"),
        tf.keras.callbacks.CSVLogger(os.path.join(directory, "history.csv"), append=resuming),
        tf.keras.callbacks.TensorBoard(os.path.join(directory, "logs"), profile_batch=0),
    ]
    if FLAGS.backup:
        # Last: it backs up the weights the callbacks above annealed at the epoch's end.
        freq = FLAGS.backup_freq
        callbacks.append(ResumableBackup(backup_dir, int(freq) if freq.isdigit() else freq))
    return callbacks


def _backup_dir(directory: str) -> str:
    """The backup directory of a model's run directory: the same path on every worker."""
    from larq_bnext.distribute import worker_directory

    relative = os.path.relpath(directory, worker_directory(FLAGS.output_dir))
    return os.path.join(FLAGS.output_dir, relative, "backup")


def fit(distiller, train_ds, eval_ds, info, directory, epochs, anneal, title):
    """Train ``distiller`` for ``epochs`` and evaluate its final student on ``eval_ds``.

    Args:
        distiller: the :class:`~larq_bnext.distillation.Distiller` to train.
        train_ds: the training dataset.
        eval_ds: the evaluation dataset.
        info: the dataset description from :func:`build_datasets` (steps per epoch).
        directory: run directory of this model.
        epochs: epochs to train.
        anneal: anneal the temperatures (binary students).
        title: heading printed before the run.
    """
    print(f"\n== {title} ==", flush=True)
    os.makedirs(directory, exist_ok=True)
    callbacks = build_callbacks(
        directory, epochs, anneal=anneal, curriculum=len(distiller.assistants) > 1
    )
    checkpoint = next(c for c in callbacks if type(c).__name__ == "StudentCheckpoint")
    start = time.time()
    history = distiller.fit(
        train_ds,
        epochs=epochs,
        initial_epoch=FLAGS.initial_epoch,
        steps_per_epoch=info["steps_per_epoch"],
        validation_data=eval_ds,
        callbacks=callbacks,
        verbose=FLAGS.verbose,
    )
    seconds = time.time() - start
    scores = distiller.evaluate(eval_ds, return_dict=True, verbose=0)
    result = {
        "top1": float(scores["top1"]),
        "top5": float(scores["top5"]),
        "loss": float(scores["loss"]),
        "best_val_top1": checkpoint.best,
        "best_epoch": None if checkpoint.best_epoch is None else checkpoint.best_epoch + 1,
        "train_seconds": round(seconds, 1),
        "epochs": epochs,
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
    }
    if anneal:
        from larq_bnext.training import binary_conv_layers

        temps = [float(layer.temperature.numpy()) for layer in binary_conv_layers(distiller)]
        result["final_temperature"] = max(temps) if temps else None
        result["exactly_binary_weights"] = bool(temps) and max(temps) < 1e-7
    print(f"{title}: test top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f}", flush=True)
    return result


def _write_flags(directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "flags.txt"), "w") as f:
        f.write(FLAGS.flags_into_string())
    with open(os.path.join(directory, "flags.json"), "w") as f:
        json.dump({name: FLAGS[name].value for name in _OWN_FLAGS}, f, indent=2, default=str)


def run() -> dict:
    """The whole run of the parsed flags; returns (and writes) the metrics.

    The strategy is created first (multi-worker needs that), then the mixed-precision policy;
    datasets, models, teachers, optimizers and metrics are all built in the strategy's scope.
    """
    import tensorflow as tf

    from larq_bnext import distribute

    strategy = distribute.create_strategy(
        FLAGS.strategy, FLAGS.devices, FLAGS.tpu, FLAGS.collective
    )
    distribute.set_mixed_precision(FLAGS.mixed_precision)
    if deterministic():
        distribute.enable_determinism(FLAGS.seed)
    else:
        tf.keras.utils.set_random_seed(FLAGS.seed)
    if strategy.num_replicas_in_sync > 1:
        print(f"{type(strategy).__name__}: {strategy.num_replicas_in_sync} replicas", flush=True)
    try:
        with strategy.scope():
            metrics = _run_in_scope()
    finally:
        distribute.set_mixed_precision("float32")
    if FLAGS.backup and distribute.is_chief(strategy):
        for model_dir in ("teacher", "student", "baseline"):
            distribute.remove_backup(os.path.join(FLAGS.output_dir, model_dir, "backup"))
    return metrics


def _run_in_scope() -> dict:
    from larq_bnext import distribute

    # Other workers of a cluster write their files (logs, metrics) in a private sub-directory.
    out = distribute.worker_directory(FLAGS.output_dir)
    _write_flags(out)
    start = time.time()
    train_ds, eval_ds, info = build_datasets()
    epochs = resolved("epochs")
    metrics = {
        "dataset": FLAGS.dataset,
        "model": FLAGS.model,
        "train_examples": info["train_examples"],
        "eval_examples": info["eval_examples"],
        "num_classes": info["num_classes"],
        "skipped_files": info["skipped_files"],
        "temperature_decay": temperature_decay(epochs),
    }
    assistants, teacher = [], None
    if FLAGS.dataset == "digits" and FLAGS.teachers.strip().lower() == "auto":
        trainer = build_models(info, with_student=False)
        trainer.compile(
            optimizer=build_optimizer(info, FLAGS.teacher_epochs), jit_compile=FLAGS.jit_compile
        )
        saved_initial = FLAGS.initial_epoch
        FLAGS.initial_epoch = 0
        metrics["teacher"] = fit(
            trainer,
            train_ds,
            eval_ds,
            info,
            os.path.join(out, "teacher"),
            FLAGS.teacher_epochs,
            anneal=False,
            title="float teacher (labels)",
        )
        FLAGS.initial_epoch = saved_initial
        from larq_bnext.distillation import Teacher

        teacher = Teacher(trainer.student, name="float_teacher")
    else:
        assistants, teacher = build_teachers(info)
        if teacher is not None:
            metrics["teachers"] = {
                "assistants": [t.name for t in assistants],
                "main": teacher.name,
            }

    distiller = build_models(info, teacher=teacher, assistants=assistants)
    distiller.compile(optimizer=build_optimizer(info, epochs), jit_compile=FLAGS.jit_compile)
    if FLAGS.initial_epoch:
        # Resuming: the schedule continues where it was (the temperatures come with the
        # weights, the curriculum phase from the epoch index).
        distiller.optimizer.iterations.assign(FLAGS.initial_epoch * info["steps_per_epoch"])
    title = "binary student (distilled)" if teacher is not None else "binary student (labels)"
    metrics["student"] = fit(
        distiller, train_ds, eval_ds, info, os.path.join(out, "student"), epochs, True, title
    )
    metrics["student"]["distilled"] = teacher is not None

    if resolved("baseline") and teacher is not None:
        baseline = build_models(info, name="baseline")
        baseline.compile(optimizer=build_optimizer(info, epochs), jit_compile=FLAGS.jit_compile)
        metrics["baseline"] = fit(
            baseline,
            train_ds,
            eval_ds,
            info,
            os.path.join(out, "baseline"),
            epochs,
            True,
            "binary student without distillation (labels)",
        )
    metrics["wall_seconds"] = round(time.time() - start, 1)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print("\nTest top-1:")
    if "teacher" in metrics:
        print(f"  float teacher:                {metrics['teacher']['top1']:.4f}")
    kind = "distilled:  " if teacher is not None else "labels only:"
    print(f"  binary student, {kind}  {metrics['student']['top1']:.4f}")
    if "baseline" in metrics:
        print(f"  binary student, undistilled:  {metrics['baseline']['top1']:.4f}")
    print(f"Wall time {metrics['wall_seconds']:.0f} s; results in {out}/metrics.json")
    return metrics


def main(argv):
    """absl entry point.

    Args:
        argv: the command line left after absl parsed the flags (must hold no arguments).
    """
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        run()
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
