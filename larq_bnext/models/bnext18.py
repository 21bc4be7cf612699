"""BNext-18: the ResNet-18-shaped BNext of the original repository, as a Keras model.

Signature as ``keras.applications`` (see the example).

The architecture is the original's ``BNext18`` (``hpi-xnor/BNext``, ``src/birealnet.py``),
channels-last:

* Stem, ImageNet form: float 7x7 convolution (stride 2, padding 3, no bias), BatchNorm and a
  3x3 max-pool (stride 2, padding 1). CIFAR form (the original's choice whenever the class
  count is not 1000): float 3x3 convolution (stride 1, padding 1) and BatchNorm, no max-pool.
  There is no activation after the stem.
* Four stages of two basic blocks at 64, 128, 256 and 512 channels (the stage channels of
  :mod:`larq_bnext.registry`); stages 2-4 halve the resolution in their first block.
* A basic block is an ELM-Attention sub-block (``Attention``; input channels to the stage's
  channels, with the stage's stride) followed by an FFN-3x3 sub-block (``FFN``, stride 1).
  Each has the BNext binary unit ``move -> HardSign -> binary 3x3 conv -> norm1 ->
  activation2`` and information recoupling (sigmoid SE, ratio 8).
* ELM-Attention: ``residual = activation1(x)`` (PReLU), then, in the first block of stages
  2-4, a float *downsample*: 2x2 average pool (stride 2), float 1x1 convolution (no bias)
  and BatchNorm. Recoupling mixes ``residual`` (not ``x``) with the binary unit's output ``y``;
  ``out = norm2(y * residual) + residual``.
* FFN-3x3: ``out = norm2(recouple(binary_unit(x))) + x``.
* Head: PReLU over 512 channels, global average pooling, dense classifier.

Differences from the BNext-T/S/M/L family (:mod:`larq_bnext.models.bnext`): the kernel quantizer
switches to ``sign(w)`` below a temperature of ``1e-5`` (not ``1e-7``), there is no FFN-1x1,
the downsampling shortcut is a float 1x1 convolution, and recoupling in ELM-Attention uses the
PReLU'd residual. The FFN's ``activation1`` PReLU is built by the original but never applied;
it is left out here (and skipped when a checkpoint is loaded).

Examples:
    >>> import larq_bnext
    >>> model = larq_bnext.BNext18(weights=None, input_shape=(32, 32, 3), num_classes=10)
    >>> model.get_layer("stem_conv").kernel_size  # 10 classes: the original's CIFAR stem
    (3, 3)
"""

from __future__ import annotations

import tensorflow as tf

from larq_bnext.models.arguments import check_arguments, model_input
from larq_bnext.models.blocks import batch_norm, classifier_head, information_recoupling, prelu
from larq_bnext.models.layers import BinaryConv2D, LearnableBias
from larq_bnext.models.quantizers import ProgressiveSign
from larq_bnext.models.tracing import no_autograph
from larq_bnext.registry import resolve_model
from larq_bnext.weights.loading import load_weights

__all__ = [
    "BNext18",
    "PaddedMaxPool2D",
    "bnext18_block_configs",
    "stem_form",
]

layers = tf.keras.layers
_INFO = resolve_model("bnext18")
_ARCHITECTURE = _INFO.architecture
_register = tf.keras.utils.register_keras_serializable(package="larq_bnext")


@_register
class PaddedMaxPool2D(tf.keras.layers.Layer):
    """Max pooling with PyTorch's padding: pad every side with ``-inf``, then pool "valid".

    Keras' ``"same"`` max pooling pads only the bottom/right for stride 2, which shifts the
    windows by one pixel relative to PyTorch's ``nn.MaxPool2d(3, 2, padding=1)``.

    Args:
        pool_size: window size.
        strides: stride.
        padding: rows/columns of ``-inf`` added on every side.
        **kwargs: passed to :class:`tf.keras.layers.Layer`.
    """

    def __init__(self, pool_size: int = 3, strides: int = 2, padding: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = int(pool_size)
        self.strides = int(strides)
        self.padding = int(padding)

    @no_autograph
    def call(self, inputs):
        p = self.padding
        x = tf.pad(
            inputs,
            [[0, 0], [p, p], [p, p], [0, 0]],
            constant_values=tf.constant(float("-inf"), inputs.dtype),
        )
        return tf.nn.max_pool2d(x, self.pool_size, self.strides, padding="VALID")

    def compute_output_shape(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        spatial = [
            None if d is None else (d + 2 * self.padding - self.pool_size) // self.strides + 1
            for d in input_shape[1:3]
        ]
        return tf.TensorShape([input_shape[0], *spatial, input_shape[3]])

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
        }


def stem_form(stem: str | None, num_classes: int) -> str:
    """``"imagenet"`` or ``"cifar"``: the stem BNext-18 gets.

    Args:
        stem: ``"imagenet"``, ``"cifar"`` or ``None`` for the original's rule (ImageNet form
            exactly when ``num_classes == 1000``).
        num_classes: the classifier size.
    """
    if stem is None:
        return "imagenet" if int(num_classes) == 1000 else "cifar"
    if stem not in ("imagenet", "cifar"):
        raise ValueError(
            f"stem must be 'imagenet' (7x7 stride-2 conv and max-pool), 'cifar' (3x3 stride-1 "
            f"conv) or None (the original's rule: 'imagenet' iff num_classes == 1000); "
            f"got {stem!r}."
        )
    return stem


def bnext18_block_configs():
    """Yield ``(stage, index, in_channels, out_channels, strides, downsample)`` per block.

    Read from BNext-18's stage channels in :mod:`larq_bnext.registry` (the stem's, then each
    basic block's): a stage is a run of blocks of equal width, and every stage but the first
    halves the resolution in its first block. ``stage`` is 0..3 and ``index`` 0..1, as in the
    original's ``layer{stage}.{index}`` keys.

    Examples:
        >>> [(s, i, c_out, strides) for s, i, _, c_out, strides, _ in bnext18_block_configs()][:4]
        [(0, 0, 64, 1), (0, 1, 64, 1), (1, 0, 128, 2), (1, 1, 128, 1)]
    """
    channels = resolve_model(_INFO.name).stage_channels
    c_in, stage, index = channels[0], -1, 0
    for i, c_out in enumerate(channels[1:]):
        new_stage = i == 0 or c_out != channels[i]
        stage, index = (stage + 1, 0) if new_stage else (stage, index + 1)
        s = 2 if new_stage and stage > 0 else 1
        yield stage, index, c_in, c_out, s, s != 1 or c_in != c_out
        c_in = c_out


def _binary_unit(x, filters: int, strides: int, name: str):
    y = LearnableBias(name=f"{name}_move")(x)
    y = BinaryConv2D(
        filters,
        3,
        strides=strides,
        kernel_quantizer=ProgressiveSign(threshold=_ARCHITECTURE.sign_threshold),
        name=f"{name}_binary_conv",
    )(y)
    y = batch_norm(f"{name}_norm1")(y)
    return prelu(f"{name}_activation2")(y)


def _attention(x, filters: int, strides: int, downsample: bool, name: str):
    residual = prelu(f"{name}_activation1")(x)
    if downsample:
        residual = layers.AveragePooling2D(2, strides=strides, name=f"{name}_downsample_pool")(
            residual
        )
        residual = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_downsample_conv")(
            residual
        )
        residual = batch_norm(f"{name}_downsample_bn")(residual)
    y = _binary_unit(x, filters, strides, name)
    y = information_recoupling(residual, y, name)
    y = layers.Multiply(name=f"{name}_attend")([y, residual])
    y = batch_norm(f"{name}_norm2")(y)
    return layers.Add(name=f"{name}_add")([y, residual])


def _ffn(x, name: str):
    y = _binary_unit(x, int(x.shape[-1]), 1, name)
    y = information_recoupling(x, y, name)
    y = batch_norm(f"{name}_norm2")(y)
    return layers.Add(name=f"{name}_add")([y, x])


def _check_input_size(shape, form: str) -> None:
    reduction = 2 ** sum(strides == 2 for *_, strides, _ in bnext18_block_configs())
    for axis, size in zip(("height", "width"), shape[:2], strict=True):
        if size is None:
            continue
        s = int(size)
        if form == "imagenet":
            for _ in range(2):  # stem stride 2, then max-pool stride 2, both rounding up
                s = (s + 1) // 2
        if s <= 0 or s % reduction:
            unit = 4 * reduction if form == "imagenet" else reduction
            suggestion = max(unit, round(int(size) / unit) * unit)
            raise ValueError(
                f"Input {axis} {size} is not supported by BNext-18's {form} form: after the "
                f"stem the three stride-2 stages need an even size each time, so use a "
                f"multiple of {unit} (e.g. {suggestion})."
            )


def BNext18(
    *,
    input_shape: tuple | None = None,
    input_tensor=None,
    weights: str | None = None,
    include_top: bool = True,
    num_classes: int = 1000,
    pooling: str | None = None,
    classifier_activation: str | None = "softmax",
    stem: str | None = None,
    name: str = _INFO.model_name,
) -> tf.keras.Model:
    """BNext-18, the ResNet-18-shaped BNext (``BNext18`` of the original repository).

    Args:
        input_shape: ``(height, width, channels)``; defaults to ``(224, 224, 3)`` for the
            ImageNet stem and ``(32, 32, 3)`` for the CIFAR stem. ``None`` entries allow a
            variable size.
        input_tensor: optional Keras tensor (output of ``tf.keras.Input``) to build on.
        weights: ``None`` (random initialisation) or the path of a PyTorch checkpoint of the
            original ``BNext18`` (``torch.save`` of a state dict or of a training checkpoint
            dict with ``state_dict``) or of Keras HDF5 weights (loaded by
            :func:`larq_bnext.weights.load_weights`). No ImageNet checkpoint of BNext-18 is
            published, so ``"imagenet"`` raises an error.
        include_top: whether to add the global pooling and dense classifier.
        num_classes: number of classes of the classifier.
        pooling: with ``include_top=False``: ``None`` (4-D feature map), ``"avg"`` or ``"max"``.
        classifier_activation: activation of the top layer; ``None`` returns logits.
        stem: ``"imagenet"`` (7x7 stride-2 conv, BatchNorm, 3x3 stride-2 max-pool),
            ``"cifar"`` (3x3 stride-1 conv, BatchNorm) or ``None``: the original's rule,
            ``"imagenet"`` exactly when ``num_classes == 1000``.
        name: model name.

    Returns:
        A :class:`tf.keras.Model`.

    Raises:
        ValueError: for ``weights="imagenet"``, a missing weights file, an unsupported input
            size, pooling or stem, each with what to do instead.
    """
    form = stem_form(stem, num_classes)
    info = resolve_model(_INFO.name)  # read at call time: the registry is the truth
    check_arguments(
        weights=weights,
        model=info,
        include_top=include_top,
        num_classes=num_classes,
        pooling=pooling,
    )
    side = info.preprocessing.image_size if form == "imagenet" else 32
    inputs, shape = model_input(input_shape, input_tensor, (side, side, 3), weights)
    _check_input_size(shape, form)

    if form == "imagenet":
        x = layers.ZeroPadding2D(3, name="stem_pad")(inputs)
        x = layers.Conv2D(info.stage_channels[0], 7, strides=2, use_bias=False, name="stem_conv")(x)
        x = batch_norm("stem_bn")(x)
        x = PaddedMaxPool2D(3, 2, 1, name="stem_maxpool")(x)
    else:
        x = layers.ZeroPadding2D(1, name="stem_pad")(inputs)
        x = layers.Conv2D(info.stage_channels[0], 3, use_bias=False, name="stem_conv")(x)
        x = batch_norm("stem_bn")(x)
    for stage, index, _, c_out, strides, downsample in bnext18_block_configs():
        prefix = f"layer{stage}_{index}"
        x = _attention(x, c_out, strides, downsample, f"{prefix}_attention")
        x = _ffn(x, f"{prefix}_ffn")
    model = classifier_head(
        x, inputs, input_tensor, include_top, num_classes, classifier_activation, pooling, name
    )
    if weights is not None:
        load_weights(model, weights, info)
    return model
