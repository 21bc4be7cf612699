"""The machinery of long runs: devices, precision and surviving restarts.

* :mod:`~larq_bnext.training.runtime.distribute`: ``tf.distribute`` strategies, replicas and
  the batch they split;
* :mod:`~larq_bnext.training.runtime.sync_batchnorm`: BatchNorm statistics across replicas;
* :mod:`~larq_bnext.training.runtime.precision`: the teachers' precision policy per device;
* :mod:`~larq_bnext.training.runtime.checkpoints`: backups that survive a kill, and resuming.
"""
