"""The recipe of a ``python -m larq_bnext.train`` run: flag values, or the defaults of the
dataset and of the published model when a flag is left unset.

The functions read absl's parsed flags (``absl.flags.FLAGS``), defined by
:mod:`larq_bnext.train`. ImageNet defaults that differ per size (global batch, epochs,
teachers) come from the model's :class:`~larq_bnext.registry.Recipe`;
``experiments/*.flags`` spell the same values out (``tests/test_experiments.py`` checks).
"""

from __future__ import annotations

from absl import app, flags

from larq_bnext import registry
from larq_bnext.training.augmentation import AugmentConfig

__all__ = [
    "PRESETS",
    "resolved",
    "model_size",
    "recipe_batch_size",
    "resolved_default",
    "deterministic",
    "temperature_decay",
    "augment_config",
]


FLAGS = flags.FLAGS


#: Defaults that depend on the dataset (flags left unset take them).
PRESETS = {
    "digits": dict(
        image_size=32,
        epochs=30,
        batch_size=64,
        crop_scale_min=0.5,
        flip=False,
        randaugment=False,
        baseline=True,
    ),
    "imagenet": dict(
        image_size=224,
        epochs=512,
        batch_size=512,
        crop_scale_min=0.08,
        flip=True,
        randaugment=True,
        baseline=False,
    ),
}


def resolved(name: str):
    """The value of flag ``name``, or its dataset preset when it was left unset.

    Args:
        name: a flag name with an entry in :data:`PRESETS`.
    """
    value = getattr(FLAGS, name)
    if value is not None:
        return value
    return resolved_default(name)


def resolved_default(name: str):
    """The default of flag ``name`` for this run: the digits preset, the published model's
    recipe (:mod:`larq_bnext.registry`) for ``batch_size`` and ``epochs``, else the ImageNet
    preset.

    Args:
        name: a flag name with an entry in :data:`PRESETS`.
    """
    if FLAGS.dataset == "digits":
        return PRESETS["digits"][name]
    size = model_size()
    if size is not None and name in ("batch_size", "epochs"):
        return getattr(registry.get(size).recipe, name)
    return PRESETS["imagenet"][name]


def model_size() -> str | None:
    """The published size of ``--model`` (``None`` for ``custom``).

    ``--model=bnext18`` gives ``"tiny"``: the original releases no recipe for BNext-18, which
    trains with BNext-T's (batch, epochs, teachers; see ``experiments/bnext18.flags``).
    """
    from larq_bnext.models.bnext18 import is_bnext18

    if FLAGS.model.lower() == "custom":
        return None
    if is_bnext18(FLAGS.model):
        return "tiny"
    return registry.canonical_size(FLAGS.model)


def deterministic() -> bool:
    """``--deterministic``, or, left unset, whether the run is the embedded digits demo."""
    if FLAGS.deterministic is None:
        return FLAGS.dataset == "digits"
    return bool(FLAGS.deterministic)


def temperature_decay(epochs: int) -> float:
    """``--temperature_decay`` or, unset, ``min(0.9, (1e-7)^(1 / (0.8 * epochs)))``.

    0.9 (the original) for runs of 160+ epochs; faster for short runs, so that the kernels
    are exactly ``sign(w)`` (temperature below 1e-7) for the last fifth of the epochs.

    Args:
        epochs: the run's epochs.
    """
    if FLAGS.temperature_decay is not None:
        return FLAGS.temperature_decay
    return min(0.9, 1e-7 ** (1.0 / max(1.0, 0.8 * epochs)))


def augment_config():
    """The :class:`~larq_bnext.training.augmentation.AugmentConfig` of the flags."""

    ratio = tuple(float(r) for r in FLAGS.crop_ratio)
    if len(ratio) != 2:
        raise app.UsageError("--crop_ratio needs two values: min,max.")
    return AugmentConfig(
        image_size=resolved("image_size"),
        crop_scale=(resolved("crop_scale_min"), FLAGS.crop_scale_max),
        crop_ratio=ratio,
        jpeg_dct_scaling=FLAGS.jpeg_dct_scaling,
        flip=resolved("flip"),
        randaugment=resolved("randaugment"),
        randaugment_policy=FLAGS.randaugment_policy,
        randaugment_ops=FLAGS.randaugment_ops,
        randaugment_rate=FLAGS.randaugment_rate,
        randaugment_magnitude=FLAGS.randaugment_magnitude,
        randaugment_magnitude_stddev=FLAGS.randaugment_magnitude_stddev,
        mixup_alpha=FLAGS.mixup,
        cutmix_alpha=FLAGS.cutmix,
        random_erasing=FLAGS.random_erasing,
    )


def recipe_batch_size() -> int:
    """The global batch of the recipe (512; 128 for BNext-L; 64 for digits)."""
    return resolved_default("batch_size")
