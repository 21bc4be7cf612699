"""The records of an ablation: its CSV of runs, the mean ± std per variant, a table, a plot.

One row per variant and seed (:data:`ROW_FIELDS`); :func:`summarize` reduces them to the mean
and the sample standard deviation (``ddof=1``; ``nan`` for a single seed) of each score of
:data:`SCORES` per variant, :func:`summary_markdown` writes that as a markdown table in
percent, :func:`plot_summary` as bars with error bars.

Examples:
    >>> rows = [
    ...     {"variant": "a", "seed": 0, "val_top1": 0.90, "best_val_top1": 0.92,
    ...      "train_top1": 0.97, "gap": 0.07},
    ...     {"variant": "a", "seed": 1, "val_top1": 0.94, "best_val_top1": 0.94,
    ...      "train_top1": 0.99, "gap": 0.05},
    ... ]
    >>> row = summarize(rows)[0]
    >>> row["runs"], round(row["val_top1_mean"], 4), round(row["val_top1_std"], 4)
    (2, 0.92, 0.0283)
    >>> print(summary_markdown(summarize(rows)).splitlines()[2])
    | a | 2 | 92.0 ± 2.8 | 93.0 ± 1.4 | 98.0 ± 1.4 | 6.0 ± 1.4 |
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np

__all__ = [
    "ROW_FIELDS",
    "SCORES",
    "read_rows",
    "write_rows",
    "summarize",
    "write_summary",
    "summary_markdown",
    "plot_summary",
]

#: The scores averaged per variant: final and best validation top-1, the clean train-split
#: top-1 after the last epoch and the gap ``train_top1 - val_top1``.
SCORES = ("val_top1", "best_val_top1", "train_top1", "gap")
#: The columns of the ablation CSV, one row per variant and seed.
ROW_FIELDS = (
    "variant",
    "seed",
    *SCORES,
    "train_top1_given_labels",
    "fit_train_top1",
    "teacher_val_top1",
    "distilled",
    "elm_attention",
    "info_recoupling",
    "teachers",
    "distill_weighting",
    "label_fraction",
    "label_noise",
    "epochs",
    "train_examples",
    "train_seconds",
    "wall_seconds",
    "config_digest",
    "directory",
)
_INTS = ("seed", "epochs", "train_examples")
_BOOLS = ("distilled", "elm_attention", "info_recoupling")
_TEXT = ("variant", "teachers", "distill_weighting", "config_digest", "directory")
_HEADINGS = {
    "val_top1": "val top-1 (final)",
    "best_val_top1": "val top-1 (best epoch)",
    "train_top1": "train top-1",
    "gap": "train - val",
}


def _parse(name: str, text: str):
    if text == "":
        return None
    if name in _TEXT:
        return text
    if name in _INTS:
        return int(text)
    if name in _BOOLS:
        return text == "True"
    return float(text)


def read_rows(path) -> list[dict]:
    """The rows of an ablation CSV (numbers as numbers, empty cells as ``None``).

    Args:
        path: the CSV written by :func:`write_rows`.
    """
    with open(path, newline="") as f:
        return [{k: _parse(k, v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_rows(path, rows) -> str:
    """Write ``rows`` as the ablation CSV (atomically: a kill leaves the old or the new file).

    Args:
        path: the CSV's path.
        rows: dicts with the keys of :data:`ROW_FIELDS` (missing ones are left empty).
    """
    path = os.fspath(path)
    partial = path + ".partial"
    with open(partial, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in ROW_FIELDS})
    os.replace(partial, path)
    return path


def summarize(rows, scores=SCORES) -> list[dict]:
    """Per variant (in order of first appearance): ``runs`` and ``<score>_mean``/``_std``.

    The standard deviation is the sample one (``ddof=1``) over the seeds, ``nan`` for one seed;
    rows without a score (``None``) are left out of that score's mean.

    Args:
        rows: the ablation's rows.
        scores: the scores to reduce.
    """
    order = list(dict.fromkeys(row["variant"] for row in rows))
    summary = []
    for variant in order:
        mine = [row for row in rows if row["variant"] == variant]
        out = {"variant": variant, "runs": len(mine)}
        for score in scores:
            values = np.asarray([r[score] for r in mine if r.get(score) is not None], float)
            out[f"{score}_mean"] = float(values.mean()) if values.size else math.nan
            out[f"{score}_std"] = float(values.std(ddof=1)) if values.size > 1 else math.nan
        summary.append(out)
    return summary


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "n/a"
    if math.isnan(std):
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def summary_markdown(summary, scores=SCORES, notes=None) -> str:
    """The summary as a markdown table, scores in percent as ``mean ± std``.

    Args:
        summary: from :func:`summarize`.
        scores: the columns.
        notes: optional ``{variant: text}`` appended to the variant's name.
    """
    notes = notes or {}
    head = ["variant", "seeds", *(_HEADINGS.get(s, s) for s in scores)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in summary:
        name = row["variant"] + (f" ({notes[row['variant']]})" if row["variant"] in notes else "")
        cells = [_cell(row[f"{s}_mean"], row[f"{s}_std"]) for s in scores]
        lines.append("| " + " | ".join([name, str(row["runs"]), *cells]) + " |")
    return "\n".join(lines) + "\n"


def write_summary(summary, csv_path, markdown_path, notes=None) -> tuple[str, str]:
    """Write the summary as a CSV (fractions) and a markdown table (percent).

    Args:
        summary: from :func:`summarize`.
        csv_path: the summary CSV.
        markdown_path: the markdown table.
        notes: optional ``{variant: text}`` for the table.
    """
    fields = list(summary[0]) if summary else ["variant", "runs"]
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(summary)
    with open(markdown_path, "w") as f:
        f.write(summary_markdown(summary, notes=notes))
    return os.fspath(csv_path), os.fspath(markdown_path)


def plot_summary(summary, path, title: str = "Ablation (mean ± std over seeds)") -> str:
    """Bars of validation (final) and train top-1 per variant, error bars one std.

    Args:
        summary: from :func:`summarize`.
        path: the PNG.
        title: the figure's title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(1.3 * len(summary) + 3, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    x = np.arange(len(summary))
    width = 0.38
    for offset, score, label in ((-0.5, "val_top1", "validation"), (0.5, "train_top1", "train")):
        means = np.asarray([100 * row[f"{score}_mean"] for row in summary])
        stds = np.nan_to_num(np.asarray([100 * row[f"{score}_std"] for row in summary]))
        bars = axes.bar(x + offset * width, means, width, yerr=stds, capsize=3, label=label)
        axes.bar_label(bars, labels=[f"{m:.1f}" for m in means], fontsize=7, padding=2)
    finite = [100 * r[f"{s}_mean"] for r in summary for s in ("val_top1", "train_top1")]
    finite = [v for v in finite if not math.isnan(v)]
    low = min(finite, default=0.0)
    axes.set_ylim(max(0.0, low - 10), 101)
    axes.set_xticks(x, [row["variant"] for row in summary], rotation=20, ha="right")
    axes.set_ylabel("top-1 (%)")
    axes.set_title(title)
    axes.legend(loc="lower right")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
