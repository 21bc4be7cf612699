"""Scale BNext training out with ``tf.distribute``, mixed precision, XLA and fault tolerance.

The original trains every BNext for 512 epochs on 8 GPUs (PyTorch DDP, AMP). This module is
the TensorFlow side of that:

* :func:`create_strategy` resolves ``--strategy`` (``auto``, ``mirrored``, ``multi_worker``,
  ``tpu``, ``one_device``, ``default``); :func:`strategy_kind` is the pure decision of
  ``auto`` (a TPU when one is configured, multi-worker when ``TF_CONFIG`` names a cluster of
  more than one task, mirrored when more than one GPU is visible, else the default strategy).
* :func:`distributed_dataset` builds the input pipeline once per input pipeline (worker) with
  the per-replica batch (``distribute_datasets_from_function``); :func:`shard_source` gives
  each pipeline its own slice of a :class:`~larq_bnext.data.DataSource`.
* :func:`scaled_learning_rate`: the linear (or square-root) scaling rule, off by default.
* :func:`convert_to_sync_batchnorm` rebuilds a model with synchronized BatchNorm
  (statistics over the global batch, as PyTorch's ``SyncBatchNorm``).
* :func:`set_mixed_precision` sets a Keras mixed-precision policy (``mixed_float16`` with
  dynamic loss scaling by ``Model.compile``, or ``mixed_bfloat16``). BNext's quantizers
  compute in float32 under it (see :mod:`larq_bnext.layers`); the Distiller's loss is float32.
* Fault tolerance: :class:`ResumableBackup` (Keras' ``BackupAndRestore`` with verified,
  never-half-written checkpoints and a fallback to the previous one) and
  :func:`save_weights_atomic` / :func:`atomic_write` for files written by callbacks.

The gradient of a distributed step is all-reduced *before* it is clipped (see
:meth:`larq_bnext.Distiller.train_step`), so the clip at global norm 5 acts on the gradient
of the global batch, as in the original, where DDP all-reduces during ``backward()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import uuid

import numpy as np
import tensorflow as tf

__all__ = [
    "STRATEGY_KINDS",
    "PRECISION_POLICIES",
    "LR_SCALING_RULES",
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
    "convert_to_sync_batchnorm",
    "SyncBatchNormalization",
    "set_mixed_precision",
    "enable_determinism",
    "worker_directory",
    "atomic_write",
    "save_weights_atomic",
    "checkpoint_is_complete",
    "latest_complete_checkpoint",
    "backup_initial_epoch",
    "remove_backup",
    "ResumableBackup",
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
        ValueError: when the global batch does not split evenly over the replicas.
    """
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        lower = max(replicas, global_batch_size // replicas * replicas)
        raise ValueError(
            f"The global batch {global_batch_size} does not split evenly over "
            f"{replicas} replicas; use a multiple of {replicas}, e.g. --batch_size={lower}."
        )
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
        source: a :class:`larq_bnext.data.DataSource`.
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


def set_mixed_precision(policy: str = "float32") -> tf.keras.mixed_precision.Policy:
    """Set Keras' global dtype policy; call it before building any model or teacher.

    ``mixed_float16``: float16 compute, float32 variables, dynamic loss scaling (Keras
    ``Model.compile`` wraps the optimizer in a ``LossScaleOptimizer``, which the Distiller
    honours). ``mixed_bfloat16``: bfloat16 compute (TPUs, Ampere+ GPUs, recent CPUs), no loss
    scaling needed. Under either, BNext's ``move`` biases and quantizers compute in float32
    (:mod:`larq_bnext.layers`), BatchNorm statistics are float32 (Keras), and the Distiller
    casts all logits to float32 before the softmax and the loss; the teachers run in the
    policy's compute type.

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


def enable_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and turn on deterministic TensorFlow ops.

    Needed for bitwise-reproducible runs (and resumed runs that match uninterrupted ones);
    some GPU ops become slower or raise when they have no deterministic kernel.

    Args:
        seed: the seed.
    """
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


# --------------------------------------------------------------------------- files
def _is_local(path: str) -> bool:
    return "://" not in str(path)


def worker_directory(directory: str, strategy: tf.distribute.Strategy | None = None) -> str:
    """Where this worker writes ``directory``'s files: the directory itself on the chief, a
    private sub-directory (``.worker_<index>``) on the other workers.

    Args:
        directory: the run's directory.
        strategy: the strategy; defaults to the current one.
    """
    if is_chief(strategy):
        return directory
    return os.path.join(directory, f".worker_{worker_index(strategy)}")


@contextlib.contextmanager
def atomic_write(path: str):
    """Write a file atomically: yields a temporary path beside ``path``, then renames it.

    The temporary file sits in the same directory (same file system) and keeps ``path``'s
    suffix (so Keras picks the same format from it). On success it is flushed to disk and
    ``os.replace``-d onto ``path``: readers see the old file or the complete new one, never a
    partial write, even if the process is killed during the write. On an exception the
    temporary file is removed and ``path`` is left untouched.

    Args:
        path: the final path (local, or a ``tf.io.gfile`` URL such as ``gs://...``).
    """
    path = str(path)
    directory, name = os.path.split(path)
    tf.io.gfile.makedirs(directory or ".")
    temporary = os.path.join(directory, f".tmp-{uuid.uuid4().hex[:12]}-{name}")
    try:
        yield temporary
        if _is_local(path):
            _fsync_file(temporary)
            os.replace(temporary, path)
            _fsync_directory(directory or ".")
        else:
            tf.io.gfile.rename(temporary, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(temporary):
            tf.io.gfile.remove(temporary)


def _fsync_file(path: str) -> None:
    if os.path.isdir(path):
        return
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(directory: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write_text(path: str, text: str) -> None:
    with atomic_write(path) as temporary:
        with tf.io.gfile.GFile(temporary, "w") as handle:
            handle.write(text)


def save_weights_atomic(
    model: tf.keras.Model, path: str, strategy: tf.distribute.Strategy | None = None
) -> None:
    """``model.save_weights(path)`` that never leaves a half-written file at ``path``.

    Every worker must call it (reading synchronized variables is a collective operation);
    the chief writes ``path`` through :func:`atomic_write`, the other workers write a
    private temporary file (see :func:`worker_directory`) that is deleted.

    Args:
        model: the model whose weights to save.
        path: the destination (e.g. ``last.weights.h5``).
        strategy: the strategy; defaults to the model's.
    """
    strategy = strategy or getattr(model, "distribute_strategy", None)
    if is_chief(strategy):
        with atomic_write(path) as temporary:
            model.save_weights(temporary)
        return
    directory, name = os.path.split(str(path))
    private = worker_directory(directory or ".", strategy)
    tf.io.gfile.makedirs(private)
    temporary = os.path.join(private, f".tmp-{uuid.uuid4().hex[:12]}-{name}")
    try:
        model.save_weights(temporary)
    finally:
        if tf.io.gfile.exists(temporary):
            tf.io.gfile.remove(temporary)
        with contextlib.suppress(OSError, tf.errors.OpError):
            if not tf.io.gfile.listdir(private):
                tf.io.gfile.rmtree(private)


# --------------------------------------------------------------------------- checkpoints
_MANIFEST_SUFFIX = ".manifest.json"


def _checkpoint_files(prefix: str) -> list[str]:
    files = tf.io.gfile.glob(prefix + ".index") + tf.io.gfile.glob(prefix + ".data-*")
    return sorted(files)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as handle:
        while True:
            chunk = handle.read(16 * 1024 * 1024)
            if not chunk:
                break
            digest.update(chunk)
    return digest.hexdigest()


def _write_manifest(prefix: str) -> None:
    files = {
        os.path.basename(f): {"size": tf.io.gfile.stat(f).length, "sha256": _sha256(f)}
        for f in _checkpoint_files(prefix)
    }
    _atomic_write_text(prefix + _MANIFEST_SUFFIX, json.dumps({"files": files}, indent=1))


def checkpoint_is_complete(prefix: str, verify: str = "sha256") -> bool:
    """Whether the checkpoint ``prefix`` (``.../ckpt-7``) was completely written and is intact.

    A checkpoint counts as complete only when its manifest (written atomically by
    :class:`ResumableBackup` after the checkpoint's files) exists and every file it lists
    exists with the recorded size and SHA-256. A checkpoint interrupted during its save, or
    truncated or altered afterwards, is not complete.

    Args:
        prefix: the checkpoint prefix (the path without ``.index``).
        verify: ``"sha256"`` (sizes and checksums) or ``"size"`` (sizes only).
    """
    manifest_path = prefix + _MANIFEST_SUFFIX
    if not tf.io.gfile.exists(manifest_path):
        return False
    try:
        with tf.io.gfile.GFile(manifest_path, "r") as handle:
            files = json.load(handle)["files"]
    except (ValueError, KeyError, tf.errors.OpError):
        return False
    directory = os.path.dirname(prefix)
    if not any(name.endswith(".index") for name in files):
        return False
    for name, record in files.items():
        path = os.path.join(directory, name)
        if not tf.io.gfile.exists(path) or tf.io.gfile.stat(path).length != record["size"]:
            return False
        if verify == "sha256" and _sha256(path) != record["sha256"]:
            return False
    return True


def _checkpoint_number(prefix: str) -> int:
    match = re.search(r"-(\d+)$", prefix)
    return int(match.group(1)) if match else -1


def latest_complete_checkpoint(directory: str, verify: str = "sha256") -> str | None:
    """The newest complete checkpoint (see :func:`checkpoint_is_complete`) in ``directory``.

    Every ``*.index`` file in the directory is a candidate, newest (highest number) first,
    whatever the ``checkpoint`` state file says, so a corrupt newest checkpoint falls back to
    the one before it.

    Args:
        directory: a checkpoint directory (``<backup_dir>/chief`` for :class:`ResumableBackup`).
        verify: ``"sha256"`` or ``"size"`` (see :func:`checkpoint_is_complete`).

    Returns:
        The checkpoint prefix, or ``None`` when there is no complete checkpoint.
    """
    if not tf.io.gfile.isdir(directory):
        return None
    prefixes = [p[: -len(".index")] for p in tf.io.gfile.glob(os.path.join(directory, "*.index"))]
    for prefix in sorted(prefixes, key=_checkpoint_number, reverse=True):
        if checkpoint_is_complete(prefix, verify):
            return prefix
    return None


def backup_initial_epoch(backup_dir: str) -> int:
    """The epoch a run resumed from ``backup_dir`` starts at (0 without a usable backup).

    Reads the epoch counter of the newest complete checkpoint without building any model,
    e.g. to build an input pipeline that starts at the resumed epoch.

    Args:
        backup_dir: the ``backup_dir`` of :class:`ResumableBackup`.
    """
    prefix = latest_complete_checkpoint(os.path.join(backup_dir, "chief"))
    if prefix is None:
        return 0
    reader = tf.train.load_checkpoint(prefix)
    key = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"
    if not reader.has_tensor(key):
        return 0
    return int(reader.get_tensor(key)) + 1


def remove_backup(backup_dir: str) -> None:
    """Delete a :class:`ResumableBackup` directory (after the whole run has finished).

    Args:
        backup_dir: the backup directory.
    """
    if tf.io.gfile.isdir(backup_dir):
        tf.io.gfile.rmtree(backup_dir)


def _worker_training_state_class():
    from keras.src.distribute import worker_training_state

    return worker_training_state.WorkerTrainingState


class ResumableBackup(tf.keras.callbacks.BackupAndRestore):
    """Back up the whole training state every epoch; a restarted run continues from it.

    Keras' ``BackupAndRestore`` with three changes:

    * **Verified checkpoints.** After each save the chief writes a manifest (sizes and
      SHA-256 of the checkpoint's files) atomically; restoring takes the newest checkpoint
      whose manifest checks out (:func:`latest_complete_checkpoint`), so a kill during a save,
      or a truncated file, never gets loaded: the previous checkpoint is used instead.
      ``keep`` checkpoints are kept (2 by default, so there is always one to fall back to).
    * **Kept after training** (``delete_checkpoint=False`` by default): a run of several
      ``fit`` stages that is restarted skips the finished stages (``fit`` resumes at the last
      epoch and trains zero epochs). Delete the directory with :func:`remove_backup` once the
      whole run has finished.
    * Restores before any other callback's ``on_epoch_begin``, so place it *after* the
      callbacks that change weights at the end of an epoch (the
      :class:`~larq_bnext.TemperatureScheduler`), which then back up annealed values.

    What is restored: every variable of the model (student, teachers, BatchNorm statistics,
    the binary convolutions' temperatures), the optimizer (step counter, hence the learning
    rate schedule, and its slots), the loss scale under ``mixed_float16``, and the epoch
    (``fit`` continues at the next epoch, so the curriculum phase follows). The input
    pipeline restarts: a resumed run sees the same data as an uninterrupted one only if its
    dataset is a function of the epoch (see :func:`backup_initial_epoch`).

    Args:
        backup_dir: directory of the backup (one per ``fit`` stage; not shared with other
            callbacks).
        save_freq: ``"epoch"`` or a number of steps between backups.
        keep: number of checkpoints kept (at least 2 to always have a fallback).
        delete_checkpoint: delete the backup when ``fit`` ends.
        verify: ``"sha256"`` (sizes and checksums) or ``"size"`` (sizes only, for very large
            checkpoints on slow storage).
    """

    def __init__(
        self,
        backup_dir: str,
        save_freq="epoch",
        keep: int = 2,
        delete_checkpoint: bool = False,
        verify: str = "sha256",
    ):
        super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=delete_checkpoint)
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}.")
        if verify not in ("sha256", "size"):
            raise ValueError(f"verify must be 'sha256' or 'size', not {verify!r}.")
        self.keep = int(keep)
        self.verify = verify
        self.restored_from = None

    def on_train_begin(self, logs=None):
        supported = (*self._supported_strategies, tf.distribute.OneDeviceStrategy)
        if self.model._distribution_strategy and not isinstance(
            self.model.distribute_strategy, supported
        ):
            raise ValueError(
                f"ResumableBackup does not support {type(self.model.distribute_strategy)}."
            )
        state = _verified_training_state(
            self.model, self.backup_dir, self.save_freq, self.keep, self.verify
        )
        self.model._training_state = state
        self._training_state = state
        self.restored_from = state.restore()


def _verified_training_state(model, backup_dir, save_freq, keep, verify):
    base = _worker_training_state_class()

    class VerifiedTrainingState(base):
        def __init__(self):
            super().__init__(model, backup_dir, save_freq, False)
            checkpoint = self.read_checkpoint_manager.checkpoint
            is_writer = self.write_checkpoint_manager is self.read_checkpoint_manager
            self.read_checkpoint_manager = tf.train.CheckpointManager(
                checkpoint, directory=os.path.join(backup_dir, "chief"), max_to_keep=keep
            )
            if is_writer:
                self.write_checkpoint_manager = self.read_checkpoint_manager
            else:
                self.write_checkpoint_manager = tf.train.CheckpointManager(
                    checkpoint, directory=self.write_checkpoint_manager.directory, max_to_keep=1
                )
            self._is_writer = is_writer

        def back_up(self, epoch, batch=0):
            path = self.write_checkpoint_manager.save()
            if not path:
                return
            if self._is_writer:
                _write_manifest(path)
                live = set(self.write_checkpoint_manager.checkpoints)
                for manifest in tf.io.gfile.glob(
                    os.path.join(self.write_checkpoint_manager.directory, "*" + _MANIFEST_SUFFIX)
                ):
                    if manifest[: -len(_MANIFEST_SUFFIX)] not in live:
                        tf.io.gfile.remove(manifest)
            else:
                from keras.src.distribute import distributed_file_utils

                distributed_file_utils.remove_temp_dirpath(
                    self.write_checkpoint_manager.directory, model.distribute_strategy
                )

        def restore(self):
            directory = self.read_checkpoint_manager.directory
            prefix = latest_complete_checkpoint(directory, verify)
            candidates = tf.io.gfile.glob(os.path.join(directory, "*.index"))
            if prefix is None:
                if candidates:
                    tf.get_logger().warning(
                        "ResumableBackup: no complete checkpoint in %s (found %d incomplete or "
                        "corrupt ones); training starts from the beginning.",
                        directory,
                        len(candidates),
                    )
                return None
            self.read_checkpoint_manager.checkpoint.restore(prefix)
            tf.get_logger().info("ResumableBackup: restored %s", prefix)
            return prefix

    return VerifiedTrainingState()
