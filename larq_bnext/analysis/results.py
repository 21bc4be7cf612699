"""A loss landscape's record: the grid, its values, its settings, its cost, in one ``.npz``.

:class:`Landscape` holds what :func:`larq_bnext.analysis.grid.loss_landscape` computes. It is
saved after every row of the grid, atomically (a temporary file in the same folder replaces
the old one), so an interrupted run loses at most the row it was computing and a rerun with
the same settings continues where it stopped. The file holds plain arrays and the settings as
JSON text: loading it executes nothing (``allow_pickle=False``).
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

__all__ = ["Landscape", "SettingsMismatchError", "check_same_settings"]

#: Bumped when the meaning of a stored landscape changes (its directions, its loss).
FORMAT_VERSION = 1


class SettingsMismatchError(ValueError):
    """A stored landscape was computed with other settings than the ones asked for."""


@dataclasses.dataclass
class Landscape:
    """Loss and top-1 on a line or a plane of weights around a trained model.

    Args:
        settings: what fixes the values (grid, seed, examples, loss, the digests of the
            model's weights and of the examples); a rerun continues only with equal settings.
        x: the first direction's coordinates.
        y: the second direction's coordinates (``None`` for a line).
        loss: mean loss per point, ``(len(y), len(x))`` for a plane (row ``j`` is
            ``y[j]``), ``(len(x),)`` for a line; ``nan`` where not computed yet.
        top1: top-1 accuracy per point, same shape.
        sign_flips: per point, the fraction of binary-convolution weights whose sign differs
            from the centre's (``nan`` for a model without binary convolutions).
        rows_done: one flag per row of the grid (per point for a line).
        seconds: evaluation time spent on the computed rows, over all runs.
        info: what describes the run without changing its values (the model's name, the
            binary regime, how many weights the directions move).
    """

    settings: dict
    x: np.ndarray
    y: np.ndarray | None
    loss: np.ndarray
    top1: np.ndarray
    sign_flips: np.ndarray
    rows_done: np.ndarray
    seconds: float = 0.0
    info: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def empty(cls, settings: dict, x, y=None, info: dict | None = None) -> Landscape:
        """A landscape with no point computed yet.

        Args:
            settings: see the class.
            x: the first direction's coordinates.
            y: the second direction's coordinates, or ``None`` for a line.
            info: see the class.
        """
        x = np.asarray(x, np.float64)
        y = None if y is None else np.asarray(y, np.float64)
        shape = (len(x),) if y is None else (len(y), len(x))
        full = np.full(shape, np.nan)
        return cls(
            settings=dict(settings),
            x=x,
            y=y,
            loss=full.copy(),
            top1=full.copy(),
            sign_flips=full.copy(),
            rows_done=np.zeros(shape[0], bool),
            info=dict(info or {}),
        )

    @property
    def dims(self) -> int:
        """1 for a line, 2 for a plane."""
        return 1 if self.y is None else 2

    @property
    def points(self) -> int:
        """The number of grid points."""
        return int(self.loss.size)

    @property
    def complete(self) -> bool:
        """Whether every row has been computed."""
        return bool(self.rows_done.all())

    @property
    def points_done(self) -> int:
        """The number of grid points computed."""
        per_row = 1 if self.dims == 1 else len(self.x)
        return int(self.rows_done.sum()) * per_row

    @property
    def examples(self) -> int:
        """The number of evaluation examples behind each point."""
        return int(self.settings["examples"])

    def centre(self) -> dict:
        """``{"loss", "top1"}`` at the trained weights (coordinates 0)."""
        i = int(np.argmin(np.abs(self.x)))
        index = (i,) if self.y is None else (int(np.argmin(np.abs(self.y))), i)
        return {"loss": float(self.loss[index]), "top1": float(self.top1[index])}

    def throughput(self) -> float | None:
        """The cost: grid points x examples evaluated per second (``None`` before a row)."""
        if self.seconds <= 0 or self.points_done == 0:
            return None
        return self.points_done * self.examples / self.seconds

    def cost_summary(self) -> str:
        """One line: points, examples, seconds and points x examples per second."""
        rate = self.throughput()
        if rate is None:
            return f"{self.points} points x {self.examples} examples: nothing computed yet"
        return (
            f"{self.points_done} points x {self.examples} examples in {self.seconds:.1f} s: "
            f"{rate:,.0f} point-examples/s ({self.seconds / self.points_done:.3f} s per point)"
        )

    def save(self, path: str | os.PathLike) -> str:
        """Write the landscape to ``path`` (a ``.npz``) atomically.

        Args:
            path: the file to write; its folder is created.

        Returns:
            The path written.
        """
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        arrays = {
            "x": self.x,
            "loss": self.loss,
            "top1": self.top1,
            "sign_flips": self.sign_flips,
            "rows_done": self.rows_done,
            "seconds": np.float64(self.seconds),
            "settings": np.str_(json.dumps(self.settings, sort_keys=True)),
            "info": np.str_(json.dumps(self.info, sort_keys=True)),
            "format_version": np.int64(FORMAT_VERSION),
        }
        if self.y is not None:
            arrays["y"] = self.y
        temporary = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Landscape:
        """Read a landscape written by :meth:`save`.

        Args:
            path: the ``.npz`` file.

        Raises:
            FileNotFoundError: if there is no such file.
            ValueError: if the file is not a landscape of this format.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No landscape file at {path}.")
        with np.load(path, allow_pickle=False) as f:
            missing = {"x", "loss", "top1", "settings", "rows_done"} - set(f.files)
            if missing:
                raise ValueError(
                    f"{path} is not a landscape file (it lacks {sorted(missing)}); give the "
                    "output of `python -m larq_bnext.landscape`."
                )
            version = int(f["format_version"]) if "format_version" in f.files else 0
            if version != FORMAT_VERSION:
                raise ValueError(
                    f"{path} has landscape format {version}, this version reads "
                    f"{FORMAT_VERSION}; compute it again (or move it away)."
                )
            return cls(
                settings=json.loads(str(f["settings"])),
                x=f["x"],
                y=f["y"] if "y" in f.files else None,
                loss=f["loss"],
                top1=f["top1"],
                sign_flips=f["sign_flips"],
                rows_done=f["rows_done"].astype(bool),
                seconds=float(f["seconds"]),
                info=json.loads(str(f["info"])),
            )


def check_same_settings(path: str, stored: dict, wanted: dict) -> None:
    """Refuse to continue a stored landscape whose settings differ from ``wanted``.

    Args:
        path: the stored file (named in the error).
        stored: the stored landscape's settings.
        wanted: the settings of this run.

    Raises:
        SettingsMismatchError: naming each differing setting with both values and the fixes.
    """
    keys = sorted(set(stored) | set(wanted))
    differing = [k for k in keys if stored.get(k) != wanted.get(k)]
    if not differing:
        return
    shown = "; ".join(
        f"{k}: {_short(wanted.get(k))} now, {_short(stored.get(k))} in the file" for k in differing
    )
    raise SettingsMismatchError(
        f"{path} holds a landscape computed with other settings ({shown}). Run with the same "
        "settings to continue it, write to another output, or overwrite it (--overwrite, "
        "overwrite=True) to start again."
    )


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 24 else text[:12] + "..." + text[-6:]
