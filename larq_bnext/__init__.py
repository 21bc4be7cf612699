"""larq_bnext: BNext binary neural networks in Keras with Larq.

Models: :func:`BNextT`, :func:`BNextS`, :func:`BNextM`, :func:`BNextL` and the general
:func:`BNext` builder, with ``keras.applications``-style signatures.
"""

from larq_bnext import (
    blocks,
    distillation,
    layers,
    models,
    preprocessing,
    pretrained,
    pytorch_reader,
    training,
)
from larq_bnext.distillation import AssistantCurriculum, Distiller, Teacher
from larq_bnext.layers import (
    BinaryConv2D,
    HardSign,
    LearnableBias,
    ProgressiveSign,
    RecouplingMix,
)
from larq_bnext.models import BNext, BNextL, BNextM, BNextS, BNextT, get_model
from larq_bnext.preprocessing import decode_predictions, eval_transform, preprocess_input
from larq_bnext.training import AdamW, TemperatureScheduler, WarmupCosine

__version__ = "0.1.0"

__all__ = [
    "BNext",
    "BNextT",
    "BNextS",
    "BNextM",
    "BNextL",
    "get_model",
    "BinaryConv2D",
    "HardSign",
    "ProgressiveSign",
    "LearnableBias",
    "RecouplingMix",
    "blocks",
    "layers",
    "models",
    "Distiller",
    "Teacher",
    "AssistantCurriculum",
    "AdamW",
    "WarmupCosine",
    "TemperatureScheduler",
    "preprocess_input",
    "eval_transform",
    "decode_predictions",
    "preprocessing",
    "pretrained",
    "pytorch_reader",
    "distillation",
    "training",
]
