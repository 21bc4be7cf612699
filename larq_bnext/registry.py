"""Every fact about a published BNext, in one table: what the rest of the package reads.

One frozen :class:`ModelInfo` per model of the original repository holds its names, its
architecture (stage channels and the constants of its binary blocks, :class:`Architecture`), its
published ImageNet top-1, every place its official checkpoint was published (:class:`Source`,
newest first) and its checksum when known, how
it wants its input (:class:`Preprocessing`) and the training recipe it was published with
(:class:`Recipe`). :func:`resolve_model` is the one way from a name to its entry (see the
examples below).

The model builders (:mod:`larq_bnext.models`), the weight loader (:mod:`larq_bnext.weights`),
the preprocessing (:mod:`larq_bnext.preprocessing`), the training defaults
(:mod:`larq_bnext.training.recipe`), ``experiments/*.flags`` (checked by a test), every
command-line program and the deployment benchmark all read it; ``tests/test_registry.py`` fails
when one of these facts is written anywhere else in the package.

Examples:
    >>> from larq_bnext import registry
    >>> info = registry.resolve_model("T")        # also "tiny", "bnext_tiny", "BNext-T", ...
    >>> info.display_name, info.model_name, info.stage_channels[:3]
    ('BNext-T', 'bnext_tiny', (32, 64, 128))
    >>> info.preprocessing.crop_fraction, info.recipe.teachers
    (0.95, ('efficientnet_b0', 'efficientnet_b2'))
    >>> [m.name for m in registry.list_models()]
    ['tiny', 'small', 'middle', 'large', 'bnext18']
    >>> registry.resolve_model("bnext18").top1 is None   # no BNext-18 checkpoint is published
    True
    >>> registry.resolve_model("BNext-18").architecture.sign_threshold
    1e-05
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

__all__ = [
    "Architecture",
    "Preprocessing",
    "Recipe",
    "Source",
    "ModelInfo",
    "BNEXT_ARCHITECTURE",
    "IMAGENET_PREPROCESSING",
    "RECIPE",
    "MODELS",
    "resolve_model",
    "list_models",
    "model_names",
    "models_text",
    "block_configs",
]


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The constants of a model family's binary blocks (the original's code).

    Args:
        sign_threshold: the kernel quantizer uses ``sign(w)`` once its temperature is below
            this (``clip(w / T, -1, 1)`` above).
        weight_clip: latent binary weights are kept in ``[-weight_clip, weight_clip]``.
        activation_clip: the activations' sign passes gradients where ``|x| <= activation_clip``.
        se_ratio: channel reduction of the recoupling's squeeze-and-excitation.
        batchnorm_epsilon: BatchNorm's epsilon.
        batchnorm_momentum: BatchNorm's Keras momentum (PyTorch's 0.1).
        kernel_init_stddev: standard deviation of the binary kernels' normal initialisation.
    """

    sign_threshold: float = 1e-7
    weight_clip: float = 1.5
    activation_clip: float = 1.5
    se_ratio: int = 8
    batchnorm_epsilon: float = 1e-5
    batchnorm_momentum: float = 0.9
    kernel_init_stddev: float = 1e-3


#: The binary blocks of BNext-T/S/M/L (``src/bnext.py``), and of custom widths.
BNEXT_ARCHITECTURE = Architecture()


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How a model wants its input (timm's ``pretrained_cfg``, in short).

    Args:
        mean: per-channel mean of the [0, 1] RGB input, subtracted before dividing by ``std``.
        std: per-channel standard deviation.
        image_size: side of the square evaluation crop.
        crop_fraction: the crop's share of the resized shorter side (``image_size / crop``).
        interpolation: resize method.
    """

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    image_size: int = 224
    crop_fraction: float = 0.95
    interpolation: str = "bicubic"


#: The preprocessing every official BNext checkpoint was trained and evaluated with.
IMAGENET_PREPROCESSING = Preprocessing()


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The published training recipe of a model (the original's defaults).

    Args:
        assistants: assistant teachers, in curriculum order (one phase each).
        teacher: the main teacher.
        batch_size: global batch.
        epochs: training epochs.
        lr: peak learning rate (AdamW).
        warmup_epochs: epochs of the linear warm-up.
        warmup_lr: learning rate at the start of the warm-up.
        min_lr: floor of the cosine.
        weight_decay: AdamW decay of all but the 4-D parameters.
        conv_weight_decay: AdamW decay of the 4-D parameters (convolution kernels, moves,
            recoupling scales: the original's ``ndimension() == 4`` group).
        clip_norm: the global gradient norm gradients are clipped to.
        temperature_decay: factor of the binary temperatures per epoch.
        distill_weighting: how the teachers' losses are weighted: the released runs'
            ``batch_mean`` (batch-mean teacher losses times per-sample knowledge-complexity
            weights; the paper writes ``per_sample``, docs/differences.md).
        teacher_precision: the Keras policy of the frozen teachers' forward pass on GPUs: the
            released script runs it (and only it) under ``torch.cuda.amp.autocast()``, float16;
            the student stays float32 (:mod:`larq_bnext.training.runtime.precision`).
    """

    assistants: tuple[str, ...]
    teacher: str
    batch_size: int = 512
    epochs: int = 512
    lr: float = 1e-3
    warmup_epochs: float = 5
    warmup_lr: float = 1e-5
    min_lr: float = 1e-7
    weight_decay: float = 1e-3
    conv_weight_decay: float = 1e-8
    clip_norm: float = 5.0
    temperature_decay: float = 0.9
    distill_weighting: str = "batch_mean"
    teacher_precision: str = "mixed_float16"

    @property
    def teachers(self) -> tuple[str, ...]:
        """``--teachers``: the assistants followed by the main teacher."""
        return (*self.assistants, self.teacher)


#: BNext-T's recipe: BNext-S's too, and the one BNext-18 and custom widths train with (no
#: other is released for them).
RECIPE = Recipe(("efficientnet_b0",), "efficientnet_b2")


@dataclasses.dataclass(frozen=True)
class Source:
    """One place where the authors published a checkpoint: a link of their README.

    Args:
        url: the link as the README gave it: a Google Drive file page
            (``https://drive.google.com/file/d/<id>/view``), a Nextcloud or ownCloud public share
            (``https://<host>/s/<token>``), or (``kind="url"``) the file itself.
        kind: ``"google-drive"``, ``"share"`` (Nextcloud/ownCloud: the file is at
            ``url + "/download"``) or ``"url"``.
        published: the date of the README commit that published the link (``None``: not one
            of the authors' links, e.g. a lab's mirror).
        commit: that commit of github.com/hpi-xnor/BNext.
        replaced: the date a later README commit replaced the link (``None``: still current).
    """

    url: str
    kind: str = "url"
    published: str | None = None
    commit: str | None = None
    replaced: str | None = None

    def __post_init__(self):
        if self.kind not in ("google-drive", "share", "url"):
            raise ValueError(
                f"Source kind {self.kind!r} is not one of 'google-drive', 'share', 'url'."
            )


def _sources(drive: str, nextcloud: str, nextcloud_2022: str, owncloud: str) -> tuple[Source, ...]:
    """The four links of one checkpoint in the history of the authors' README, newest first."""
    return (
        Source(f"https://drive.google.com/file/d/{drive}/view", "google-drive",
               "2023-01-14", "0f7d2e2"),
        Source(f"https://nextcloud.hpi.de/s/{nextcloud}", "share",
               "2023-01-08", "2ed8e41", replaced="2023-01-14"),
        Source(f"https://nextcloud.hpi.de/s/{nextcloud_2022}", "share",
               "2022-12-07", "ab5a175", replaced="2023-01-08"),
        Source(f"https://owncloud.hpi.de/s/{owncloud}", "share",
               "2022-12-01", "7189a4a", replaced="2022-12-07"),
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """One model of the original repository: a published BNext size, or BNext-18.

    Args:
        name: canonical name (``"tiny"``, ``"small"``, ``"middle"``, ``"large"``,
            ``"bnext18"``).
        letter: the paper's letter (``"T"``, ...; ``"18"`` for BNext-18).
        aliases: other accepted spellings, lower case.
        stage_channels: channels of the stem followed by those of each block.
        top1: published ImageNet top-1 accuracy (%); ``None`` where none is published.
        sources: every published link of the official checkpoint, the authors' current one
            first (a download tries them in order); empty where no checkpoint is published.
        recipe: the training recipe (the published one; BNext-18 has none and takes
            BNext-T's).
        sha256: checksum of the official checkpoint, checked after a download (``None``: the
            authors publish none).
        preprocessing: how the model wants its input.
        architecture: the constants of its binary blocks.
        family: ``"bnext"`` (BNext-T/S/M/L, built by :func:`larq_bnext.BNext` from
            ``stage_channels``) or ``"bnext18"`` (the ResNet-18-shaped
            :func:`larq_bnext.BNext18`).
        ops: published OPs at 224x224, in G (``BOPs / 64 + FLOPs``; the authors' README,
            since 2023-01-27, heads this column "BOPs (G)", but its binarization degrees
            hold only for OPs); ``None`` where none is published.
        binarization: published degree of binarization, ``BOPs / (64 * OPs)``, in %
            (the same README); ``None`` where none is published.
    """

    name: str
    letter: str
    aliases: tuple[str, ...]
    stage_channels: tuple[int, ...]
    top1: float | None
    sources: tuple[Source, ...]
    recipe: Recipe = RECIPE
    sha256: str | None = None
    preprocessing: Preprocessing = IMAGENET_PREPROCESSING
    architecture: Architecture = BNEXT_ARCHITECTURE
    family: str = "bnext"
    ops: float | None = None
    binarization: float | None = None

    @property
    def published(self) -> bool:
        """Whether an official ImageNet checkpoint (and its top-1) is published."""
        return bool(self.sources)

    @property
    def display_name(self) -> str:
        """``"BNext-T"`` and so on."""
        return f"BNext-{self.letter}"

    @property
    def model_name(self) -> str:
        """The Keras model name and file stem, ``"bnext_tiny"`` and so on (``"bnext18"``)."""
        return f"bnext_{self.name}" if self.family == "bnext" else self.name

    @property
    def spellings(self) -> tuple[str, ...]:
        """Every accepted name, lower case: canonical, model and display names, aliases."""
        return tuple(
            dict.fromkeys((self.name, self.model_name, self.display_name.lower(), *self.aliases))
        )

    @property
    def url(self) -> str:
        """The authors' current link to the official checkpoint (the first source's).

        Raises:
            ValueError: where no checkpoint is published (BNext-18).
        """
        if not self.sources:
            raise ValueError(
                f"No official ImageNet checkpoint of {self.display_name} is published; "
                "train one (python -m larq_bnext.train) or load your own with weights=PATH."
            )
        return self.sources[0].url


def _stages(*stages: tuple[int, int]) -> tuple[int, ...]:
    return tuple(c for c, n in stages for _ in range(n))


#: The models of the original repository by canonical name.
MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo(
            "tiny", "T", ("t", "bnext-t", "bnextt"),
            _stages((32, 1), (64, 1), (128, 2), (256, 2), (512, 6), (1024, 2)),
            72.4,
            _sources("1CJ0XOEhoHuNe-tDYJaAOd1j4YyNXuyas", "SZ6sYnyKEptMqRs",
                     "zQCkteDoMbAeS25", "jKjwDk35vVRPQN0"),
            ops=0.077, binarization=97.81,
        ),
        ModelInfo(
            "small", "S", ("s", "bnext-s", "bnexts"),
            _stages((48, 1), (96, 1), (192, 2), (384, 2), (768, 6), (1536, 2)),
            76.1,
            _sources("1NcVM5Qb1K9Oq_sjEA1lGtp7kVbsfTLsa", "nDpxpgmt7T4g8N9",
                     "tCk25K3xdKCELNK", "bHLM7lqfzm58kIW"),
            ops=0.172, binarization=98.47,
        ),
        ModelInfo(
            "middle", "M", ("medium", "m", "bnext_medium", "bnext-m", "bnextm"),
            _stages((48, 1), (96, 1), (192, 4), (384, 4), (768, 8), (1536, 4)),
            78.3,
            _sources("1xyKnA6SsG4ZpguNQQrB6Yz-J5dzXYfKE", "skBPSk4ADt8T4FK",
                     "Wmq82dw5GMBzW4g", "jU5m9v4ADsJKZsa"),
            Recipe(("efficientnet_b0", "efficientnet_b2"), "efficientnet_b4"),
            ops=0.317, binarization=99.02,
        ),
        ModelInfo(
            "large", "L", ("l", "bnext-l", "bnextl"),
            _stages((64, 1), (128, 1), (256, 4), (512, 4), (1024, 16), (2048, 4)),
            80.57,
            _sources("1XGKcX2Zl_fIU9wPBDjTTxstOBfwQH8xc", "Ggg4oet9ij6AzzG",
                     "AA3eb7L38myLjtw", "zQHrlxiQ6XbjCbz"),
            Recipe(("efficientnet_b0", "efficientnet_b4", "convnext_tiny"), "convnext_tiny",
                   batch_size=128),
            ops=0.819, binarization=99.49,
        ),
        # BNext-18 (the original's src/birealnet.py): no checkpoint, top-1 or run script is
        # released for it, so it trains with BNext-T's recipe (experiments/bnext18.flags). Its
        # kernels switch to sign(w) below a temperature of 1e-5.
        ModelInfo(
            "bnext18", "18", ("bnext_18",),
            _stages((64, 1), (64, 2), (128, 2), (256, 2), (512, 2)),
            None, (), architecture=Architecture(sign_threshold=1e-5), family="bnext18",
            binarization=61.04,
        ),
    )
}  # fmt: skip


def list_models(family: str | None = None) -> list[ModelInfo]:
    """The models of the original repository, smallest BNext first, then BNext-18.

    Args:
        family: only this family (``"bnext"``: BNext-T/S/M/L; ``"bnext18"``); ``None``: all.
    """
    return [m for m in MODELS.values() if family is None or m.family == family]


def model_names(family: str | None = None) -> list[str]:
    """The Keras model names (``"bnext_tiny"``, ..., ``"bnext18"``), for help texts and lists.

    Args:
        family: only this family (see :func:`list_models`); ``None``: all.
    """
    return [m.model_name for m in list_models(family)]


def models_text(family: str | None = None) -> str:
    """The models as help texts and error messages list them.

    ``"bnext_tiny, bnext_small, bnext_middle, bnext_large, bnext18 (or T/S/M/L/18)"``.

    Args:
        family: only this family (see :func:`list_models`); ``None``: all.
    """
    letters = "/".join(m.letter for m in list_models(family))
    return f"{', '.join(model_names(family))} (or {letters})"


def resolve_model(name: str, family: str | None = None) -> ModelInfo:
    """The :class:`ModelInfo` of a model name: the one lookup of every builder and program.

    Any spelling of :attr:`ModelInfo.spellings`, any case, surrounding blanks ignored:
    ``"T"``, ``"tiny"``, ``"bnext_tiny"``, ``"BNext-T"``, ``"bnext18"``, ``"BNext-18"``, ...

    Args:
        name: the name to resolve.
        family: accept only models of this family (``"bnext"``: the sizes the
            :func:`larq_bnext.BNext` builder takes); ``None``: every model.

    Raises:
        ValueError: for a name that is no model (of ``family``), listing the valid ones.
    """
    key = str(name).strip().lower()
    for info in list_models():
        if key in info.spellings:
            if family is None or info.family == family:
                return info
            raise ValueError(
                f"{info.display_name} is not a model of the {family!r} family: use one of "
                f"{', '.join(model_names(family))}."
            )
    accepted = sorted(s for m in list_models(family) for s in m.spellings)
    raise ValueError(
        f"Unknown BNext model {name!r}. Use one of {models_text(family)}, or call "
        "larq_bnext.BNext(stage_channels=...) for a custom width. "
        f"Every accepted name: {', '.join(accepted)}."
    )


def block_configs(stage_channels: Sequence[int]) -> Iterator[tuple[int, int, int, int, str]]:
    """Yield ``(index, in_channels, out_channels, strides, mode)`` for blocks 1..n-1.

    Stride 2 where the channel count changes, except into block 1; the first sub-block is
    ELM-Attention ("scale") for even indices and FFN-3x3 ("bias") for odd ones and block 1.
    This is the architecture's rule, read by the builder and by the checkpoint mapping alike.

    Args:
        stage_channels: the stem's channels followed by each block's.
    """
    for i in range(1, len(stage_channels)):
        c_in, c_out = stage_channels[i - 1], stage_channels[i]
        strides = 2 if (c_in != c_out and c_out != stage_channels[1] and i > 1) else 1
        mode = "bias" if i == 1 else ("scale" if i % 2 == 0 else "bias")
        yield i, c_in, c_out, strides, mode
