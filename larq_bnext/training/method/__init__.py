"""BNext's training method: teachers, the distillation loss and the recipe's optimisation.

* :mod:`~larq_bnext.training.method.teachers`: the float teachers (Keras applications,
  converted checkpoints, the digits CNN);
* :mod:`~larq_bnext.training.method.distiller`: the distillation loss and the
  :class:`~larq_bnext.training.Distiller`, a ``keras.Model`` with its own ``train_step``;
* :mod:`~larq_bnext.training.method.optimizer`: AdamW with the original's parameter groups;
* :mod:`~larq_bnext.training.method.schedules`: the warm-up cosine learning rate;
* :mod:`~larq_bnext.training.method.callbacks`: the per-epoch temperature anneal, the
  assistant curriculum, the student's checkpoints;
* :mod:`~larq_bnext.training.method.batchnorm_stats`: BatchNorm statistics re-estimated for
  validation (the digits demo).
"""
