"""Checks of ``python -m larq_bnext.train``'s flags, run before any long work starts.

Each problem raises :class:`FlagError` with a message naming the flag, its value and the
fix, e.g. ``--batch_size=30 does not split over the 4 replicas ...``. The checks need no
dataset and build no model: a bad command fails within seconds, not after the data scan or
the teacher download.
"""

from __future__ import annotations

import os

__all__ = ["FlagError", "check_train_flags", "check_replicas"]


class FlagError(ValueError):
    """A flag's value that cannot work; the message names the flag and the fix."""


def _positive(name: str, value, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise FlagError(f"--{name}={value} must be a positive number.")


def check_replicas(batch_size: int, replicas: int) -> None:
    """The global batch must split evenly over the replicas.

    Args:
        batch_size: the global batch (``--batch_size``).
        replicas: the strategy's replicas in sync.
    """
    if replicas > 1 and batch_size % replicas:
        lower = batch_size - batch_size % replicas
        raise FlagError(
            f"--batch_size={batch_size} does not split over the {replicas} replicas: use a "
            f"multiple of {replicas} (e.g. --batch_size={max(lower, replicas)} or "
            f"{lower + replicas}), or fewer devices (--devices)."
        )


def check_train_flags(flags) -> None:
    """Check the training flags; raise :class:`FlagError` on the first problem.

    Args:
        flags: the parsed flags (``absl.flags.FLAGS`` or any object with the same attributes).
    """
    from larq_bnext.registry import canonical_size
    from larq_bnext.training.teachers import KERAS_TEACHERS

    model = str(flags.model).strip().lower()
    if model != "custom":
        try:
            canonical_size(model)
        except ValueError:
            raise FlagError(
                f"--model={flags.model} is not a BNext size: use tiny, small, middle, large "
                "(or T, S, M, L), or custom with --stage_channels."
            ) from None
    else:
        try:
            channels = [int(c) for c in flags.stage_channels]
        except ValueError:
            channels = []
        if not channels or min(channels) < 1:
            raise FlagError(
                f"--stage_channels={','.join(flags.stage_channels)} must be positive integers, "
                "e.g. --stage_channels=16,32,64,128."
            )

    for name in ("epochs", "batch_size", "steps_per_epoch", "image_size", "teacher_epochs"):
        _positive(name, getattr(flags, name))
    _positive("lr", flags.lr, allow_none=False)
    if not 0 <= flags.max_skipped_fraction <= 1:
        raise FlagError(
            f"--max_skipped_fraction={flags.max_skipped_fraction} must be in [0, 1] "
            "(0.01 stops a run in which more than 1 % of the images are unreadable)."
        )
    freq = str(flags.backup_freq)
    if freq != "epoch" and not (freq.isdigit() and int(freq) > 0):
        raise FlagError(f"--backup_freq={freq} must be 'epoch' or a positive number of steps.")

    if flags.dataset == "folder":
        if not flags.data_dir:
            raise FlagError(
                "--dataset=folder needs --data_dir: the folder holding train/<class>/*.JPEG "
                "and val/<class>/*.JPEG."
            )
        if not os.path.isdir(flags.data_dir):
            raise FlagError(
                f"--data_dir={flags.data_dir} does not exist or is not a folder: pass the "
                "folder holding train/ and val/."
            )
        if not os.path.isdir(os.path.join(flags.data_dir, "train")):
            raise FlagError(
                f"--data_dir={flags.data_dir} has no train/ folder: it must hold "
                "train/<class>/*.JPEG and val/<class>/*.JPEG."
            )

    out = flags.output_dir
    if os.path.exists(out) and not os.path.isdir(out):
        raise FlagError(f"--output_dir={out} is a file: pass a folder (it is created if missing).")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        raise FlagError(
            f"--output_dir={out} cannot be created ({error.strerror}): pass a writable folder."
        ) from None
    if not os.access(out, os.W_OK):
        raise FlagError(f"--output_dir={out} is not writable: pass a writable folder.")

    spec = str(flags.teachers).strip().lower()
    if spec not in ("auto", "none"):
        names = [n.strip().replace("-", "_") for n in spec.split(",") if n.strip()]
        unknown = [n for n in names if n not in KERAS_TEACHERS]
        if not names or unknown:
            raise FlagError(
                f"--teachers={flags.teachers}: unknown teacher {unknown or spec!r}; use auto, "
                f"none, or a comma list of {', '.join(sorted(KERAS_TEACHERS))} (assistants "
                "first, the main teacher last)."
            )

    weights = flags.init_weights
    if weights and weights != "imagenet" and not os.path.isfile(weights):
        raise FlagError(
            f"--init_weights={weights} is not a file: pass a .weights.h5/.pth file or 'imagenet'."
        )
