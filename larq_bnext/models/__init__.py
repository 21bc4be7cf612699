"""The BNext models: quantizers and layers, blocks, the BNext builder and BNext-T/S/M/L.

* :mod:`~larq_bnext.models.quantizers`: HardSign and the progressive kernel quantizer;
* :mod:`~larq_bnext.models.layers`: BinaryConv2D, LearnableBias, RecouplingMix;
* :mod:`~larq_bnext.models.blocks`: one small builder per sub-block;
* :mod:`~larq_bnext.models.bnext`: :func:`~larq_bnext.models.bnext.BNext` and the published
  sizes, whose facts live in :mod:`larq_bnext.registry`, and :func:`get_model` for any
  registry model;
* :mod:`~larq_bnext.models.bnext18`: BNext-18, the ResNet-18-shaped BNext;
* :mod:`~larq_bnext.models.arguments`: the checks of the builders' shared arguments;
* :mod:`~larq_bnext.models.convert`: an official PyTorch checkpoint to Keras weights.
"""

from larq_bnext.models.bnext import (
    BNext,
    BNextL,
    BNextM,
    BNextS,
    BNextT,
    apply_weights,
    get_model,
)
from larq_bnext.models.bnext18 import BNext18
from larq_bnext.models.convert import convert_checkpoint
from larq_bnext.models.layers import BinaryConv2D, LearnableBias, RecouplingMix, binary_conv_layers
from larq_bnext.models.quantizers import HardSign, ProgressiveSign, progressive_sign
from larq_bnext.registry import block_configs
