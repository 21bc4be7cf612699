"""Scale-out: strategies, distributed math, sync BatchNorm, mixed precision, XLA, resumption.

Tests that need a fresh TensorFlow (two logical CPU devices, a multi-worker cluster, a process
killed with SIGKILL) run ``tests/_distribute_worker.py`` in subprocesses; the rest run here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from larq_bnext.training.data.datasets import DataSource
from larq_bnext.training.method.distiller import Distiller
from larq_bnext.training.runtime import checkpoints, distribute, sync_batchnorm
from tests._distribute_worker import build_student, build_teacher, data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(ROOT, "tests", "_distribute_worker.py")
TIMEOUT = 420  # seconds per subprocess; generous for a loaded 2-core machine


def _env(**extra):
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _start(mode, out, *args, env=None):
    return subprocess.Popen(
        [sys.executable, WORKER, mode, "--out", str(out), "--no_grappler", *args],
        cwd=ROOT,
        env=env or _env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(processes, expect=0):
    """Wait for all processes (killing every one on a timeout or failure); return outputs."""
    outputs = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=TIMEOUT)
            outputs.append(output)
            if expect is not None and process.returncode != expect:
                raise AssertionError(
                    f"worker exited with {process.returncode}, expected {expect}:\n"
                    + output[-4000:]
                )
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return outputs


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _max_diff(a, b):
    assert sorted(a.files) == sorted(b.files)
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a.files)


# --------------------------------------------------------------------------- strategies
@pytest.fixture
def clean_env(monkeypatch):
    for name in ("TF_CONFIG", "TPU_NAME", "COLAB_TPU_ADDR", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_auto_strategy_follows_tpu_then_cluster_then_gpus(clean_env):
    two_workers = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}
    one_worker = {"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}
    assert distribute.strategy_kind("auto") == "default"
    assert distribute.strategy_kind("auto", num_gpus=1) == "default"
    assert distribute.strategy_kind("auto", num_gpus=2) == "mirrored"
    assert distribute.strategy_kind("auto", tf_config=one_worker, num_gpus=4) == "mirrored"
    assert distribute.strategy_kind("auto", tf_config=two_workers, num_gpus=4) == "multi_worker"
    assert distribute.strategy_kind("auto", tf_config=json.dumps(two_workers)) == "multi_worker"
    assert distribute.strategy_kind("auto", tf_config=two_workers, tpu="local") == "tpu"
    clean_env.setenv("TPU_NAME", "my-tpu")
    assert distribute.strategy_kind("auto", num_gpus=8) == "tpu"
    clean_env.delenv("TPU_NAME")
    clean_env.setenv("TF_CONFIG", json.dumps(two_workers))
    assert distribute.strategy_kind("auto") == "multi_worker"
    for kind in ("mirrored", "multi_worker", "tpu", "one_device", "default"):
        assert distribute.strategy_kind(kind, num_gpus=0) == kind
    assert distribute.strategy_kind("Multi-Worker") == "multi_worker"
    with pytest.raises(ValueError, match="Unknown --strategy 'horovod'"):
        distribute.strategy_kind("horovod")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        distribute.strategy_kind("auto", tf_config="{cluster")


def test_create_strategy_on_this_cpu_and_clear_errors(clean_env, tmp_path):
    default = distribute.create_strategy("auto")
    assert default is tf.distribute.get_strategy()
    assert default.num_replicas_in_sync == 1
    assert distribute.is_chief(default) and distribute.worker_index(default) == 0
    one = distribute.create_strategy("one_device")
    assert isinstance(one, tf.distribute.OneDeviceStrategy)
    assert checkpoints.worker_directory("/runs/x", one) == "/runs/x"
    with one.scope():  # backups work under every strategy the CLI can pick
        model = tf.keras.Sequential([tf.keras.layers.Dense(2, input_shape=(3,))])
        model.compile("sgd", "mse")
    backup = checkpoints.ResumableBackup(str(tmp_path))
    model.fit(np.zeros((4, 3)), np.zeros((4, 2)), epochs=2, callbacks=[backup], verbose=0)
    assert checkpoints.backup_position(str(tmp_path))[0] == 2
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        distribute.create_strategy("multi_worker")
    with pytest.raises(ValueError, match="--devices needs"):
        distribute.create_strategy("default", devices=["/cpu:0"])
    with pytest.raises(ValueError, match="takes one device"):
        distribute.create_strategy("one_device", devices=["/cpu:0", "/cpu:1"])


def test_batch_split_and_learning_rate_scaling_rules():
    four = types.SimpleNamespace(num_replicas_in_sync=4)
    assert distribute.per_replica_batch_size(512, four) == 128
    with pytest.raises(ValueError, match="batch_size=510 does not split.*e.g. batch_size=508"):
        distribute.per_replica_batch_size(510, four)
    # Off by default: the recipe's learning rate whatever the batch.
    assert distribute.scaled_learning_rate(1e-3, 4096, 512) == 1e-3
    assert distribute.scaled_learning_rate(1e-3, 4096, 512, "linear") == pytest.approx(8e-3)
    assert distribute.scaled_learning_rate(1e-3, 128, 512, "linear") == pytest.approx(2.5e-4)
    assert distribute.scaled_learning_rate(1e-3, 2048, 512, "sqrt") == pytest.approx(2e-3)
    with pytest.raises(ValueError, match="Unknown --lr_scaling"):
        distribute.scaled_learning_rate(1e-3, 512, 512, "cubic")


def test_shard_source_gives_disjoint_slices_that_cover_the_data():
    items = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    labels = np.arange(10) % 3
    source = DataSource("array", items, labels, 10, 3, ["a", "b", "c"], name="toy")
    shards = [distribute.shard_source(source, 3, i) for i in range(3)]
    assert [s.num_examples for s in shards] == [4, 3, 3]
    seen = np.concatenate([s.items[:, 0, 0, 0] for s in shards])
    assert sorted(seen.tolist()) == sorted(items[:, 0, 0, 0].tolist())
    for s in shards:  # labels travel with their images
        np.testing.assert_array_equal(s.labels, labels[s.items[:, 0, 0, 0] // 12])
    assert distribute.shard_source(source, 1, 0) is source
    with pytest.raises(ValueError, match="outside"):
        distribute.shard_source(source, 3, 3)


# --------------------------------------------------------------------------- sync BatchNorm
def test_sync_batchnorm_updates_moving_variance_like_the_fused_layer_and_pytorch():
    x = np.random.default_rng(0).normal(1.0, 2.0, size=(4, 3, 3, 5)).astype("float32")
    layer = sync_batchnorm.SyncBatchNormalization(momentum=0.9, epsilon=1e-5)
    out = layer(x, training=True).numpy()
    flat = x.reshape(-1, 5)
    # Normalisation with the biased variance; moving variance with the unbiased one (n - 1).
    expected = (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5)
    np.testing.assert_allclose(out.reshape(-1, 5), expected, atol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(
        layer.moving_variance.numpy(), 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-5
    )
    fused = tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    fused(x, training=True)
    np.testing.assert_allclose(layer.moving_variance.numpy(), fused.moving_variance, rtol=1e-5)


def test_convert_to_sync_batchnorm_keeps_names_weights_and_outputs():
    student = build_student(0)
    synced = sync_batchnorm.convert_to_sync_batchnorm(student)
    bns = [layer for layer in synced.layers if "BatchNormalization" in type(layer).__name__]
    assert bns and all(isinstance(b, sync_batchnorm.SyncBatchNormalization) for b in bns)
    assert all(b.synchronized for b in bns)
    assert [w.name for w in synced.weights] == [w.name for w in student.weights]
    x = np.random.default_rng(1).normal(size=(2, 16, 16, 3)).astype("float32")
    # Equal up to float rounding: the synchronized layer normalises with its own formula, the
    # original layer with the fused kernel (a fresh clone's run differed by 4.5e-8 at ~0.2).
    np.testing.assert_allclose(
        synced(x, training=False), student(x, training=False), rtol=1e-5, atol=1e-6
    )
    restored = tf.keras.models.clone_model(synced)  # serialisable (registered class)
    assert isinstance(restored.get_layer("stem_bn"), sync_batchnorm.SyncBatchNormalization)


# --------------------------------------------------------------------------- mixed precision, XLA
_REFERENCE = {}


def _reference_step():
    """The float32 step (computed once for the tests below)."""
    if "float32" not in _REFERENCE:
        _REFERENCE["float32"] = _one_step("float32")
    return _REFERENCE["float32"]


def _one_step(policy="float32", jit_compile=False):
    x, y = data(8, seed=4)
    student0, teacher0 = build_student(0), build_teacher(1)
    weights, teacher_weights = student0.get_weights(), teacher0.get_weights()
    distribute.set_mixed_precision(policy)
    try:
        student, teacher = build_student(0), build_teacher(1)
        student.set_weights(weights)
        teacher.set_weights(teacher_weights)
        distiller = Distiller(student, teacher=teacher)
        distiller.compile(optimizer=tf.keras.optimizers.SGD(0.1), jit_compile=jit_compile)
        logs = distiller.train_on_batch(x, y, return_dict=True)
        return logs, distiller, [w.numpy() for w in student.weights]
    finally:
        distribute.set_mixed_precision("float32")


def test_mixed_bfloat16_step_runs_on_cpu_close_to_float32():
    reference, _, _ = _reference_step()
    logs, distiller, weights = _one_step("mixed_bfloat16")
    # Measured: 1.1e-4 relative. Tolerance 1e-2: bfloat16 keeps 8 bits of mantissa, and a
    # binary network flips the sign of near-zero pre-activations under any rounding change.
    assert logs["loss"] == pytest.approx(reference["loss"], rel=1e-2)
    assert all(np.isfinite(w).all() for w in weights)
    student = distiller.student
    assert student.get_layer("block1_attention_move").compute_dtype == "float32"
    conv = student.get_layer("block1_attention_binary_conv")
    assert conv.compute_dtype == "bfloat16"
    assert conv.input_quantizer.compute_dtype == "float32"
    assert conv.kernel.dtype == tf.float32  # float32 master weights
    assert distiller.teacher.model.layers[1].compute_dtype == "bfloat16"
    assert student.output.dtype == tf.bfloat16  # logits are cast to float32 for the loss


def test_mixed_float16_uses_loss_scaling_and_stays_finite():
    reference, _, _ = _reference_step()
    logs, distiller, weights = _one_step("mixed_float16")
    assert isinstance(distiller.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
    assert logs["loss"] == pytest.approx(reference["loss"], rel=1e-2)
    assert all(np.isfinite(w).all() for w in weights)


def test_xla_compiled_step_matches_the_plain_step():
    reference, _, plain = _reference_step()
    logs, _, compiled = _one_step("float32", jit_compile=True)
    assert logs["loss"] == pytest.approx(reference["loss"], rel=1e-5)
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(plain, compiled, strict=True)) < 1e-5


# --------------------------------------------------------------------------- files and checkpoints
def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "last.weights.h5"
    path.write_bytes(b"old complete file")
    with pytest.raises(RuntimeError):
        with checkpoints.atomic_write(str(path)) as temporary:
            assert temporary.endswith("last.weights.h5") and temporary != str(path)
            with open(temporary, "wb") as handle:
                handle.write(b"half")
            raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old complete file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.weights.h5"]
    with checkpoints.atomic_write(str(path)) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(b"new")
    assert path.read_bytes() == b"new"


def test_truncated_or_altered_checkpoints_are_never_picked(tmp_path):
    variable = tf.Variable(np.zeros(1000, np.float32))
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=variable), str(tmp_path), 4)
    for value in (1.0, 2.0, 3.0):
        variable.assign(np.full(1000, value, np.float32))
        checkpoints._write_manifest(manager.save())
    assert checkpoints.latest_complete_checkpoint(str(tmp_path)).endswith("ckpt-3")
    # A checkpoint interrupted before its manifest: not complete, whatever the state file says.
    variable.assign(np.full(1000, 4.0, np.float32))
    manager.save()
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-4")
    assert checkpoints.latest_complete_checkpoint(str(tmp_path)).endswith("ckpt-3")
    # Truncated data file: falls back to the one before.
    data3 = tf.io.gfile.glob(str(tmp_path / "ckpt-3.data-*"))[0]
    with open(data3, "r+b") as handle:
        handle.truncate(100)
    assert checkpoints.latest_complete_checkpoint(str(tmp_path)).endswith("ckpt-2")
    # Same size, one byte changed: caught by the checksum (not by the size check alone).
    data2 = tf.io.gfile.glob(str(tmp_path / "ckpt-2.data-*"))[0]
    with open(data2, "r+b") as handle:
        handle.seek(50)
        byte = handle.read(1)
        handle.seek(50)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert checkpoints.latest_complete_checkpoint(str(tmp_path), verify="size").endswith("ckpt-2")
    prefix = checkpoints.latest_complete_checkpoint(str(tmp_path))
    assert prefix.endswith("ckpt-1")
    tf.train.Checkpoint(v=variable).restore(prefix)
    np.testing.assert_array_equal(variable.numpy(), 1.0)
    assert checkpoints.latest_complete_checkpoint(str(tmp_path / "missing")) is None
    assert checkpoints.backup_position(str(tmp_path / "missing"))[0] == 0


def test_kill_during_a_weights_write_leaves_the_previous_file(tmp_path):
    _finish([_start("killsave", tmp_path, "--kill_at", "weights")], expect=-signal.SIGKILL)
    assert any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())  # the half-written one
    student = build_student(0)
    student.load_weights(str(tmp_path / "last.weights.h5"))
    saved = np.load(tmp_path / "saved_weights.npz")
    for i, weight in enumerate(student.get_weights()):
        np.testing.assert_array_equal(weight, saved[f"arr_{i}"])


def test_kill_between_a_checkpoint_and_its_manifest_restores_the_previous_one(tmp_path):
    _finish([_start("killsave", tmp_path, "--kill_at", "checkpoint")], expect=-signal.SIGKILL)
    chief = str(tmp_path / "backup" / "chief")
    # TensorFlow's own state file points at the interrupted (truncated) checkpoint ...
    assert tf.train.latest_checkpoint(chief).endswith("ckpt-3")
    # ... which ResumableBackup skips: it resumes from the last complete one, after epoch 2.
    assert checkpoints.latest_complete_checkpoint(chief).endswith("ckpt-2")
    assert checkpoints.backup_position(str(tmp_path / "backup"))[0] == 2
    student = build_student(0)
    distiller = Distiller(student)
    distiller.compile(optimizer=tf.keras.optimizers.SGD(0.1))
    backup = checkpoints.ResumableBackup(str(tmp_path / "backup"))
    x, y = data(8)
    history = distiller.fit(x, y, batch_size=8, epochs=2, callbacks=[backup], verbose=0)
    assert backup.restored_from.endswith("ckpt-2")
    assert history.history == {}  # both epochs were already done
    expected = np.load(tmp_path / "backed_up.npz")
    for i, weight in enumerate(student.get_weights()):
        np.testing.assert_array_equal(weight, expected[f"arr_{i}"])


# --------------------------------------------------------------------------- subprocess runs
def test_mirrored_two_replicas_match_one_device_on_the_global_batch(tmp_path):
    _finish([_start("mirrored", tmp_path, "--optimizer", "sgd", "--lr", "0.1")])
    result = json.loads((tmp_path / "mirrored.json").read_text())
    # The clip binds (global norm ~26 vs 0.05) and training moved the weights ...
    assert result["grad_norm"] > 10 * result["clip_norm"]
    assert result["weights_changed_by_training"] > 1e-2
    # ... and two replicas with synchronized BatchNorm, distillation and the global-norm clip
    # give the single device's weights, BatchNorm statistics and optimizer state (measured
    # 1.2e-7), while clipping each replica's gradient separately would not.
    assert result["weights_max_abs_diff"] < 1e-5
    assert result["per_replica_clip_max_abs_diff"] > 1e-3
    for name, value in result["metrics_single"].items():
        assert result["metrics_mirrored"][name] == pytest.approx(value, abs=1e-6), name


def test_two_workers_on_localhost_end_with_identical_weights(tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    processes = [
        _start(
            "worker",
            tmp_path,
            env=_env(
                TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            ),
        )
        for i in range(2)
    ]
    _finish(processes)
    first, second = np.load(tmp_path / "worker0.npz"), np.load(tmp_path / "worker1.npz")
    assert sorted(first.files) == sorted(second.files) and len(first.files) > 100
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    info = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    assert [i["chief"] for i in info] == [True, False]
    assert info[0]["replicas"] == 2 and info[0]["history"] == info[1]["history"]
    # Only the chief's files remain: no worker temporaries, a verified backup (best.json:
    # StudentCheckpoint's record of every epoch's score, which a resume restores).
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == [
        "best.json",
        "best.weights.h5",
        "last.weights.h5",
    ]
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == ["chief"]
    assert checkpoints.latest_complete_checkpoint(str(tmp_path / "backup" / "chief"))


def test_run_killed_in_its_second_epoch_resumes_to_the_same_weights(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    processes = [_start("resume", straight), _start("resume", resumed, "--kill_at", "1:2")]
    _finish(processes[1:], expect=-signal.SIGKILL)
    _finish(processes[:1])
    assert not (resumed / "final.npz").exists()
    _finish([_start("resume", resumed)])  # the same command again
    a, b = np.load(straight / "final.npz"), np.load(resumed / "final.npz")
    assert _max_diff(a, b) <= 1e-5  # measured: 0 (bitwise identical)
    full = json.loads((straight / "history.json").read_text())
    second = json.loads((resumed / "history.json").read_text())
    assert second["initial_epoch"] == 1 and second["restored_from"].endswith("ckpt-1")
    # The resumed epochs start with the uninterrupted run's step, temperature and phase ...
    assert second["epochs"] == full["epochs"][1:]
    assert [row["phase"] for row in full["epochs"]] == [0, 0, 1]
    # ... and log the same learning rate, temperature and losses.
    for key in ("lr", "temperature", "curriculum_phase", "loss"):
        assert second["history"][key] == pytest.approx(full["history"][key][1:], rel=1e-6)


def test_one_op_at_a_time_before_tensorflow_starts_and_not_after():
    code = (
        "import tensorflow as tf\n"
        "from larq_bnext.training.runtime import distribute\n"
        "{before}"
        "threads = tf.config.threading.get_inter_op_parallelism_threads\n"
        "print(distribute.one_op_at_a_time(), threads())\n"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", code.format(before="")], env=_env(), capture_output=True, text=True
    )
    started = subprocess.run(
        [sys.executable, "-c", code.format(before="tf.constant(1.0) + 1.0\n")],
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert fresh.stdout.split() == ["True", "1"], fresh.stderr[-2000:]
    # Too late: TensorFlow keeps its default (0, one thread per core) and says so by False.
    assert started.stdout.split() == ["False", "0"], started.stderr[-2000:]


def test_run_restores_the_callers_precision_policy_and_leaves_threads_alone():
    """A run in a caller's process sets back the policy it found (not float32) and does not
    leave one inter-op thread behind (TensorFlow could not undo that); the train program,
    whose process it is, runs a deterministic run one op at a time."""
    code = (
        "import tempfile, tensorflow as tf\n"
        "from larq_bnext.training import RunConfig, run\n"
        "tf.keras.mixed_precision.set_global_policy('mixed_bfloat16')\n"
        "run(RunConfig(dataset='digits', image_size=8, stage_channels=(8, 16), epochs=1,\n"
        "    steps_per_epoch=1, batch_size=16, teachers='none', baseline=False, backup=False,\n"
        "    verbose=0, deterministic=True, output_dir=tempfile.mkdtemp()))\n"
        "from tensorflow.python.framework import config as tf_config\n"
        "print(tf.keras.mixed_precision.global_policy().name,\n"
        "      tf.config.threading.get_inter_op_parallelism_threads(),\n"
        "      tf_config.is_op_determinism_enabled())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-3:] == ["mixed_bfloat16", "0", "False"], result.stderr[-2000:]
