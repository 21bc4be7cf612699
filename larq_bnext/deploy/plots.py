"""Plot a benchmark table: top-1 against latency and against file size."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from larq_bnext.deploy.catalog import DISPLAY_NAMES, PUBLISHED_TOP1

__all__ = [
    "plot_benchmark",
]


def plot_benchmark(
    rows: Sequence[dict], output_dir: str | os.PathLike, title: str | None = None
) -> list[Path]:
    """Plot published top-1 against latency and against file size (PNG, matplotlib Agg).

    Only rows with a published top-1 (LCE forms) are plotted.

    Args:
        rows: the output of :func:`benchmark`.
        output_dir: target directory.
        title: a title for both plots (e.g. the machine and input size).

    Returns:
        The paths of ``top1_vs_latency.png`` and ``top1_vs_size.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    import matplotlib.ticker  # noqa: F401  (loads matplotlib.ticker for the formatters)

    rows = [r for r in rows if r["top1"] is not None]
    order = {name: i for i, name in enumerate(PUBLISHED_TOP1)}
    latency_key = next((k for k in rows[0] if k.startswith("latency_ms_")), None) if rows else None
    paths = []
    for key, label, fname in [
        (
            latency_key,
            f"latency, {_threads_label(latency_key)} (ms, log scale)",
            "top1_vs_latency.png",
        ),
        ("size_mb", "flatbuffer size (MB, log scale)", "top1_vs_size.png"),
    ]:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for family, marker in (("bnext", "o"), ("quicknet", "s")):
            # In the order of PUBLISHED_TOP1 (model size), not sorted by the measured value.
            pts = sorted(
                (order.get(r["model"], len(order)), r[key], r["top1"], r["model"])
                for r in rows
                if key and r["model"].startswith(family)
            )
            if not pts:
                continue
            ax.plot([p[1] for p in pts], [p[2] for p in pts], marker=marker, label=family)
            for _, x, y, name in pts:
                ax.annotate(
                    DISPLAY_NAMES.get(name, name),
                    (x, y),
                    textcoords="offset points",
                    xytext=(5, -11),
                    fontsize=8,
                )
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("ImageNet top-1 (%, published)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        if title:
            ax.set_title(title, fontsize=10)
        fig.tight_layout()
        path = output_dir / fname
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def _threads_label(key: str | None) -> str:
    if not key:
        return ""
    n = key.removeprefix("latency_ms_").removesuffix("t")
    return f"{n} thread" + ("" if n == "1" else "s")
