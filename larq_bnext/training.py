"""BNext's training recipe: optimizer, learning-rate schedule and callbacks.

* :class:`AdamW`: PyTorch-style AdamW with two weight-decay groups, 1e-3 for every parameter
  except the 4-D convolution kernels, which get 1e-8 (the original's two parameter groups).
* :class:`WarmupCosine`: timm's ``CosineLRScheduler(t_initial=epochs, warmup_t=5,
  warmup_lr_init=1e-5, lr_min=1e-7, warmup_prefix=True)``, stepped per epoch (the original) or
  per step.
* :class:`TemperatureScheduler`: multiplies every :class:`~larq_bnext.layers.BinaryConv2D`'s
  ``temperature`` and ``input_temperature`` by 0.9 after each epoch.
* :class:`LearningRateLogger` and :class:`StudentCheckpoint` for the logs and the weights.

The assistant-teacher curriculum callback is :class:`larq_bnext.distillation.AssistantCurriculum`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from larq_bnext.layers import BinaryConv2D

__all__ = [
    "AdamW",
    "WarmupCosine",
    "TemperatureScheduler",
    "LearningRateLogger",
    "StudentCheckpoint",
    "is_conv_kernel",
    "binary_conv_layers",
    "current_learning_rate",
]


def is_conv_kernel(variable: tf.Variable) -> bool:
    """The original's weight-decay predicate: ``True`` for 4-D tensors (convolution kernels).

    In BNext that is every binary convolution, the stem convolution and the SE 1x1
    convolutions; biases, BatchNorm, PReLU, ``move``, ``scale`` and the classifier are not.

    Args:
        variable: a model variable.
    """
    return variable.shape.rank == 4


class AdamW(tf.keras.optimizers.Adam):
    """AdamW exactly as PyTorch's ``torch.optim.AdamW``, with a per-variable weight decay.

    Each step, for a variable ``p`` with gradient ``g``, learning rate ``lr`` (the scheduled
    one) and decay ``wd`` (``conv_weight_decay`` where ``decay_predicate(p)``, else
    ``weight_decay``)::

        p <- p - lr * wd * p                                  # decoupled decay, x lr
        m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
        p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

    Variable constraints (the binary weight clip at 1.5, the recoupling scale in ``[0, 1]``)
    are applied after every step by Keras' optimizer.

    Why not ``tfa.optimizers.AdamW`` inside a ``larq.optimizers.CaseOptimizer``: TensorFlow
    Addons is end-of-life, its AdamW is a legacy optimizer whose ``weight_decay`` is *not*
    multiplied by the learning rate (it would need a callable tied to the schedule), and two
    wrapped optimizers mean two step counters and two slot sets. This single Keras optimizer
    keeps one step counter and one schedule, works under ``tf.distribute`` and inside
    :class:`tf.keras.mixed_precision.LossScaleOptimizer`, and places epsilon where PyTorch does
    (Keras' ``Adam`` adds it to ``sqrt(v)`` before the bias correction).

    Args:
        learning_rate: a float or a :class:`tf.keras.optimizers.schedules.LearningRateSchedule`.
        weight_decay: decay of the variables the predicate rejects (1e-3 in BNext).
        conv_weight_decay: decay of the variables the predicate accepts (1e-8 in BNext).
        beta_1: first-moment decay.
        beta_2: second-moment decay.
        epsilon: PyTorch's ``eps`` (added to the bias-corrected ``sqrt(v)``).
        decay_predicate: ``variable -> bool`` choosing ``conv_weight_decay``; defaults to
            :func:`is_conv_kernel`.
        name: optimizer name.
        **kwargs: other :class:`tf.keras.optimizers.Optimizer` arguments (``jit_compile``, ...).
    """

    def __init__(
        self,
        learning_rate=1e-3,
        weight_decay: float = 1e-3,
        conv_weight_decay: float = 1e-8,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        decay_predicate: Callable[[tf.Variable], bool] | None = None,
        name: str = "AdamW",
        **kwargs,
    ):
        kwargs.pop("amsgrad", None)
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=False,
            name=name,
            **kwargs,
        )
        if weight_decay < 0 or conv_weight_decay < 0:
            raise ValueError("Weight decays must be non-negative.")
        self.other_weight_decay = float(weight_decay)
        self.conv_weight_decay = float(conv_weight_decay)
        self.decay_predicate = decay_predicate or is_conv_kernel

    def weight_decay_of(self, variable: tf.Variable) -> float:
        """The weight decay this optimizer applies to ``variable``.

        Args:
            variable: a trainable variable.
        """
        if self.decay_predicate(variable):
            return self.conv_weight_decay
        return self.other_weight_decay

    def update_step(self, gradient, variable):
        """One AdamW update of ``variable`` (PyTorch's formula)."""
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.convert_to_tensor(gradient)
        dtype = variable.dtype
        lr = tf.cast(self.learning_rate, dtype)
        # Bias corrections in float64, as PyTorch computes them in Python: 1 - 0.999 in
        # float32 is off by 1e-5 (relative), which would show in the first steps.
        step = tf.cast(self.iterations + 1, tf.float64)
        bias_1 = tf.cast(1 - tf.pow(tf.constant(self.beta_1, tf.float64), step), dtype)
        bias_2 = tf.cast(1 - tf.pow(tf.constant(self.beta_2, tf.float64), step), dtype)
        index = self._index_dict[self._var_key(variable)]
        m = self._momentums[index]
        v = self._velocities[index]
        m.assign_add((gradient - m) * (1 - self.beta_1))
        v.assign_add((tf.square(gradient) - v) * (1 - self.beta_2))
        update = (m / bias_1) / (tf.sqrt(v / bias_2) + self.epsilon)
        wd = self.weight_decay_of(variable)
        if wd:
            # PyTorch decays first (p *= 1 - lr * wd), then subtracts lr * update, which
            # does not depend on p: one assignment of both is the same step.
            update += wd * variable
        variable.assign_sub(lr * update)

    def get_config(self):
        config = super().get_config()
        config.update(
            weight_decay=self.other_weight_decay, conv_weight_decay=self.conv_weight_decay
        )
        config.pop("amsgrad", None)
        return config


@tf.keras.utils.register_keras_serializable(package="larq_bnext")
class WarmupCosine(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Cosine learning rate with a linear warm-up prefix, as timm's ``CosineLRScheduler``.

    With ``e`` the epoch (an integer when stepped per epoch, fractional ``step /
    steps_per_epoch`` when stepped per step)::

        e <  warmup_epochs:  warmup_lr + e * (base_lr - warmup_lr) / warmup_epochs
        e >= warmup_epochs:  t = e - warmup_epochs
                             min_lr + (base_lr - min_lr) * (1 + cos(pi * t / cosine_epochs)) / 2
                             (min_lr once t >= cosine_epochs)

    The warm-up is a *prefix*: the cosine spans ``cosine_epochs`` (all ``epochs`` by default,
    as in the original) after it, so the last epoch of a 512-epoch run is not quite at the floor.

    Args:
        steps_per_epoch: optimizer steps per epoch.
        epochs: epochs of the run (the cosine length by default).
        base_lr: peak learning rate (1e-3).
        warmup_epochs: length of the linear warm-up (5).
        warmup_lr: learning rate at the start of the warm-up (1e-5).
        min_lr: floor of the cosine (1e-7).
        per_step: ``False`` (the original): constant within an epoch; ``True``: updated every
            step with the fractional epoch.
        cosine_epochs: length of the cosine; defaults to ``epochs``.
    """

    def __init__(
        self,
        steps_per_epoch: int,
        epochs: int,
        base_lr: float = 1e-3,
        warmup_epochs: float = 5,
        warmup_lr: float = 1e-5,
        min_lr: float = 1e-7,
        per_step: bool = False,
        cosine_epochs: float | None = None,
    ):
        super().__init__()
        if steps_per_epoch < 1 or epochs < 1:
            raise ValueError(
                f"steps_per_epoch and epochs must be >= 1, got {steps_per_epoch}, {epochs}."
            )
        self.steps_per_epoch = int(steps_per_epoch)
        self.epochs = int(epochs)
        self.base_lr = float(base_lr)
        self.warmup_epochs = float(warmup_epochs)
        self.warmup_lr = float(warmup_lr)
        self.min_lr = float(min_lr)
        self.per_step = bool(per_step)
        self.cosine_epochs = float(cosine_epochs if cosine_epochs is not None else epochs)

    def lr_at_epoch(self, epoch: float) -> float:
        """The learning rate at a (possibly fractional) epoch, in plain Python.

        Args:
            epoch: epoch index (fractional epochs for the per-step schedule).
        """
        if epoch < self.warmup_epochs:
            return self.warmup_lr + epoch * (self.base_lr - self.warmup_lr) / self.warmup_epochs
        t = epoch - self.warmup_epochs
        if t >= self.cosine_epochs:
            return self.min_lr
        cosine = 0.5 * (1.0 + math.cos(math.pi * t / self.cosine_epochs))
        return self.min_lr + (self.base_lr - self.min_lr) * cosine

    def __call__(self, step):
        step = tf.cast(step, tf.float64)
        epoch = step / float(self.steps_per_epoch)
        if not self.per_step:
            epoch = tf.floor(epoch)
        warm = self.warmup_lr + epoch * (self.base_lr - self.warmup_lr) / max(
            self.warmup_epochs, 1e-12
        )
        t = epoch - self.warmup_epochs
        fraction = tf.minimum(t, self.cosine_epochs) / self.cosine_epochs
        cosine = 0.5 * (1.0 + tf.cos(math.pi * fraction))
        cos_lr = self.min_lr + (self.base_lr - self.min_lr) * cosine
        cos_lr = tf.where(t >= self.cosine_epochs, tf.constant(self.min_lr, tf.float64), cos_lr)
        lr = tf.where(epoch < self.warmup_epochs, warm, cos_lr)
        return tf.cast(lr, tf.float32)

    def get_config(self):
        return {
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": self.epochs,
            "base_lr": self.base_lr,
            "warmup_epochs": self.warmup_epochs,
            "warmup_lr": self.warmup_lr,
            "min_lr": self.min_lr,
            "per_step": self.per_step,
            "cosine_epochs": self.cosine_epochs,
        }


def current_learning_rate(optimizer) -> float:
    """The learning rate ``optimizer`` applies at its next step, as a Python float.

    Args:
        optimizer: a Keras optimizer (a ``LossScaleOptimizer`` is unwrapped).
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    # Keras' `learning_rate` property holds the value of the *last* step for a schedule.
    schedule = getattr(inner, "_learning_rate", None)
    if isinstance(schedule, tf.keras.optimizers.schedules.LearningRateSchedule):
        lr = schedule(inner.iterations)
    else:
        lr = inner.learning_rate
    return float(tf.keras.backend.get_value(lr))


def binary_conv_layers(model: tf.keras.Model) -> list[BinaryConv2D]:
    """All :class:`BinaryConv2D` layers of ``model`` (of its ``student`` for a Distiller).

    Args:
        model: a BNext model or a :class:`larq_bnext.Distiller`.
    """
    root = getattr(model, "student", model)
    layers = [m for m in root.submodules if isinstance(m, BinaryConv2D)]
    if isinstance(root, BinaryConv2D):
        layers.append(root)
    return layers


class TemperatureScheduler(tf.keras.callbacks.Callback):
    """Multiplies every binary convolution's temperatures by ``factor`` after each epoch.

    Both ``temperature`` (the kernel's: ``clip(w / T, -1, 1)``, exactly ``sign(w)`` below
    1e-7) and ``input_temperature`` are annealed, as in the original (``T = 0.9^epoch``).

    The temperatures are weights, so a resumed run restores them. The callback never
    accumulates: at the first epoch of ``fit`` it records each layer's temperatures and the
    epoch, and after epoch ``e`` sets ``T = T_start * factor^(e + 1 - first_epoch)``, so calling
    it twice for an epoch, or resuming with ``initial_epoch``, cannot apply the factor twice.
    Place it *before* checkpoint callbacks so that saved weights hold the annealed values.

    The temperature in effect during the epoch is added to the logs as ``temperature``
    (TensorBoard and CSV loggers placed after this callback record it).

    Args:
        factor: multiplier per epoch (0.9 in BNext).
    """

    def __init__(self, factor: float = 0.9):
        super().__init__()
        if not 0.0 < factor <= 1.0:
            raise ValueError(f"factor must be in (0, 1], got {factor}.")
        self.factor = float(factor)
        self._start = None

    def on_train_begin(self, logs=None):
        self._start = None

    def _record(self, epoch):
        layers = binary_conv_layers(self.model)
        self._start = (
            int(epoch),
            [
                (layer, float(layer.temperature.numpy()), float(layer.input_temperature.numpy()))
                for layer in layers
            ],
        )

    def on_epoch_begin(self, epoch, logs=None):
        if self._start is None:
            self._record(epoch)

    def temperature(self) -> float:
        """The current kernel temperature of the first binary convolution (1.0 if none)."""
        layers = binary_conv_layers(self.model)
        return float(layers[0].temperature.numpy()) if layers else 1.0

    def on_epoch_end(self, epoch, logs=None):
        if self._start is None:
            self._record(epoch)
        if logs is not None:
            logs["temperature"] = self.temperature()
        first, records = self._start
        scale = self.factor ** (int(epoch) + 1 - first)
        for layer, kernel_t, input_t in records:
            layer.temperature.assign(kernel_t * scale)
            layer.input_temperature.assign(input_t * scale)


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
    writes them (:func:`larq_bnext.distribute.save_weights_atomic`).

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

    @property
    def last_path(self) -> str:
        """Path of the last weights."""
        return os.path.join(self.directory, "last.weights.h5")

    @property
    def best_path(self) -> str:
        """Path of the best weights."""
        return os.path.join(self.directory, "best.weights.h5")

    def _target(self):
        return getattr(self.model, "student", self.model)

    def _save(self, target, path):
        from larq_bnext.distribute import save_weights_atomic

        save_weights_atomic(target, path, self.model.distribute_strategy)

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        target = self._target()
        self._save(target, self.last_path)
        value = (logs or {}).get(self.monitor)
        if value is None:
            self._save(target, self.best_path)
            self.best_epoch = epoch
            return
        value = float(value)
        better = (
            self.best is None
            or (self.mode == "max" and value > self.best)
            or (self.mode == "min" and value < self.best)
        )
        if better and np.isfinite(value):
            self.best, self.best_epoch = value, epoch
            self._save(target, self.best_path)
