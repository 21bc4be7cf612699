"""Every fact about a published BNext, in one table: what the rest of the package reads.

One frozen :class:`ModelInfo` per published size holds its architecture (stage channels), its
published ImageNet top-1, where its official checkpoint lives, how it wants its input
(:class:`Preprocessing`) and the training recipe it was published with (:class:`Recipe`)::

    from larq_bnext import registry

    info = registry.get("T")                # also "tiny", "bnext_tiny", "BNext-T", ...
    info.stage_channels[:3]                 # (32, 64, 128)
    info.preprocessing.crop_fraction        # 0.95
    info.recipe.teachers                    # ('efficientnet_b0', 'efficientnet_b2')
    [m.name for m in registry.list_models()]  # ['tiny', 'small', 'middle', 'large', 'bnext18']
    registry.get("bnext18").top1            # None: no BNext-18 checkpoint is published

The model builders (:mod:`larq_bnext.models`), the weight loader (:mod:`larq_bnext.weights`),
the preprocessing (:mod:`larq_bnext.preprocessing`), the training CLI's defaults and
``experiments/*.flags`` (checked by a test) and the deployment benchmark all read it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

__all__ = [
    "Preprocessing",
    "Recipe",
    "ModelInfo",
    "IMAGENET_PREPROCESSING",
    "MODELS",
    "get",
    "list_models",
    "canonical_size",
    "block_configs",
]


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
    """The published training recipe of a size (the original's defaults).

    Args:
        assistants: assistant teachers, in curriculum order (one phase each).
        teacher: the main teacher.
        batch_size: global batch.
        epochs: training epochs.
        lr: peak learning rate (AdamW).
    """

    assistants: tuple[str, ...]
    teacher: str
    batch_size: int = 512
    epochs: int = 512
    lr: float = 1e-3

    @property
    def teachers(self) -> tuple[str, ...]:
        """``--teachers``: the assistants followed by the main teacher."""
        return (*self.assistants, self.teacher)


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
        share: the ownCloud share of the official checkpoint (from the BNext README);
            ``None`` where no checkpoint is published.
        recipe: the training recipe (the published one; BNext-18 has none and takes
            BNext-T's).
        sha256: checksum of the official checkpoint (``None``: the authors publish none).
        download_url: where to download the checkpoint, when not ``share + "/download"``.
        preprocessing: how the model wants its input.
        family: ``"bnext"`` (BNext-T/S/M/L, built by :func:`larq_bnext.BNext` from
            ``stage_channels``) or ``"bnext18"`` (the ResNet-18-shaped
            :func:`larq_bnext.BNext18`).
    """

    name: str
    letter: str
    aliases: tuple[str, ...]
    stage_channels: tuple[int, ...]
    top1: float | None
    share: str | None
    recipe: Recipe
    sha256: str | None = None
    download_url: str | None = None
    preprocessing: Preprocessing = IMAGENET_PREPROCESSING
    family: str = "bnext"

    @property
    def published(self) -> bool:
        """Whether an official ImageNet checkpoint (and its top-1) is published."""
        return self.share is not None or self.download_url is not None

    @property
    def display_name(self) -> str:
        """``"BNext-T"`` and so on."""
        return f"BNext-{self.letter}"

    @property
    def model_name(self) -> str:
        """The Keras model name and file stem, ``"bnext_tiny"`` and so on (``"bnext18"``)."""
        return f"bnext_{self.name}" if self.family == "bnext" else self.name

    @property
    def url(self) -> str:
        """Direct download URL of the official checkpoint (share + ``/download``).

        Raises:
            ValueError: where no checkpoint is published (BNext-18).
        """
        if self.download_url:
            return self.download_url
        if self.share is None:
            raise ValueError(
                f"No official ImageNet checkpoint of {self.display_name} is published; "
                "train one (python -m larq_bnext.train) or load your own with weights=PATH."
            )
        return self.share + "/download"


def _stages(*stages: tuple[int, int]) -> tuple[int, ...]:
    return tuple(c for c, n in stages for _ in range(n))


#: The published models by canonical name.
MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo(
            "tiny", "T", ("t", "bnext_tiny", "bnext-t", "bnextt"),
            _stages((32, 1), (64, 1), (128, 2), (256, 2), (512, 6), (1024, 2)),
            72.4, "https://owncloud.hpi.de/s/jKjwDk35vVRPQN0",
            Recipe(("efficientnet_b0",), "efficientnet_b2"),
        ),
        ModelInfo(
            "small", "S", ("s", "bnext_small", "bnext-s", "bnexts"),
            _stages((48, 1), (96, 1), (192, 2), (384, 2), (768, 6), (1536, 2)),
            76.1, "https://owncloud.hpi.de/s/bHLM7lqfzm58kIW",
            Recipe(("efficientnet_b0",), "efficientnet_b2"),
        ),
        ModelInfo(
            "middle", "M", ("medium", "m", "bnext_middle", "bnext_medium", "bnext-m", "bnextm"),
            _stages((48, 1), (96, 1), (192, 4), (384, 4), (768, 8), (1536, 4)),
            78.3, "https://owncloud.hpi.de/s/jU5m9v4ADsJKZsa",
            Recipe(("efficientnet_b0", "efficientnet_b2"), "efficientnet_b4"),
        ),
        ModelInfo(
            "large", "L", ("l", "bnext_large", "bnext-l", "bnextl"),
            _stages((64, 1), (128, 1), (256, 4), (512, 4), (1024, 16), (2048, 4)),
            80.57, "https://owncloud.hpi.de/s/zQHrlxiQ6XbjCbz",
            Recipe(("efficientnet_b0", "efficientnet_b4", "convnext_tiny"), "convnext_tiny",
                   batch_size=128),
        ),
        # BNext-18 (the original's src/birealnet.py): no checkpoint, top-1 or run script is
        # released for it, so it trains with BNext-T's recipe (experiments/bnext18.flags).
        ModelInfo(
            "bnext18", "18", ("bnext-18", "bnext_18"),
            _stages((64, 1), (64, 2), (128, 2), (256, 2), (512, 2)),
            None, None, Recipe(("efficientnet_b0",), "efficientnet_b2"), family="bnext18",
        ),
    )
}  # fmt: skip


def list_models(family: str | None = None) -> list[ModelInfo]:
    """The models of the original repository, smallest BNext first, then BNext-18.

    Args:
        family: only this family (``"bnext"``: BNext-T/S/M/L; ``"bnext18"``); ``None``: all.
    """
    return [m for m in MODELS.values() if family is None or m.family == family]


def _lookup(family: str | None = "bnext") -> dict[str, str]:
    table = {}
    for m in list_models(family):
        for spelling in (m.name, m.model_name, m.display_name.lower(), *m.aliases):
            table[spelling] = m.name
    return table


def canonical_size(size: str) -> str:
    """Return ``"tiny"``, ``"small"``, ``"middle"`` or ``"large"`` for any accepted alias.

    Args:
        size: a size name or alias, any case (``"T"``, ``"tiny"``, ``"bnext_tiny"``, ...).

    Raises:
        ValueError: for an unknown size name, listing the valid ones.
    """
    key = str(size).strip().lower()
    table = _lookup()
    if key not in table:
        raise ValueError(
            f"Unknown BNext size {size!r}. Use one of 'tiny', 'small', 'middle', 'large' "
            "(or T/S/M/L), or call larq_bnext.BNext(stage_channels=...) for a custom width "
            "(BNext-18: larq_bnext.BNext18, registry.get('bnext18')). "
            f"Every accepted name: {', '.join(sorted(table))}."
        )
    return table[key]


def get(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a model: a BNext size (see :func:`canonical_size`) or BNext-18.

    Args:
        name: a size name or alias, any case (``"T"``, ``"bnext_tiny"``, ``"bnext18"``, ...).

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    key = str(name).strip().lower()
    others = _lookup(family="bnext18")
    if key in others:
        return MODELS[others[key]]
    return MODELS[canonical_size(name)]


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
