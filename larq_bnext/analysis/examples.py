"""The evaluation examples of a loss landscape: picked once by a seed, held in memory.

:func:`evaluation_batches` takes them from an ``(inputs, labels)`` pair of arrays
(:func:`select_indices`) or from a ``tf.data.Dataset`` of batches (a seeded reservoir sample,
read once); :func:`data_digest` fingerprints them for the landscape's settings.
"""

from __future__ import annotations

import hashlib

import numpy as np
import tensorflow as tf

__all__ = ["select_indices", "evaluation_batches", "data_digest"]


def select_indices(total: int, examples: int | None, seed: int) -> np.ndarray:
    """The sorted indices of ``examples`` of ``total`` examples, drawn without replacement.

    Args:
        total: the number of examples there are.
        examples: how many to keep (``None``, 0 or at least ``total``: all of them).
        seed: the seed (the examples' stream of it: the directions use another).

    Returns:
        Sorted indices into the examples.
    """
    if not examples or examples >= total:
        return np.arange(total)
    rng = np.random.default_rng((seed, 1))
    return np.sort(rng.choice(total, size=examples, replace=False))


def _batches_of(data):
    if isinstance(data, tf.data.Dataset):
        for element in data.as_numpy_iterator():
            if not isinstance(element, tuple) or len(element) < 2:
                raise ValueError(
                    "The dataset must yield batches of (inputs, labels); got an element of "
                    f"type {type(element).__name__}."
                )
            yield np.asarray(element[0]), np.asarray(element[1])
        return
    if isinstance(data, tuple | list) and len(data) == 2:
        yield np.asarray(data[0]), np.asarray(data[1])
        return
    raise ValueError(
        "data must be a tf.data.Dataset of (inputs, labels) batches or an (inputs, labels) "
        f"pair of arrays, not {type(data).__name__}."
    )


def evaluation_batches(data, examples: int | None = None, seed: int = 0, batch_size: int = 128):
    """The fixed evaluation examples of a landscape, as in-memory batches.

    From an ``(inputs, labels)`` pair of arrays, :func:`select_indices` picks the examples.
    A ``tf.data.Dataset`` of batches is read once; with ``examples`` smaller than it, a
    seeded reservoir sample (uniform over the dataset, which may have an unknown length)
    keeps ``examples`` of them, in their order in the dataset.

    Args:
        data: a ``tf.data.Dataset`` of ``(inputs, labels)`` batches (more elements, such as
            sample weights, are ignored) or an ``(inputs, labels)`` pair of arrays.
        examples: how many examples to keep (``None`` or 0: all).
        seed: picks the examples.
        batch_size: the size of the batches returned.

    Returns:
        ``[(inputs, labels), ...]`` NumPy batches of ``batch_size`` (the last may be smaller).

    Raises:
        ValueError: for data of another kind, or no example.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}.")
    if isinstance(data, tf.data.Dataset):
        inputs, labels = _reservoir(_batches_of(data), examples, seed)
    else:
        inputs, labels = next(_batches_of(data))
        if len(inputs) != len(labels):
            raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels.")
        keep = select_indices(len(inputs), examples, seed)
        inputs, labels = inputs[keep], labels[keep]
    if len(inputs) == 0:
        raise ValueError("No evaluation example: the data is empty.")
    return [
        (inputs[i : i + batch_size], labels[i : i + batch_size])
        for i in range(0, len(inputs), batch_size)
    ]


def _reservoir(batches, examples: int | None, seed: int):
    """Algorithm R over a stream of batches: a uniform sample of ``examples`` (all if None)."""
    if not examples:
        parts = list(batches)
        if not parts:
            return np.zeros((0,)), np.zeros((0,))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    rng = np.random.default_rng((seed, 1))
    kept_x, kept_y, position = None, None, np.zeros(examples, np.int64)
    seen = 0
    for x, y in batches:
        if kept_x is None:
            kept_x = np.empty((examples, *x.shape[1:]), x.dtype)
            kept_y = np.empty((examples, *y.shape[1:]), y.dtype)
        for i in range(len(x)):
            if seen < examples:
                slot = seen
            else:
                slot = int(rng.integers(0, seen + 1))
            if slot < examples:
                kept_x[slot], kept_y[slot], position[slot] = x[i], y[i], seen
            seen += 1
    if kept_x is None:
        return np.zeros((0,)), np.zeros((0,))
    order = np.argsort(position[: min(seen, examples)])
    return kept_x[order], kept_y[order]


def data_digest(batches) -> str:
    """SHA-256 of the examples (inputs, then labels, batch by batch): what a landscape records.

    Args:
        batches: ``[(inputs, labels), ...]`` NumPy batches.
    """
    digest = hashlib.sha256()
    for x, y in batches:
        digest.update(np.ascontiguousarray(x).tobytes())
        digest.update(np.ascontiguousarray(y).tobytes())
    return digest.hexdigest()
