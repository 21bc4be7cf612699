"""Everything a training run needs, typed and checked: :class:`RunConfig`.

One field per flag of ``python -m larq_bnext.train`` (the command line is a thin map onto
this class); a field left ``None`` takes the default of the dataset and of the model's
registry recipe when the run starts (:func:`larq_bnext.training.recipe.resolve`). Bad values
fail when the config is made, before any data is read, with a
:class:`~larq_bnext.training.checks.ConfigError` naming the field, its value and the fix
(:mod:`larq_bnext.training.checks`; see the examples).

A config is frozen: derive variants with :func:`dataclasses.replace` (a sweep, an ablation),
which checks the new values too.

Examples:
    >>> from larq_bnext.training import RunConfig
    >>> config = RunConfig(model="custom", dataset="digits", epochs=1, output_dir="/tmp/run")
    >>> config.epochs, config.lr is None          # lr: the recipe's, when the run starts
    (1, True)
    >>> RunConfig(batch_size=0)
    Traceback (most recent call last):
    ...
    larq_bnext.training.checks.ConfigError: batch_size=0 must be a positive number.
"""

from __future__ import annotations

import dataclasses
import warnings

from larq_bnext.augment.config import IMAGENET_CONFIG
from larq_bnext.images.files import MAX_IMAGE_PIXELS
from larq_bnext.training.checks import (
    COLLECTIVES,
    TEACHER_WEIGHTS,
    ConfigError,
    check_config,
    listing,
)
from larq_bnext.training.method.distiller import WEIGHTINGS
from larq_bnext.training.runtime.distribute import (
    LR_SCALING_RULES,
    PRECISION_POLICIES,
    STRATEGY_KINDS,
)
from larq_bnext.training.runtime.precision import TEACHER_PRECISIONS

__all__ = ["RunConfig"]


def _choices(default, choices):
    """A field whose values are ``choices`` (its flag is an enum; checked when made)."""
    return dataclasses.field(default=default, metadata={"choices": tuple(choices)})


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The settings of a training run: the fields of ``python -m larq_bnext.train``'s flags.

    ``None`` means "the default of the dataset and model" (digits: 32 px, 30 epochs, batch 64,
    no flips or RandAugment, a labels-only baseline; ImageNet: the model's registry recipe and
    preprocessing). Sequences may be given as lists; they are stored as tuples.

    Args:
        model: ``"custom"`` (a BNext of ``stage_channels``) or a registry model (``"tiny"``,
            ``"T"``, ``"bnext_small"``, ``"bnext18"``, ...).
        stage_channels: channels of the custom model (the stem's first, then each block's).
        stem_stride: stride of the stem; ``None``: 1 for images up to 64 px, else 2.
        weights: start the student from these weights (``"imagenet"`` or a file).
        elm_attention: ELM-Attention on (the paper's ablation switch).
        info_recoupling: information recoupling on (the paper's ablation switch).
        dataset: ``"digits"`` (embedded), ``"folder"`` (``data_dir`` with ``train/`` and
            ``val/``) or a TFDS name.
        data_dir: the image-folder root (``train/``, ``val/``) or TFDS data directory.
        tfds_manual_dir: TFDS manual download directory (the ImageNet tars).
        image_size: side of the training and evaluation crops; ``None``: 32 on digits, else
            the model's.
        eval_crop_fraction: evaluation centre crop over the resized shorter side; ``None``:
            the model's registry preprocessing.
        verify_images: folder datasets: check every file's header before training.
        max_skipped_fraction: stop with an error when more than this fraction of a split's
            images cannot be read (they are skipped, counted and listed in ``metrics.json``
            and ``skipped_images.json``).
        max_image_pixels: skip images whose header gives more pixels (width x height), before
            decoding them; PIL's ``Image.MAX_IMAGE_PIXELS`` by default, 0 or ``None``: no
            limit.
        label_fraction: train on this seeded, class-stratified fraction of the labelled
            training examples (digits or folder datasets; ablations: fewer labels;
            :mod:`larq_bnext.training.data.labels`); 1: all.
        label_noise: replace this fraction of the training labels with a seeded wrong class
            (ablations: noisy labels); 0: none.
        eval_train_split: also score each trained model on its training examples with the
            evaluation transform and their true labels (``train_split_top1`` in
            ``metrics.json``: the train-validation gap without augmentation or noise).
        epochs: training epochs; ``None``: 30 on digits, else the model's recipe.
        batch_size: global batch; ``None``: 64 on digits, else the model's recipe.
        steps_per_epoch: limit the steps per epoch (smoke runs).
        initial_epoch: resume the student at this epoch (with ``weights`` set to a
            ``last.weights.h5``, whose temperatures are then annealed once, as the epoch after
            it starts; ``backup`` resumes by itself).
        lr: peak learning rate (AdamW); ``None``: the recipe's.
        weight_decay: AdamW decay of all but the 4-D parameters; ``None``: the recipe's.
        conv_weight_decay: AdamW decay of the 4-D parameters; ``None``: the recipe's.
        warmup_epochs: linear warm-up epochs; ``None``: the recipe's.
        warmup_lr: learning rate at the start of the warm-up; ``None``: the recipe's.
        min_lr: floor of the cosine; ``None``: the recipe's.
        lr_per_step: update the learning rate every step (else per epoch).
        cosine_to_end: the cosine spans the epochs after the warm-up and ends with the run
            (else it lasts ``epochs`` after the warm-up, the original's ``t_initial=epochs``,
            which a short run stops early); ``None``: on for digits, off elsewhere.
        cooldown_epochs: with ``cosine_to_end``, the last epochs of the run at ``min_lr``
            (timm's cooldown): the cosine ends this many epochs before the run, so that the
            final weights do not depend on which of the last steps came last; ``None``: 5 for
            digits, 0 elsewhere.
        clip_norm: clip gradients to this global norm (0: off); ``None``: the recipe's.
        temperature_decay: temperature factor per epoch; ``None``: the recipe's, faster for
            short runs so that the kernels are exactly binary after 80 % of the epochs.
        distill_weighting: teacher weights: ``"per_sample"`` (the paper), ``"batch_mean"``
            (the released runs) or ``"constant"`` (0.5); ``None``: the recipe's (the released
            ``batch_mean``; ``per_sample`` on digits).
        teachers: ``"auto"`` (digits: train a float CNN; ImageNet: the model's recipe),
            ``"none"``, or a comma list (or sequence) of Keras teachers, assistants first and
            the main teacher last, e.g. ``efficientnet_b0,efficientnet_b2``.
        teacher_weights: ``"imagenet"`` (downloaded once into ``~/.keras/models``) or
            ``"none"``: the same architectures untrained, to smoke-test the recipe offline.
        teacher_epochs: epochs of the digits float teacher.
        baseline: also train the student without distillation; ``None``: on for digits.
        bn_reestimation: before each validation, set the binary student's BatchNorm moving
            statistics to those of the training images under its current weights
            (:mod:`larq_bnext.training.method.batchnorm_stats`); ``None``: on for digits, off
            elsewhere (the original).
        crop_scale_min: random resized crop, smallest area fraction; ``None``: 0.08 (digits
            0.5).
        crop_scale_max: random resized crop, largest area fraction.
        crop_ratio: random resized crop, aspect ratio range ``(min, max)``.
        jpeg_dct_scaling: decode JPEG crops of at least 2x the image size at 1/2, 1/4 or 1/8
            scale (libjpeg's DCT scaling, faster); off decodes at full size like the original.
        flip: random horizontal flips; ``None``: on (off for digits).
        randaugment: RandAugment on; ``None``: on (off for digits).
        randaugment_policy: timm RandAugment string.
        mixup: mixup alpha (0: off, as in BNext).
        cutmix: CutMix alpha (0: off, as in BNext).
        random_erasing: random erasing probability (0: off, as in BNext).
        augment_on_device: run RandAugment, normalisation and mixing in the train step (the
            flip stays in the crop).
        output_dir: the run directory (created if missing).
        seed: random seed.
        verbose: Keras verbosity (1: a progress bar on a terminal, one line per epoch
            elsewhere; 2: Keras' line per epoch; 0: silent).
        strategy: ``tf.distribute`` strategy; ``"auto"``: ``tpu`` if a TPU is configured,
            ``multi_worker`` if ``TF_CONFIG`` names a cluster, ``mirrored`` if several GPUs are
            visible, else ``default``.
        devices: devices of the ``mirrored``/``one_device`` strategies (``/gpu:0,/gpu:1``).
        tpu: TPU name or ``grpc://`` address (``local`` on a TPU VM).
        collective: multi-worker all-reduce: ``"auto"``, ``"ring"`` or ``"nccl"``.
        sync_batchnorm: BatchNorm statistics over the global batch.
        mixed_precision: compute dtype policy: ``"float32"``, ``"mixed_float16"`` or
            ``"mixed_bfloat16"`` (quantizers and loss stay float32; float16 uses loss scaling).
        teacher_precision: the frozen teachers' policy: ``"auto"`` (the released runs' float16
            on GPUs, the student's policy on CPUs;
            :mod:`larq_bnext.training.runtime.precision`) or a policy of ``mixed_precision``.
        jit_compile: XLA-compile the train step.
        lr_scaling: scale ``lr`` with the global batch: ``"none"``, ``"linear"``, ``"sqrt"``
            (by global batch / ``lr_reference_batch``, or its square root).
        lr_reference_batch: the global batch ``lr`` is meant for; ``None``: the recipe's.
        backup: back up the whole training state every epoch
            (``<output_dir>/<model>/backup``); the same command run again after a kill
            resumes there. Deleted when the run completes.
        backup_freq: ``"epoch"`` or a number of steps between backups.
        deterministic: deterministic TF ops and input pipeline: the same command gives
            bitwise the same run on the same machine; ``None``: on for the embedded digits
            only (a deterministic ``tf.data`` pipeline augments one image at a time).
        init_weights: deprecated spelling of ``weights`` (warns).

    Raises:
        ConfigError: for the first setting that cannot work.
    """

    # model
    model: str = "custom"
    stage_channels: tuple[int, ...] = (16, 32, 64, 128)
    stem_stride: int | None = None
    weights: str | None = None
    elm_attention: bool = True
    info_recoupling: bool = True
    # data
    dataset: str = "digits"
    data_dir: str | None = None
    tfds_manual_dir: str | None = None
    image_size: int | None = None
    eval_crop_fraction: float | None = None
    verify_images: bool = True
    max_skipped_fraction: float = 0.01
    max_image_pixels: int | None = dataclasses.field(
        default=MAX_IMAGE_PIXELS, metadata={"lower_bound": 0}
    )
    # data: label ablations
    label_fraction: float = 1.0
    label_noise: float = 0.0
    eval_train_split: bool = False
    # recipe
    epochs: int | None = None
    batch_size: int | None = None
    steps_per_epoch: int | None = None
    initial_epoch: int = 0
    lr: float | None = None
    weight_decay: float | None = None
    conv_weight_decay: float | None = None
    warmup_epochs: float | None = None
    warmup_lr: float | None = None
    min_lr: float | None = None
    lr_per_step: bool = False
    cosine_to_end: bool | None = None
    cooldown_epochs: int | None = None
    clip_norm: float | None = None
    temperature_decay: float | None = None
    distill_weighting: str | None = _choices(None, WEIGHTINGS)
    teachers: str = "auto"
    teacher_weights: str = _choices("imagenet", TEACHER_WEIGHTS)
    teacher_epochs: int = 30
    baseline: bool | None = None
    bn_reestimation: bool | None = None
    # augmentation
    crop_scale_min: float | None = None
    crop_scale_max: float = IMAGENET_CONFIG.crop_scale[1]
    crop_ratio: tuple[float, float] = IMAGENET_CONFIG.crop_ratio
    jpeg_dct_scaling: bool = IMAGENET_CONFIG.jpeg_dct_scaling
    flip: bool | None = None
    randaugment: bool | None = None
    randaugment_policy: str = IMAGENET_CONFIG.randaugment_policy
    mixup: float = IMAGENET_CONFIG.mixup_alpha
    cutmix: float = IMAGENET_CONFIG.cutmix_alpha
    random_erasing: float = IMAGENET_CONFIG.random_erasing
    augment_on_device: bool = False
    # run
    output_dir: str = "runs/demo"
    seed: int = 0
    verbose: int = 1
    # scale-out
    strategy: str = _choices("auto", STRATEGY_KINDS)
    devices: tuple[str, ...] | None = None
    tpu: str | None = None
    collective: str = _choices("auto", COLLECTIVES)
    sync_batchnorm: bool = False
    mixed_precision: str = _choices("float32", PRECISION_POLICIES)
    teacher_precision: str = _choices("auto", TEACHER_PRECISIONS)
    jit_compile: bool = False
    lr_scaling: str = _choices("none", LR_SCALING_RULES)
    lr_reference_batch: int | None = None
    backup: bool = True
    backup_freq: str | int = "epoch"
    deterministic: bool | None = None
    init_weights: dataclasses.InitVar[str | None] = None

    def __post_init__(self, init_weights):
        if init_weights is not None:
            warnings.warn(
                "RunConfig(init_weights=...) is deprecated: use weights=... (same meaning).",
                FutureWarning,
                stacklevel=3,
            )
            if self.weights is None:
                object.__setattr__(self, "weights", init_weights)
        self._normalize()
        check_config(self)

    def _normalize(self) -> None:
        """Sequences become tuples, a comma list of teachers one string, digits a number."""

        def put(name, value):
            object.__setattr__(self, name, value)

        try:
            put("stage_channels", tuple(int(c) for c in self.stage_channels))
        except (TypeError, ValueError):
            raise ConfigError(
                "stage_channels",
                f"stage_channels={listing(self.stage_channels)} must be positive integers, "
                "e.g. stage_channels=16,32,64,128.",
            ) from None
        try:
            put("crop_ratio", tuple(float(r) for r in self.crop_ratio))
        except (TypeError, ValueError):
            raise ConfigError(
                "crop_ratio", f"crop_ratio={listing(self.crop_ratio)} must be two numbers."
            ) from None
        if self.devices is not None:
            put("devices", tuple(str(d) for d in self.devices) or None)
        if not isinstance(self.teachers, str):
            put("teachers", ",".join(str(t) for t in self.teachers))
        if isinstance(self.backup_freq, str) and self.backup_freq.strip().isdigit():
            put("backup_freq", int(self.backup_freq))

    @property
    def is_custom(self) -> bool:
        """Whether the model is a BNext of ``stage_channels`` (not a registry model)."""
        return self.model.strip().lower() == "custom"

    def to_dict(self) -> dict:
        """The fields as JSON-ready values (what ``flags.json`` records)."""
        return {
            f.name: list(v) if isinstance(v, tuple) else v
            for f in dataclasses.fields(self)
            for v in [getattr(self, f.name)]
        }

    def to_flags(self) -> list[str]:
        """The command-line flags that give this config (what ``flags.txt`` records).

        Fields left ``None`` are left out (they take their defaults again).
        """
        lines = []
        for name, value in self.to_dict().items():
            if value is None:
                continue
            if isinstance(value, bool):
                lines.append(f"--{name}" if value else f"--no{name}")
            elif isinstance(value, list):
                lines.append(f"--{name}={','.join(str(v) for v in value)}")
            else:
                lines.append(f"--{name}={value}")
        return lines
