"""How many TensorFlow ops a training run executes at once (its inter-op threads).

TensorFlow has two thread pools: the inter-op pool runs independent ops of a step
concurrently, and each op spreads its own work (a convolution, a large element-wise op) over
the intra-op pool. Both default to one thread per core. On a machine without a GPU or TPU the
two pools then compete for the same cores, and BNext's step, a long chain of large ops with
little real concurrency between them, loses to that competition: see
``docs/distributed.md`` ("CPU training speed") for the measurement behind the default.

The run's setting (``RunConfig.inter_op_threads``, ``--inter_op_threads``):

* ``None`` (the default, "auto"): one op at a time when TensorFlow sees no GPU and no TPU is
  configured; TensorFlow's own default otherwise (an accelerator runs ops asynchronously and
  gains from the inter-op threads that feed it);
* ``0``: TensorFlow's default;
* ``N``: ``N`` threads.

TensorFlow takes the setting only before it runs its first op: in a process that already ran
TensorFlow (a notebook that built a model) it stays as it was, and :func:`set_inter_op_threads`
says so in its return value.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["inter_op_threads_for", "set_inter_op_threads"]


def inter_op_threads_for(setting: int | None, accelerated: bool) -> int:
    """The inter-op thread count a setting asks for (``0``: TensorFlow's default).

    Args:
        setting: ``None`` (auto), ``0`` (TensorFlow's default) or a positive count.
        accelerated: whether the run has a GPU or a TPU.

    Examples:
        >>> inter_op_threads_for(None, accelerated=False), inter_op_threads_for(None, True)
        (1, 0)
        >>> inter_op_threads_for(4, accelerated=False)
        4
    """
    if setting is None:
        return 0 if accelerated else 1
    if setting < 0:
        raise ValueError(f"inter_op_threads={setting} must be 0 (TensorFlow's default) or more.")
    return int(setting)


def set_inter_op_threads(setting: int | None, accelerated: bool | None = None) -> int:
    """Apply a run's inter-op setting, if TensorFlow has not started its runtime yet.

    Args:
        setting: as :func:`inter_op_threads_for`.
        accelerated: whether the run has a GPU or a TPU; ``None``: whether TensorFlow sees a
            GPU (listing the devices does not start the runtime).

    Returns:
        The inter-op thread count in effect afterwards (``0``: TensorFlow's default).
    """
    if accelerated is None:
        accelerated = bool(tf.config.list_physical_devices("GPU"))
    wanted = inter_op_threads_for(setting, accelerated)
    try:
        tf.config.threading.set_inter_op_parallelism_threads(wanted)
    except RuntimeError:  # the runtime already started: the setting is fixed for this process
        pass
    return tf.config.threading.get_inter_op_parallelism_threads()
