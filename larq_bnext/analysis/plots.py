"""Figures of loss landscapes: contour, 3-D surface, line, and several models side by side.

In the manner of the landscape figures of the BNext paper and of Li et al. (2018): a 3-D loss
surface over the plane of two directions, a contour map of the same plane (with top-1 beside
it), and, to compare architectures, the same kind of panel for several models on shared
scales. Drawn with Matplotlib's Agg canvas (no display needed, no change to a notebook's
backend). A landscape that is not complete is drawn where it is computed and marked
"partial".
"""

from __future__ import annotations

import os

import numpy as np

from larq_bnext.analysis.results import Landscape

__all__ = ["plot_contour", "plot_surface", "plot_line", "plot_comparison", "plot_figures"]

_SURFACE_CMAP = "coolwarm"
_CONTOUR_CMAP = "viridis"


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _title(landscape: Landscape, title: str | None) -> str:
    if title is not None:
        return title
    text = str(landscape.info.get("name", "model"))
    if not landscape.complete:
        text += f" (partial: {int(landscape.rows_done.sum())}/{len(landscape.rows_done)} rows)"
    return text


def _need(landscape: Landscape, dims: int, what: str) -> None:
    if landscape.dims != dims:
        kind = "plane (dims=2)" if dims == 2 else "line (dims=1)"
        raise ValueError(f"{what} draws a {kind}; this landscape has dims={landscape.dims}.")
    if not landscape.rows_done.any():
        raise ValueError("The landscape has no computed point to draw yet.")


def _shown_loss(landscape: Landscape, max_loss: float | None) -> np.ndarray:
    loss = np.array(landscape.loss, np.float64)
    return loss if max_loss is None else np.minimum(loss, max_loss)


def _levels(values: list[np.ndarray], levels: int, geometric: bool = False):
    """``(levels, log)``: contour levels over the finite values, log-spaced (``log`` true) with
    ``geometric`` when the values are positive and span more than a factor of 10 (a basin
    next to a loss 100 times higher would otherwise be one flat colour)."""
    finite = np.concatenate([v[np.isfinite(v)] for v in values])
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        high = low + 1e-6
    if geometric and low > 0 and high / low > 10:
        return np.geomspace(low, high, levels), True
    return np.linspace(low, high, levels), False


def _draw_contour(axes, landscape: Landscape, values, levels, label: str, cmap=_CONTOUR_CMAP):
    from matplotlib.colors import LogNorm

    levels, log = levels
    grid_x, grid_y = np.meshgrid(landscape.x, landscape.y)
    norm = LogNorm(levels[0], levels[-1]) if log else None
    filled = axes.contourf(grid_x, grid_y, values, levels=levels, cmap=cmap, norm=norm, alpha=0.85)
    lines = axes.contour(grid_x, grid_y, values, levels=levels[::2], colors="k", linewidths=0.5)
    axes.clabel(lines, fontsize=7, fmt="%.3g")
    axes.plot([0], [0], marker="*", color="white", markeredgecolor="k", markersize=11)
    axes.set_aspect("equal")
    axes.set_xlabel("direction 1")
    axes.set_ylabel("direction 2")
    axes.set_title(label + (" (log-spaced levels)" if log else ""))
    return filled


def _colorbar(figure, filled, axes, levels, label=None) -> None:
    """A colour bar labelled at every fourth level (readable on log-spaced levels too)."""
    bar = figure.colorbar(filled, ax=axes, shrink=0.85, label=label, ticks=levels[::4])
    bar.ax.yaxis.set_major_formatter("{x:.3g}")
    bar.ax.yaxis.set_minor_formatter("")


def _draw_surface(axes, landscape: Landscape, values, z_limits, label: str):
    grid_x, grid_y = np.meshgrid(landscape.x, landscape.y)
    masked = np.ma.masked_invalid(values)
    axes.plot_surface(
        grid_x,
        grid_y,
        masked,
        cmap=_SURFACE_CMAP,
        vmin=z_limits[0],
        vmax=z_limits[1],
        rstride=1,
        cstride=1,
        linewidth=0.1,
        edgecolor="k",
        antialiased=True,
    )
    floor = z_limits[0] - 0.1 * (z_limits[1] - z_limits[0])
    if np.isfinite(values).sum() >= 4:
        levels = np.linspace(z_limits[0], z_limits[1], 12)
        axes.contour(
            grid_x, grid_y, masked, zdir="z", offset=floor, levels=levels, cmap=_SURFACE_CMAP
        )
    axes.set_zlim(floor, z_limits[1])
    axes.set_xlabel("direction 1")
    axes.set_ylabel("direction 2")
    axes.set_zlabel("loss")
    axes.view_init(elev=30, azim=-60)
    axes.set_box_aspect(None, zoom=0.88)  # keeps the z label inside the panel
    axes.set_title(label)


def plot_contour(
    landscape: Landscape,
    path: str | os.PathLike,
    levels: int = 21,
    max_loss: float | None = None,
    title: str | None = None,
) -> str:
    """Contour maps of a plane: loss (left) and top-1 (right), the trained model at the star.

    Args:
        landscape: a landscape with ``dims=2``.
        path: the PNG file to write.
        levels: the number of contour levels.
        max_loss: draw losses above this value at this value (``None``: no cut).
        title: the figure's title (default: the model's name).

    Returns:
        The path written.
    """
    _need(landscape, 2, "plot_contour")
    figure = _new_figure(10.0, 4.6)
    loss = _shown_loss(landscape, max_loss)
    axes = figure.add_subplot(1, 2, 1)
    loss_levels = _levels([loss], levels, True)
    filled = _draw_contour(axes, landscape, loss, loss_levels, "loss")
    _colorbar(figure, filled, axes, loss_levels[0])
    axes = figure.add_subplot(1, 2, 2)
    top1 = np.asarray(landscape.top1, np.float64)
    top1_levels = _levels([top1], levels)
    filled = _draw_contour(axes, landscape, top1, top1_levels, "top-1", "magma")
    _colorbar(figure, filled, axes, top1_levels[0])
    figure.suptitle(_title(landscape, title))
    return _save(figure, path)


def plot_surface(
    landscape: Landscape,
    path: str | os.PathLike,
    max_loss: float | None = None,
    title: str | None = None,
) -> str:
    """The 3-D loss surface of a plane, with its contours projected below.

    Args:
        landscape: a landscape with ``dims=2``.
        path: the PNG file to write.
        max_loss: draw losses above this value at this value (``None``: no cut).
        title: the figure's title (default: the model's name).

    Returns:
        The path written.
    """
    import mpl_toolkits.mplot3d  # noqa: F401  (registers the 3-D projection)

    _need(landscape, 2, "plot_surface")
    figure = _new_figure(6.4, 5.4)
    loss = _shown_loss(landscape, max_loss)
    (low, high), _ = _levels([loss], 2)
    axes = figure.add_subplot(1, 1, 1, projection="3d")
    _draw_surface(axes, landscape, loss, (low, high), _title(landscape, title))
    return _save(figure, path)


def plot_line(
    landscape: Landscape,
    path: str | os.PathLike,
    title: str | None = None,
) -> str:
    """Loss (left axis) and top-1 (right axis) along a line.

    Args:
        landscape: a landscape with ``dims=1``.
        path: the PNG file to write.
        title: the figure's title (default: the model's name).

    Returns:
        The path written.
    """
    _need(landscape, 1, "plot_line")
    figure = _new_figure(6.4, 4.2)
    axes = figure.add_subplot(1, 1, 1)
    _draw_line(axes, landscape, None)
    axes.set_title(_title(landscape, title))
    return _save(figure, path)


def _draw_line(axes, landscape: Landscape, loss_limits):
    axes.plot(landscape.x, landscape.loss, color="tab:blue", marker="o", markersize=3)
    axes.set_xlabel("direction 1")
    axes.set_ylabel("loss", color="tab:blue")
    if loss_limits is not None:
        axes.set_ylim(*loss_limits)
    axes.axvline(0.0, color="grey", linewidth=0.5)
    axes.grid(alpha=0.3)
    right = axes.twinx()
    right.plot(landscape.x, landscape.top1, color="tab:orange", marker="s", markersize=3)
    right.set_ylabel("top-1", color="tab:orange")
    right.set_ylim(-0.02, 1.02)


def plot_comparison(
    landscapes: list[Landscape],
    path: str | os.PathLike,
    kind: str = "surface",
    names: list[str] | None = None,
    max_loss: float | None = None,
    levels: int = 21,
    title: str | None = None,
) -> str:
    """Several models' landscapes side by side, on shared scales.

    Surfaces share their loss axis and colour scale, contours their levels, lines their loss
    axis, so that a flatter or sharper landscape reads as such.

    Args:
        landscapes: the landscapes (all planes for ``"surface"`` and ``"contour"``, all lines
            for ``"line"``).
        path: the PNG file to write.
        kind: ``"surface"``, ``"contour"`` (loss) or ``"line"``.
        names: a title per panel (default: each landscape's model name).
        max_loss: draw losses above this value at this value (``None``: no cut).
        levels: the number of contour levels (``"contour"``).
        title: the figure's title.

    Returns:
        The path written.

    Raises:
        ValueError: for no landscape, an unknown ``kind``, or landscapes of the wrong
            dimension.
    """
    import mpl_toolkits.mplot3d  # noqa: F401  (registers the 3-D projection)

    if not landscapes:
        raise ValueError("plot_comparison needs at least one landscape.")
    if kind not in ("surface", "contour", "line"):
        raise ValueError(f"kind must be 'surface', 'contour' or 'line', not {kind!r}.")
    dims = 1 if kind == "line" else 2
    for landscape in landscapes:
        _need(landscape, dims, f"plot_comparison(kind={kind!r})")
    if names is not None and len(names) != len(landscapes):
        raise ValueError(f"{len(names)} names for {len(landscapes)} landscapes.")
    names = names or [_title(ls, None) for ls in landscapes]
    losses = [_shown_loss(ls, max_loss) for ls in landscapes]
    shared = _levels(losses, levels, geometric=kind == "contour")
    low, high = shared[0][0], shared[0][-1]
    count = len(landscapes)
    figure = _new_figure(
        (5.0 if kind == "surface" else 4.6) * count, 4.4 if kind != "surface" else 4.6
    )
    filled = None
    for i, (landscape, loss, name) in enumerate(zip(landscapes, losses, names, strict=True)):
        if kind == "surface":
            axes = figure.add_subplot(1, count, i + 1, projection="3d")
            _draw_surface(axes, landscape, loss, (low, high), name)
        elif kind == "contour":
            axes = figure.add_subplot(1, count, i + 1)
            filled = _draw_contour(axes, landscape, loss, shared, name)
        else:
            axes = figure.add_subplot(1, count, i + 1)
            margin = 0.05 * (high - low)
            _draw_line(axes, landscape, (low - margin, high + margin))
            axes.set_title(name)
    if filled is not None:
        _colorbar(figure, filled, figure.axes, shared[0], label="loss")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_figures(
    landscape: Landscape, stem: str | os.PathLike, max_loss: float | None = None
) -> list[str]:
    """The standard figures of a landscape: ``<stem>_contour.png`` and ``<stem>_surface.png``
    for a plane, ``<stem>_line.png`` for a line.

    Args:
        landscape: the landscape.
        stem: the path without the suffix (``runs/landscape`` for ``runs/landscape.npz``).
        max_loss: draw losses above this value at this value (``None``: no cut).

    Returns:
        The paths written.
    """
    stem = os.fspath(stem)
    if landscape.dims == 1:
        return [plot_line(landscape, f"{stem}_line.png")]
    return [
        plot_contour(landscape, f"{stem}_contour.png", max_loss=max_loss),
        plot_surface(landscape, f"{stem}_surface.png", max_loss=max_loss),
    ]
