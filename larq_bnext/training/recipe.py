"""The recipe of a run: the defaults a :class:`~larq_bnext.training.RunConfig` leaves to the
dataset and to the model's registry entry, filled in by :func:`resolve`.

Digits (the embedded demo) has its own small-scale preset (:data:`PRESETS`). Elsewhere the
epochs, global batch, learning-rate schedule, weight decays, gradient clip, temperature
decay, teacher weighting and teachers come from the model's
:class:`~larq_bnext.registry.Recipe` (BNext-T's for a custom width and for BNext-18, which
have none of their own), the image size and evaluation crop from its
:class:`~larq_bnext.registry.Preprocessing`; ``experiments/*.flags`` hold only what differs
(the model, the data and the run folder).

Examples:
    >>> from larq_bnext.training import RunConfig
    >>> run = resolve(RunConfig(model="large", dataset="imagenet2012"))
    >>> run.batch_size, run.epochs, run.lr, run.image_size, run.eval_crop_fraction
    (128, 512, 0.001, 224, 0.95)
    >>> run = resolve(RunConfig(dataset="digits", epochs=10))
    >>> run.batch_size, run.image_size, run.stem_stride, round(run.temperature_decay, 3)
    (64, 32, 1, 0.133)
"""

from __future__ import annotations

import dataclasses

from larq_bnext.augment.config import IMAGENET_CONFIG, AugmentConfig
from larq_bnext.registry import (
    BNEXT_ARCHITECTURE,
    IMAGENET_PREPROCESSING,
    RECIPE,
    ModelInfo,
    Preprocessing,
    Recipe,
    resolve_model,
)
from larq_bnext.training.config import RunConfig

__all__ = [
    "PRESETS",
    "model_info",
    "model_recipe",
    "model_preprocessing",
    "default_image_size",
    "evaluation_input",
    "default_stem_stride",
    "default_temperature_decay",
    "resolve",
    "augment_config",
]


#: Defaults that depend on the dataset (fields left ``None`` take them): the embedded digits'
#: small-scale demo, and ImageNet's (any other dataset) augmentation switches.
PRESETS = {
    "digits": dict(
        image_size=32,
        distill_weighting="per_sample",
        epochs=30,
        batch_size=64,
        crop_scale_min=0.5,
        flip=False,
        randaugment=False,
        baseline=True,
        deterministic=True,
        cosine_to_end=True,
        cooldown_epochs=5,
        bn_reestimation=True,
    ),
    "imagenet": dict(
        crop_scale_min=IMAGENET_CONFIG.crop_scale[0],
        flip=IMAGENET_CONFIG.flip,
        randaugment=IMAGENET_CONFIG.randaugment,
        baseline=False,
        deterministic=False,
        cosine_to_end=False,
        cooldown_epochs=0,
        bn_reestimation=False,
    ),
}

#: The largest image side that gets a stride-1 stem by default (CIFAR-sized inputs).
SMALL_IMAGE = 64


def model_info(model: str) -> ModelInfo | None:
    """The registry entry of a run's ``model`` (``None`` for ``"custom"``).

    Args:
        model: ``"custom"`` or a registry model name.
    """
    return None if model.strip().lower() == "custom" else resolve_model(model)


def model_recipe(model: str) -> Recipe:
    """The recipe ``model`` trains with: its own, or BNext-T's for a custom width.

    Args:
        model: ``"custom"`` or a registry model name.
    """
    info = model_info(model)
    return info.recipe if info is not None else RECIPE


def model_preprocessing(model: str) -> Preprocessing:
    """The input ``model`` wants: its registry preprocessing, ImageNet's for a custom width.

    Args:
        model: ``"custom"`` or a registry model name.
    """
    info = model_info(model)
    return info.preprocessing if info is not None else IMAGENET_PREPROCESSING


def default_image_size(dataset: str, model: str) -> int:
    """The image side of a run on ``dataset``: 32 for digits, else the model's.

    Args:
        dataset: the dataset name.
        model: ``"custom"`` or a registry model name.
    """
    if dataset == "digits":
        return PRESETS["digits"]["image_size"]
    return model_preprocessing(model).image_size


def evaluation_input(
    dataset: str, model: str, image_size: int | None = None, crop_fraction: float | None = None
) -> tuple[int, float]:
    """``(image_size, crop_fraction)`` a program evaluates ``model`` on ``dataset`` with: the
    given values, or the defaults (:func:`default_image_size`, the model's preprocessing).

    Args:
        dataset: the dataset name.
        model: ``"custom"`` or a registry model name.
        image_size: the input side, or ``None``.
        crop_fraction: the evaluation crop fraction, or ``None``.
    """
    image_size = image_size or default_image_size(dataset, model)
    return image_size, crop_fraction or model_preprocessing(model).crop_fraction


def default_stem_stride(image_size: int) -> int:
    """1 for images of at most :data:`SMALL_IMAGE` pixels (as the original for CIFAR), else 2.

    Args:
        image_size: side of the input images.
    """
    return 1 if image_size <= SMALL_IMAGE else 2


def default_temperature_decay(
    epochs: int, recipe: Recipe = RECIPE, threshold: float | None = None
) -> float:
    """The recipe's temperature factor, or a faster one for short runs.

    ``min(decay, threshold ** (1 / (0.8 * epochs)))``: the kernels are exactly ``sign(w)``
    (temperature below the model's sign threshold) for the last fifth of the epochs.

    Args:
        epochs: the run's epochs.
        recipe: the model's recipe (its ``temperature_decay``: 0.9, the original's).
        threshold: the model's sign threshold; ``None``: BNext-T/S/M/L's.
    """
    if threshold is None:
        threshold = BNEXT_ARCHITECTURE.sign_threshold
    return min(recipe.temperature_decay, threshold ** (1.0 / max(1.0, 0.8 * epochs)))


def resolve(config: RunConfig) -> RunConfig:
    """``config`` with every field left ``None`` set to the default of its dataset and model.

    Args:
        config: the run's settings.
    """
    info = model_info(config.model)
    recipe = model_recipe(config.model)
    digits = config.dataset == "digits"
    preset = PRESETS["digits" if digits else "imagenet"]
    defaults = dict(preset)
    defaults["image_size"] = default_image_size(config.dataset, config.model)
    if not digits:
        defaults.update(
            epochs=recipe.epochs,
            batch_size=recipe.batch_size,
            distill_weighting=recipe.distill_weighting,
        )
    defaults.update(
        eval_crop_fraction=model_preprocessing(config.model).crop_fraction,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        conv_weight_decay=recipe.conv_weight_decay,
        warmup_epochs=recipe.warmup_epochs,
        warmup_lr=recipe.warmup_lr,
        min_lr=recipe.min_lr,
        clip_norm=recipe.clip_norm,
        lr_reference_batch=defaults.get("batch_size", recipe.batch_size),
    )
    filled = {k: v for k, v in defaults.items() if getattr(config, k) is None}
    config = dataclasses.replace(config, **filled)
    extra = {}
    if config.stem_stride is None:
        extra["stem_stride"] = default_stem_stride(config.image_size)
    if not digits and config.teachers.strip().lower() == "auto":
        extra["teachers"] = ",".join(recipe.teachers)
    if config.temperature_decay is None:
        threshold = info.architecture.sign_threshold if info else None
        extra["temperature_decay"] = default_temperature_decay(config.epochs, recipe, threshold)
    return dataclasses.replace(config, **extra)


def augment_config(config: RunConfig) -> AugmentConfig:
    """The :class:`~larq_bnext.augment.AugmentConfig` of a resolved config.

    Args:
        config: a config returned by :func:`resolve`.
    """
    return AugmentConfig(
        image_size=config.image_size,
        crop_scale=(config.crop_scale_min, config.crop_scale_max),
        crop_ratio=config.crop_ratio,
        jpeg_dct_scaling=config.jpeg_dct_scaling,
        flip=config.flip,
        randaugment=config.randaugment,
        randaugment_policy=config.randaugment_policy,
        mixup_alpha=config.mixup,
        cutmix_alpha=config.cutmix,
        random_erasing=config.random_erasing,
    )
