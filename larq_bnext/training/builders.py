"""The parts of a training run, each built from a resolved
:class:`~larq_bnext.training.RunConfig`: data, student, teachers, optimizer, callbacks.

:func:`larq_bnext.training.run` calls them in a ``tf.distribute`` strategy's scope (models,
optimizers and metrics must be created there); they are separate so that a script can build
one part and replace another. Every function takes a config already passed through
:func:`larq_bnext.training.recipe.resolve` (no field left ``None`` that has a default).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

import tensorflow as tf
from absl import logging

from larq_bnext.augment.config import AugmentConfig
from larq_bnext.augment.stage import BNextAugmentation
from larq_bnext.keras2 import set_random_seed
from larq_bnext.models.bnext import get_model
from larq_bnext.training.checks import ConfigError
from larq_bnext.training.config import RunConfig
from larq_bnext.training.data import datasets as data
from larq_bnext.training.data.labels import restrict_labels
from larq_bnext.training.data.skipped import SkipLog, SkippedImagesMonitor
from larq_bnext.training.method.callbacks import (
    AssistantCurriculum,
    LearningRateLogger,
    StudentCheckpoint,
    TemperatureScheduler,
)
from larq_bnext.training.method.distiller import Distiller
from larq_bnext.training.method.optimizer import AdamW
from larq_bnext.training.method.schedules import WarmupCosine
from larq_bnext.training.method.teachers import Teacher, default_teachers, imagenet_teacher
from larq_bnext.training.recipe import augment_config, model_recipe
from larq_bnext.training.runtime import distribute
from larq_bnext.training.runtime.checkpoints import ResumableBackup, worker_directory
from larq_bnext.training.runtime.distribute import scaled_learning_rate
from larq_bnext.training.runtime.precision import teacher_policy, teachers_precision
from larq_bnext.training.runtime.sync_batchnorm import convert_to_sync_batchnorm

__all__ = [
    "MODEL_DIRS",
    "RunData",
    "build_datasets",
    "build_student",
    "build_float_teacher",
    "build_teachers",
    "build_optimizer",
    "build_models",
    "build_callbacks",
    "backup_dir",
]

#: The sub-directories of ``output_dir`` of the models a run trains.
MODEL_DIRS = ("teacher", "student", "baseline")


@dataclasses.dataclass(frozen=True)
class RunData:
    """The data of a run, described for the models, the optimizer and the reports.

    Args:
        make_train: ``make_train(initial_epoch, initial_step)`` builds the (distributed)
            training stream from that position on; the stream is a function of the seed,
            epoch and step, so a resumed ``fit`` sees what an uninterrupted one sees.
        eval_ds: the evaluation dataset.
        num_classes: number of classes.
        class_names: class names in label order.
        image_size: side of the images.
        batch_size: the global batch.
        steps_per_epoch: training steps per epoch.
        train_examples: readable training images.
        eval_examples: readable evaluation images.
        skip_logs: the training and evaluation
            :class:`~larq_bnext.training.data.skipped.SkipLog`.
        skipped_json: where the skip logs are written every epoch.
        augment: the training augmentation.
        train_eval: ``eval_train_split``: the training examples with the evaluation transform,
            as ``(true labels, labels trained on)`` datasets (the second ``None`` without
            ``label_noise``); ``None`` otherwise.
        train_stats: ``bn_reestimation``: the training images with the evaluation transform,
            for the BatchNorm statistics; ``None`` otherwise.
    """

    make_train: Callable[[int, int], tf.data.Dataset]
    eval_ds: tf.data.Dataset
    num_classes: int
    class_names: tuple[str, ...]
    image_size: int
    batch_size: int
    steps_per_epoch: int
    train_examples: int
    eval_examples: int
    skip_logs: tuple[SkipLog, SkipLog]
    skipped_json: str
    augment: AugmentConfig
    train_eval: tuple[tf.data.Dataset, tf.data.Dataset | None] | None = None
    train_stats: tf.data.Dataset | None = None


def backup_dir(config: RunConfig, directory: str) -> str:
    """The backup directory of a model's run directory: the same path on every worker.

    Args:
        config: the run's settings.
        directory: the model's run directory (``<output_dir>/<model>``, or a worker's).
    """
    relative = os.path.relpath(directory, worker_directory(config.output_dir))
    return os.path.join(config.output_dir, relative, "backup")


def _any_backup(config: RunConfig) -> bool:
    """Whether a backup of an interrupted run is there (this run resumes)."""
    return any(
        os.path.isdir(os.path.join(config.output_dir, name, "backup", "chief"))
        for name in MODEL_DIRS
    )


def build_datasets(config: RunConfig) -> RunData:
    """Load the dataset of ``config``: the training stream's maker and the evaluation data.

    Args:
        config: the resolved settings.

    Raises:
        ConfigError: a ``batch_size`` larger than the training set.
        larq_bnext.training.data.skipped.TooManySkippedImagesError: more unreadable images than
            ``max_skipped_fraction`` allows.
    """
    augment = augment_config(config)
    kwargs = {}
    if config.dataset == "folder":
        kwargs["verify"] = config.verify_images
        kwargs["max_image_pixels"] = config.max_image_pixels
    elif config.dataset != "digits":
        kwargs["manual_dir"] = config.tfds_manual_dir
    train_src, eval_src = data.load_dataset(
        config.dataset, config.data_dir, image_size=config.image_size, **kwargs
    )
    batch_size = config.batch_size
    clean_train, labelled = train_src, None
    if config.label_fraction < 1 or config.label_noise > 0:
        labelled = restrict_labels(
            train_src, config.label_fraction, config.label_noise, config.seed
        )
        train_src = labelled.source
        clean_train = dataclasses.replace(train_src, labels=labelled.true_labels)
    full_steps = train_src.num_examples // batch_size
    if full_steps < 1:
        raise ConfigError(
            "batch_size",
            f"batch_size={batch_size} is larger than the {train_src.num_examples} training "
            "images: use a smaller batch.",
        )
    steps = min(full_steps, config.steps_per_epoch or full_steps)

    limit = config.max_skipped_fraction
    train_log = SkipLog(
        "train", train_src.num_examples + len(train_src.skipped), limit, train_src.skipped
    )
    eval_log = SkipLog(
        "eval", eval_src.num_examples + len(eval_src.skipped), limit, eval_src.skipped
    )
    skipped_json = os.path.join(worker_directory(config.output_dir), "skipped_images.json")
    if config.backup and os.path.isfile(skipped_json) and _any_backup(config):
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
                augment,
                augment_on_device=config.augment_on_device,
                seed=config.seed + context.input_pipeline_id,
                repeat=True,
                steps_per_epoch=steps * replicas,
                initial_epoch=initial_epoch,
                initial_step=initial_step * replicas,
                skip_log=train_log,
                max_image_pixels=config.max_image_pixels,
            )

        return distribute.distributed_dataset(tf.distribute.get_strategy(), pipeline, batch_size)

    def evaluation(source, skip_log=None):
        """``source`` with the evaluation transform."""
        return data.eval_dataset(
            source,
            batch_size,
            config.image_size,
            config.eval_crop_fraction,
            skip_log=skip_log,
            max_image_pixels=config.max_image_pixels,
            jpeg_dct_scaling=config.jpeg_dct_scaling,
        )

    eval_ds = evaluation(eval_src, eval_log)
    # The training images as evaluated: BatchNorm re-estimation, the train-split scores.
    train_stats = evaluation(train_src) if config.bn_reestimation else None
    train_eval = None
    if config.eval_train_split:
        sources = [clean_train, train_src if config.label_noise > 0 else None]
        train_eval = tuple(None if s is None else evaluation(s) for s in sources)
    skipped = len(train_src.skipped) + len(eval_src.skipped)
    if skipped:
        logging.warning(
            "Skipped %d unreadable image files (listed in metrics.json): %s",
            skipped,
            ", ".join((train_src.skipped + eval_src.skipped)[:5]),
        )
    return RunData(
        make_train=make_train,
        eval_ds=eval_ds,
        num_classes=train_src.num_classes,
        class_names=tuple(train_src.class_names),
        image_size=config.image_size,
        batch_size=batch_size,
        steps_per_epoch=steps,
        train_examples=train_src.num_examples,
        eval_examples=eval_src.num_examples,
        skip_logs=(train_log, eval_log),
        skipped_json=skipped_json,
        augment=augment,
        train_eval=train_eval,
        train_stats=train_stats,
    )


def build_student(config: RunConfig, run_data: RunData, name: str = "student") -> tf.keras.Model:
    """The student of ``config`` (logits output), with ``weights`` loaded.

    Args:
        config: the resolved settings.
        run_data: the run's data (image size, classes).
        name: the model's name.
    """
    size = run_data.image_size
    common = dict(
        input_shape=(size, size, 3),
        num_classes=run_data.num_classes,
        classifier_activation=None,
        elm_attention=config.elm_attention,
        info_recoupling=config.info_recoupling,
        stem_stride=config.stem_stride,
        weights=config.weights,
        name=name,
    )
    model = get_model(config.model, config.stage_channels, **common)
    return convert_to_sync_batchnorm(model) if config.sync_batchnorm else model


def build_float_teacher(run_data: RunData) -> tf.keras.Model:
    """A small float CNN (the digits demo's teacher), outputting logits.

    Args:
        run_data: the run's data (image size, classes).
    """
    layers = tf.keras.layers
    inputs = tf.keras.Input((run_data.image_size, run_data.image_size, 3))
    x = inputs
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)  # few steps: fast statistics
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(run_data.num_classes)(x)
    return tf.keras.Model(inputs, outputs, name="float_teacher")


def build_teachers(config: RunConfig, run_data: RunData) -> tuple[list[Teacher], Teacher | None]:
    """The Keras teachers of ``config.teachers``: ``(assistants, main)`` or ``([], None)``.

    ``"auto"`` is the model's recipe (BNext-T's for a custom width); the digits demo's float
    teacher is trained by the run instead.

    Args:
        config: the resolved settings.
        run_data: the run's data (image size; an ImageNet subset is scored on its classes).
    """
    spec = config.teachers.strip().lower()
    shape = (run_data.image_size,) * 2 + (3,)
    if spec == "none":
        return [], None
    weights = None if config.teacher_weights == "none" else config.teacher_weights
    # An ImageNet subset (class folders named by wnid) is scored on its own classes.
    classes = run_data.class_names
    with teacher_policy(teachers_precision(config)):  # as released: float16 on GPUs
        if spec == "auto":
            if config.dataset == "digits":
                raise ValueError("The digits teacher is trained by the run (build_float_teacher).")
            assistants, main = default_teachers(model_recipe(config.model), shape, weights, classes)
        else:
            names = [n.strip().replace("-", "_") for n in spec.split(",") if n.strip()]
            built = {}
            for n in names:
                if n not in built:
                    built[n] = imagenet_teacher(n, shape, weights, classes)
            assistants, main = [built[n] for n in names[:-1]], built[names[-1]]
    if weights is None:
        logging.warning(
            "teacher_weights=none: the teachers %s are UNTRAINED (random weights). This run "
            "only smoke-tests the recipe; its student learns nothing useful.",
            ",".join(t.name for t in [*assistants, main]),
        )
    return assistants, main


def build_optimizer(config: RunConfig, run_data: RunData, epochs: int) -> AdamW:
    """AdamW with the warm-up cosine schedule of ``config`` (``cosine_to_end``: the cosine
    spans the epochs after the warm-up but the ``cooldown_epochs`` at ``min_lr``; else
    ``epochs`` after it, as the original).

    Args:
        config: the resolved settings.
        run_data: the run's data (global batch, steps per epoch).
        epochs: epochs of the run (the length of the schedule).
    """
    peak = scaled_learning_rate(
        config.lr, run_data.batch_size, config.lr_reference_batch, config.lr_scaling
    )
    warmup = min(config.warmup_epochs, max(epochs - 1, 0))
    # A run too short for its cooldown keeps one epoch of cosine.
    cooldown = min(config.cooldown_epochs or 0, max(epochs - warmup - 1, 0))
    schedule = WarmupCosine(
        steps_per_epoch=run_data.steps_per_epoch,
        epochs=epochs,
        base_lr=peak,
        warmup_epochs=warmup,
        cosine_epochs=max(epochs - warmup - cooldown, 1) if config.cosine_to_end else None,
        warmup_lr=config.warmup_lr,
        min_lr=config.min_lr,
        per_step=config.lr_per_step,
    )
    return AdamW(
        learning_rate=schedule,
        weight_decay=config.weight_decay,
        conv_weight_decay=config.conv_weight_decay,
    )


def build_models(
    config: RunConfig,
    run_data: RunData,
    teacher: Teacher | None = None,
    assistants=(),
    with_student: bool = True,
    name: str = "student",
) -> Distiller:
    """The :class:`~larq_bnext.Distiller` of a student (or the float teacher) and teachers.

    Args:
        config: the resolved settings.
        run_data: the run's data.
        teacher: main teacher or ``None``.
        assistants: assistant teachers.
        with_student: ``False`` builds the digits float teacher as the trained model.
        name: name of the trained model.
    """
    # Each model starts from the seed's initialisation whatever ran before it (the digits
    # teacher's training, say): the distilled student and the labels-only baseline start from
    # the same weights, and a model's start does not hang on how many random ops came first.
    set_random_seed(config.seed)
    model = build_student(config, run_data, name) if with_student else build_float_teacher(run_data)
    augmenter = None
    if config.augment_on_device:
        augmenter = BNextAugmentation(run_data.augment, run_data.num_classes)
    return Distiller(
        model,
        teacher=teacher,
        assistants=assistants,
        clip_norm=config.clip_norm or None,
        weighting=config.distill_weighting,
        augmenter=augmenter,
        augment_seed=config.seed,
    )


def build_callbacks(
    config: RunConfig,
    directory: str,
    epochs: int,
    anneal: bool,
    curriculum: bool,
    skip_logs=(),
    skipped_json: str | None = None,
) -> list[tf.keras.callbacks.Callback]:
    """Temperature, curriculum, lr logging, checkpoints, CSV and TensorBoard callbacks.

    Order matters: the student's weight files are written before the temperatures are
    annealed (they hold the model as validated, as the original's checkpoints do), the loggers
    after the callbacks that add ``temperature``/``lr``/``curriculum_phase`` to the logs, and
    the backup last (it holds the annealed state the next epoch starts from).

    Args:
        config: the resolved settings.
        directory: run directory of this model (checkpoints, ``history.csv``, ``logs/``).
        epochs: epochs of the run.
        anneal: add the temperature annealing (binary students).
        curriculum: add the assistant-teacher curriculum.
        skip_logs: the :class:`larq_bnext.training.data.skipped.SkipLog` s checked after every
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
        callbacks.append(TemperatureScheduler(config.temperature_decay))
    backup = backup_dir(config, directory)
    resuming = config.backup and tf.io.gfile.exists(os.path.join(backup, "chief"))
    callbacks += [
        tf.keras.callbacks.CSVLogger(os.path.join(directory, "history.csv"), append=resuming),
        # Scalars only: the graph of the train step costs a second or two per fit to write.
        tf.keras.callbacks.TensorBoard(
            os.path.join(directory, "logs"), write_graph=False, profile_batch=0
        ),
    ]
    if config.backup:
        # Last: it backs up the weights the callbacks above annealed at the epoch's end.
        callbacks.append(ResumableBackup(backup, config.backup_freq))
    return callbacks
