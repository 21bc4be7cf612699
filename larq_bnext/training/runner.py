"""A whole training run from Python: :func:`run` a :class:`~larq_bnext.training.RunConfig`,
get a :class:`~larq_bnext.training.RunResult`. ``python -m larq_bnext.train`` is this function
behind flags.

The run: check the paths and the output folder, create the ``tf.distribute`` strategy, set
the precision policy and seeds, build the data, teachers and students in the strategy's scope
(:mod:`larq_bnext.training.builders`), fit them (resuming from a backup when there is one),
write ``metrics.json``, ``flags.json`` and ``flags.txt`` and print the summary (unless
``verbose=0``). It leaves the process as it found it: the caller's precision policy and op
determinism are set back, and the threads are left alone (TensorFlow cannot change them once
it started; ``python -m larq_bnext.train``, whose process it is, runs a deterministic run one
op at a time: :func:`larq_bnext.training.runtime.distribute.one_op_at_a_time`). So runs can follow
one another in one process, each as it would run alone (see the examples).

Examples:
    >>> import dataclasses, tempfile
    >>> from larq_bnext.training import RunConfig, run
    >>> config = RunConfig(
    ...     dataset="digits", image_size=8, stage_channels=(8, 16), epochs=1, steps_per_epoch=1,
    ...     batch_size=16, teachers="none", baseline=False, backup=False, verbose=0,
    ...     output_dir=tempfile.mkdtemp())
    >>> result = run(config)
    >>> result.student.epochs, result.student.distilled, result.teacher, result.config.lr
    (1, False, None, 0.001)
    >>> 0.0 <= result.student.top1 <= 1.0 and 0.0 <= result.student.train_top1 <= 1.0
    True
    >>> [os.path.basename(p) for p in (result.metrics_json, result.student.best_weights)]
    ['metrics.json', 'best.weights.h5']
    >>> again = run(dataclasses.replace(config, output_dir=tempfile.mkdtemp()))
    >>> again.student.top1 == result.student.top1, again.student.history == result.student.history
    (True, True)
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import tensorflow as tf
from absl import logging

from larq_bnext.keras2 import set_random_seed
from larq_bnext.models.layers import binary_conv_layers
from larq_bnext.training.builders import (
    MODEL_DIRS,
    RunData,
    backup_dir,
    build_callbacks,
    build_datasets,
    build_models,
    build_optimizer,
    build_teachers,
)
from larq_bnext.training.checks import ConfigError, check_paths, check_replicas
from larq_bnext.training.config import RunConfig
from larq_bnext.training.method.batchnorm_stats import BatchNormReestimation
from larq_bnext.training.method.callbacks import anneal_temperatures
from larq_bnext.training.method.teachers import Teacher
from larq_bnext.training.recipe import resolve
from larq_bnext.training.reporting import EpochLogger, plot_run_curves, progress_mode
from larq_bnext.training.results import ModelResult, RunResult, TeacherSet
from larq_bnext.training.runtime import distribute
from larq_bnext.training.runtime.checkpoints import (
    backup_position,
    remove_backup,
    worker_directory,
)
from larq_bnext.training.runtime.precision import teachers_precision

__all__ = ["binarization", "fit", "run"]


def binarization(model: tf.keras.Model) -> tuple[float | None, bool]:
    """``(largest kernel temperature, exactly binary)`` of a model's binary convolutions.

    Exactly binary: every kernel temperature is below its layer's sign threshold (the
    model's :attr:`larq_bnext.registry.Architecture.sign_threshold`: 1e-7 in BNext-T/S/M/L,
    1e-5 in BNext-18), so every kernel is ``sign(w)``.

    Args:
        model: a model (or :class:`~larq_bnext.Distiller`) with binary convolutions.
    """
    layers = binary_conv_layers(model)
    temperatures = [float(layer.temperature.numpy()) for layer in layers]
    binary = bool(layers) and all(
        t < layer.kernel_quantizer.threshold for t, layer in zip(temperatures, layers, strict=True)
    )
    return (max(temperatures) if temperatures else None), binary


def fit(
    config: RunConfig,
    distiller,
    run_data: RunData,
    directory: str,
    epochs: int,
    anneal: bool,
    title: str,
    initial_epoch: int | None = None,
) -> ModelResult:
    """Train ``distiller`` for ``epochs`` and evaluate its final student.

    The training stream starts where the run resumes: the position of the model's backup
    (:func:`larq_bnext.training.runtime.checkpoints.backup_position`) or ``initial_epoch``.

    Args:
        config: the resolved settings.
        distiller: the compiled :class:`~larq_bnext.training.method.distiller.Distiller`.
        run_data: the run's data.
        directory: run directory of this model.
        epochs: epochs to train.
        anneal: anneal the temperatures (binary students).
        title: heading printed before the run.
        initial_epoch: the epoch to start at; ``None``: ``config.initial_epoch``.
    """
    initial = config.initial_epoch if initial_epoch is None else initial_epoch
    _say(config, f"\n== {title} ==")
    os.makedirs(directory, exist_ok=True)
    callbacks = build_callbacks(
        config,
        directory,
        epochs,
        anneal=anneal,
        curriculum=len(distiller.assistants) > 1,
        skip_logs=run_data.skip_logs,
        skipped_json=run_data.skipped_json,
    )
    position = (initial, 0)
    if config.backup:
        resumed = backup_position(
            backup_dir(config, directory), run_data.steps_per_epoch, config.backup_freq
        )
        if resumed != (0, 0):
            position = resumed
    if anneal and initial > 0:
        # weights=.../last.weights.h5 holds the temperatures epoch initial - 1 was
        # validated with; the next epoch starts from them annealed once. (A backup restored at
        # the start of fit replaces them with its own.)
        anneal_temperatures(distiller, config.temperature_decay)
    train_ds = run_data.make_train(*position)
    if anneal and run_data.train_stats is not None:
        # First: fit calls on_test_begin before validating, where the statistics are needed.
        callbacks.insert(0, BatchNormReestimation(distiller.student, run_data.train_stats))
    checkpoint = next(c for c in callbacks if type(c).__name__ == "StudentCheckpoint")
    # Off a terminal (a log file, CI, Slurm) one line per epoch instead of the progress bar.
    verbose, line_per_epoch = progress_mode(config.verbose)
    if line_per_epoch:
        callbacks.append(EpochLogger(epochs))
    start = time.time()
    history = distiller.fit(
        train_ds,
        epochs=epochs,
        initial_epoch=initial,
        steps_per_epoch=run_data.steps_per_epoch,
        validation_data=run_data.eval_ds,
        callbacks=callbacks,
        verbose=verbose,
    )
    seconds = time.time() - start
    scores = distiller.evaluate(run_data.eval_ds, return_dict=True, verbose=0)
    train_split = [None, None]  # eval_train_split: top-1 on the true and the given labels
    for i, ds in enumerate(run_data.train_eval or ()):
        if ds is not None:
            train_split[i] = float(distiller.evaluate(ds, return_dict=True, verbose=0)["top1"])
    logs = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    temperature = binary = None
    if anneal:
        temperature, binary = binarization(distiller)
    result = ModelResult(
        top1=float(scores["top1"]),
        top5=float(scores["top5"]),
        loss=float(scores["loss"]),
        best_val_top1=checkpoint.best,
        best_epoch=None if checkpoint.best_epoch is None else checkpoint.best_epoch + 1,
        train_top1=logs["top1"][-1] if logs.get("top1") else None,
        train_seconds=round(seconds, 1),
        epochs=epochs,
        history=logs,
        directory=directory,
        best_weights=checkpoint.best_path,
        last_weights=checkpoint.last_path,
        curves=plot_run_curves(directory, logs, title),
        final_temperature=temperature,
        exactly_binary_weights=binary,
        train_split_top1=train_split[0],
        train_split_top1_given_labels=train_split[1],
    )
    _say(config, f"{title}: test top-1 {result.top1:.4f}, top-5 {result.top5:.4f}")
    return result


def _prepare_output_dir(out: str) -> None:
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            "output_dir",
            f"output_dir={out} cannot be created ({error.strerror}): pass a writable folder.",
        ) from None
    if not os.access(out, os.W_OK):
        raise ConfigError(
            "output_dir", f"output_dir={out} is not writable: pass a writable folder."
        )


def _write_config(directory: str, config: RunConfig) -> tuple[str, str]:
    os.makedirs(directory, exist_ok=True)
    flags_txt = os.path.join(directory, "flags.txt")
    flags_json = os.path.join(directory, "flags.json")
    # Paths go in as the operating system gave them: bytes that are not UTF-8 are written back
    # as they were (flags.json escapes them as JSON does: \udcff, which json.load restores).
    with open(flags_txt, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write("\n".join(config.to_flags()) + "\n")
    with open(flags_json, "w") as f:
        json.dump(config.to_dict(), f, indent=2, default=str)
    return flags_json, flags_txt


def run(config: RunConfig) -> RunResult:
    """Train as ``config`` says; write and return the results.

    The output folder is checked first, then the strategy is created (multi-worker needs that)
    and the batch checked against its replicas, then the mixed-precision policy and the seeds;
    datasets, models, teachers, optimizers and metrics are all built in the strategy's scope.
    A backup left by an interrupted run with the same ``output_dir`` is resumed.

    Args:
        config: the settings (fields left ``None`` take their dataset and model defaults).

    Returns:
        The :class:`RunResult` (also written to ``<output_dir>/metrics.json``).

    Raises:
        ConfigError: a setting that cannot work with this data or these devices.
    """
    given = config
    config = resolve(config)
    check_paths(config)
    _prepare_output_dir(config.output_dir)
    if config.deterministic and tf.config.threading.get_inter_op_parallelism_threads() != 1:
        logging.log_first_n(  # once per process: runs in a row would repeat it
            logging.WARNING,
            "deterministic: TensorFlow runs independent ops concurrently, so results may differ "
            "in the last bits between runs; for bitwise reproducibility call "
            "larq_bnext.training.runtime.distribute.one_op_at_a_time() before TensorFlow "
            "starts (the train command does).",
            1,
        )
    strategy = distribute.create_strategy(
        config.strategy, config.devices, config.tpu, config.collective
    )
    check_replicas(config.batch_size, strategy.num_replicas_in_sync)
    if config.bn_reestimation and strategy.num_replicas_in_sync > 1:
        raise ConfigError(
            "bn_reestimation",
            "bn_reestimation=True runs on one replica; with "
            f"{strategy.num_replicas_in_sync} replicas pass bn_reestimation=False.",
        )
    determinism = distribute.op_determinism_enabled()
    policy = tf.keras.mixed_precision.global_policy()
    distribute.set_mixed_precision(config.mixed_precision)
    try:
        if config.deterministic:
            distribute.enable_determinism(config.seed)
        else:
            set_random_seed(config.seed)
        if strategy.num_replicas_in_sync > 1:
            _say(config, f"{type(strategy).__name__}: {strategy.num_replicas_in_sync} replicas")
        with strategy.scope():
            result = _run_in_scope(given, config)
    finally:
        tf.keras.mixed_precision.set_global_policy(policy)
        distribute.set_op_determinism(determinism)
    if config.backup and distribute.is_chief(strategy):
        for model_dir in MODEL_DIRS:
            remove_backup(os.path.join(config.output_dir, model_dir, "backup"))
    return result


def _run_in_scope(given: RunConfig, config: RunConfig) -> RunResult:
    # Other workers of a cluster write their files (logs, metrics) in a private sub-directory.
    out = worker_directory(config.output_dir)
    flags_json, flags_txt = _write_config(out, given)
    start = time.time()
    run_data = build_datasets(config)
    epochs = config.epochs
    assistants, teacher, teachers, float_teacher = [], None, None, None
    if config.dataset == "digits" and config.teachers.strip().lower() == "auto":
        trainer = build_models(config, run_data, with_student=False)
        trainer.compile(
            optimizer=build_optimizer(config, run_data, config.teacher_epochs),
            jit_compile=config.jit_compile,
        )
        float_teacher = fit(
            config,
            trainer,
            run_data,
            os.path.join(out, "teacher"),
            config.teacher_epochs,
            anneal=False,
            title="float teacher (labels)",
            initial_epoch=0,
        )
        teacher = Teacher(trainer.student, name="float_teacher")
    else:
        assistants, teacher = build_teachers(config, run_data)
        if teacher is not None:
            teachers = TeacherSet(
                tuple(t.name for t in assistants),
                teacher.name,
                config.teacher_weights,
                teachers_precision(config),
            )

    distiller = build_models(config, run_data, teacher=teacher, assistants=assistants)
    distiller.compile(
        optimizer=build_optimizer(config, run_data, epochs), jit_compile=config.jit_compile
    )
    if config.initial_epoch:
        # Resuming: the schedule continues where it was (the temperatures come with the
        # weights, the curriculum phase from the epoch index).
        distiller.optimizer.iterations.assign(config.initial_epoch * run_data.steps_per_epoch)
    title = "binary student (distilled)" if teacher is not None else "binary student (labels)"
    student = fit(config, distiller, run_data, os.path.join(out, "student"), epochs, True, title)
    student = dataclasses.replace(student, distilled=teacher is not None)

    baseline = None
    if config.baseline and teacher is not None:
        labels_only = build_models(config, run_data, name="baseline")
        labels_only.compile(
            optimizer=build_optimizer(config, run_data, epochs), jit_compile=config.jit_compile
        )
        baseline = fit(
            config,
            labels_only,
            run_data,
            os.path.join(out, "baseline"),
            epochs,
            True,
            "binary student without distillation (labels)",
        )
    train_log, eval_log = run_data.skip_logs
    result = RunResult(
        config=config,
        student=student,
        teacher=float_teacher,
        baseline=baseline,
        teachers=teachers,
        train_examples=run_data.train_examples,
        eval_examples=run_data.eval_examples,
        num_classes=run_data.num_classes,
        skipped_files=tuple(sorted(set(train_log.paths) | set(eval_log.paths))),
        skipped={log.split: log.to_dict() for log in run_data.skip_logs},
        wall_seconds=round(time.time() - start, 1),
        output_dir=out,
        metrics_json=os.path.join(out, "metrics.json"),
        flags_json=flags_json,
        flags_txt=flags_txt,
    )
    with open(result.metrics_json, "w") as f:
        json.dump(result.to_dict(), f, indent=2)
    lines = ["\nTest top-1:"]
    if result.teacher is not None:
        lines.append(f"  float teacher:                {result.teacher.top1:.4f}")
    kind = "distilled:  " if result.student.distilled else "labels only:"
    lines.append(f"  binary student, {kind}  {result.student.top1:.4f}")
    if result.baseline is not None:
        lines.append(f"  binary student, undistilled:  {result.baseline.top1:.4f}")
    lines.append(f"Wall time {result.wall_seconds:.0f} s; results in {result.metrics_json}")
    _say(config, "\n".join(lines))
    return result


def _say(config: RunConfig, text: str) -> None:
    """Print ``text`` unless the run is silent (``verbose=0``)."""
    if config.verbose:
        print(text, flush=True)
