r"""Convert a BNext PyTorch checkpoint to Keras weights (no PyTorch needed): an official
BNext-T/S/M/L one, or a BNext-18 one saved by the original code.

Usage::

    python -m larq_bnext.convert --model tiny \
        --weights bnext_tiny_official.pth.tar --output bnext_tiny_imagenet.h5

``--model auto`` (the default) tells the model from the checkpoint (``--model`` takes any
registry model, ``bnext18`` included). ``--size`` and ``--checkpoint`` are the deprecated
spellings of ``--model`` and ``--weights``. The output is Keras HDF5
weights of the full model (``model.save_weights``), loadable with
``larq_bnext.BNextT(weights="bnext_tiny_imagenet.h5")`` or
``model.load_weights(path, by_name=True)``. The checkpoint is read with
:mod:`larq_bnext.weights.pytorch_reader`, which refuses pickles that could run code.
"""

from __future__ import annotations

import time

from absl import app, flags

from larq_bnext._cli import define, deprecated_alias, no_arguments, user_errors_exit
from larq_bnext.models.convert import convert_checkpoint
from larq_bnext.registry import list_models, resolve_model
from larq_bnext.weights.download import sha256

FLAGS = flags.FLAGS
#: Values of ``--model``: ``auto`` or a registry model (any spelling of
#: :func:`larq_bnext.registry.resolve_model` is accepted).
SIZES = ["auto", *(m.name for m in list_models()), *(m.letter for m in list_models())]


def define_flags(flag_values: flags.FlagValues = FLAGS) -> flags.FlagValues:
    """Define ``--model``, ``--weights`` and ``--output`` on ``flag_values``.

    Args:
        flag_values: the registry to define them on (absl's global ``FLAGS`` by default).

    Returns:
        ``flag_values``.
    """
    f = flag_values
    define(
        f,
        "model",
        "auto",
        f"Model of the checkpoint ({', '.join(SIZES)}, or any name of the registry); "
        "'auto' detects it from the tensor shapes.",
    )
    define(f, "weights", None, "The PyTorch checkpoint (.pth.tar) to convert.")
    define(f, "output", None, "The Keras weights file to write (must end in .h5).")
    deprecated_alias("size", "model", f)
    deprecated_alias("checkpoint", "weights", f)
    return flag_values


def run(size: str, checkpoint: str, output: str) -> str:
    """Convert ``checkpoint`` to ``output`` and return the report printed by the CLI.

    Args:
        size: ``"auto"`` or a registry model name (``"tiny"``, ``"bnext18"``, ...).
        checkpoint: the PyTorch checkpoint file.
        output: the ``.h5`` file to write.
    """
    start = time.perf_counter()
    size = None if size == "auto" else resolve_model(size).name
    report = convert_checkpoint(checkpoint, output, size=size)
    elapsed = time.perf_counter() - start
    return "\n".join(
        [
            f"Read {checkpoint} (sha256 {sha256(checkpoint)})",
            report.summary(),
            f"Wrote Keras weights to {output} in {elapsed:.1f} s; load them with "
            f"larq_bnext.get_model({report.checkpoint_size!r}, weights={str(output)!r}).",
        ]
    )


def main(argv, flag_values: flags.FlagValues = FLAGS):
    """absl entry point: convert with the parsed ``--model``, ``--weights`` and ``--output``.

    Args:
        argv: the command line left after absl parsed the flags (must hold no more arguments).
        flag_values: the parsed flags (absl's global ``FLAGS`` by default).
    """
    no_arguments(argv)
    if not flag_values.weights or not flag_values.output:
        raise app.UsageError("Both --weights (the .pth.tar checkpoint) and --output are required.")
    with user_errors_exit():
        print(run(flag_values.model, flag_values.weights, flag_values.output))


if __name__ == "__main__":
    define_flags()
    app.run(main)
