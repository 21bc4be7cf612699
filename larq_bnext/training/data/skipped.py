"""Unreadable images: skipped by the input pipelines, counted, listed, and capped.

A file can fail at any stage: the header check of the folder scan
(:func:`larq_bnext.images.files.unreadable_reason`), reading (deleted, unreadable), the pixel
limit, or decoding (a truncated JPEG, a text file named ``.jpg``). TensorFlow's
``ignore_errors`` would drop such an element silently (a warning in the log);
:func:`guarded_map` notices the position that went missing and records the file in a
:class:`SkipLog`, so every skipped file is known by name, whatever the stage at which it
failed.

:class:`SkipLog` keeps the unique paths per split, checks them against a maximum skipped
fraction (``--max_skipped_fraction``), and is written atomically to ``skipped_images.json``
so that a resumed run keeps the count. Files are named in their printable form
(:func:`larq_bnext.images.files.display_path`: bytes that are not UTF-8 as ``\\xNN``).
:class:`SkippedImagesMonitor` checks the limit during training and stops the run with
:class:`TooManySkippedImagesError`.
"""

from __future__ import annotations

import json
import os
import threading

import tensorflow as tf

from larq_bnext.images.files import display_path

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
        initial: paths already known to be unreadable (e.g. by the header check), or their
            printable names.
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
        self._paths = set(display_path(p) for p in initial)
        self._lock = threading.Lock()

    def add(self, path) -> None:
        """Record an unreadable file, by its printable name.

        Args:
            path: its path (``str``, ``bytes`` as TensorFlow gives it) or printable name.
        """
        name = display_path(path)
        with self._lock:
            self._paths.add(name)

    @property
    def paths(self) -> list[str]:
        """The skipped files' printable names, sorted."""
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

    def record_all(self, names: tf.Tensor) -> tf.Tensor:
        """A ``tf.data`` op: records every path of the string vector ``names``; returns True.

        Args:
            names: 1-D string tensor of unreadable files (or descriptions).
        """

        def log(values):
            for value in values.numpy():
                self.add(value)
            return True

        flag = tf.py_function(log, [names], tf.bool)
        flag.set_shape([])
        return flag

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
        from larq_bnext.training.runtime.checkpoints import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

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


def guarded_map(
    dataset: tf.data.Dataset,
    fn,
    name_at,
    skip_log: SkipLog | None = None,
    count: int | None = None,
    fallback=None,
) -> tf.data.Dataset:
    """``dataset.map(fn)`` in parallel, without the elements whose ``fn`` fails, which are
    recorded in ``skip_log`` by name.

    The elements carry their position first, ``0, 1, 2, ...`` (``enumerate``). The map runs
    in parallel with its order kept (``deterministic=True`` whatever the pipeline's options)
    and ``ignore_errors``; a sequential ``scan`` after it sees the positions that went
    missing (any op error: reading, decoding, cropping) and records ``name_at(position)`` of
    each. Nothing is built per element: an earlier guard that built a one-element dataset
    per element (and later per chunk) cost as much CPU as decoding the image.

    A failure after the last success of a finite dataset leaves no gap to see: pass its
    ``count`` (and a ``fallback``), and a sentinel at position ``count`` goes through the
    map as ``fallback(*element)`` and is dropped after the check.

    Args:
        dataset: a dataset of tuples ``(position, ...)``, positions consecutive from 0.
        fn: ``(position, ...) -> tuple`` of the outputs; may fail.
        name_at: ``position -> scalar string``, the name of a failed element (evaluated
            only for failures).
        skip_log: receives the names (``None``: failures are only dropped).
        count: the number of elements of a finite dataset (``None``: endless, or no need
            to see failures at its end).
        fallback: ``(position, ...) -> tuple`` like ``fn``'s outputs that cannot fail;
            needed with ``count``.

    Returns:
        A dataset of ``fn``'s outputs, in order, failures left out.
    """
    if count is not None:
        if fallback is None:
            raise ValueError("guarded_map needs a fallback for the sentinel of `count`.")
        sentinel = dataset.take(1).map(
            _plain(lambda position, *rest: (tf.cast(count, position.dtype), *rest))
        )
        dataset = dataset.concatenate(sentinel)

    def run(position, *rest):
        position = tf.cast(position, tf.int64)
        if count is None:
            return (position, *fn(position, *rest))
        outputs = tf.cond(
            position >= count,
            lambda: tuple(fallback(position, *rest)),
            lambda: tuple(fn(position, *rest)),
        )
        return (position, *outputs)

    mapped = dataset.map(
        _plain(run), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    ).ignore_errors()

    def check(last, element):
        position = element[0]
        missing = tf.range(last + 1, position)

        def record():
            names = tf.map_fn(name_at, missing, fn_output_signature=tf.string)
            if skip_log is None:
                return tf.constant(True)
            return skip_log.record_all(names)

        recorded = tf.cond(tf.size(missing) > 0, record, lambda: tf.constant(True))
        with tf.control_dependencies([recorded]):
            return tf.identity(position), element

    checked = mapped.scan(tf.constant(-1, tf.int64), _plain(check))
    if count is not None:
        checked = checked.filter(_plain(lambda position, *outputs: position < count))
    return checked.map(_plain(lambda position, *outputs: outputs))


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
            from larq_bnext.training.runtime.checkpoints import atomic_write_text

            data = {log.split: log.to_dict() for log in self.skip_logs}
            atomic_write_text(self.path, json.dumps(data, indent=1))
