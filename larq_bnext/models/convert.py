"""Convert an official BNext checkpoint (or a BNext-18 one of the original code) into Keras
HDF5 weights of the matching model.

The model is detected from the tensor shapes (:func:`larq_bnext.weights.detect_size`, and
BNext-18's own keys), built at float32 from :mod:`larq_bnext.registry`, the state dict mapped
onto it (:mod:`larq_bnext.weights.mapping`, :mod:`larq_bnext.weights.bnext18`) and the weights
written atomically.
"""

from __future__ import annotations

from pathlib import Path

from larq_bnext.models.bnext import BNext
from larq_bnext.models.bnext18 import BNext18
from larq_bnext.registry import resolve_model
from larq_bnext.weights.bnext18 import is_bnext18_state, load_bnext18_state_dict
from larq_bnext.weights.loading import floatx, save_weights_atomically
from larq_bnext.weights.mapping import load_state_dict_into_model
from larq_bnext.weights.matching import ConversionReport, WeightsMismatchError
from larq_bnext.weights.pytorch_reader import TorchCheckpoint
from larq_bnext.weights.spec import detect_size, guess_size

__all__ = [
    "convert_checkpoint",
]


def convert_checkpoint(checkpoint, output, size: str | None = None) -> ConversionReport:
    """Convert a checkpoint file to Keras HDF5 weights (full model, float32).

    Args:
        checkpoint: the PyTorch checkpoint file: an official BNext-T/S/M/L one, or a BNext-18
            one saved by the original code (its stem, ImageNet or CIFAR, and class count are
            read from the tensors).
        output: the ``.h5`` file to write (loadable with ``weights=output`` or
            ``model.load_weights(output, by_name=True)``).
        size: the registry model; detected from the checkpoint when ``None``.

    Returns:
        A :class:`~larq_bnext.weights.matching.ConversionReport`.

    Raises:
        WeightsMismatchError: the checkpoint is not of ``size`` (or of no known model).
    """

    output = Path(output)
    if output.suffix != ".h5" or output.name.endswith(".weights.h5"):
        raise ValueError(
            f"The output must end in '.h5' (Keras HDF5 weights, loadable by layer name), not "
            f"{output.name!r}; e.g. bnext_tiny_imagenet.h5."
        )
    with TorchCheckpoint(checkpoint) as ckpt:
        state = ckpt.state_dict()
        shapes = {k: v.shape for k, v in state.items()}
        bnext18 = resolve_model("bnext18").name if is_bnext18_state(shapes) else None
        detected = detect_size(shapes) or bnext18
        if size is None:
            if detected is None:
                guess = guess_size(shapes)
                raise WeightsMismatchError(
                    f"{checkpoint} is not an official BNext checkpoint"
                    + (f" (it resembles {resolve_model(guess).display_name})" if guess else "")
                    + "; pass the size explicitly to see which tensors differ."
                )
            size = detected
        info = resolve_model(size)
        size = info.name
        num_classes = shapes.get("fc.bias", (1000,))[0]
        with floatx("float32"):
            if info.family == "bnext18":
                stem = "imagenet" if tuple(shapes.get("conv1.weight", ()))[-1:] == (7,) else "cifar"
                model = BNext18(
                    input_shape=(None, None, 3),
                    num_classes=num_classes,
                    classifier_activation=None,
                    stem=stem,
                    name=info.model_name,
                )
                report = load_bnext18_state_dict(model, state, source=str(checkpoint))
            else:
                model = BNext(
                    info.stage_channels,
                    input_shape=(None, None, 3),
                    num_classes=num_classes,
                    classifier_activation=None,
                    name=info.model_name,
                )
                report = load_state_dict_into_model(model, state, size=size, source=str(checkpoint))
    output.parent.mkdir(parents=True, exist_ok=True)
    save_weights_atomically(
        model, output, {"larq_bnext_size": size, "larq_bnext_source": Path(checkpoint).name}
    )
    report.checkpoint_size = report.checkpoint_size or size
    return report
