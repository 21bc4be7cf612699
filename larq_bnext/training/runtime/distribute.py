"""Scale BNext training out with ``tf.distribute``, mixed precision, XLA and fault tolerance.

The original trains every BNext for 512 epochs on 8 GPUs (PyTorch DDP, AMP). This module is
the TensorFlow side of that:

* :func:`create_strategy` resolves ``--strategy`` (``auto``, ``mirrored``, ``multi_worker``,
  ``tpu``, ``one_device``, ``default``); :func:`strategy_kind` is the pure decision of
  ``auto`` (a TPU when one is configured, multi-worker when ``TF_CONFIG`` names a cluster of
  more than one task, mirrored when more than one GPU is visible, else the default strategy).
* :func:`distributed_dataset` builds the input pipeline once per input pipeline (worker) with
  the per-replica batch (``distribute_datasets_from_function``); :func:`shard_source` gives
  each pipeline its own slice of a :class:`~larq_bnext.training.data.datasets.DataSource`.
* :func:`scaled_learning_rate`: the linear (or square-root) scaling rule, off by default.
* :func:`~larq_bnext.training.runtime.sync_batchnorm.convert_to_sync_batchnorm` rebuilds a
  model with synchronized BatchNorm
  (statistics over the global batch, as PyTorch's ``SyncBatchNorm``).
* :func:`set_mixed_precision` sets a Keras mixed-precision policy (``mixed_float16`` with
  dynamic loss scaling by ``Model.compile``, or ``mixed_bfloat16``). BNext's quantizers
  compute in float32 under it (see :mod:`larq_bnext.models.quantizers`); the Distiller's loss
  is float32.
* Fault tolerance: :class:`~larq_bnext.training.runtime.checkpoints.ResumableBackup` (Keras'
  ``BackupAndRestore`` with verified,
  never-half-written checkpoints and a fallback to the previous one) and
  :mod:`larq_bnext.training.runtime.checkpoints` for files written by callbacks.

The gradient of a distributed step is all-reduced *before* it is clipped (see
:meth:`larq_bnext.Distiller.train_step`), so the clip at global norm 5 acts on the gradient
of the global batch, as in the original, where DDP all-reduces during ``backward()``.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from larq_bnext.keras2 import set_random_seed
from larq_bnext.training.checks import check_replicas

__all__ = [
    "STRATEGY_KINDS",
    "PRECISION_POLICIES",
    "LR_SCALING_RULES",
    "one_op_at_a_time",
    "tf_config_cluster",
    "tpu_configured",
    "strategy_kind",
    "create_strategy",
    "is_chief",
    "worker_index",
    "per_replica_batch_size",
    "scaled_learning_rate",
    "shard_source",
    "distributed_dataset",
    "set_mixed_precision",
    "enable_determinism",
    "op_determinism_enabled",
    "set_op_determinism",
]


#: Values of ``--strategy``.
STRATEGY_KINDS = ("auto", "mirrored", "multi_worker", "tpu", "one_device", "default")


#: Values of ``--mixed_precision``.
PRECISION_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


#: Values of ``--lr_scaling``.
LR_SCALING_RULES = ("none", "linear", "sqrt")


_TPU_ENV_VARS = ("TPU_NAME", "COLAB_TPU_ADDR", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS")


# --------------------------------------------------------------------------- strategies
def tf_config_cluster(tf_config: str | dict | None = None) -> dict | None:
    """The ``cluster`` of ``TF_CONFIG`` (from the environment by default), or ``None``.

    Args:
        tf_config: the JSON string or dict of ``TF_CONFIG``; ``None`` reads the environment.

    Raises:
        ValueError: when ``TF_CONFIG`` is not valid JSON.
    """
    if tf_config is None:
        tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        return None
    if isinstance(tf_config, str):
        try:
            tf_config = json.loads(tf_config)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"TF_CONFIG is not valid JSON ({error}); it must look like "
                '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
                '"index": 0}}.'
            ) from error
    cluster = tf_config.get("cluster") or None
    return dict(cluster) if cluster else None


def _cluster_size(cluster: dict | None) -> int:
    if not cluster:
        return 0
    return sum(len(cluster.get(job, [])) for job in ("chief", "worker"))


def tpu_configured(tpu: str | None = None) -> bool:
    """Whether a TPU is configured: an explicit address or a TPU environment variable.

    Args:
        tpu: a TPU name or address (``--tpu``); ``"local"`` for a TPU VM.
    """
    return bool(tpu) or any(os.environ.get(name) for name in _TPU_ENV_VARS)


def strategy_kind(
    requested: str = "auto",
    tf_config: str | dict | None = None,
    num_gpus: int = 0,
    tpu: str | None = None,
) -> str:
    """Resolve ``--strategy`` to one of ``mirrored``, ``multi_worker``, ``tpu``,
    ``one_device`` or ``default`` (pure: decides from its arguments and the environment).

    ``auto`` picks, in order: ``tpu`` when a TPU is configured (:func:`tpu_configured`),
    ``multi_worker`` when ``TF_CONFIG`` names a cluster of more than one task, ``mirrored``
    when more than one GPU is visible, else ``default`` (one device, no replication).

    Args:
        requested: a value of :data:`STRATEGY_KINDS`.
        tf_config: ``TF_CONFIG`` (JSON string or dict); ``None`` reads the environment.
        num_gpus: the number of visible GPUs.
        tpu: the ``--tpu`` address, if any.

    Raises:
        ValueError: for an unknown kind.
    """
    requested = (requested or "auto").strip().lower().replace("-", "_")
    if requested not in STRATEGY_KINDS:
        raise ValueError(
            f"Unknown --strategy {requested!r}; choose one of {', '.join(STRATEGY_KINDS)}."
        )
    if requested != "auto":
        return requested
    if tpu_configured(tpu):
        return "tpu"
    if _cluster_size(tf_config_cluster(tf_config)) > 1:
        return "multi_worker"
    if num_gpus > 1:
        return "mirrored"
    return "default"


def create_strategy(
    kind: str = "auto",
    devices: list[str] | None = None,
    tpu: str | None = None,
    communication: str = "auto",
) -> tf.distribute.Strategy:
    """Create the ``tf.distribute`` strategy of ``--strategy``.

    Call it first thing in the program: ``MultiWorkerMirroredStrategy`` must be created
    before TensorFlow initialises its devices. Build models, teachers, optimizers and metrics
    inside ``strategy.scope()``.

    Args:
        kind: a value of :data:`STRATEGY_KINDS` (see :func:`strategy_kind` for ``auto``).
        devices: devices of ``mirrored`` (default: all GPUs, else the CPU) or the device of
            ``one_device`` (default: the first GPU, else the CPU).
        tpu: TPU name or address for ``tpu`` (``"local"`` on a TPU VM; default from
            ``TPU_NAME``).
        communication: collective implementation of ``multi_worker``: ``auto``, ``ring``
            (gRPC, works on CPUs) or ``nccl`` (GPUs).

    Returns:
        A :class:`tf.distribute.Strategy`.

    Raises:
        ValueError: for unknown kinds, communication options or device lists that do not fit.
    """
    gpus = tf.config.list_physical_devices("GPU")
    resolved = strategy_kind(kind, num_gpus=len(gpus), tpu=tpu)
    if resolved == "default":
        if devices:
            raise ValueError("--devices needs --strategy=mirrored or one_device.")
        return tf.distribute.get_strategy()
    if resolved == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    if resolved == "one_device":
        if devices and len(devices) != 1:
            raise ValueError(f"--strategy=one_device takes one device, got {devices}.")
        device = devices[0] if devices else ("/gpu:0" if gpus else "/cpu:0")
        return tf.distribute.OneDeviceStrategy(device)
    if resolved == "multi_worker":
        if devices:
            raise ValueError(
                "--devices does not apply to multi_worker: every worker uses all its GPUs "
                "(or its CPU); restrict them with CUDA_VISIBLE_DEVICES."
            )
        if _cluster_size(tf_config_cluster()) < 1:
            raise ValueError(
                "--strategy=multi_worker needs TF_CONFIG naming the cluster, e.g. "
                'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}\' on the first worker.'
            )
        implementations = {
            "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
            "ring": tf.distribute.experimental.CommunicationImplementation.RING,
            "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
        }
        if communication not in implementations:
            raise ValueError(f"Unknown communication {communication!r}; use auto, ring or nccl.")
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=implementations[communication]
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    # tpu
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        if tpu not in (None, "", "local"):
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as error:
        raise ValueError(
            f"No TPU found ({error}). Pass --tpu=<name or grpc://address> (--tpu=local on a "
            "TPU VM), set TPU_NAME, or choose another --strategy."
        ) from error
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes the run's files (the chief, or the only worker).

    Args:
        strategy: the strategy; defaults to the current one.
    """
    strategy = strategy or tf.distribute.get_strategy()
    return bool(strategy.extended.should_checkpoint)


def worker_index(strategy: tf.distribute.Strategy | None = None) -> int:
    """This worker's task index (0 without a cluster).

    Args:
        strategy: the strategy; defaults to the current one.
    """
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    task_id = getattr(resolver, "task_id", None) if resolver is not None else None
    return int(task_id or 0)


def per_replica_batch_size(global_batch_size: int, strategy: tf.distribute.Strategy) -> int:
    """The batch each replica processes: ``global_batch_size / num_replicas_in_sync``.

    Args:
        global_batch_size: the batch of one optimizer step over all replicas.
        strategy: the strategy.

    Raises:
        ConfigError: when the global batch does not split evenly over the replicas
            (:func:`larq_bnext.training.checks.check_replicas`).
    """
    replicas = strategy.num_replicas_in_sync
    check_replicas(global_batch_size, replicas)
    return global_batch_size // replicas


def scaled_learning_rate(
    base_lr: float, global_batch_size: int, reference_batch_size: int, rule: str = "none"
) -> float:
    """The learning rate for ``global_batch_size`` under a scaling rule.

    ``none`` (the default) keeps ``base_lr`` (the original recipe is written for its own
    global batch: 512 for BNext-T/S/M, 128 for L). ``linear`` (Goyal et al., 2017) multiplies
    it by ``global_batch_size / reference_batch_size``; ``sqrt`` by the square root of that
    ratio (often better for Adam-type optimizers).

    Args:
        base_lr: the peak learning rate of the recipe at ``reference_batch_size``.
        global_batch_size: the global batch of the run.
        reference_batch_size: the global batch ``base_lr`` is meant for.
        rule: a value of :data:`LR_SCALING_RULES`.

    Raises:
        ValueError: for an unknown rule or non-positive batch sizes.
    """
    if rule not in LR_SCALING_RULES:
        raise ValueError(f"Unknown --lr_scaling {rule!r}; choose none, linear or sqrt.")
    if global_batch_size <= 0 or reference_batch_size <= 0:
        raise ValueError("Batch sizes must be positive.")
    ratio = global_batch_size / reference_batch_size
    if rule == "linear":
        return base_lr * ratio
    if rule == "sqrt":
        return base_lr * ratio**0.5
    return base_lr


# --------------------------------------------------------------------------- input pipelines
def shard_source(source, num_shards: int, index: int):
    """The ``index``-th of ``num_shards`` disjoint, near-equal slices of a data source.

    Array and path sources are sliced ``items[index::num_shards]``; a TFDS source's dataset
    is ``shard``-ed. With one shard the source itself is returned.

    Args:
        source: a :class:`larq_bnext.training.data.datasets.DataSource`.
        num_shards: number of input pipelines.
        index: this pipeline's id, ``0 <= index < num_shards``.

    Raises:
        ValueError: for an invalid index or a source with fewer examples than shards.
    """
    if not 0 <= index < num_shards:
        raise ValueError(f"Shard index {index} is outside [0, {num_shards}).")
    if num_shards == 1:
        return source
    if source.num_examples < num_shards:
        raise ValueError(
            f"{source.name or 'The dataset'} has {source.num_examples} examples, fewer than "
            f"the {num_shards} input pipelines."
        )
    count = len(range(index, source.num_examples, num_shards))
    if source.kind == "tfds":
        return dataclasses.replace(
            source, items=source.items.shard(num_shards, index), num_examples=count
        )
    items = source.items[index::num_shards]
    labels = None if source.labels is None else np.asarray(source.labels)[index::num_shards]
    return dataclasses.replace(source, items=items, labels=labels, num_examples=count)


def distributed_dataset(strategy: tf.distribute.Strategy, dataset_fn, global_batch_size: int):
    """A distributed input pipeline: one ``tf.data`` pipeline per worker, per-replica batches.

    ``dataset_fn(per_replica_batch, input_context)`` is called once per input pipeline (per
    worker) and must return a dataset of *per-replica* batches, sharded by
    ``input_context.input_pipeline_id`` out of ``input_context.num_input_pipelines`` (e.g.
    with :func:`shard_source`). Under the default strategy it is called once with the whole
    batch and one pipeline, so the single-device pipeline is unchanged.

    Pass the result to ``fit`` with ``steps_per_epoch``.

    Args:
        strategy: the strategy the model is built under.
        dataset_fn: ``(per_replica_batch: int, input_context) -> tf.data.Dataset``.
        global_batch_size: the global batch of one step.

    Returns:
        A ``tf.distribute.DistributedDataset`` (a ``tf.data.Dataset`` under the default
        strategy).
    """
    per_replica_batch_size(global_batch_size, strategy)  # validates the split

    def per_pipeline(context: tf.distribute.InputContext):
        return dataset_fn(context.get_per_replica_batch_size(global_batch_size), context)

    return strategy.distribute_datasets_from_function(per_pipeline)


def set_mixed_precision(policy: str = "float32") -> tf.keras.mixed_precision.Policy:
    """Set Keras' global dtype policy; call it before building any model or teacher.

    ``mixed_float16``: float16 compute, float32 variables, dynamic loss scaling (Keras
    ``Model.compile`` wraps the optimizer in a ``LossScaleOptimizer``, which the Distiller
    honours). ``mixed_bfloat16``: bfloat16 compute (TPUs, Ampere+ GPUs, recent CPUs), no loss
    scaling needed. Under either, BNext's ``move`` biases and quantizers compute in float32
    (:mod:`larq_bnext.models.quantizers`), BatchNorm statistics are float32 (Keras), and the
    Distiller casts all logits to float32 before the softmax and the loss; the teachers run in
    the policy's compute type.

    Args:
        policy: a value of :data:`PRECISION_POLICIES`.

    Raises:
        ValueError: for an unknown policy.
    """
    if policy not in PRECISION_POLICIES:
        raise ValueError(
            f"Unknown --mixed_precision {policy!r}; choose {', '.join(PRECISION_POLICIES)}."
        )
    tf.keras.mixed_precision.set_global_policy(policy)
    return tf.keras.mixed_precision.global_policy()


def one_op_at_a_time() -> bool:
    """Run one TensorFlow op at a time (inter-op threads 1; each op still uses every core).

    Op determinism alone does not make a BNext training step reproducible on a CPU: with
    TensorFlow 2.15, the same gradient computed repeatedly in one process differed by a float32
    ulp or so in 3 of 8 steps (from BNext-T's last attention block to the stem) when
    independent ops ran concurrently, and in 0 of 20 with one inter-op thread. TensorFlow takes
    the setting only before it runs its first op, and keeps it for the process: so the train
    program calls this for a deterministic run, and :func:`larq_bnext.training.run` does not.

    Returns:
        Whether TensorFlow runs one op at a time now.
    """
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already started its runtime
        pass
    return tf.config.threading.get_inter_op_parallelism_threads() == 1


def enable_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and turn on deterministic TensorFlow ops.

    Needed for bitwise-reproducible runs (and resumed runs that match uninterrupted ones);
    some GPU ops become slower or raise when they have no deterministic kernel.

    Args:
        seed: the seed.
    """
    set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def op_determinism_enabled() -> bool:
    """Whether TensorFlow's deterministic ops are on (:func:`enable_determinism`)."""
    from tensorflow.python.framework import config as tf_config  # no public getter in TF 2.15

    return bool(tf_config.is_op_determinism_enabled())


def set_op_determinism(enabled: bool) -> None:
    """Turn TensorFlow's deterministic ops on or off (a run restores the state it found).

    Args:
        enabled: the state to set.
    """
    from tensorflow.python.framework import config as tf_config  # no public setter for "off"

    if enabled:
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()
