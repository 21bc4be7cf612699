"""BatchNorm re-estimation: the moving statistics of a trained model's BatchNorm layers
recomputed on training images under its current weights.

A binary network's activations change whenever a latent weight crosses zero; BatchNorm's
moving averages (momentum 0.9: the last ~10 batches) then describe a few batches of the
weights' recent past, drawn through the training augmentation. :func:`reestimate_batchnorm`
replaces them with the statistics of the whole training split under the final weights, as
PyTorch's ``torch.optim.swa_utils.update_bn`` does; :class:`BatchNormReestimation` does it
before every validation of ``fit``. Training itself normalises with batch statistics, so
neither changes the training trajectory.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["BatchNormReestimation", "batchnorm_layers", "reestimate_batchnorm"]


def batchnorm_layers(model: tf.keras.Model) -> list:
    """The BatchNorm layers of ``model`` (nested models included), each once.

    Args:
        model: a Keras model.
    """
    found = []
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, tf.keras.layers.BatchNormalization) and all(
            layer is not other for other in found
        ):
            found.append(layer)
    return found


class _Estimator:
    """One training-mode forward per batch with momentum 0: each batch's statistics."""

    def __init__(self, model: tf.keras.Model):
        self.model = model
        self.layers = batchnorm_layers(model)
        self._step = None

    def _batch_statistics(self, images):
        self.model(images, training=True)
        return [(tf.identity(b.moving_mean), tf.identity(b.moving_variance)) for b in self.layers]

    def __call__(self, dataset: tf.data.Dataset, max_batches: int | None = None) -> int:
        """Set the moving statistics to ``dataset``'s; return the number of images used."""
        if not self.layers:
            return 0
        momenta = [b.momentum for b in self.layers]
        saved = [(b.moving_mean.numpy(), b.moving_variance.numpy()) for b in self.layers]
        sums = None
        count = 0
        try:
            for b in self.layers:  # the traced step reads momentum 0: moving := batch
                b.momentum = 0.0
            if self._step is None:
                self._step = tf.function(self._batch_statistics)
            for i, batch in enumerate(dataset):
                if max_batches is not None and i >= max_batches:
                    break
                images = batch[0] if isinstance(batch, (tuple, list)) else batch
                n = float(tf.shape(images)[0])
                stats = self._step(images)
                # Law of total variance: accumulate n*mean and n*(var + mean^2).
                terms = [(n * m, n * (v + tf.square(m))) for m, v in stats]
                if sums is None:
                    sums = terms
                else:
                    sums = [(a + m, b + v) for (a, b), (m, v) in zip(sums, terms, strict=True)]
                count += int(n)
        finally:
            for b, momentum in zip(self.layers, momenta, strict=True):
                b.momentum = momentum
        if count == 0:
            for b, (mean, variance) in zip(self.layers, saved, strict=True):
                b.moving_mean.assign(mean)
                b.moving_variance.assign(variance)
            return 0
        for b, (sum_mean, sum_square) in zip(self.layers, sums, strict=True):
            mean = sum_mean / count
            b.moving_mean.assign(mean)
            b.moving_variance.assign(tf.maximum(sum_square / count - tf.square(mean), 0.0))
        return count


def reestimate_batchnorm(
    model: tf.keras.Model, dataset: tf.data.Dataset, max_batches: int | None = None
) -> int:
    """Set every BatchNorm's moving mean and variance to their values over ``dataset``.

    Each batch runs through ``model`` in training mode (BatchNorm layers after the first see
    batch-normalised inputs, as in training); the batch means and variances are combined over
    all images by the law of total variance (Keras' per-batch variance is Bessel-corrected,
    so the result is that over the whole split up to a factor ``1 + 1/(batch pixels)``).
    Weights, ``gamma`` and ``beta`` are untouched.

    Args:
        model: the model (not a :class:`~larq_bnext.Distiller`: its teachers are left alone
            only when the student is passed).
        dataset: batches of images, or of ``(images, labels, ...)`` tuples.
        max_batches: use at most this many batches (``None``: all).

    Returns:
        The number of images the statistics were computed on.
    """
    return _Estimator(model)(dataset, max_batches)


class BatchNormReestimation(tf.keras.callbacks.Callback):
    """Re-estimates a model's BatchNorm statistics before each validation of ``fit``.

    ``fit`` validates after an epoch's last step and before ``on_epoch_end``, so the
    validation scores, the weight files written at the epoch's end and the final evaluation
    all see the re-estimated statistics.

    Args:
        model: the model whose BatchNorm layers are re-estimated (the student).
        dataset: the training images (the evaluation transform: the statistics of the inputs
            the model is evaluated on).
        max_batches: at most this many batches per re-estimation (``None``: all).
    """

    def __init__(self, model: tf.keras.Model, dataset, max_batches: int | None = None):
        super().__init__()
        self._estimator = _Estimator(model)
        self.dataset = dataset
        self.max_batches = max_batches

    def on_test_begin(self, logs=None):
        self._estimator(self.dataset, self.max_batches)
