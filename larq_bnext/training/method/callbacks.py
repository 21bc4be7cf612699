"""The training callbacks of the recipe.

* :class:`TemperatureScheduler`: multiplies every :class:`~larq_bnext.models.layers.BinaryConv2D`'s
  ``temperature`` and ``input_temperature`` by 0.9 after each epoch.
* :class:`AssistantCurriculum`: switches the Distiller's assistant teacher by phase.
* :class:`LearningRateLogger` and :class:`StudentCheckpoint` for the logs and the weights.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from larq_bnext.models.layers import binary_conv_layers
from larq_bnext.registry import RECIPE
from larq_bnext.training.method.distiller import Distiller, curriculum_phase
from larq_bnext.training.method.schedules import current_learning_rate
from larq_bnext.training.runtime.checkpoints import atomic_write_text, save_weights_atomic
from larq_bnext.training.runtime.distribute import is_chief

__all__ = [
    "TemperatureScheduler",
    "LearningRateLogger",
    "StudentCheckpoint",
    "AssistantCurriculum",
    "anneal_temperatures",
]


class TemperatureScheduler(tf.keras.callbacks.Callback):
    """Multiplies every binary convolution's temperatures by ``factor`` after each epoch.

    Both ``temperature`` (the kernel's: ``clip(w / T, -1, 1)``, exactly ``sign(w)`` below
    1e-7) and ``input_temperature`` are annealed, as in the original (``T = 0.9^epoch``).

    The temperatures are weights, so a resumed run restores them. After each epoch the callback
    multiplies them in place by ``factor``, once per epoch (a repeated call for the same epoch
    changes nothing), as the original multiplies its buffers: the value after epoch ``e`` is a
    function of the value before it alone, so a run resumed from a backup continues bitwise as
    the uninterrupted run does (re-deriving ``T_start * factor^k`` from a saved float32 value
    would round differently). Place it *after* :class:`StudentCheckpoint`, so that
    ``best.weights.h5`` and ``last.weights.h5`` hold the model as it was validated (as the
    original saves its checkpoint before it anneals), and *before* the backup, which holds the
    state the next epoch starts from. To continue from ``last.weights.h5`` by hand, anneal once
    first (:func:`anneal_temperatures`; ``python -m larq_bnext.train --initial_epoch`` does).

    The temperature in effect during the epoch is added to the logs as ``temperature``
    (TensorBoard and CSV loggers placed after this callback record it).

    Args:
        factor: multiplier per epoch (0.9 in BNext).
    """

    def __init__(self, factor: float = RECIPE.temperature_decay):
        super().__init__()
        if not 0.0 < factor <= 1.0:
            raise ValueError(f"factor must be in (0, 1], got {factor}.")
        self.factor = float(factor)
        self._annealed_epochs = set()

    def on_train_begin(self, logs=None):
        self._annealed_epochs = set()

    def temperature(self) -> float:
        """The current kernel temperature of the first binary convolution (1.0 if none)."""
        layers = binary_conv_layers(self.model)
        return float(layers[0].temperature.numpy()) if layers else 1.0

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["temperature"] = self.temperature()
        if int(epoch) in self._annealed_epochs:
            return
        self._annealed_epochs.add(int(epoch))
        anneal_temperatures(self.model, self.factor)


def anneal_temperatures(model: tf.keras.Model, factor: float) -> None:
    """Multiply every binary convolution's two temperatures in ``model`` by ``factor`` in place.

    Args:
        model: a BNext model, or a :class:`~larq_bnext.Distiller` (its student's).
        factor: the multiplier (0.9 per epoch in BNext).
    """
    for layer in binary_conv_layers(model):
        for variable in (layer.temperature, layer.input_temperature):
            variable.assign(variable * tf.constant(factor, variable.dtype))


class LearningRateLogger(tf.keras.callbacks.Callback):
    """Adds the learning rate of each epoch (its value at the epoch's first step) as ``lr``."""

    def __init__(self):
        super().__init__()
        self._lr = None

    def on_epoch_begin(self, epoch, logs=None):
        self._lr = current_learning_rate(self.model.optimizer)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = (
                self._lr if self._lr is not None else current_learning_rate(self.model.optimizer)
            )


class StudentCheckpoint(tf.keras.callbacks.Callback):
    """Saves the student's weights after every epoch (``last``) and at the best score (``best``).

    Works on a :class:`~larq_bnext.Distiller` (saving only its student, not the teachers) or
    a plain model. Files: ``{directory}/last.weights.h5`` and ``{directory}/best.weights.h5``,
    each written atomically (a temporary file renamed over the old one, so a kill during a
    save leaves the previous file intact); under a multi-worker strategy only the chief
    writes them (:func:`larq_bnext.training.runtime.checkpoints.save_weights_atomic`).

    The best score survives a restart: it is written (atomically, after the weights) to
    ``{directory}/best.json``, and a ``fit`` that starts at a later epoch (a resumed run)
    reads it back, so its first epoch replaces ``best.weights.h5`` only if it is better. A
    ``fit`` from epoch 0 starts afresh.

    Args:
        directory: where to write the weights.
        monitor: the log key to maximise for ``best`` (``val_top1`` by default); when absent
            (no validation), ``best`` follows ``last``.
        mode: ``"max"`` or ``"min"``.
    """

    def __init__(self, directory: str, monitor: str = "val_top1", mode: str = "max"):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', not {mode!r}.")
        self.directory = str(directory)
        self.monitor = monitor
        self.mode = mode
        self.best = None
        self.best_epoch = None
        self._started = False
        self._scores = {}

    @property
    def last_path(self) -> str:
        """Path of the last weights."""
        return os.path.join(self.directory, "last.weights.h5")

    @property
    def best_path(self) -> str:
        """Path of the best weights."""
        return os.path.join(self.directory, "best.weights.h5")

    @property
    def state_path(self) -> str:
        """Path of the best score's record (``best.json``)."""
        return os.path.join(self.directory, "best.json")

    def _target(self):
        return getattr(self.model, "student", self.model)

    def _save(self, target, path):
        save_weights_atomic(target, path, self.model.distribute_strategy)

    def _save_state(self):
        if not is_chief(self.model.distribute_strategy):
            return
        state = {
            "monitor": self.monitor,
            "mode": self.mode,
            "best": self.best,
            "epoch": self.best_epoch,
            "scores": {str(k): v for k, v in sorted(self._scores.items())},
        }
        atomic_write_text(self.state_path, json.dumps(state))

    def restore_state(self, before_epoch: int) -> bool:
        """Read the best score of the epochs before ``before_epoch`` from ``best.json``.

        Every epoch's score is recorded, so a run killed after an epoch whose backup was lost
        (that epoch is redone) restores the best of the epochs that count.

        Args:
            before_epoch: the epoch the run resumes at; later records (of a killed run's
                lost epochs, or another run's) are ignored.

        Returns:
            Whether a best score was restored.
        """
        if not os.path.isfile(self.state_path) or not os.path.isfile(self.best_path):
            return False
        try:
            with open(self.state_path) as handle:
                state = json.load(handle)
        except (OSError, ValueError):
            return False
        if state.get("monitor") != self.monitor or state.get("mode") != self.mode:
            return False
        scores = {int(k): float(v) for k, v in state.get("scores", {}).items()}
        scores = {k: v for k, v in scores.items() if k < before_epoch and np.isfinite(v)}
        self._scores = dict(scores)
        if not scores:
            return False
        pick = max if self.mode == "max" else min
        self.best_epoch = pick(scores, key=lambda k: (scores[k], -k))
        self.best = scores[self.best_epoch]
        return True

    def on_train_begin(self, logs=None):
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._started:
            self._started = True
            self.best, self.best_epoch, self._scores = None, None, {}
            if epoch > 0:
                self.restore_state(epoch)

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        target = self._target()
        self._save(target, self.last_path)
        value = (logs or {}).get(self.monitor)
        if value is None:
            self._save(target, self.best_path)
            self.best_epoch = epoch
            self._save_state()
            return
        value = float(value)
        self._scores[int(epoch)] = value
        better = (
            self.best is None
            or (self.mode == "max" and value > self.best)
            or (self.mode == "min" and value < self.best)
        )
        if better and np.isfinite(value):
            self.best, self.best_epoch = value, epoch
            self._save(target, self.best_path)
        self._save_state()


class AssistantCurriculum(tf.keras.callbacks.Callback):
    """Switches the distiller's assistant teacher in equal consecutive phases over the epochs.

    In phase ``k`` (epochs ``[k * E / n, (k + 1) * E / n)`` for ``n`` assistants and ``E``
    epochs) the active teachers are ``(assistants[k], main)``. The phase is chosen from the
    epoch index at the start of every epoch, so a run resumed with ``initial_epoch`` lands in
    the right phase. The current phase is added to the logs as ``curriculum_phase``.

    Args:
        epochs: total epochs of the run (defaults to the ``epochs`` given to ``fit``).
    """

    def __init__(self, epochs: int | None = None):
        super().__init__()
        self.epochs = epochs

    def _total_epochs(self) -> int:
        epochs = self.epochs or (self.params or {}).get("epochs")
        if not epochs:
            raise ValueError("AssistantCurriculum needs the total number of epochs.")
        return int(epochs)

    def on_epoch_begin(self, epoch, logs=None):
        distiller = self.model
        if not isinstance(distiller, Distiller):
            raise TypeError("AssistantCurriculum works on a larq_bnext.Distiller.")
        distiller.set_phase(curriculum_phase(epoch, self._total_epochs(), distiller.num_phases))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["curriculum_phase"] = float(self.model.phase)
