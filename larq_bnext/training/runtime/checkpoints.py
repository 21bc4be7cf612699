"""Fault-tolerant files for long runs: atomic writes, verified checkpoints, resumable backups.

:class:`ResumableBackup` is Keras' ``BackupAndRestore`` with verified, never-half-written
checkpoints and a fallback to the previous one; :func:`save_weights_atomic` and
:func:`atomic_write` are for files written by callbacks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import uuid

import tensorflow as tf

from larq_bnext.training.runtime.distribute import is_chief, worker_index

__all__ = [
    "worker_directory",
    "atomic_write",
    "atomic_write_text",
    "save_weights_atomic",
    "checkpoint_is_complete",
    "latest_complete_checkpoint",
    "backup_position",
    "remove_backup",
    "ResumableBackup",
]


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


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`).

    Args:
        path: the file.
        text: its content.
    """
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
    atomic_write_text(prefix + _MANIFEST_SUFFIX, json.dumps({"files": files}, indent=1))


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


def backup_position(backup_dir: str, steps_per_epoch: int | None = None, save_freq="epoch"):
    """``(epoch, step)`` where a run resumed from ``backup_dir`` continues (``(0, 0)`` if none).

    The same decision as Keras' ``BackupAndRestore``: after an epoch-end backup, the next
    epoch's first step; after a backup every ``save_freq`` steps, the step after the saved
    one (the next epoch's first after an epoch's last step). Read from the newest complete
    checkpoint without building a model, to start the input pipeline there.

    Args:
        backup_dir: the ``backup_dir`` of :class:`ResumableBackup`.
        steps_per_epoch: steps per epoch (needed for step backups).
        save_freq: the backup's ``save_freq`` (``"epoch"`` or a number of steps).
    """
    prefix = latest_complete_checkpoint(os.path.join(backup_dir, "chief"))
    if prefix is None:
        return 0, 0
    reader = tf.train.load_checkpoint(prefix)
    epoch_key = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"
    batch_key = "ckpt_saved_batch/.ATTRIBUTES/VARIABLE_VALUE"
    if not reader.has_tensor(epoch_key):
        return 0, 0
    epoch = int(reader.get_tensor(epoch_key))
    batch = int(reader.get_tensor(batch_key)) if reader.has_tensor(batch_key) else -1
    if isinstance(save_freq, int) and batch >= 0 and steps_per_epoch:
        if batch == steps_per_epoch - 1:
            return epoch + 1, 0
        return epoch, batch + 1
    return (epoch + 1, 0) if epoch >= 0 else (0, 0)


def remove_backup(backup_dir: str) -> None:
    """Delete a :class:`ResumableBackup` directory (after the whole run has finished).

    Args:
        backup_dir: the backup directory.
    """
    if tf.io.gfile.isdir(backup_dir):
        tf.io.gfile.rmtree(backup_dir)


def _worker_training_state_class():
    from larq_bnext.keras2 import keras_src

    return keras_src("distribute.worker_training_state").WorkerTrainingState


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
    pipeline restarts: a resumed run sees the same data as an uninterrupted one when its
    dataset is a function of the epoch and step and starts where the backup ends (see
    :func:`backup_position`; :func:`larq_bnext.training.data.datasets.train_dataset` is such a
    dataset).

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
                from larq_bnext.keras2 import keras_src

                keras_src("distribute.distributed_file_utils").remove_temp_dirpath(
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
