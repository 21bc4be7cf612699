"""``python -m larq_bnext.train`` that SIGKILLs itself at a chosen point (for the kill tests).

Usage: ``KILL_AT=SPEC python tests/_train_kill.py <train flags>``, where ``SPEC`` is

* ``EPOCH:BATCH``: after that training batch (0-based), in the middle of an epoch;
* ``checkpoint:N``: during the N-th backup (1-based), after the checkpoint's files are
  written and one of them is cut short, before its manifest;
* ``weights:N``: during the N-th write of ``last.weights.h5``, after the temporary file is
  written, before it replaces the previous one.

Without ``KILL_AT`` it is the plain CLI. Only the kill is added: flags, data, models and
callbacks are the CLI's own.
"""

import os
import signal
import sys

import tensorflow as tf
from absl import app

from larq_bnext import train
from larq_bnext.training import runner
from larq_bnext.training.method import callbacks
from larq_bnext.training.runtime import checkpoints


def _die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _KillAt(tf.keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.kill_epoch, self.kill_batch, self.epoch = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == (self.kill_epoch, self.kill_batch):
            _die()


def _install(spec):
    kind, _, number = spec.partition(":")
    if kind == "checkpoint":
        write_manifest, calls = checkpoints._write_manifest, [0]

        def killing_manifest(prefix):
            calls[0] += 1
            if calls[0] == int(number):
                data = tf.io.gfile.glob(prefix + ".data-*")[0]
                with open(data, "r+b") as handle:
                    handle.truncate(os.path.getsize(data) // 2)
                _die()
            write_manifest(prefix)

        checkpoints._write_manifest = killing_manifest
    elif kind == "weights":
        save, calls = callbacks.save_weights_atomic, [0]

        def killing_save(model, path, strategy=None):
            if os.path.basename(path) == "last.weights.h5":
                calls[0] += 1
                if calls[0] == int(number):
                    with checkpoints.atomic_write(path) as temporary:
                        model.save_weights(temporary)
                        _die()
            save(model, path, strategy)

        callbacks.save_weights_atomic = killing_save
    else:
        epoch, batch = (int(v) for v in spec.split(":"))
        build = runner.build_callbacks

        def with_killer(*args, **kwargs):
            return [*build(*args, **kwargs), _KillAt(epoch, batch)]

        runner.build_callbacks = with_killer


if __name__ == "__main__":
    if os.environ.get("KILL_AT"):
        _install(os.environ["KILL_AT"])
    train.define_flags()
    app.run(train.main)
