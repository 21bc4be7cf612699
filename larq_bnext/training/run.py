"""The whole run of ``python -m larq_bnext.train``: flags -> data -> Distiller -> fit -> artifacts.

The run is split into :func:`build_datasets`, :func:`build_models`,
:func:`build_optimizer` and :func:`build_callbacks` so that a ``tf.distribute`` strategy scope
can wrap model and optimizer construction. The functions read absl's parsed flags, defined
by :mod:`larq_bnext.train`; defaults of unset flags come from :mod:`larq_bnext.training.recipe`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence

import tensorflow as tf
from absl import app, flags, logging

import larq_bnext
from larq_bnext.models.bnext import apply_weights
from larq_bnext.models.layers import binary_conv_layers
from larq_bnext.training import data, distribute
from larq_bnext.training.augmentation import BatchAugmenter
from larq_bnext.training.callbacks import (
    AssistantCurriculum,
    LearningRateLogger,
    StudentCheckpoint,
    TemperatureScheduler,
    anneal_temperatures,
)
from larq_bnext.training.checkpoints import (
    ResumableBackup,
    backup_position,
    remove_backup,
    worker_directory,
)
from larq_bnext.training.cli_checks import check_replicas, check_train_flags
from larq_bnext.training.distiller import Distiller
from larq_bnext.training.distribute import scaled_learning_rate
from larq_bnext.training.optimizer import AdamW
from larq_bnext.training.recipe import (
    augment_config,
    deterministic,
    model_size,
    recipe_batch_size,
    resolved,
    temperature_decay,
)
from larq_bnext.training.reporting import EpochLogger, plot_run_curves, progress_mode
from larq_bnext.training.schedules import WarmupCosine
from larq_bnext.training.skipped import SkipLog, SkippedImagesMonitor
from larq_bnext.training.sync_batchnorm import convert_to_sync_batchnorm
from larq_bnext.training.teachers import Teacher, default_teachers, imagenet_teacher

__all__ = [
    "build_datasets",
    "build_student",
    "build_float_teacher",
    "build_teachers",
    "build_optimizer",
    "build_models",
    "build_callbacks",
    "fit",
    "run",
]


FLAGS = flags.FLAGS


# --------------------------------------------------------------------------- building blocks
def build_datasets():
    """Load the dataset of the flags; returns ``(make_train, eval_ds, info)``.

    ``make_train(initial_epoch, initial_step)`` builds the (distributed) training stream from
    that position on: the stream is a function of the seed, epoch and step, so a resumed
    ``fit`` sees what an uninterrupted one sees. ``info`` holds ``num_classes``,
    ``image_size``, ``steps_per_epoch``, ``train_examples``, ``eval_examples``,
    ``skipped_files``, the skip logs (:class:`larq_bnext.training.skipped.SkipLog`) and the
    sources.
    """
    config = augment_config()
    image_size = config.image_size
    kwargs = {}
    if FLAGS.dataset == "folder":
        kwargs["verify"] = FLAGS.verify_images
        kwargs["max_image_pixels"] = FLAGS.max_image_pixels
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

    limit = FLAGS.max_skipped_fraction
    train_log = SkipLog(
        "train", train_src.num_examples + len(train_src.skipped), limit, train_src.skipped
    )
    eval_log = SkipLog(
        "eval", eval_src.num_examples + len(eval_src.skipped), limit, eval_src.skipped
    )
    skipped_json = os.path.join(worker_directory(FLAGS.output_dir), "skipped_images.json")
    if FLAGS.backup and os.path.isfile(skipped_json) and _any_backup():
        # Resuming: files found unreadable before the kill stay counted.
        with open(skipped_json) as handle:
            known = json.load(handle)
        for log in (train_log, eval_log):
            for path in known.get(log.split, {}).get("paths", []):
                log.add(path)
    for log in (train_log, eval_log):
        log.check()  # the header check alone may already exceed the limit

    def make_train(initial_epoch: int = 0, initial_step: int = 0):
        """The training stream from ``(initial_epoch, initial_step)`` on."""

        def pipeline(per_replica_batch, context):
            # One pipeline per worker, on its own shard, batching for one replica at a time.
            shard = distribute.shard_source(
                train_src, context.num_input_pipelines, context.input_pipeline_id
            )
            # The pipeline feeds its replicas in turn: one step takes `replicas` batches.
            replicas = max(1, context.num_replicas_in_sync // context.num_input_pipelines)
            return data.train_dataset(
                shard,
                per_replica_batch,
                config,
                augment_on_device=FLAGS.augment_on_device,
                seed=FLAGS.seed + context.input_pipeline_id,
                repeat=True,
                steps_per_epoch=steps * replicas,
                initial_epoch=initial_epoch,
                initial_step=initial_step * replicas,
                skip_log=train_log,
                max_image_pixels=FLAGS.max_image_pixels,
            )

        return distribute.distributed_dataset(tf.distribute.get_strategy(), pipeline, batch_size)

    eval_ds = data.eval_dataset(
        eval_src,
        batch_size,
        image_size,
        FLAGS.eval_crop_fraction,
        skip_log=eval_log,
        max_image_pixels=FLAGS.max_image_pixels,
        jpeg_dct_scaling=config.jpeg_dct_scaling,
    )
    skipped = len(train_src.skipped) + len(eval_src.skipped)
    if skipped:
        logging.warning(
            "Skipped %d unreadable image files (listed in metrics.json): %s",
            skipped,
            ", ".join((train_src.skipped + eval_src.skipped)[:5]),
        )
    info = dict(
        num_classes=train_src.num_classes,
        image_size=image_size,
        steps_per_epoch=steps,
        batch_size=batch_size,
        train_examples=train_src.num_examples,
        eval_examples=eval_src.num_examples,
        skipped_files=sorted(train_src.skipped + eval_src.skipped),
        skip_logs=(train_log, eval_log),
        skipped_json=skipped_json,
        make_train=make_train,
        augment=config,
        train_source=train_src,
    )
    return make_train, eval_ds, info


def _any_backup() -> bool:
    """Whether a backup of an interrupted run is there (this run resumes)."""
    return any(
        os.path.isdir(os.path.join(FLAGS.output_dir, name, "backup", "chief"))
        for name in ("teacher", "student", "baseline")
    )


def build_student(info, name: str = "student"):
    """The BNext student of the flags (logits output).

    Args:
        info: the dataset description from :func:`build_datasets` (image size, classes).
        name: the model's name.
    """
    size = model_size()
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
    from larq_bnext.models.bnext18 import is_bnext18

    if is_bnext18(FLAGS.model):
        model = larq_bnext.BNext18(
            input_shape=common["input_shape"],
            num_classes=common["num_classes"],
            classifier_activation=None,
            stem="cifar" if stem_stride == 1 else "imagenet",
            weights=FLAGS.init_weights or None,
            name=name,
        )
        return convert_to_sync_batchnorm(model) if FLAGS.sync_batchnorm else model
    if size is None:
        channels = [int(c) for c in FLAGS.stage_channels]
        model = larq_bnext.BNext(channels, **common)
    else:
        model = larq_bnext.get_model(size, **common)
    if FLAGS.init_weights:
        apply_weights(model, FLAGS.init_weights, size=size)
    if FLAGS.sync_batchnorm:
        model = convert_to_sync_batchnorm(model)
    return model


def build_float_teacher(info):
    """A small float CNN (the digits demo's teacher), outputting logits.

    Args:
        info: the dataset description from :func:`build_datasets` (image size, classes).
    """
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
    spec = FLAGS.teachers.strip().lower()
    shape = (info["image_size"],) * 2 + (3,)
    if spec == "none":
        return [], None
    weights = None if FLAGS.teacher_weights == "none" else FLAGS.teacher_weights
    # An ImageNet subset (class folders named by wnid) is scored on its own classes.
    classes = info["train_source"].class_names
    if spec == "auto":
        if FLAGS.dataset == "digits":
            raise ValueError("The digits teacher is trained by the run (see main()).")
        assistants, main = default_teachers(model_size() or "tiny", shape, weights, classes)
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
        built = {}
        for n in names:
            if n not in built:
                built[n] = imagenet_teacher(n, shape, weights, classes)
        assistants, main = [built[n] for n in names[:-1]], built[names[-1]]
    if weights is None:
        logging.warning(
            "--teacher_weights=none: the teachers %s are UNTRAINED (random weights). This run "
            "only smoke-tests the recipe; its student learns nothing useful.",
            ",".join(t.name for t in [*assistants, main]),
        )
    return assistants, main


def build_optimizer(info, epochs: int, base_lr: float | None = None):
    """AdamW with the warm-up cosine schedule of the flags.

    Args:
        info: the dataset description from :func:`build_datasets` (steps per epoch).
        epochs: epochs of the run (the length of the schedule).
        base_lr: peak learning rate; defaults to ``--lr``.
    """
    reference = FLAGS.lr_reference_batch or recipe_batch_size()
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
    # Each model starts from the seed's initialisation whatever ran before it (the digits
    # teacher's training, say): the distilled student and the labels-only baseline start from
    # the same weights, and a model's start does not hang on how many random ops came first.
    tf.keras.utils.set_random_seed(FLAGS.seed)
    model = build_student(info, name) if with_student else build_float_teacher(info)
    augmenter = None
    if FLAGS.augment_on_device:
        augmenter = BatchAugmenter(info["augment"], info["num_classes"], seed=FLAGS.seed)
    return Distiller(
        model,
        teacher=teacher,
        assistants=assistants,
        clip_norm=FLAGS.clip_norm or None,
        weighting=FLAGS.distill_weighting,
        augmenter=augmenter,
        augment_seed=FLAGS.seed,
    )


def build_callbacks(
    directory: str,
    epochs: int,
    anneal: bool,
    curriculum: bool,
    skip_logs=(),
    skipped_json: str | None = None,
):
    """Temperature, curriculum, lr logging, checkpoints, CSV and TensorBoard callbacks.

    Order matters: the student's weight files are written before the temperatures are
    annealed (they hold the model as validated, as the original's checkpoints do), the loggers
    after the callbacks that add ``temperature``/``lr``/``curriculum_phase`` to the logs, and
    the backup last (it holds the annealed state the next epoch starts from).

    Args:
        directory: run directory of this model (checkpoints, ``history.csv``, ``logs/``).
        epochs: epochs of the run.
        anneal: add the temperature annealing (binary students).
        curriculum: add the assistant-teacher curriculum.
        skip_logs: the :class:`larq_bnext.training.skipped.SkipLog` s checked after every
            batch.
        skipped_json: where they are written every epoch.
    """
    callbacks = []
    if curriculum:
        callbacks.append(AssistantCurriculum(epochs))
    callbacks += [
        LearningRateLogger(),
        SkippedImagesMonitor(skip_logs, skipped_json),
        StudentCheckpoint(directory, monitor="val_top1"),
    ]
    if anneal:
        callbacks.append(TemperatureScheduler(temperature_decay(epochs)))
    backup_dir = _backup_dir(directory)
    resuming = FLAGS.backup and tf.io.gfile.exists(os.path.join(backup_dir, "chief"))
    callbacks += [
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
    relative = os.path.relpath(directory, worker_directory(FLAGS.output_dir))
    return os.path.join(FLAGS.output_dir, relative, "backup")


def fit(distiller, eval_ds, info, directory, epochs, anneal, title):
    """Train ``distiller`` for ``epochs`` and evaluate its final student on ``eval_ds``.

    The training stream starts where the run resumes: the position of the model's backup
    (:func:`larq_bnext.training.checkpoints.backup_position`) or ``--initial_epoch``.

    Args:
        distiller: the :class:`~larq_bnext.training.distiller.Distiller` to train.
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
        directory,
        epochs,
        anneal=anneal,
        curriculum=len(distiller.assistants) > 1,
        skip_logs=info.get("skip_logs", ()),
        skipped_json=info.get("skipped_json"),
    )
    position = (FLAGS.initial_epoch, 0)
    if FLAGS.backup:
        freq = int(FLAGS.backup_freq) if FLAGS.backup_freq.isdigit() else FLAGS.backup_freq
        resumed = backup_position(_backup_dir(directory), info["steps_per_epoch"], freq)
        if resumed != (0, 0):
            position = resumed
    if anneal and FLAGS.initial_epoch > 0:
        # --init_weights=.../last.weights.h5 holds the temperatures epoch initial_epoch - 1 was
        # validated with; the next epoch starts from them annealed once. (A backup restored at
        # the start of fit replaces them with its own.)
        anneal_temperatures(distiller, temperature_decay(epochs))
    train_ds = info["make_train"](*position)
    checkpoint = next(c for c in callbacks if type(c).__name__ == "StudentCheckpoint")
    # Off a terminal (a log file, CI, Slurm) one line per epoch instead of the progress bar.
    verbose, line_per_epoch = progress_mode(FLAGS.verbose)
    if line_per_epoch:
        callbacks.append(EpochLogger(epochs))
    start = time.time()
    history = distiller.fit(
        train_ds,
        epochs=epochs,
        initial_epoch=FLAGS.initial_epoch,
        steps_per_epoch=info["steps_per_epoch"],
        validation_data=eval_ds,
        callbacks=callbacks,
        verbose=verbose,
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
        temps = [float(layer.temperature.numpy()) for layer in binary_conv_layers(distiller)]
        result["final_temperature"] = max(temps) if temps else None
        result["exactly_binary_weights"] = bool(temps) and max(temps) < 1e-7
    result["curves"] = plot_run_curves(directory, result["history"], title)
    print(f"{title}: test top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f}", flush=True)
    return result


def _write_flags(directory: str, flag_names) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "flags.txt"), "w") as f:
        f.write(FLAGS.flags_into_string())
    with open(os.path.join(directory, "flags.json"), "w") as f:
        json.dump({name: FLAGS[name].value for name in flag_names}, f, indent=2, default=str)


def run(flag_names: Sequence[str] = ()) -> dict:
    """The whole run of the parsed flags; returns (and writes) the metrics.

    The flags are checked first (:func:`larq_bnext.training.cli_checks.check_train_flags`),
    then the strategy is created (multi-worker needs that) and the batch checked against its
    replicas, then the mixed-precision policy; datasets, models, teachers, optimizers and
    metrics are all built in the strategy's scope.

    Args:
        flag_names: the flags whose values go to ``flags.json`` (those of the program).
    """
    check_train_flags(FLAGS)  # bad flags fail here, before any data is read
    if deterministic() and not distribute.one_op_at_a_time():
        logging.warning(
            "--deterministic: TensorFlow already runs ops concurrently (inter-op threads "
            "cannot change once it started), so results may differ in the last bits between "
            "runs; run the command in a fresh process for bitwise reproducibility."
        )
    strategy = distribute.create_strategy(
        FLAGS.strategy, FLAGS.devices, FLAGS.tpu, FLAGS.collective
    )
    check_replicas(resolved("batch_size"), strategy.num_replicas_in_sync)
    distribute.set_mixed_precision(FLAGS.mixed_precision)
    if deterministic():
        distribute.enable_determinism(FLAGS.seed)
    else:
        tf.keras.utils.set_random_seed(FLAGS.seed)
    if strategy.num_replicas_in_sync > 1:
        print(f"{type(strategy).__name__}: {strategy.num_replicas_in_sync} replicas", flush=True)
    try:
        with strategy.scope():
            metrics = _run_in_scope(flag_names)
    finally:
        distribute.set_mixed_precision("float32")
    if FLAGS.backup and distribute.is_chief(strategy):
        for model_dir in ("teacher", "student", "baseline"):
            remove_backup(os.path.join(FLAGS.output_dir, model_dir, "backup"))
    return metrics


def _run_in_scope(flag_names) -> dict:
    # Other workers of a cluster write their files (logs, metrics) in a private sub-directory.
    out = worker_directory(FLAGS.output_dir)
    _write_flags(out, flag_names)
    start = time.time()
    make_train, eval_ds, info = build_datasets()
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
            eval_ds,
            info,
            os.path.join(out, "teacher"),
            FLAGS.teacher_epochs,
            anneal=False,
            title="float teacher (labels)",
        )
        FLAGS.initial_epoch = saved_initial
        teacher = Teacher(trainer.student, name="float_teacher")
    else:
        assistants, teacher = build_teachers(info)
        if teacher is not None:
            metrics["teachers"] = {
                "assistants": [t.name for t in assistants],
                "main": teacher.name,
                "weights": FLAGS.teacher_weights,
            }

    distiller = build_models(info, teacher=teacher, assistants=assistants)
    distiller.compile(optimizer=build_optimizer(info, epochs), jit_compile=FLAGS.jit_compile)
    if FLAGS.initial_epoch:
        # Resuming: the schedule continues where it was (the temperatures come with the
        # weights, the curriculum phase from the epoch index).
        distiller.optimizer.iterations.assign(FLAGS.initial_epoch * info["steps_per_epoch"])
    title = "binary student (distilled)" if teacher is not None else "binary student (labels)"
    metrics["student"] = fit(
        distiller, eval_ds, info, os.path.join(out, "student"), epochs, True, title
    )
    metrics["student"]["distilled"] = teacher is not None

    if resolved("baseline") and teacher is not None:
        baseline = build_models(info, name="baseline")
        baseline.compile(optimizer=build_optimizer(info, epochs), jit_compile=FLAGS.jit_compile)
        metrics["baseline"] = fit(
            baseline,
            eval_ds,
            info,
            os.path.join(out, "baseline"),
            epochs,
            True,
            "binary student without distillation (labels)",
        )
    train_log, eval_log = info["skip_logs"]
    metrics["skipped_files"] = sorted(set(train_log.paths) | set(eval_log.paths))
    metrics["skipped"] = {log.split: log.to_dict() for log in info["skip_logs"]}
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
