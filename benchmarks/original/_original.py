"""Import the original BNext training code (hpi-xnor/BNext) on a CPU, in float64.

Shared by the scripts of ``benchmarks/original/``. The original's training script imports
timm, torchvision, torchinfo, einops, pytorch_warmup, torch_optimizer and DALI at module
level, for data loading, model zoos and logging that the compared code paths (the training
step, the loss, the temperature annealing) never use. :func:`load_original` writes stand-in
packages for them into a temporary directory put first on ``sys.path``: any attribute of a
stand-in is a class whose instances raise when they are called or read, so a compared path
that touched one would fail loudly instead of silently computing something else. Nothing is
installed.

:func:`cpu_patches` makes the original's CUDA calls run on the CPU: ``Tensor.cuda`` and
``Module.cuda`` return their object, ``torch.cuda.synchronize`` does nothing, and
``Tensor.float`` leaves float64 tensors alone (the script casts fp16 teacher logits up to
float32 with it; in a float64 comparison that cast would round the teacher logits down).
``torch.cuda.amp.autocast`` and ``GradScaler`` disable themselves without CUDA.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import sys
import tempfile

STAND_INS = (
    "timm",
    "timm.data",
    "timm.data.mixup",
    "timm.data.auto_augment",
    "timm.data.constants",
    "timm.loss",
    "timm.optim",
    "timm.scheduler",
    "timm.scheduler.cosine_lr",
    "timm.models",
    "timm.models.layers",
    "torchvision",
    "torchvision.datasets",
    "torchvision.transforms",
    "torchinfo",
    "einops",
    "pytorch_warmup",
    "torch_optimizer",
    "nvidia",
    "nvidia.dali",
    "nvidia.dali.plugin",
    "nvidia.dali.plugin.pytorch",
    "nvidia.dali.pipeline",
    "nvidia.dali.ops",
    "nvidia.dali.ops.random",
    "nvidia.dali.fn",
    "nvidia.dali.types",
)

_STAND_IN_SOURCE = '''"""A stand-in (benchmarks/original/_original.py)."""


class _Unused:
    # Creating one is allowed (module-level decorators); calling or reading it is not.
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{__name__}: a stand-in was called by the compared code")

    def __getattr__(self, name):
        raise RuntimeError(f"{__name__}: a stand-in was used by the compared code ({name})")


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _Unused
'''


def original_argument(parser: argparse.ArgumentParser) -> None:
    """Add the ``--original PATH`` flag (a checkout of hpi-xnor/BNext).

    Args:
        parser: the script's argument parser.
    """
    parser.add_argument(
        "--original",
        required=True,
        help="path of a checkout of https://github.com/hpi-xnor/BNext (holds src/ and utils/)",
    )


def _write_stand_ins(root: str) -> None:
    for name in STAND_INS:
        folder = os.path.join(root, *name.split("."))
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "__init__.py"), "w") as f:
            f.write(_STAND_IN_SOURCE)


def load_original(path: str):
    """Import the original's ``src/train_assistant_group_amp.py`` and ``utils/KD_loss.py``.

    Args:
        path: the checkout of hpi-xnor/BNext.

    Returns:
        ``(train_module, kd_loss_module, bnext_module)``.
    """
    path = os.path.abspath(path)
    script = os.path.join(path, "src", "train_assistant_group_amp.py")
    if not os.path.isfile(script):
        raise SystemExit(f"--original {path}: no src/train_assistant_group_amp.py there.")
    stand_ins = tempfile.mkdtemp(prefix="bnext_stand_ins_")
    _write_stand_ins(stand_ins)
    for entry in (os.path.join(path, "src"), path, stand_ins):
        sys.path.insert(0, entry)
    spec = importlib.util.spec_from_file_location("train_assistant_group_amp", script)
    train = importlib.util.module_from_spec(spec)
    with contextlib.redirect_stdout(io.StringIO()):
        spec.loader.exec_module(train)
    return train, train.KD_loss, sys.modules["bnext"]


@contextlib.contextmanager
def cpu_patches():
    """Run the original's CUDA-only calls on the CPU, keeping float64 tensors float64."""
    import torch

    saved = (torch.Tensor.cuda, torch.nn.Module.cuda, torch.cuda.synchronize, torch.Tensor.float)
    original_float = torch.Tensor.float

    def _float(self, *args, **kwargs):
        if self.dtype == torch.float64:
            return self
        return original_float(self, *args, **kwargs)

    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.cuda.synchronize = lambda *a, **k: None
    torch.Tensor.float = _float
    try:
        yield
    finally:
        (torch.Tensor.cuda, torch.nn.Module.cuda, torch.cuda.synchronize, torch.Tensor.float) = (
            saved
        )


def relative_difference(a, b) -> float:
    """``max |a - b| / max |b|`` (0 when both are 0).

    Args:
        a: array-like.
        b: array-like (the original's values).
    """
    import numpy as np

    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    diff = float(np.max(np.abs(a - b))) if b.size else 0.0
    return diff / scale if scale else diff


def timm_cosine_lr(epoch, epochs=512, base_lr=1e-3, warmup_t=5, warmup_lr_init=1e-5, lr_min=1e-7):
    """The learning rate of the original's scheduler at ``epoch``, re-derived from timm.

    The script builds ``CosineLRScheduler(optimizer, t_initial=args.epochs, warmup_t=5,
    lr_min=1e-7, warmup_lr_init=1e-5, warmup_prefix=True)`` and calls ``scheduler.step(epoch=
    epoch)`` at the start of every ``train()``. In timm 0.6.11 (the original's
    requirements.txt), ``timm/scheduler/cosine_lr.py`` ``_get_lr(t)`` computes, with its
    defaults ``cycle_mul=1``, ``cycle_decay=1``, ``cycle_limit=1``, ``k_decay=1`` and no noise,
    what is written here; ``Scheduler.step`` writes it into every parameter group.

    Args:
        epoch: the epoch index ``train()`` is called with.
        epochs: ``t_initial``.
        base_lr: the optimizer's initial ``lr``.
        warmup_t: warm-up epochs.
        warmup_lr_init: warm-up start.
        lr_min: cosine floor.
    """
    import math

    if epoch < warmup_t:
        return warmup_lr_init + epoch * ((base_lr - warmup_lr_init) / warmup_t)
    t = epoch - warmup_t  # warmup_prefix=True
    i = t // epochs
    t_curr = t - epochs * i
    if i < 1:  # cycle_limit
        cosine = 1 + math.cos(math.pi * t_curr**1.0 / epochs**1.0)  # k_decay = 1
        return lr_min + 0.5 * (base_lr - lr_min) * cosine
    return lr_min


def load_timm_scheduler(path: str):
    """timm's own ``CosineLRScheduler`` from a checkout (``timm/scheduler/`` only, not installed).

    Args:
        path: a checkout of https://github.com/huggingface/pytorch-image-models (tag v0.6.11,
            the original's version) holding ``timm/scheduler/cosine_lr.py`` and ``scheduler.py``.

    Returns:
        The ``CosineLRScheduler`` class.
    """
    folder = os.path.join(os.path.abspath(path), "timm", "scheduler")
    package = "timm_scheduler_checkout"
    init = importlib.util.spec_from_file_location(
        package, os.path.join(folder, "scheduler.py"), submodule_search_locations=[folder]
    )
    module = importlib.util.module_from_spec(init)
    sys.modules[package] = module
    for name in ("scheduler", "cosine_lr"):
        spec = importlib.util.spec_from_file_location(
            f"{package}.{name}", os.path.join(folder, f"{name}.py")
        )
        sub = importlib.util.module_from_spec(spec)
        sys.modules[f"{package}.{name}"] = sub
        spec.loader.exec_module(sub)
    return sys.modules[f"{package}.cosine_lr"].CosineLRScheduler
