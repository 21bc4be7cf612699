"""Fewer or noisier labels, for ablations: a seeded stratified subset, seeded wrong labels.

:func:`label_subset` keeps a fixed fraction of every class (``label_fraction``);
:func:`corrupt_labels` replaces a fixed fraction of the labels with a wrong class drawn at
random (``label_noise``). :func:`restrict_labels` applies both to a training
:class:`~larq_bnext.training.data.datasets.DataSource` and keeps the true labels of what it kept, so
that the run can score the student on its clean training split (``eval_train_split``).
Both draws are functions of the seed alone (NumPy's PCG64), so every variant of an ablation
with the same seed trains on the same examples with the same wrong labels.

Examples:
    >>> import numpy as np
    >>> labels = np.repeat(np.arange(3), 10)              # 3 classes of 10
    >>> kept = label_subset(labels, 0.2, seed=0)
    >>> np.bincount(labels[kept]).tolist()                 # 2 of each class
    [2, 2, 2]
    >>> noisy, flipped = corrupt_labels(labels, 3, 0.1, seed=0)
    >>> int(flipped.sum()), bool(np.all(noisy[flipped] != labels[flipped]))
    (3, True)
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["LabelledSplit", "label_subset", "corrupt_labels", "restrict_labels"]

# Independent streams of the two draws, so that changing one setting leaves the other's draw.
_SUBSET, _NOISE = 1, 2


def label_subset(labels, fraction: float, seed: int = 0) -> np.ndarray:
    """The sorted indices of a seeded, class-stratified ``fraction`` of ``labels``.

    Each class keeps ``round(fraction * count)`` of its examples, at least one, drawn
    without replacement from ``(seed, class)``; ``fraction=1`` keeps everything.

    Args:
        labels: integer labels, one per example.
        fraction: the fraction of every class to keep, in ``(0, 1]``.
        seed: the seed of the draw.

    Raises:
        ValueError: for a fraction outside ``(0, 1]``.
    """
    labels = np.asarray(labels)
    if not 0 < fraction <= 1:
        raise ValueError(f"label_fraction={fraction} must be in (0, 1].")
    if fraction == 1:
        return np.arange(len(labels))
    kept = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, int(round(fraction * len(members))))
        rng = np.random.default_rng([seed, _SUBSET, int(label)])
        kept.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(kept))


def corrupt_labels(
    labels, num_classes: int, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy labels, flipped mask)``: ``round(fraction * n)`` labels set to a wrong class.

    The examples are drawn uniformly without replacement; each gets one of the other
    ``num_classes - 1`` classes, uniformly. The draw is a function of ``seed`` alone.

    Args:
        labels: integer labels, one per example.
        num_classes: number of classes (at least 2 when ``fraction > 0``).
        fraction: the fraction of labels to replace, in ``[0, 1]``.
        seed: the seed of the draw.

    Raises:
        ValueError: for a fraction outside ``[0, 1]`` or a single class.
    """
    labels = np.asarray(labels, np.int64)
    if not 0 <= fraction <= 1:
        raise ValueError(f"label_noise={fraction} must be in [0, 1].")
    flipped = np.zeros(len(labels), bool)
    if fraction == 0:
        return labels.copy(), flipped
    if num_classes < 2:
        raise ValueError("label_noise needs at least two classes.")
    rng = np.random.default_rng([seed, _NOISE])
    chosen = rng.choice(len(labels), size=int(round(fraction * len(labels))), replace=False)
    flipped[chosen] = True
    # An offset of 1 .. num_classes - 1 always lands on another class.
    offsets = rng.integers(1, num_classes, size=len(chosen))
    noisy = labels.copy()
    noisy[chosen] = (labels[chosen] + offsets) % num_classes
    return noisy, flipped


@dataclasses.dataclass(frozen=True)
class LabelledSplit:
    """A training split after :func:`restrict_labels`.

    Args:
        source: the split to train on (its labels possibly wrong).
        true_labels: the true labels of ``source``'s examples.
        indices: the indices of the kept examples in the original split.
        flipped: which of ``source``'s labels were replaced.
    """

    source: object
    true_labels: np.ndarray
    indices: np.ndarray
    flipped: np.ndarray


def restrict_labels(source, fraction: float = 1.0, noise: float = 0.0, seed: int = 0):
    """Keep a stratified ``fraction`` of a split, then replace a ``noise`` fraction of its labels.

    Args:
        source: an array or path :class:`~larq_bnext.training.data.datasets.DataSource`.
        fraction: ``label_fraction``.
        noise: ``label_noise`` (a fraction of the kept examples).
        seed: the run's seed.

    Returns:
        A :class:`LabelledSplit`.

    Raises:
        ValueError: for a TFDS split (its labels are not held in memory).
    """
    if source.labels is None:
        raise ValueError(
            "label_fraction and label_noise need a dataset whose labels are in memory "
            "(digits or an image folder), not a TFDS split."
        )
    labels = np.asarray(source.labels, np.int64)
    indices = label_subset(labels, fraction, seed)
    true = labels[indices]
    noisy, flipped = corrupt_labels(true, source.num_classes, noise, seed)
    if source.kind == "array":
        items = np.asarray(source.items)[indices]
    else:
        items = [source.items[i] for i in indices]
    kept = dataclasses.replace(source, items=items, labels=noisy, num_examples=len(indices))
    return LabelledSplit(kept, true, indices, flipped)
