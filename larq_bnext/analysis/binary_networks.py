"""BNext beside other binary networks: the published results, the top-1 against OPs figure
and the table of design features (section 3 of the authors' README, with this package's
counts).

The published results of other networks are in ``larq_bnext/resources/binary_networks.csv``,
each row with its source; BNext's top-1 comes from :mod:`larq_bnext.registry` and its OPs
from :func:`larq_bnext.opcount.count_ops` (see :func:`larq_bnext.ops.count_rows`).
"""

from __future__ import annotations

import csv
import os
from importlib import resources

__all__ = ["published_results", "plot_top1_vs_ops", "features_markdown"]

_NUMBERS = ("year", "top1", "bops", "flops", "ops", "binarization")
_FEATURES = ("bn", "prelu", "se", "quantization", "kd")
_FEATURE_NAMES = ("BN", "PReLU", "SE", "quantization", "KD")


def published_results(path=None) -> list[dict]:
    """The rows of the published-results file, numbers as floats (``None`` where blank).

    Args:
        path: a CSV of the same columns; ``None``: the one the package ships.
    """
    if path is None:
        text = resources.files("larq_bnext").joinpath("resources/binary_networks.csv")
        text = text.read_text(encoding="utf-8")
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    rows = list(csv.DictReader(text.splitlines()))
    for row in rows:
        for key in _NUMBERS:
            row[key] = float(row[key]) if row[key] else None
    return rows


def plot_top1_vs_ops(path, bnext_rows, published=None):
    """Top-1 against OPs (log scale) of the published binary networks and of BNext.

    Args:
        path: the PNG to write.
        bnext_rows: :func:`larq_bnext.ops.count_rows` of the models to draw as BNext (those
            with a published top-1 are drawn).
        published: :func:`published_results` (default: the shipped file); rows with both a
            top-1 and OPs are drawn.

    Returns:
        ``path``.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    published = published_results() if published is None else published
    figure = Figure(figsize=(9, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    others = [r for r in published if r["top1"] is not None and r["ops"] is not None]
    # One marker and colour per published network, named in the legend: their points lie
    # too close together for labels beside them.
    colours, markers = matplotlib.colormaps["tab20"].colors, "osD^vP*Xhp<>"
    for i, r in enumerate(sorted(others, key=lambda r: (r["year"], r["ops"]))):
        axes.scatter(r["ops"], r["top1"], color=colours[i % 20], marker=markers[i % 12],
                     label=f"{r['model']} ({r['year']:.0f})")  # fmt: skip
    ours = [(label, c.ops, info.top1) for label, c, info in bnext_rows if info and info.top1]
    axes.plot([o for _, o, _ in ours], [t for _, _, t in ours], "o-", color="tab:red",
              label="BNext (OPs counted here)")  # fmt: skip
    for label, ops, top1 in ours:
        axes.annotate(label, (ops, top1), textcoords="offset points", xytext=(-40, 4),
                      fontsize="small", color="tab:red")  # fmt: skip
    axes.set_xscale("log")
    axes.margins(x=0.1, y=0.08)
    axes.set_xlabel("OPs = BOPs / 64 + FLOPs (224x224; BNext: real-valued MACs 8-bit)")
    axes.set_ylabel("ImageNet top-1 (%)")
    axes.set_title("ImageNet binary networks (published: larq_bnext/resources/binary_networks.csv)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _yes(value: str) -> str:
    return "Yes" if value.strip().lower() == "yes" else ""


def features_markdown(bnext_rows, published=None) -> str:
    """The design-features table: BN, PReLU, SE, quantization, KD and the degree of
    binarization, published (the authors' README) and, for BNext, counted here: exactly and
    from rounded figures as the README computes it
    (:attr:`larq_bnext.opcount.OpCount.rounded_binarization`).

    Args:
        bnext_rows: :func:`larq_bnext.ops.count_rows` of the BNext models to list.
        published: :func:`published_results` (default: the shipped file); rows with a
            published degree are listed, and the ``BNext`` row gives BNext's features.
    """
    published = published_results() if published is None else published
    header = [
        "model",
        *_FEATURE_NAMES,
        "binarization (published)",
        "binarization (counted)",
        "counted, rounded",
    ]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    bnext = next(r for r in published if r["model"] == "BNext")
    for r in published:
        if r["binarization"] is not None:
            cells = [r["model"], *(_yes(r[k]) for k in _FEATURES), f"{r['binarization']:.2f} %"]
            lines.append("| " + " | ".join([*cells, "", ""]) + " |")
    for label, counts, info in bnext_rows:
        degree = "" if info is None or info.binarization is None else f"{info.binarization:.2f} %"
        cells = [label, *(_yes(bnext[k]) for k in _FEATURES), degree]
        rounded = counts.rounded_binarization
        rounded = "" if rounded != rounded else f"{100 * rounded:.2f} %"  # NaN: OPs round to 0
        lines.append(
            "| " + " | ".join([*cells, f"{100 * counts.binarization:.2f} %", rounded]) + " |"
        )
    return "\n".join(lines)
