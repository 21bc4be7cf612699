"""larq_bnext: BNext binary neural networks in Keras with Larq.

Models: :func:`BNextT`, :func:`BNextS`, :func:`BNextM`, :func:`BNextL` and the general
:func:`BNext` builder, with ``keras.applications``-style signatures; the facts of each
published model (channels, top-1, checkpoint, preprocessing, recipe) are in
:mod:`larq_bnext.registry`.

Subpackages: :mod:`larq_bnext.models`, :mod:`larq_bnext.weights`, :mod:`larq_bnext.images`,
:mod:`larq_bnext.augment`, :mod:`larq_bnext.training`, :mod:`larq_bnext.deploy`; command-line
programs ``python -m larq_bnext.<program>`` for ``train``, ``evaluate``, ``predict``,
``convert``, ``export``, ``benchmark``, ``ops``, ``features``, ``landscape`` and ``ablate``
(docs/cli.md).
"""

from larq_bnext.keras2 import check_keras2, select_keras2
from larq_bnext.startup import program_start, started_as_program

# First, before any module imports TensorFlow: Keras 2 selected where TensorFlow >= 2.16 needs
# the switch (larq_bnext.keras2 says when, and the error otherwise; the one global change an
# import of the library makes). A program (`python -m larq_bnext.<program>`, whose package
# Python imports before the program's first line) starts quietly (larq_bnext.startup); a plain
# `import larq_bnext` changes nothing else.
select_keras2()
if started_as_program():
    program_start()
import tensorflow as _tensorflow

check_keras2(_tensorflow)
del _tensorflow

from larq_bnext import images, models, preprocessing, registry, weights
from larq_bnext.models import (
    BinaryConv2D,
    BNext,
    BNext18,
    BNextL,
    BNextM,
    BNextS,
    BNextT,
    HardSign,
    LearnableBias,
    ProgressiveSign,
    RecouplingMix,
    get_model,
)
from larq_bnext.preprocessing import decode_predictions, eval_transform, preprocess_input
from larq_bnext.registry import list_models

#: Names of :mod:`larq_bnext.training`, imported on first use: classifying images (``predict``,
#: ``evaluate``) does not load the training code.
_TRAINING = (
    "AdamW",
    "AssistantCurriculum",
    "Distiller",
    "Teacher",
    "TemperatureScheduler",
    "WarmupCosine",
)


def __getattr__(name):
    if name == "training" or name in _TRAINING:
        import importlib

        training = importlib.import_module("larq_bnext.training")
        return training if name == "training" else getattr(training, name)
    raise AttributeError(f"module 'larq_bnext' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_TRAINING) | {"training"})


__version__ = "0.1.0"

__all__ = [
    "BNext",
    "BNextT",
    "BNextS",
    "BNextM",
    "BNextL",
    "BNext18",
    "get_model",
    "list_models",
    "BinaryConv2D",
    "HardSign",
    "ProgressiveSign",
    "LearnableBias",
    "RecouplingMix",
    "Distiller",
    "Teacher",
    "AssistantCurriculum",
    "AdamW",
    "WarmupCosine",
    "TemperatureScheduler",
    "preprocess_input",
    "eval_transform",
    "decode_predictions",
    "models",
    "weights",
    "training",
    "images",
    "registry",
    "preprocessing",
]
