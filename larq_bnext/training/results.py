"""What a training run gives: a :class:`RunResult` of :class:`ModelResult` s.

:func:`larq_bnext.training.run` returns one and writes it as ``metrics.json``
(:meth:`RunResult.to_dict`): the final and best evaluation top-1 and the training top-1 of
each trained model (the binary student; the digits float teacher and the labels-only
baseline when trained), its curves, and the paths of the run's files.
"""

from __future__ import annotations

import dataclasses

from larq_bnext.training.config import RunConfig

__all__ = ["ModelResult", "TeacherSet", "RunResult"]


@dataclasses.dataclass(frozen=True)
class ModelResult:
    """What training one model gave: its scores, its curves and where its files are.

    Args:
        top1: top-1 on the evaluation split after the last epoch.
        top5: top-5 likewise.
        loss: evaluation loss likewise.
        best_val_top1: the best evaluation top-1 of any epoch (``best.weights.h5``'s).
        best_epoch: the epoch (1-based) of ``best_val_top1``.
        train_top1: training top-1 of the last epoch (of augmented, possibly mixed batches).
        train_seconds: seconds spent in ``fit``.
        epochs: epochs trained (the run's length; a resumed run counts all of them).
        history: per-epoch logs of this ``fit`` (``loss``, ``top1``, ``val_top1``, ``lr``, ...).
        directory: the model's run directory (``<output_dir>/student``, ...).
        best_weights: ``best.weights.h5``.
        last_weights: ``last.weights.h5``.
        curves: the picture of the curves, or ``None`` if it could not be drawn.
        final_temperature: the largest kernel temperature after training (binary students).
        exactly_binary_weights: whether every kernel temperature is below the model's sign
            threshold, so that the kernels are exactly ``sign(w)`` (binary students).
        distilled: whether a teacher taught it (``None`` for the float teacher).
        train_split_top1: ``eval_train_split``: top-1 after the last epoch on the training
            examples trained on, with the evaluation transform and their true labels.
        train_split_top1_given_labels: likewise against the labels it was trained on (with
            ``label_noise``: how much of the noise it fitted).
    """

    top1: float
    top5: float
    loss: float
    best_val_top1: float | None
    best_epoch: int | None
    train_top1: float | None
    train_seconds: float
    epochs: int
    history: dict[str, list[float]]
    directory: str
    best_weights: str
    last_weights: str
    curves: str | None
    final_temperature: float | None = None
    exactly_binary_weights: bool | None = None
    distilled: bool | None = None
    train_split_top1: float | None = None
    train_split_top1_given_labels: float | None = None

    def to_dict(self) -> dict:
        """The model's entry of ``metrics.json``."""
        out = {
            "top1": self.top1,
            "top5": self.top5,
            "loss": self.loss,
            "best_val_top1": self.best_val_top1,
            "best_epoch": self.best_epoch,
            "train_top1": self.train_top1,
            "train_seconds": self.train_seconds,
            "epochs": self.epochs,
            "history": self.history,
        }
        if self.exactly_binary_weights is not None:
            out["final_temperature"] = self.final_temperature
            out["exactly_binary_weights"] = self.exactly_binary_weights
        out["curves"] = self.curves
        if self.distilled is not None:
            out["distilled"] = self.distilled
        for name in ("train_split_top1", "train_split_top1_given_labels"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@dataclasses.dataclass(frozen=True)
class TeacherSet:
    """The Keras teachers a student was distilled from.

    Args:
        assistants: the assistant teachers, in curriculum order.
        main: the main teacher.
        weights: their weights (``"imagenet"``, or ``"none"``: untrained).
        precision: the Keras policy their forward pass ran in (``--teacher_precision``).
    """

    assistants: tuple[str, ...]
    main: str
    weights: str
    precision: str = "float32"

    def to_dict(self) -> dict:
        """The ``teachers`` entry of ``metrics.json``."""
        return {
            "assistants": list(self.assistants),
            "main": self.main,
            "weights": self.weights,
            "precision": self.precision,
        }


@dataclasses.dataclass(frozen=True)
class RunResult:
    """The outcome of :func:`run`: scores of every trained model and the run's files.

    Args:
        config: the settings the run used (:func:`larq_bnext.training.recipe.resolve`d: no
            default left open).
        student: the binary student (distilled when a teacher was there).
        teacher: the digits demo's float teacher, when the run trained one.
        baseline: the same student trained on the labels alone, when asked for.
        teachers: the Keras teachers (``assistants``, ``main``, ``weights``), when used.
        train_examples: readable training images.
        eval_examples: readable evaluation images.
        num_classes: number of classes.
        skipped_files: unreadable files, skipped.
        skipped: per split, the skip log's counts (see
            :class:`~larq_bnext.training.data.skipped.SkipLog`).
        wall_seconds: seconds of the whole run.
        output_dir: this process's run directory (a worker's own sub-directory on other
            workers of a cluster).
        metrics_json: ``metrics.json`` (:meth:`to_dict`).
        flags_json: ``flags.json``: the config as given (``None``: a default).
        flags_txt: ``flags.txt``: the same as command-line flags.
    """

    config: RunConfig
    student: ModelResult
    teacher: ModelResult | None
    baseline: ModelResult | None
    teachers: TeacherSet | None
    train_examples: int
    eval_examples: int
    num_classes: int
    skipped_files: tuple[str, ...]
    skipped: dict
    wall_seconds: float
    output_dir: str
    metrics_json: str
    flags_json: str
    flags_txt: str

    def to_dict(self) -> dict:
        """The content of ``metrics.json``."""
        out = {
            "dataset": self.config.dataset,
            "model": self.config.model,
            "train_examples": self.train_examples,
            "eval_examples": self.eval_examples,
            "num_classes": self.num_classes,
            "skipped_files": list(self.skipped_files),
            "temperature_decay": self.config.temperature_decay,
            "label_fraction": self.config.label_fraction,
            "label_noise": self.config.label_noise,
        }
        if self.teacher is not None:
            out["teacher"] = self.teacher.to_dict()
        if self.teachers is not None:
            out["teachers"] = self.teachers.to_dict()
        out["student"] = self.student.to_dict()
        if self.baseline is not None:
            out["baseline"] = self.baseline.to_dict()
        out["skipped"] = self.skipped
        out["wall_seconds"] = self.wall_seconds
        return out
