"""Synchronized BatchNorm: statistics over the global batch, as PyTorch's ``SyncBatchNorm``."""

from __future__ import annotations

import tensorflow as tf

__all__ = [
    "SyncBatchNormalization",
    "convert_to_sync_batchnorm",
]


# --------------------------------------------------------------------------- model conversion
@tf.keras.utils.register_keras_serializable(package="larq_bnext")
class SyncBatchNormalization(tf.keras.layers.BatchNormalization):
    """BatchNormalization with statistics over the global batch (all replicas).

    Keras' ``BatchNormalization(synchronized=True)`` with one correction: the moving
    variance is updated with the *unbiased* batch variance (Bessel's correction over the
    global batch), as Keras' fused single-device BatchNorm and PyTorch's ``SyncBatchNorm``
    do; Keras' synchronized path would use the biased one. Training with it on ``N``
    replicas therefore matches training on one device with the global batch, moving
    statistics included. Normalisation itself uses the biased variance, as everywhere.

    The global sample count per channel is the per-replica count times the replicas in
    sync (the training pipelines drop remainders, so replicas get equal batches).

    Args:
        **kwargs: :class:`tf.keras.layers.BatchNormalization` arguments (``synchronized`` is
            always ``True``; ``fused`` is not supported).
    """

    def __init__(self, **kwargs):
        kwargs["synchronized"] = True
        kwargs.pop("fused", None)
        super().__init__(**kwargs)
        self._bessel_factor = None

    def _calculate_mean_and_var(self, inputs, reduction_axes, keep_dims, mask=None):
        mean, variance = super()._calculate_mean_and_var(
            inputs, reduction_axes, keep_dims, mask=mask
        )
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        count = tf.cast(tf.size(inputs) // tf.size(variance) * replicas, variance.dtype)
        self._bessel_factor = count / tf.maximum(count - 1.0, 1.0)
        return mean, variance

    def _assign_moving_average(self, variable, value, momentum, inputs_size):
        if variable is self.moving_variance and self._bessel_factor is not None:
            value = value * tf.cast(self._bessel_factor, value.dtype)
        return super()._assign_moving_average(variable, value, momentum, inputs_size)

    def get_config(self):
        config = super().get_config()
        config.pop("synchronized", None)
        return config


def convert_to_sync_batchnorm(model: tf.keras.Model) -> tf.keras.Model:
    """A copy of ``model`` whose BatchNormalization layers are synchronized across replicas.

    Every ``tf.keras.layers.BatchNormalization`` is rebuilt as a
    :class:`SyncBatchNormalization` (same name, settings and weights): during training its
    batch mean and variance are taken over the global batch (all replicas), not the
    per-replica batch, as with PyTorch's ``SyncBatchNorm``. Outside a distribution strategy,
    or with one replica, the copy computes what the original does (up to float rounding:
    sums of squares instead of the fused kernel). Call it inside ``strategy.scope()``.

    Args:
        model: a functional or sequential Keras model (a BNext student).

    Returns:
        The converted copy (the original is left unchanged).
    """
    bn_class = tf.keras.layers.BatchNormalization

    def clone(layer):
        config = layer.get_config()
        if type(layer) is bn_class:
            config.pop("synchronized", None)
            return SyncBatchNormalization.from_config(config)
        return layer.__class__.from_config(config)

    converted = tf.keras.models.clone_model(model, clone_function=clone)
    converted.set_weights(model.get_weights())
    return converted
