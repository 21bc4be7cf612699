"""What a run shows: one log line per epoch, a picture of the curves, a per-class table.

* :class:`EpochLogger` prints one line per epoch with the metrics that matter (loss, top-1,
  validation top-1, learning rate, temperature, teacher weight ``alpha_main``, seconds).
  :func:`progress_mode` chooses it instead of Keras' progress bar when the output is not a
  terminal (logs, CI, Slurm), where the bar's redraws fill the file with control characters.
* :func:`plot_history` draws the curves of a run (loss, top-1, learning rate, temperature,
  teacher weights per epoch) into a PNG with Matplotlib's Agg canvas (no display, and no
  change to the global backend of a notebook that imports it).
* :func:`collect_predictions` runs a model over an evaluation dataset once;
  :func:`per_class_accuracy` turns its output into one row per class (examples, top-1, top-5,
  the class most often predicted instead) and :func:`write_per_class_csv` writes them.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time

import numpy as np
import tensorflow as tf
from absl import logging

__all__ = [
    "EpochLogger",
    "progress_mode",
    "format_epoch",
    "plot_history",
    "plot_run_curves",
    "collect_predictions",
    "per_class_accuracy",
    "summarize_per_class",
    "write_per_class_csv",
]

#: Log keys printed by :class:`EpochLogger`, in this order, when present.
EPOCH_KEYS = (
    "loss",
    "top1",
    "top5",
    "val_loss",
    "val_top1",
    "val_top5",
    "lr",
    "temperature",
    "alpha_main",
    "teacher_top1",
    "curriculum_phase",
)


def _format_value(key: str, value: float) -> str:
    if key == "curriculum_phase":
        return f"{key} {int(value)}"
    if key in ("lr", "temperature"):
        return f"{key} {value:.3g}"
    return f"{key} {value:.4f}"


def format_epoch(epoch: int, epochs: int | None, logs: dict, seconds: float | None = None) -> str:
    """One line summing up an epoch: ``epoch 3/30  loss 0.4512  top1 0.8123 ...  12.3 s``.

    Args:
        epoch: the epoch index, counted from 0 (printed from 1, as Keras does).
        epochs: the number of epochs of the run, or ``None``.
        logs: the epoch's logs (``{"loss": ..., "val_top1": ..., ...}``); keys of
            :data:`EPOCH_KEYS` are printed, others are left out.
        seconds: the epoch's duration, if known.
    """
    width = len(str(epochs)) if epochs else 1
    head = f"epoch {epoch + 1:>{width}d}" + (f"/{epochs}" if epochs else "")
    parts = [head]
    for key in EPOCH_KEYS:
        if key in logs and logs[key] is not None:
            parts.append(_format_value(key, float(logs[key])))
    if seconds is not None:
        parts.append(f"{seconds:.1f} s")
    return "  ".join(parts)


class EpochLogger(tf.keras.callbacks.Callback):
    """Prints one line per epoch (see :func:`format_epoch`), for logs that are not terminals.

    Place it after the callbacks that add ``lr``, ``temperature`` or ``curriculum_phase`` to
    the logs, and run ``fit`` with ``verbose=0``.

    Args:
        epochs: the number of epochs of the run (shown as ``epoch 3/30``), or ``None``.
        stream: where to write (``sys.stdout`` by default, looked up at each line).
    """

    def __init__(self, epochs: int | None = None, stream=None):
        super().__init__()
        self.epochs = epochs
        self.stream = stream
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = None if self._start is None else time.perf_counter() - self._start
        stream = self.stream if self.stream is not None else sys.stdout
        print(format_epoch(epoch, self.epochs, logs or {}, seconds), file=stream, flush=True)


def progress_mode(verbose: int = 1, stream=None) -> tuple[int, bool]:
    """Keras ``verbose`` for ``fit`` and whether to add an :class:`EpochLogger`.

    The progress bar (``verbose=1``) is kept on a terminal; elsewhere (``isatty()`` false:
    a log file, CI, a Slurm job) it becomes ``verbose=0`` with one :class:`EpochLogger` line
    per epoch. ``verbose=0`` and ``2`` are kept as they are.

    Args:
        verbose: the requested Keras verbosity.
        stream: the output to test (``sys.stdout`` by default).

    Returns:
        ``(verbose for fit, add an EpochLogger)``.
    """
    stream = stream if stream is not None else sys.stdout
    if verbose != 1:
        return verbose, False
    try:
        interactive = bool(stream.isatty())
    except (AttributeError, ValueError):
        interactive = False
    return (1, False) if interactive else (0, True)


# --------------------------------------------------------------------------- curves
def _series(history: dict, key: str) -> np.ndarray | None:
    values = history.get(key)
    if values is None or len(values) == 0:
        return None
    values = np.asarray([np.nan if v is None else float(v) for v in values], np.float64)
    return values if np.isfinite(values).any() else None


def plot_history(history: dict, path: str | os.PathLike, title: str | None = None) -> list[str]:
    """Draw a run's curves per epoch into a PNG file.

    Panels, each drawn when its logs are there: loss (training and validation), top-1
    (training and validation), learning rate and temperature (log scale), and the teacher
    weight ``alpha_main`` with the curriculum phase.

    Args:
        history: per-epoch logs, ``{"loss": [...], "val_top1": [...], ...}`` (Keras'
            ``History.history``, or the ``history`` of a model in ``metrics.json``).
        path: the PNG file to write (parent directories are created).
        title: the figure's title.

    Returns:
        The titles of the panels drawn.

    Raises:
        ValueError: if ``history`` has none of the curves.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = []
    for name, keys, log_scale in (
        ("loss", ("loss", "val_loss"), False),
        ("top-1", ("top1", "val_top1"), False),
        ("learning rate", ("lr",), True),
        ("temperature", ("temperature",), True),
        ("teacher weights", ("alpha_main", "curriculum_phase"), False),
    ):
        curves = [(k, s) for k in keys if (s := _series(history, k)) is not None]
        if curves:
            panels.append((name, curves, log_scale))
    if not panels:
        raise ValueError(
            f"history has no curve to draw (keys: {sorted(history)[:10]}); expected some of "
            "loss, top1, val_top1, lr, temperature, alpha_main."
        )
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.2 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    for i, (name, curves, log_scale) in enumerate(panels):
        axes = figure.add_subplot(rows, columns, i + 1)
        for key, values in curves:
            epochs = np.arange(1, len(values) + 1)
            axes.plot(epochs, values, marker="o" if len(values) < 20 else None, label=key)
        if log_scale and all(np.nanmin(v) > 0 for _, v in curves):
            axes.set_yscale("log")
        axes.set_title(name)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    return [name for name, _, _ in panels]


def plot_run_curves(directory: str, history: dict, title: str | None = None) -> str | None:
    """Draw ``<model>_curves.png`` beside a model's run directory (next to ``metrics.json``).

    The curves come from the directory's ``history.csv`` (the whole run, resumed parts
    included) when it is there, else from ``history``. A failure to draw is logged, not
    raised: the run's results matter more than its picture.

    Args:
        directory: the model's run directory (``runs/demo/student``: the picture is
            ``runs/demo/student_curves.png``).
        history: this ``fit``'s per-epoch logs, used without a ``history.csv``.
        title: the figure's title.

    Returns:
        The picture's path, or ``None`` if it could not be drawn.
    """
    csv_path = os.path.join(directory, "history.csv")
    if os.path.isfile(csv_path):
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows:
            history = {
                key: [float(row[key]) if row.get(key) not in (None, "") else None for row in rows]
                for key in rows[0]
                if key != "epoch"
            }
    name = os.path.basename(os.path.normpath(directory))
    path = os.path.join(os.path.dirname(os.path.normpath(directory)), f"{name}_curves.png")
    try:
        plot_history(history, path, title=title)
    except (ValueError, OSError) as error:
        logging.warning("Could not draw the training curves (%s).", error)
        return None
    return path


# --------------------------------------------------------------------------- per class
def collect_predictions(model: tf.keras.Model, dataset, k: int = 5):
    """Run ``model`` over ``dataset`` once: labels, top-``k`` classes and loss per example.

    Args:
        model: a classifier returning logits.
        dataset: batches of ``(images, labels)`` with integer (or one-hot) labels.
        k: how many of the best classes to keep per example.

    Returns:
        ``(labels, top_k, loss)``: ``(n,)`` integer labels, ``(n, k)`` class indices, best
        first, and the ``(n,)`` cross-entropy of the logits.
    """

    @tf.function
    def step(images, labels):
        logits = tf.cast(model(images, training=False), tf.float32)
        if labels.shape.rank is not None and labels.shape.rank >= 2 and labels.shape[-1] != 1:
            labels = tf.argmax(labels, axis=-1)
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
        loss = tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        top = tf.math.top_k(logits, k=min(k, logits.shape[-1])).indices
        return labels, top, loss

    labels, tops, losses = [], [], []
    for batch in dataset:
        images, batch_labels = batch[0], batch[1]
        y, top, loss = step(images, batch_labels)
        labels.append(y.numpy())
        tops.append(top.numpy())
        losses.append(loss.numpy())
    if not labels:
        raise ValueError("The evaluation dataset is empty.")
    return np.concatenate(labels), np.concatenate(tops), np.concatenate(losses)


def _descriptions(class_names) -> list[str]:
    """ImageNet descriptions of WordNet-id class names (``n01440764`` -> ``tench, ...``)."""
    from larq_bnext.preprocessing import imagenet_class_index

    known = dict(imagenet_class_index())
    return [known.get(str(name), "") for name in class_names]


def per_class_accuracy(labels, top_k, class_names=None) -> list[dict]:
    """One row per class: examples, top-1, top-5 and the class most often predicted instead.

    Args:
        labels: ``(n,)`` integer labels.
        top_k: ``(n, k)`` predicted classes, best first (``k >= 1``; top-5 needs ``k >= 5``).
        class_names: names of the classes in label order (their number sets the rows);
            WordNet ids also get their ImageNet description. Defaults to the indices.

    Returns:
        Dicts with ``index``, ``class``, ``description``, ``examples``, ``top1``, ``top5``
        (``None`` for a class without examples, or ``top5`` when ``k < 5``),
        ``most_confused_with`` and ``confused_share`` (its share of the class's examples).
    """
    labels = np.asarray(labels, np.int64).reshape(-1)
    top_k = np.asarray(top_k, np.int64).reshape(len(labels), -1)
    if class_names is None:
        count = int(max(labels.max(initial=-1), top_k.max(initial=-1))) + 1
        class_names = [str(i) for i in range(count)]
    class_names = [str(n) for n in class_names]
    descriptions = _descriptions(class_names)
    hit1 = top_k[:, 0] == labels
    hit5 = (top_k[:, :5] == labels[:, None]).any(axis=1) if top_k.shape[1] >= 5 else None
    rows = []
    for index, name in enumerate(class_names):
        mine = labels == index
        n = int(mine.sum())
        row = {"index": index, "class": name, "description": descriptions[index], "examples": n}
        row["top1"] = float(hit1[mine].mean()) if n else None
        row["top5"] = float(hit5[mine].mean()) if n and hit5 is not None else None
        wrong = top_k[mine & ~hit1, 0]
        if len(wrong):
            values, counts = np.unique(wrong, return_counts=True)
            best = int(values[np.argmax(counts)])
            row["most_confused_with"] = class_names[best] if best < len(class_names) else best
            row["confused_share"] = float(counts.max() / n)
        else:
            row["most_confused_with"], row["confused_share"] = "", 0.0
        rows.append(row)
    return rows


def summarize_per_class(rows: list[dict], worst: int = 5) -> dict:
    """The top-level summary of a per-class table.

    Args:
        rows: the output of :func:`per_class_accuracy`.
        worst: how many of the weakest classes to list.

    Returns:
        ``{"classes", "classes_evaluated", "mean_class_top1", "min_class_top1",
        "worst_classes"}``; ``worst_classes`` is ``[(class, top1), ...]``, weakest first.
    """
    scored = [r for r in rows if r["top1"] is not None]
    ranked = sorted(scored, key=lambda r: (r["top1"], r["index"]))
    return {
        "classes": len(rows),
        "classes_evaluated": len(scored),
        "mean_class_top1": float(np.mean([r["top1"] for r in scored])) if scored else None,
        "min_class_top1": ranked[0]["top1"] if ranked else None,
        "worst_classes": [(r["class"], r["top1"]) for r in ranked[:worst]],
    }


def write_per_class_csv(rows: list[dict], path: str | os.PathLike) -> str:
    """Write the rows of :func:`per_class_accuracy` as CSV (one line per class, a header).

    Args:
        rows: the table.
        path: the CSV file to write (parent directories are created).

    Returns:
        The path written.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fields = [
        "index",
        "class",
        "description",
        "examples",
        "top1",
        "top5",
        "most_confused_with",
        "confused_share",
    ]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    key: ("" if row.get(key) is None else row[key])
                    if not isinstance(row.get(key), float)
                    else f"{row[key]:.6f}"
                    for key in fields
                }
            )
    return path
