"""Why a network trains well, looked at: loss landscapes around trained weights.

* :mod:`~larq_bnext.analysis.directions`: random filter-normalised directions (Li et al.,
  NeurIPS 2018) and the binary convolutions' regime;
* :mod:`~larq_bnext.analysis.grid`: :func:`loss_landscape`, the loss and top-1 on a line or a
  plane of weights, evaluated in place over fixed batches;
* :mod:`~larq_bnext.analysis.examples`: those batches, picked once by a seed;
* :mod:`~larq_bnext.analysis.results`: :class:`Landscape`, its ``.npz`` record (saved after
  every row, continued by a rerun);
* :mod:`~larq_bnext.analysis.plots`: contour, surface and line figures, and several models
  side by side;
* :mod:`~larq_bnext.analysis.ablations`: :func:`run_ablations`, a grid of training variants
  over seeds, and :mod:`~larq_bnext.analysis.ablation_table`, its CSV, mean ± std table and
  plot.

* :mod:`~larq_bnext.analysis.binary_networks`: other binary networks' published results, the
  top-1 against OPs figure and the design-features table (docs/comparison.md);
* :mod:`~larq_bnext.analysis.features`: the binary feature maps of a layer for an image.

``python -m larq_bnext.landscape``, ``python -m larq_bnext.ablate``, ``python -m
larq_bnext.ops`` and ``python -m larq_bnext.features`` are the command-line programs; see
docs/analysis.md and docs/comparison.md.
"""

from larq_bnext.analysis.ablation_table import read_rows, summarize, summary_markdown
from larq_bnext.analysis.ablations import (
    VARIANTS,
    Ablation,
    AblationMismatchError,
    run_ablations,
    variant_config,
)
from larq_bnext.analysis.binary_networks import (
    features_markdown,
    plot_top1_vs_ops,
    published_results,
)
from larq_bnext.analysis.directions import binary_regime, directed_variables, random_directions
from larq_bnext.analysis.examples import evaluation_batches
from larq_bnext.analysis.features import binary_features, plot_binary_features, sample_image
from larq_bnext.analysis.grid import logits_cross_entropy, loss_landscape
from larq_bnext.analysis.plots import (
    plot_comparison,
    plot_contour,
    plot_figures,
    plot_line,
    plot_surface,
)
from larq_bnext.analysis.results import Landscape, SettingsMismatchError

__all__ = [
    "VARIANTS",
    "Ablation",
    "AblationMismatchError",
    "Landscape",
    "SettingsMismatchError",
    "binary_features",
    "binary_regime",
    "features_markdown",
    "directed_variables",
    "evaluation_batches",
    "logits_cross_entropy",
    "loss_landscape",
    "plot_comparison",
    "plot_contour",
    "plot_figures",
    "plot_line",
    "plot_surface",
    "plot_binary_features",
    "plot_top1_vs_ops",
    "published_results",
    "random_directions",
    "read_rows",
    "run_ablations",
    "sample_image",
    "summarize",
    "summary_markdown",
    "variant_config",
]
