"""Subprocess side of tests/training/test_distribute.py (TensorFlow must start fresh for each mode).

Modes (``python tests/_distribute_worker.py MODE --out DIR [...]``):

* ``mirrored``: two logical CPU devices; one training step (two, for the optimizer state)
  of a tiny BNext distilled from a small teacher under ``MirroredStrategy`` with synchronized
  BatchNorm, against the same steps on one device with the global batch. Writes
  ``mirrored.npz`` (max differences).
* ``worker``: one worker of a ``MultiWorkerMirroredStrategy`` cluster (``TF_CONFIG`` set by
  the parent); trains a few steps and writes its final weights to ``worker<i>.npz``.
* ``resume``: a deterministic 3-epoch distillation run with :class:`ResumableBackup`; with
  ``--kill_at EPOCH:BATCH`` it SIGKILLs itself at that batch. Writes ``final.npz`` and
  ``history.json``.
* ``killsave``: SIGKILLs itself in the middle of an atomic weights write and between a
  checkpoint save and its manifest, after complete earlier saves.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STAGES = (8, 16, 32)
SHAPE = (16, 16, 3)
CLASSES = 10


def _tf():
    import tensorflow as tf

    return tf


def build_student(seed: int = 0):
    import larq_bnext
    from larq_bnext.keras2 import set_random_seed

    set_random_seed(seed)
    return larq_bnext.BNext(
        STAGES,
        input_shape=SHAPE,
        stem_stride=1,
        num_classes=CLASSES,
        classifier_activation=None,
        name="student",
    )


def build_teacher(seed: int = 1, name: str = "teacher"):
    tf = _tf()
    from larq_bnext.keras2 import set_random_seed

    set_random_seed(seed)
    layers = tf.keras.layers
    inputs = tf.keras.Input(SHAPE)
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(CLASSES)(x)
    model = tf.keras.Model(inputs, outputs, name=name)
    # Non-trivial BatchNorm statistics, so that the teacher's inference mode matters.
    bn = model.layers[2]
    bn.moving_mean.assign(tf.fill(bn.moving_mean.shape, tf.constant(0.1, bn.moving_mean.dtype)))
    bn.moving_variance.assign(
        tf.fill(bn.moving_variance.shape, tf.constant(2.0, bn.moving_variance.dtype))
    )
    return model


def data(n: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *SHAPE)).astype("float32")
    y = rng.integers(0, CLASSES, size=(n,)).astype("int32")
    return x, y


def student_state(distiller):
    """All student variables and optimizer variables, by name, as numpy arrays."""
    state = {}
    for v in distiller.student.weights:
        state["student/" + v.name] = v.numpy()
    optimizer = getattr(distiller.optimizer, "inner_optimizer", distiller.optimizer)
    for i, v in enumerate(optimizer.variables):
        state[f"optimizer/{i}/{v.name}"] = v.numpy()
    return state


# --------------------------------------------------------------------------- mirrored
def mode_mirrored(args):
    tf = _tf()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np

    from larq_bnext.training import AdamW
    from larq_bnext.training.method.distiller import Distiller, distillation_loss
    from larq_bnext.training.runtime import distribute, sync_batchnorm

    if args.float64:
        tf.keras.backend.set_floatx("float64")
    dtype = tf.keras.backend.floatx()
    global_batch, steps, clip = 8, 2, args.clip_norm
    x, y = data(global_batch, seed=5)
    x = x.astype(dtype)
    student0 = build_student(0)
    teacher0 = build_teacher(1)
    weights0, teacher_weights0 = student0.get_weights(), teacher0.get_weights()

    # The gradient norm on this batch, to show that the clip binds.
    logits = student0(x, training=True)
    with tf.GradientTape() as tape:
        logits = student0(x, training=True)
        per_example, _ = distillation_loss(logits, [teacher0(x, training=False)])
        loss = tf.reduce_mean(per_example)
    grad_norm = float(tf.linalg.global_norm(tape.gradient(loss, student0.trainable_variables)))
    student0.set_weights(weights0)

    def make(strategy, sync, distiller_class=Distiller):
        with strategy.scope():
            student = build_student(0)
            student.set_weights(weights0)
            if sync:
                student = sync_batchnorm.convert_to_sync_batchnorm(student)
            teacher = build_teacher(1)
            teacher.set_weights(teacher_weights0)
            distiller = distiller_class(student, teacher=teacher, clip_norm=clip)
            if args.optimizer == "sgd":
                optimizer = tf.keras.optimizers.SGD(learning_rate=args.lr)
            else:
                optimizer = AdamW(learning_rate=args.lr)
            distiller.compile(optimizer=optimizer)
        return distiller

    def run(strategy, distiller):
        def dataset_fn(per_replica_batch, context):
            ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(per_replica_batch)
            return ds.repeat()

        ds = distribute.distributed_dataset(strategy, dataset_fn, global_batch)
        history = distiller.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
        return student_state(distiller), {k: v[-1] for k, v in history.history.items()}

    single_strategy = tf.distribute.get_strategy()
    single, single_metrics = run(single_strategy, make(single_strategy, sync=False))
    mirrored_strategy = distribute.create_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    assert mirrored_strategy.num_replicas_in_sync == 2
    mirrored, mirrored_metrics = run(mirrored_strategy, make(mirrored_strategy, sync=True))

    class PerReplicaClipDistiller(Distiller):
        """The naive step: each replica clips its own partial gradient, then they are summed."""

        def train_step(self, data):
            images, labels = data
            with tf.GradientTape() as tape:
                logits = tf.cast(self.student(images, training=True), tf.float32)
                teacher_logits = [self.teacher.logits(images)]
                per_example, _ = distillation_loss(logits, teacher_logits)
                loss = tf.nn.compute_average_loss(per_example)
            variables = self.student.trainable_variables
            grads = tape.gradient(loss, variables)
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm)
            self.optimizer.apply_gradients(zip(grads, variables, strict=True))
            self.loss_tracker.update_state(per_example)
            return {"loss": self.loss_tracker.result()}

    naive, _ = run(
        mirrored_strategy,
        make(mirrored_strategy, sync=True, distiller_class=PerReplicaClipDistiller),
    )

    def max_diff(a, b):
        assert sorted(a) == sorted(b), set(a) ^ set(b)
        return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)

    initial = {"student/" + w.name: w.numpy() for w in student0.weights}
    changed = max(float(np.max(np.abs(single[k] - initial[k]))) for k in initial if k in single)
    worst = sorted(
        ((float(np.max(np.abs(mirrored[k] - single[k]))), k) for k in single), reverse=True
    )[:6]
    result = {
        "worst": worst,
        "dtype": dtype,
        "grad_norm": grad_norm,
        "clip_norm": clip,
        "weights_max_abs_diff": max_diff(mirrored, single),
        "per_replica_clip_max_abs_diff": max_diff(naive, single),
        "weights_changed_by_training": changed,
        "num_variables": len(single),
        "metrics_single": single_metrics,
        "metrics_mirrored": mirrored_metrics,
    }
    with open(os.path.join(args.out, "mirrored.json"), "w") as f:
        json.dump(result, f, indent=1)


# --------------------------------------------------------------------------- multi-worker
def mode_worker(args):
    tf = _tf()
    import numpy as np

    from larq_bnext.training import AdamW, StudentCheckpoint, TemperatureScheduler
    from larq_bnext.training.method.distiller import Distiller
    from larq_bnext.training.runtime import checkpoints, distribute, sync_batchnorm

    strategy = distribute.create_strategy("multi_worker", communication="ring")
    assert distribute.strategy_kind("auto") == "multi_worker"
    index = distribute.worker_index(strategy)
    global_batch, steps = 8, 2
    x, y = data(32, seed=11)

    def dataset_fn(per_replica_batch, context):
        from larq_bnext.training.data.datasets import DataSource

        source = DataSource("array", x, y, len(x), CLASSES, list(range(CLASSES)), name="toy")
        shard = distribute.shard_source(
            source, context.num_input_pipelines, context.input_pipeline_id
        )
        ds = tf.data.Dataset.from_tensor_slices((shard.items, shard.labels))
        return ds.batch(per_replica_batch, drop_remainder=True).repeat()

    with strategy.scope():
        student = sync_batchnorm.convert_to_sync_batchnorm(build_student(0))
        distiller = Distiller(student, teacher=build_teacher(1))
        distiller.compile(optimizer=AdamW(learning_rate=1e-2))
    ds = distribute.distributed_dataset(strategy, dataset_fn, global_batch)
    callbacks = [
        TemperatureScheduler(0.5),
        StudentCheckpoint(os.path.join(args.out, "weights"), monitor="loss", mode="min"),
        checkpoints.ResumableBackup(os.path.join(args.out, "backup")),
    ]
    history = distiller.fit(ds, epochs=2, steps_per_epoch=steps, callbacks=callbacks, verbose=0)
    state = student_state(distiller)
    np.savez(os.path.join(args.out, f"worker{index}.npz"), **state)
    with open(os.path.join(args.out, f"worker{index}.json"), "w") as f:
        json.dump(
            {
                "index": index,
                "chief": distribute.is_chief(strategy),
                "replicas": strategy.num_replicas_in_sync,
                "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            },
            f,
        )


# --------------------------------------------------------------------------- resume
def mode_resume(args):
    tf = _tf()
    import numpy as np

    from larq_bnext.models import binary_conv_layers
    from larq_bnext.training import (
        AdamW,
        AssistantCurriculum,
        Distiller,
        LearningRateLogger,
        TemperatureScheduler,
        WarmupCosine,
    )
    from larq_bnext.training.runtime import checkpoints, distribute

    distribute.enable_determinism(0)
    epochs, steps, batch = 3, 4, 8
    x, y = data(steps * batch, seed=3)
    backup_dir = os.path.join(args.out, "backup")
    initial_epoch = checkpoints.backup_position(backup_dir)[0]

    def epoch_batches(epoch):
        # The data of an epoch is a function of the epoch alone: a resumed run sees what an
        # uninterrupted one sees.
        order = tf.random.experimental.stateless_shuffle(
            tf.range(steps * batch), seed=tf.stack([tf.constant(7, tf.int64), epoch])
        )
        ds = tf.data.Dataset.from_tensor_slices(order)
        return ds.map(lambda i: (tf.gather(x, i), tf.gather(y, i))).batch(batch)

    ds = tf.data.Dataset.range(initial_epoch, epochs).flat_map(epoch_batches)

    student = build_student(0)
    main_teacher = build_teacher(1, "main")
    assistant = build_teacher(2, "assistant")
    distiller = Distiller(student, teacher=main_teacher, assistants=[assistant, main_teacher])
    schedule = WarmupCosine(steps, epochs, base_lr=1e-2, warmup_epochs=1, per_step=True)
    distiller.compile(optimizer=AdamW(learning_rate=schedule))

    class KillAt(tf.keras.callbacks.Callback):
        def __init__(self, epoch, batch):
            super().__init__()
            self.at = (epoch, batch)
            self.epoch = None

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            if (self.epoch, batch) == self.at:
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)

    class Record(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows = []

        def on_epoch_begin(self, epoch, logs=None):
            temps = [float(layer.temperature.numpy()) for layer in binary_conv_layers(student)]
            self.rows.append(
                {
                    "epoch": epoch,
                    "phase": distiller.phase,
                    "iterations": int(distiller.optimizer.iterations.numpy()),
                    "temperature": temps[0],
                }
            )

    backup = checkpoints.ResumableBackup(backup_dir)
    record = Record()
    callbacks = [
        AssistantCurriculum(epochs),
        TemperatureScheduler(0.5),
        LearningRateLogger(),
        backup,
        record,
    ]
    if args.kill_at:
        epoch, batch_index = (int(v) for v in args.kill_at.split(":"))
        callbacks.append(KillAt(epoch, batch_index))
    history = distiller.fit(
        ds, epochs=epochs, steps_per_epoch=steps, callbacks=callbacks, verbose=0
    )
    np.savez(os.path.join(args.out, "final.npz"), **student_state(distiller))
    with open(os.path.join(args.out, "history.json"), "w") as f:
        json.dump(
            {
                "initial_epoch": initial_epoch,
                "restored_from": backup.restored_from,
                "epochs": record.rows,
                "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            },
            f,
            indent=1,
        )


# --------------------------------------------------------------------------- killsave
def mode_killsave(args):
    tf = _tf()
    import numpy as np

    from larq_bnext.training import AdamW
    from larq_bnext.training.method.distiller import Distiller
    from larq_bnext.training.runtime import checkpoints

    student = build_student(0)
    weights_path = os.path.join(args.out, "last.weights.h5")
    checkpoints.save_weights_atomic(student, weights_path)
    np.savez(os.path.join(args.out, "saved_weights.npz"), *student.get_weights())

    # Kill 1: in the middle of writing the weights file (half of the bytes written).
    if args.kill_at == "weights":
        for w in student.weights:
            w.assign(w + 1.0)
        with checkpoints.atomic_write(weights_path) as temporary:
            student.save_weights(temporary)
            with open(temporary, "r+b") as handle:
                handle.truncate(os.path.getsize(temporary) // 2)
            os.kill(os.getpid(), signal.SIGKILL)

    distiller = Distiller(student)
    distiller.compile(optimizer=AdamW(1e-2))
    x, y = data(8)
    backup = checkpoints.ResumableBackup(os.path.join(args.out, "backup"))
    distiller.fit(x, y, batch_size=8, epochs=2, callbacks=[backup], verbose=0)
    np.savez(os.path.join(args.out, "backed_up.npz"), *student.get_weights())

    # Kill 2: after the checkpoint files of a third backup were written, before its manifest.
    if args.kill_at == "checkpoint":
        distribute_module = sys.modules["larq_bnext.training.runtime.checkpoints"]

        def killed(prefix):
            # Leave the new checkpoint truncated as well, as an interrupted write would.
            data_files = tf.io.gfile.glob(prefix + ".data-*")
            with open(data_files[0], "r+b") as handle:
                handle.truncate(max(1, os.path.getsize(data_files[0]) // 3))
            os.kill(os.getpid(), signal.SIGKILL)

        distribute_module._write_manifest = killed
        distiller.fit(x, y, batch_size=8, epochs=3, callbacks=[backup], verbose=0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["mirrored", "worker", "resume", "killsave"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--kill_at", default=None)
    parser.add_argument("--float64", action="store_true")
    parser.add_argument("--no_grappler", action="store_true")
    parser.add_argument("--clip_norm", type=float, default=0.05)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.no_grappler:
        # Test speed only: graph rewrites cost more than these few tiny steps.
        _tf().config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    {
        "mirrored": mode_mirrored,
        "worker": mode_worker,
        "resume": mode_resume,
        "killsave": mode_killsave,
    }[args.mode](args)


if __name__ == "__main__":
    main()
