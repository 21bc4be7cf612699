"""The learning-rate schedule of the recipe: :class:`WarmupCosine` is timm's
``CosineLRScheduler(t_initial=epochs, warmup_t=5, warmup_lr_init=1e-5, lr_min=1e-7,
warmup_prefix=True)``, stepped per epoch (the original) or per step.
"""

from __future__ import annotations

import math

import tensorflow as tf

from larq_bnext.registry import RECIPE
from larq_bnext.training.method.optimizer import float64_supported

__all__ = [
    "WarmupCosine",
    "current_learning_rate",
]


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
        base_lr: peak learning rate (the recipe's 1e-3, :data:`larq_bnext.registry.RECIPE`).
        warmup_epochs: length of the linear warm-up (5).
        warmup_lr: learning rate at the start of the warm-up (1e-5).
        min_lr: floor of the cosine (1e-7).
        per_step: ``False`` (the original): constant within an epoch; ``True``: updated every
            step with the fractional epoch.
        cosine_epochs: length of the cosine; defaults to ``epochs``.
        float64: compute in float64 (then round to float32) or in float32 only (TPUs): the
            epoch by integer division, the cosine as ``cos^2(pi t / 2 T)`` without
            cancellation; ``None`` picks float64 where the device has it.
    """

    def __init__(
        self,
        steps_per_epoch: int,
        epochs: int,
        base_lr: float = RECIPE.lr,
        warmup_epochs: float = RECIPE.warmup_epochs,
        warmup_lr: float = RECIPE.warmup_lr,
        min_lr: float = RECIPE.min_lr,
        per_step: bool = False,
        cosine_epochs: float | None = None,
        float64: bool | None = None,
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
        self.float64 = float64

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
        float64 = float64_supported() if self.float64 is None else self.float64
        if not float64:
            return self._float32(step)
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
        # Computed in float64; float32 unless Keras' floatx is float64 (exact comparisons).
        dtype = tf.float64 if tf.keras.backend.floatx() == "float64" else tf.float32
        return tf.cast(lr, dtype)

    def _float32(self, step):
        """The schedule without float64: integer epochs, cancellation-free cosine."""
        step = tf.cast(step, tf.int64)
        whole = step // self.steps_per_epoch
        epoch = tf.cast(whole, tf.float32)
        if self.per_step:
            part = tf.cast(step - whole * self.steps_per_epoch, tf.float32)
            epoch += part / float(self.steps_per_epoch)
        warm = self.warmup_lr + epoch * float(
            (self.base_lr - self.warmup_lr) / max(self.warmup_epochs, 1e-12)
        )
        t = epoch - self.warmup_epochs
        fraction = tf.clip_by_value(t / self.cosine_epochs, 0.0, 1.0)
        # (1 + cos(pi f)) / 2 == cos(pi f / 2)^2, exact near f = 1 where 1 + cos cancels.
        cosine = tf.square(tf.cos(fraction * (math.pi / 2)))
        cos_lr = self.min_lr + (self.base_lr - self.min_lr) * cosine
        cos_lr = tf.where(t >= self.cosine_epochs, tf.constant(self.min_lr, tf.float32), cos_lr)
        return tf.where(epoch < self.warmup_epochs, warm, cos_lr)

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
            "float64": self.float64,
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
