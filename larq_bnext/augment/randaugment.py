"""timm's RandAugment (BNext trained with ``rand-m7-mstd0.5-inc1``), per batch, seeded.

The policy of timm 0.6.11 (the version the original pins), rebuilt from its definitions: for
every image, ``n`` ops drawn uniformly *with replacement* from 15 (AutoContrast, Equalize,
Invert, Rotate, Posterize, Solarize, SolarizeAdd, Color, Contrast, Brightness, Sharpness,
ShearX, ShearY, TranslateXRel, TranslateYRel; the ``inc1`` variants of Posterize, Solarize and
the four enhancements grow stronger with the magnitude), each applied with probability ``p``
at a magnitude drawn from ``N(m, mstd)`` and clipped to ``[0, 10]``, with timm's mappings from
magnitude to argument and a random sign for the signed ones.

The original calls it with the fill colour of the ImageNet mean, ``round(255 * mean) =
(124, 116, 104)`` (not timm's ``(128, 128, 128)`` default) and its training interpolation,
bicubic; TensorFlow's projective transform (``ImageProjectiveTransformV3``) offers nearest and
bilinear only, so the geometric ops here resample bilinearly. Everything else is PIL's
computation exactly (see ``docs/differences.md``).

Images are batches ``(B, H, W, 3)`` of whole values on ``[0, 255]`` (float), as the batch stage
of :mod:`larq_bnext.augment.config` holds them; every op returns whole values on ``[0, 255]``
like the uint8 images PIL gives timm. Op arguments are per image (shape ``(B,)``).
Randomness comes only from the ``seed`` argument (stateless ops): the same seed and images give
the same output.

Example:

>>> import numpy as np, tensorflow as tf
>>> images = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)), tf.float32)
>>> out = rand_augment(images, seed=[1, 2], policy=parse_policy("rand-m7-mstd0.5-inc1"))
>>> out.shape, bool(tf.reduce_all(out == rand_augment(images, [1, 2], BNEXT_POLICY)))
(TensorShape([4, 32, 32, 3]), True)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

import tensorflow as tf

from larq_bnext.augment.randaugment_ops import (
    IMAGENET_MEAN_FILL,
    auto_contrast,
    brightness,
    color,
    contrast,
    equalize,
    invert,
    posterize,
    rotate,
    sharpness,
    shear_x,
    shear_y,
    solarize,
    solarize_add,
    translate_x,
    translate_y,
)

__all__ = [
    "IMAGENET_MEAN_FILL",
    "INCREASING_OPS",
    "OPS",
    "RandAugmentPolicy",
    "BNEXT_POLICY",
    "parse_policy",
    "level_to_arg",
    "sample_ops",
    "apply_op",
    "rand_augment",
]

#: timm's ``_RAND_TRANSFORMS`` (``inc0``).
OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
    "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
    "TranslateXRel", "TranslateYRel",
)  # fmt: skip

#: timm's ``_RAND_INCREASING_TRANSFORMS`` (``inc1``, BNext's).
INCREASING_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
    "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
    "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
    "TranslateXRel", "TranslateYRel",
)  # fmt: skip

_LEVEL_DENOM = 10.0


def _f(images):
    return tf.cast(images, tf.float32)


@dataclasses.dataclass(frozen=True)
class RandAugmentPolicy:
    """A timm RandAugment policy (what a ``rand-...`` string and timm's hparams say).

    Args:
        ops: the op names drawn from (:data:`INCREASING_OPS` or :data:`OPS`).
        num_layers: ops per image (``n``), drawn with replacement.
        magnitude: mean magnitude on timm's ``[0, 10]`` scale (``m``).
        magnitude_std: magnitude noise (``mstd``); ``inf`` draws uniformly on
            ``[0, magnitude]``; 0 keeps it fixed.
        magnitude_max: magnitudes are clipped to ``[0, magnitude_max]`` (``mmax``; 10).
        prob: probability that each drawn op is applied (``p``).
        translate_pct: TranslateXRel/YRel's largest shift as a fraction of the side.
        fill: fill colour of the geometric ops (the original: the ImageNet mean).
        interpolation: resampling of the geometric ops, ``"bilinear"`` or ``"nearest"``.
    """

    ops: tuple[str, ...] = INCREASING_OPS
    num_layers: int = 2
    magnitude: float = 10.0
    magnitude_std: float = 0.0
    magnitude_max: float = _LEVEL_DENOM
    prob: float = 0.5
    translate_pct: float = 0.45
    fill: tuple[int, ...] = IMAGENET_MEAN_FILL
    interpolation: str = "bilinear"

    def __post_init__(self):
        unknown = [op for op in self.ops if op not in _ARGS]
        if unknown or not self.ops:
            raise ValueError(f"Unknown RandAugment ops {unknown}; choose from {sorted(_ARGS)}.")
        if self.num_layers < 0 or not 0 <= self.prob <= 1 or self.magnitude_std < 0:
            raise ValueError(
                f"RandAugment needs num_layers >= 0, prob in [0, 1] and magnitude_std >= 0, "
                f"got {self.num_layers}, {self.prob}, {self.magnitude_std}."
            )
        if self.interpolation not in ("bilinear", "nearest"):
            raise ValueError(
                f"interpolation must be 'bilinear' or 'nearest' (TensorFlow's projective "
                f"transform has no bicubic), got {self.interpolation!r}."
            )


def parse_policy(name: str, **hparams) -> RandAugmentPolicy:
    """The policy of a timm RandAugment string such as ``"rand-m7-mstd0.5-inc1"``.

    Sections after ``rand``: ``m`` magnitude, ``n`` ops per image, ``p`` probability,
    ``mstd`` magnitude noise (above 100: uniform), ``mmax`` magnitude bound, ``inc1`` the
    increasing ops (``inc0``: the plain ones). timm's ``t`` (weighted op sets) is not supported.

    Args:
        name: the timm string.
        **hparams: further :class:`RandAugmentPolicy` fields (``fill``, ``interpolation``,
            ``translate_pct``).

    Example:

    >>> parse_policy("rand-m7-mstd0.5-inc1").magnitude_std
    0.5
    """
    sections = name.split("-")
    if sections[0] != "rand":
        raise ValueError(f"A RandAugment policy string starts with 'rand-', got {name!r}.")
    fields: dict = {"ops": OPS}
    for section in sections[1:]:
        match = re.fullmatch(r"([a-z]+)(\d.*)", section)
        key = match.group(1) if match else section
        if key not in ("m", "n", "p", "mstd", "mmax", "inc"):
            raise ValueError(
                f"Unknown section {section!r} in RandAugment policy {name!r}: use m<magnitude>, "
                "n<ops>, p<prob>, mstd<std>, mmax<max> or inc<0|1>, e.g. 'rand-m7-mstd0.5-inc1'."
            )
        value = float(match.group(2))
        if key == "mstd":
            fields["magnitude_std"] = math.inf if value > 100 else value
        elif key == "inc":
            fields["ops"] = INCREASING_OPS if value else OPS
        else:
            names = {"m": "magnitude", "n": "num_layers", "p": "prob", "mmax": "magnitude_max"}
            fields[names[key]] = int(value) if key == "n" else value
    return RandAugmentPolicy(**{**fields, **hparams})


def _signed(value, sign):
    return value * sign


# name -> (op, magnitude-to-argument on float64 magnitudes and signs +-1, signed?)
_ARGS = {
    "AutoContrast": (auto_contrast, None),
    "Equalize": (equalize, None),
    "Invert": (invert, None),
    "Rotate": (rotate, lambda m, s, _: _signed(m / _LEVEL_DENOM * 30.0, s)),
    "Posterize": (posterize, lambda m, s, _: tf.floor(m / _LEVEL_DENOM * 4)),
    "PosterizeIncreasing": (posterize, lambda m, s, _: 4 - tf.floor(m / _LEVEL_DENOM * 4)),
    "Solarize": (solarize, lambda m, s, _: tf.minimum(tf.floor(m / _LEVEL_DENOM * 256), 256.0)),
    "SolarizeIncreasing": (
        solarize,
        lambda m, s, _: 256 - tf.minimum(tf.floor(m / _LEVEL_DENOM * 256), 256.0),
    ),
    "SolarizeAdd": (
        solarize_add,
        lambda m, s, _: tf.minimum(tf.floor(m / _LEVEL_DENOM * 110), 128.0),
    ),
    "ShearX": (shear_x, lambda m, s, _: _signed(m / _LEVEL_DENOM * 0.3, s)),
    "ShearY": (shear_y, lambda m, s, _: _signed(m / _LEVEL_DENOM * 0.3, s)),
    "TranslateXRel": (translate_x, lambda m, s, pct: _signed(m / _LEVEL_DENOM * pct, s)),
    "TranslateYRel": (translate_y, lambda m, s, pct: _signed(m / _LEVEL_DENOM * pct, s)),
}
for _name, _op in (
    ("Color", color),
    ("Contrast", contrast),
    ("Brightness", brightness),
    ("Sharpness", sharpness),
):
    _ARGS[_name] = (_op, lambda m, s, _: m / _LEVEL_DENOM * 1.8 + 0.1)
    _ARGS[_name + "Increasing"] = (
        _op,
        lambda m, s, _: tf.maximum(1.0 + _signed(m / _LEVEL_DENOM * 0.9, s), 0.1),
    )
_GEOMETRIC = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}

#: BNext's policy: ``rand-m7-mstd0.5-inc1`` with the ImageNet-mean fill.
BNEXT_POLICY = parse_policy("rand-m7-mstd0.5-inc1")


def level_to_arg(name: str, magnitude, sign, translate_pct: float = 0.45):
    """timm's magnitude-to-argument mapping of op ``name`` (``None`` for argument-free ops).

    Args:
        name: a timm op name (e.g. ``"Rotate"``, ``"SolarizeIncreasing"``).
        magnitude: magnitudes on ``[0, 10]`` (already clipped).
        sign: +1 or -1 per magnitude (timm's random negation; unsigned ops ignore it).
        translate_pct: TranslateXRel/YRel's shift at magnitude 10.

    Example:

    >>> float(level_to_arg("Rotate", 7.0, -1.0))
    -21.0
    """
    if name not in _ARGS:
        raise ValueError(f"Unknown RandAugment op {name!r}; choose from {sorted(_ARGS)}.")
    mapping = _ARGS[name][1]
    if mapping is None:
        return None
    m = tf.cast(magnitude, tf.float64)
    return mapping(m, tf.cast(sign, tf.float64), translate_pct)


def apply_op(name: str, images, magnitude, sign, policy: RandAugmentPolicy = BNEXT_POLICY):
    """Apply timm's op ``name`` at per-image magnitudes (no randomness).

    Args:
        name: a timm op name.
        images: ``(B, H, W, 3)`` whole values on ``[0, 255]``.
        magnitude: ``(B,)`` magnitudes on ``[0, 10]``.
        sign: ``(B,)`` +1 or -1 (the random negation of the signed ops).
        policy: supplies ``fill``, ``interpolation`` and ``translate_pct``.

    Example:

    >>> img = tf.fill([1, 4, 4, 3], 100.0)
    >>> apply_op("SolarizeIncreasing", img, [10.0], [1.0]).numpy()[0, 0, 0].tolist()
    [155.0, 155.0, 155.0]
    """
    op, _ = _ARGS[name]
    arg = level_to_arg(name, magnitude, sign, policy.translate_pct)
    if arg is None:
        return op(images)
    if name in _GEOMETRIC:
        return op(images, arg, fill=policy.fill, interpolation=policy.interpolation)
    return op(images, tf.cast(arg, tf.float32))


def sample_ops(batch_size, seed, policy: RandAugmentPolicy = BNEXT_POLICY):
    """Draw timm's random choices for a batch, as a pure function of ``seed``.

    Args:
        batch_size: images in the batch.
        seed: a stateless seed, shape ``(2,)`` integers.
        policy: the policy.

    Returns:
        A dict of ``(num_layers, batch_size)`` tensors: ``op`` (index into ``policy.ops``,
        uniform, with replacement), ``apply`` (bool, probability ``prob``), ``magnitude``
        (``N(m, mstd)`` clipped to ``[0, mmax]``) and ``sign`` (+1 or -1 with probability 1/2).

    Example:

    >>> draws = sample_ops(8, [0, 1])
    >>> draws["op"].shape, draws["magnitude"].dtype
    (TensorShape([2, 8]), tf.float64)
    """
    seeds = tf.random.experimental.stateless_split(_seed(seed), 4)
    shape = tf.stack([policy.num_layers, batch_size])
    op = tf.random.stateless_uniform(shape, seeds[0], 0, len(policy.ops), dtype=tf.int32)
    apply = tf.random.stateless_uniform(shape, seeds[1], dtype=tf.float64) < policy.prob
    if math.isinf(policy.magnitude_std):
        magnitude = tf.random.stateless_uniform(shape, seeds[2], 0, policy.magnitude, tf.float64)
    else:
        noise = tf.random.stateless_normal(shape, seeds[2], dtype=tf.float64)
        magnitude = policy.magnitude + policy.magnitude_std * noise
    magnitude = tf.clip_by_value(magnitude, 0.0, float(policy.magnitude_max))
    negate = tf.random.stateless_uniform(shape, seeds[3], dtype=tf.float64) > 0.5
    sign = tf.where(negate, -1.0, 1.0)
    return {"op": op, "apply": apply, "magnitude": magnitude, "sign": tf.cast(sign, tf.float64)}


def _seed(seed):
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer:
        raise TypeError(f"A RandAugment seed is integers, got {seed.dtype.name}.")
    seed = tf.cast(seed, tf.int64)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.zeros([], tf.int64)])
    return seed


@tf.autograph.experimental.do_not_convert
def rand_augment(images, seed, policy: RandAugmentPolicy = BNEXT_POLICY, apply=None):
    """timm's RandAugment on a batch, a pure function of ``(images, seed)``.

    For each of ``policy.num_layers`` layers, every image runs the op drawn for it (when drawn
    to apply): the batch is partitioned by op, each op runs once on its images, and the results
    are stitched back in order.

    Args:
        images: ``(B, H, W, 3)`` whole values on ``[0, 255]``.
        seed: a stateless seed: shape ``(2,)`` integers (or one integer).
        policy: the policy (default BNext's ``rand-m7-mstd0.5-inc1``).
        apply: ``apply(name, images, magnitude, sign)`` runs one op (default
            :func:`apply_op` with ``policy``; :class:`~larq_bnext.augment.RandAugment` passes
            its op layers).

    Returns:
        float32 images of the same shape, whole values on ``[0, 255]``.

    Example:

    >>> images = tf.fill([2, 8, 8, 3], 100.0)
    >>> rand_augment(images, seed=[3, 4]).shape
    TensorShape([2, 8, 8, 3])
    """
    if apply is None:
        apply = functools.partial(apply_op, policy=policy)
    images = _f(images)
    static_shape = images.shape
    batch = tf.shape(images)[0]
    draws = sample_ops(batch, seed, policy)
    skip = len(policy.ops)
    for layer in range(policy.num_layers):
        part = tf.where(draws["apply"][layer], draws["op"][layer], skip)

        def split(values, part=part):
            return tf.dynamic_partition(values, part, skip + 1)

        indices = split(tf.range(batch))
        subsets = split(images)
        magnitudes = split(draws["magnitude"][layer])
        signs = split(draws["sign"][layer])
        outputs = []
        for index, name in enumerate(policy.ops):
            subset = subsets[index]

            def run(name=name, subset=subset, m=magnitudes[index], sign=signs[index]):
                out = apply(name, subset, m, sign)
                return tf.ensure_shape(out, [None, None, None, 3])

            outputs.append(tf.cond(tf.shape(subset)[0] > 0, run, lambda subset=subset: _f(subset)))
        outputs.append(subsets[skip])
        images = tf.dynamic_stitch(indices, outputs)
        images.set_shape(static_shape)
    return images
