"""What makes a :class:`~larq_bnext.training.RunConfig` unable to work: its checks.

:func:`check_config` runs when a config is made (and on :func:`dataclasses.replace`): it
reads no file, needs no dataset and builds no model, so a config for a cluster can be made on a
laptop and a bad setting fails within seconds. :func:`check_paths` (the files and folders the
config names exist) and :func:`check_replicas` (the batch splits over the devices) run when
the run starts, on the machine that runs it. Each raises a :class:`ConfigError` naming the
field (the flag of the same name on the command line), its value and the fix, e.g.
``batch_size=30 does not split over the 4 replicas ...``.
"""

from __future__ import annotations

import dataclasses
import os

from larq_bnext.augment.randaugment import parse_policy
from larq_bnext.images.files import display_path
from larq_bnext.registry import list_models, models_text, resolve_model
from larq_bnext.training.method.teachers import KERAS_TEACHERS

__all__ = [
    "ConfigError",
    "check_config",
    "check_paths",
    "check_replicas",
    "listing",
    "COLLECTIVES",
    "TEACHER_WEIGHTS",
]

#: Values of ``collective``.
COLLECTIVES = ("auto", "ring", "nccl")
#: Values of ``teacher_weights``.
TEACHER_WEIGHTS = ("imagenet", "none")


class ConfigError(ValueError):
    """A setting that cannot work; the message names the field, its value and the fix.

    Args:
        field: the :class:`RunConfig` field (the flag of the same name on the command line).
        message: the explanation, starting with ``field=value``.
    """

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def listing(value) -> str:
    """A sequence as the command line writes it (``8,16``); anything else as ``str``.

    Args:
        value: the value of a field.
    """
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _positive(config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and not value > 0:
            raise ConfigError(name, f"{name}={value} must be a positive number.")


def _not_negative(config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and value < 0:
            raise ConfigError(name, f"{name}={value} must be 0 or more.")


def _fraction(config, name: str, hint: str = "") -> None:
    value = getattr(config, name)
    if value is not None and not 0 <= value <= 1:
        raise ConfigError(name, f"{name}={value} must be in [0, 1]{hint}.")


def _check_choices(config) -> None:
    """Each field with ``choices`` in its metadata holds one of them (or ``None``)."""
    for field in dataclasses.fields(config):
        choices = field.metadata.get("choices")
        value = getattr(config, field.name)
        if choices and value is not None and value not in choices:
            raise ConfigError(
                field.name, f"{field.name}={value!r} must be one of {', '.join(choices)}."
            )


def check_config(config) -> None:
    """Raise a :class:`ConfigError` for the first setting of ``config`` that cannot work.

    Args:
        config: a :class:`~larq_bnext.training.RunConfig` (normalised: tuples, numbers).
    """
    _check_choices(config)
    _check_model(config)
    _check_data(config)
    _check_recipe(config)
    _check_augmentation(config)
    _check_run(config)


def _check_model(config) -> None:
    if config.is_custom:
        if not config.stage_channels or min(config.stage_channels) < 1:
            raise ConfigError(
                "stage_channels",
                f"stage_channels={listing(config.stage_channels)} must be positive integers, "
                "e.g. stage_channels=16,32,64,128.",
            )
        info = None
    else:
        try:
            info = resolve_model(config.model)
        except ValueError:
            raise ConfigError(
                "model",
                f"model={config.model} is not a BNext model: use {models_text()}, or custom "
                "with stage_channels.",
            ) from None
    if config.stem_stride not in (None, 1, 2):
        raise ConfigError("stem_stride", f"stem_stride={config.stem_stride} must be 1 or 2.")
    if info is not None and info.family != "bnext":
        for switch in ("elm_attention", "info_recoupling"):
            if not getattr(config, switch):
                raise ConfigError(
                    switch,
                    f"{switch}=False: {info.display_name} has no such ablation switch; use a "
                    "BNext model (custom or T/S/M/L) for the ablation.",
                )
    if config.weights == "imagenet" and (info is None or not info.published):
        name = "a custom width" if info is None else info.display_name
        raise ConfigError(
            "weights",
            f"weights=imagenet: no ImageNet checkpoint of {name} is published; use "
            f"{', '.join(m.model_name for m in list_models() if m.published)}, or a file.",
        )


def _check_data(config) -> None:
    if not config.dataset:
        raise ConfigError("dataset", "dataset is empty: use digits, folder or a TFDS name.")
    if config.dataset == "folder":
        if not config.data_dir:
            raise ConfigError(
                "data_dir",
                "dataset=folder needs data_dir: the folder holding train/<class>/*.JPEG and "
                "val/<class>/*.JPEG.",
            )
    _positive(config, "image_size", "eval_crop_fraction")
    _not_negative(config, "max_image_pixels")
    _fraction(config, "eval_crop_fraction")
    _fraction(
        config,
        "max_skipped_fraction",
        " (0.01 stops a run in which more than 1 % of the images are unreadable)",
    )
    _check_labels(config)


def _check_labels(config) -> None:
    fraction, noise = config.label_fraction, config.label_noise
    if not 0 < fraction <= 1:
        raise ConfigError(
            "label_fraction",
            f"label_fraction={fraction} must be in (0, 1]: e.g. 0.1 trains on a tenth of "
            "every class's labelled examples, 1 on all of them.",
        )
    if not 0 <= noise < 1:
        raise ConfigError(
            "label_noise",
            f"label_noise={noise} must be in [0, 1): e.g. 0.2 replaces a fifth of the "
            "training labels with a wrong class, 0 none.",
        )
    in_memory = config.dataset in ("digits", "folder")
    for name, value, neutral in (("label_fraction", fraction, 1), ("label_noise", noise, 0)):
        if value != neutral and not in_memory:
            raise ConfigError(
                name,
                f"{name}={value} needs the labels in memory: use dataset=digits or "
                f"dataset=folder (not the TFDS set {config.dataset}), or {name}={neutral}.",
            )


def _check_recipe(config) -> None:
    _positive(config, "epochs", "batch_size", "steps_per_epoch", "teacher_epochs", "lr")
    _not_negative(
        config,
        "initial_epoch",
        "weight_decay",
        "conv_weight_decay",
        "warmup_epochs",
        "warmup_lr",
        "min_lr",
        "clip_norm",
        "cooldown_epochs",
    )
    if config.cooldown_epochs and config.cosine_to_end is False:
        raise ConfigError(
            "cooldown_epochs",
            f"cooldown_epochs={config.cooldown_epochs} needs cosine_to_end=True (the cosine "
            "must end before the cooldown); pass both, or cooldown_epochs=0.",
        )
    decay = config.temperature_decay
    if decay is not None and not 0 < decay <= 1:
        raise ConfigError(
            "temperature_decay", f"temperature_decay={decay} must be in (0, 1] (0.9: BNext's)."
        )
    spec = config.teachers.strip().lower()
    if spec not in ("auto", "none"):
        names = [n.strip().replace("-", "_") for n in spec.split(",") if n.strip()]
        unknown = [n for n in names if n not in KERAS_TEACHERS]
        if not names or unknown:
            raise ConfigError(
                "teachers",
                f"teachers={config.teachers}: unknown teacher {unknown or spec!r}; use auto, "
                f"none, or a comma list of {', '.join(sorted(KERAS_TEACHERS))} (assistants "
                "first, the main teacher last).",
            )


def _check_augmentation(config) -> None:
    low = config.crop_scale_min
    if low is not None and not 0 < low <= config.crop_scale_max:
        raise ConfigError(
            "crop_scale_min",
            f"crop_scale_min={low} must be above 0 and at most crop_scale_max="
            f"{config.crop_scale_max}.",
        )
    if not 0 < config.crop_scale_max <= 1:
        raise ConfigError(
            "crop_scale_max", f"crop_scale_max={config.crop_scale_max} must be in (0, 1]."
        )
    ratio = config.crop_ratio
    if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
        raise ConfigError(
            "crop_ratio",
            f"crop_ratio={listing(ratio)} needs two values 0 < min <= max, e.g. "
            "crop_ratio=0.75,1.3333333.",
        )
    _not_negative(config, "mixup", "cutmix")
    _fraction(config, "random_erasing")
    try:
        parse_policy(config.randaugment_policy)
    except ValueError as error:
        raise ConfigError(
            "randaugment_policy", f"randaugment_policy={config.randaugment_policy}: {error}"
        ) from None


def _check_run(config) -> None:
    if config.verbose not in (0, 1, 2):
        raise ConfigError("verbose", f"verbose={config.verbose} must be 0, 1 or 2.")
    _positive(config, "lr_reference_batch")
    freq = config.backup_freq
    if freq != "epoch" and not (isinstance(freq, int) and not isinstance(freq, bool) and freq > 0):
        raise ConfigError(
            "backup_freq", f"backup_freq={freq} must be 'epoch' or a positive number of steps."
        )
    out = config.output_dir
    if not out:
        raise ConfigError("output_dir", "output_dir is empty: pass a folder.")
    try:
        out.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            "output_dir",
            f"output_dir={display_path(out)} is not valid UTF-8, and TensorFlow's file system "
            "(checkpoints, backups, TensorBoard) takes UTF-8 paths only: pass a folder whose "
            "path is UTF-8 (the data_dir may be any path).",
        ) from None


def check_paths(config) -> None:
    """The files and folders ``config`` names are there: checked when the run starts.

    Args:
        config: a :class:`~larq_bnext.training.RunConfig`.

    Raises:
        ConfigError: naming the field whose path is missing or of the wrong kind.
    """
    weights = config.weights
    if weights and weights != "imagenet" and not os.path.isfile(weights):
        raise ConfigError(
            "weights",
            f"weights={weights} is not a file: pass a .weights.h5/.pth file or 'imagenet'.",
        )
    if config.dataset == "folder":
        if not os.path.isdir(config.data_dir):
            raise ConfigError(
                "data_dir",
                f"data_dir={config.data_dir} does not exist or is not a folder: pass the "
                "folder holding train/ and val/.",
            )
        if not os.path.isdir(os.path.join(config.data_dir, "train")):
            raise ConfigError(
                "data_dir",
                f"data_dir={config.data_dir} has no train/ folder: it must hold "
                "train/<class>/*.JPEG and val/<class>/*.JPEG.",
            )
    out = config.output_dir
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(
            "output_dir", f"output_dir={out} is a file: pass a folder (it is created if missing)."
        )


def check_replicas(batch_size: int, replicas: int) -> None:
    """The global batch must split evenly over the replicas.

    Args:
        batch_size: the global batch (``batch_size``).
        replicas: the strategy's replicas in sync.

    Raises:
        ConfigError: naming ``batch_size`` and the nearest batches that split.
    """
    if replicas > 1 and batch_size % replicas:
        lower = batch_size - batch_size % replicas
        raise ConfigError(
            "batch_size",
            f"batch_size={batch_size} does not split over the {replicas} replicas: use a "
            f"multiple of {replicas} (e.g. batch_size={max(lower, replicas)} or "
            f"{lower + replicas}), or fewer devices (devices).",
        )
