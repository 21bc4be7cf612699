"""The precision the frozen teachers run in, apart from the student's.

The released script (``train_assistant_group_amp.py``) runs only the teachers' forward pass
under ``torch.cuda.amp.autocast()`` (float16 on its GPUs); the student's forward, the loss and
the update stay float32 (its ``GradScaler`` is made but never used). ``--teacher_precision``
does the same here: the teachers are built under their own Keras dtype policy (their logits
are cast to float32 before the loss) while the student keeps ``--mixed_precision``.

``auto`` (the default) is the released precision, :attr:`larq_bnext.registry.Recipe.
teacher_precision`, on GPUs (``mixed_float16``); ``mixed_bfloat16`` on TPUs, which have no fast
float16; and the student's policy elsewhere (float32 on CPUs, where half precision is slower
or unsupported). Any other value is used as given.

Examples:
    >>> resolve_teacher_precision("auto", device_kind="GPU")
    'mixed_float16'
    >>> resolve_teacher_precision("auto", device_kind="CPU")
    'float32'
    >>> resolve_teacher_precision("mixed_bfloat16", device_kind="CPU")
    'mixed_bfloat16'
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import tensorflow as tf

from larq_bnext.registry import RECIPE

__all__ = [
    "TEACHER_PRECISIONS",
    "device_kind",
    "resolve_teacher_precision",
    "teacher_policy",
    "teachers_precision",
]

#: Values of ``--teacher_precision``.
TEACHER_PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def device_kind(list_devices: Callable[[str], list] | None = None) -> str:
    """``"GPU"``, ``"TPU"`` or ``"CPU"``: the accelerator the run's models are placed on.

    Args:
        list_devices: returns the physical devices of a type (default
            ``tf.config.list_physical_devices``); tests pass their own.
    """
    list_devices = list_devices or tf.config.list_physical_devices
    for kind in ("TPU", "GPU"):
        if list_devices(kind):
            return kind
    return "CPU"


def resolve_teacher_precision(
    choice: str = "auto",
    student_policy: str = "float32",
    device_kind: str | None = None,
    released: str = RECIPE.teacher_precision,
) -> str:
    """The Keras dtype policy the teachers run in (see the module).

    Args:
        choice: a value of :data:`TEACHER_PRECISIONS`.
        student_policy: the student's policy (``--mixed_precision``): ``auto``'s answer on CPUs.
        device_kind: ``"GPU"``, ``"TPU"`` or ``"CPU"``; ``None`` detects it (:func:`device_kind`).
        released: the released runs' teacher precision on GPUs.

    Raises:
        ValueError: for an unknown choice.
    """
    if choice not in TEACHER_PRECISIONS:
        raise ValueError(
            f"Unknown --teacher_precision {choice!r}; choose {', '.join(TEACHER_PRECISIONS)}."
        )
    if choice != "auto":
        return choice
    kind = device_kind or globals()["device_kind"]()
    if kind == "GPU":
        return released
    if kind == "TPU":
        return "mixed_bfloat16"
    return student_policy


@contextlib.contextmanager
def teacher_policy(policy: str):
    """Build the teachers inside the block: Keras' global dtype policy is ``policy`` there and
    as it was after it (the layers keep the policy they were built with).

    Args:
        policy: ``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"``.
    """
    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


def teachers_precision(config) -> str:
    """The policy the Keras teachers of a run config run in, on this machine's devices.

    Args:
        config: a :class:`~larq_bnext.training.config.RunConfig` (its ``teacher_precision``
            and ``mixed_precision``).
    """
    return resolve_teacher_precision(config.teacher_precision, config.mixed_precision)
