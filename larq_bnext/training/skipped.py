"""Unreadable images: skipped by the input pipelines, counted, listed, and capped.

A file can fail at any stage: the header check of the folder scan
(:func:`larq_bnext.training.data.is_readable_image`), reading (deleted, unreadable), or decoding (a
truncated JPEG, a text file named ``.jpg``). TensorFlow's ``ignore_errors`` would drop such
an element silently (a warning in the log); :func:`guarded_map` instead turns the failure
into a marked element, which the pipeline records in a :class:`SkipLog` and then drops, so
every skipped file is known by name, whatever the stage at which it failed.

:class:`SkipLog` keeps the unique paths per split, checks them against a maximum skipped
fraction (``--max_skipped_fraction``), and is written atomically to ``skipped_images.json``
so that a resumed run keeps the count. :class:`SkippedImagesMonitor` checks the limit
during training and stops the run with :class:`TooManySkippedImagesError`.
"""

from __future__ import annotations

import json
import os
import threading

import tensorflow as tf

_plain = tf.autograph.experimental.do_not_convert

__all__ = [
    "SkipLog",
    "TooManySkippedImagesError",
    "guarded_map",
    "SkippedImagesMonitor",
]


class TooManySkippedImagesError(RuntimeError):
    """Raised when the skipped fraction of a split passes the limit."""


class SkipLog:
    """The unreadable files of one split: unique paths, with the split's size and a limit.

    Thread-safe (the pipeline's workers add paths concurrently).

    Args:
        split: the split's name (``"train"``, ``"eval"``), for messages.
        num_examples: files in the split before any was skipped (the fraction's denominator).
        max_fraction: the largest tolerated skipped fraction (``None``: no limit).
        initial: paths already known to be unreadable (e.g. by the header check).
    """

    def __init__(
        self,
        split: str,
        num_examples: int,
        max_fraction: float | None = None,
        initial=(),
    ):
        if max_fraction is not None and not 0 <= max_fraction <= 1:
            raise ValueError(f"max_fraction must be in [0, 1], got {max_fraction}.")
        self.split = split
        self.num_examples = int(num_examples)
        self.max_fraction = max_fraction
        self._paths = set(str(p) for p in initial)
        self._lock = threading.Lock()

    def add(self, path) -> None:
        """Record an unreadable file.

        Args:
            path: its path (``str`` or ``bytes``).
        """
        if isinstance(path, bytes):
            path = path.decode("utf-8", "replace")
        with self._lock:
            self._paths.add(str(path))

    @property
    def paths(self) -> list[str]:
        """The skipped files, sorted."""
        with self._lock:
            return sorted(self._paths)

    @property
    def count(self) -> int:
        """Number of skipped files."""
        with self._lock:
            return len(self._paths)

    @property
    def fraction(self) -> float:
        """Skipped files over the split's files."""
        return self.count / max(self.num_examples, 1)

    def check(self) -> None:
        """Raise :class:`TooManySkippedImagesError` when the skipped fraction passes the limit."""
        if self.max_fraction is None or self.fraction <= self.max_fraction:
            return
        shown = ", ".join(self.paths[:5])
        raise TooManySkippedImagesError(
            f"{self.count} of the {self.num_examples} {self.split} images "
            f"({100 * self.fraction:.2f} %) could not be read, more than "
            f"--max_skipped_fraction={self.max_fraction} allows (first: {shown}). Fix or remove "
            "the files, or raise --max_skipped_fraction."
        )

    def record(self, ok: tf.Tensor, path: tf.Tensor) -> tf.Tensor:
        """A ``tf.data`` filter: records ``path`` when ``ok`` is false; returns ``ok``.

        Args:
            ok: scalar bool, whether the element decoded.
            path: scalar string, the element's file (or a description).
        """

        def log(p):
            self.add(p.numpy())
            return False

        def bad():
            flag = tf.py_function(log, [path], tf.bool)
            flag.set_shape([])
            return flag

        return tf.cond(ok, lambda: tf.constant(True), bad)

    def to_dict(self) -> dict:
        """``{"split", "num_examples", "count", "fraction", "paths"}``."""
        paths = self.paths
        return {
            "split": self.split,
            "num_examples": self.num_examples,
            "count": len(paths),
            "fraction": len(paths) / max(self.num_examples, 1),
            "paths": paths,
        }

    def save(self, path: str) -> None:
        """Write :meth:`to_dict` as JSON, atomically.

        Args:
            path: the JSON file.
        """
        from larq_bnext.training.checkpoints import _atomic_write_text

        _atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    def load(self, path: str) -> None:
        """Add the paths of a file written by :meth:`save` (nothing if it is absent).

        Args:
            path: the JSON file.
        """
        if not os.path.exists(path):
            return
        with open(path) as handle:
            for p in json.load(handle).get("paths", []):
                self.add(p)


def guarded_map(dataset: tf.data.Dataset, fn, fallback, chunk: int = 16) -> tf.data.Dataset:
    """``dataset.map(fn)`` where an element whose ``fn`` fails yields ``fallback(element)``.

    The elements go in chunks of ``chunk``. A chunk first runs ``fn`` on its elements in one
    small pipeline with ``ignore_errors``: when every element succeeds (the usual case), that
    is the result. When one fails (any op error: reading, decoding, cropping), the chunk is
    redone element by element, each through its own one-element dataset with
    ``ignore_errors`` followed by the fallback, so a failure becomes the fallback instead of
    vanishing. One dataset per chunk instead of one per element: per element, the guard
    cost about as much as decoding and cropping the image. The elements stay in order and
    the chunks are processed in parallel (``interleave``, autotuned, deterministic).

    Args:
        dataset: a dataset of tuples.
        fn: the per-element function; must return a tuple of fixed-shape tensors whose last
            entry is ``True``.
        fallback: ``element -> tuple`` of the same structure, with last entry ``False``.
        chunk: elements per chunk.
    """

    def one(*element):
        good = tf.data.Dataset.from_tensors(element).map(_plain(lambda *e: fn(*e)))
        bad = tf.data.Dataset.from_tensors(element).map(_plain(lambda *e: fallback(*e)))
        good = good.ignore_errors()
        return good.concatenate(bad).take(1)

    def one_chunk(*elements):
        size = tf.shape(elements[0])[0]
        slices = tf.data.Dataset.from_tensor_slices(elements)
        fast = slices.map(_plain(lambda *e: fn(*e))).ignore_errors().batch(chunk)
        fast = fast.filter(_plain(lambda *out: tf.shape(out[0])[0] == size))
        slow = slices.interleave(_plain(one), cycle_length=1).batch(chunk)
        return fast.concatenate(slow).take(1)

    chunks = dataset.batch(chunk).interleave(
        _plain(one_chunk),
        cycle_length=None,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return chunks.unbatch()


class SkippedImagesMonitor(tf.keras.callbacks.Callback):
    """Checks the skip logs' limits after every training batch and stores them every epoch.

    Stops the run (raises :class:`TooManySkippedImagesError`) as soon as a split's skipped fraction
    passes its limit; writes every log to ``path`` (JSON, atomically) at each epoch's end.

    Args:
        logs: the :class:`SkipLog` s to watch.
        path: where to write them (``None``: not written).
        every: check every this many batches.
    """

    def __init__(self, logs, path: str | None = None, every: int = 1):
        super().__init__()
        self.skip_logs = list(logs)
        self.path = path
        self.every = max(1, int(every))

    def _check(self):
        for log in self.skip_logs:
            log.check()

    def on_train_batch_end(self, batch, logs=None):
        if batch % self.every == 0:
            self._check()

    def on_epoch_end(self, epoch, logs=None):
        self._check()
        if self.path:
            from larq_bnext.training.checkpoints import _atomic_write_text

            data = {log.split: log.to_dict() for log in self.skip_logs}
            _atomic_write_text(self.path, json.dumps(data, indent=1))
