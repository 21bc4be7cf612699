r"""Convert an official BNext PyTorch checkpoint to Keras weights (no PyTorch needed).

Usage::

    python -m larq_bnext.convert --size tiny \
        --checkpoint bnext_tiny_official.pth.tar --output bnext_tiny_imagenet.h5

``--size auto`` (the default) tells the size from the checkpoint. The output is Keras HDF5
weights of the full model (``model.save_weights``), loadable with
``larq_bnext.BNextT(weights="bnext_tiny_imagenet.h5")`` or
``model.load_weights(path, by_name=True)``. The checkpoint is read with
:mod:`larq_bnext.pytorch_reader`, which refuses pickles that could run code.
"""

from __future__ import annotations

import time

from absl import app, flags

from larq_bnext.pretrained import _sha256, convert_checkpoint

FLAGS = flags.FLAGS

flags.DEFINE_enum(
    "size",
    "auto",
    ["auto", "tiny", "small", "middle", "large", "T", "S", "M", "L"],
    "BNext size of the checkpoint; 'auto' detects it from the tensor shapes.",
)
flags.DEFINE_string("checkpoint", None, "The official PyTorch checkpoint (.pth.tar) to read.")
flags.DEFINE_string("output", None, "The Keras weights file to write (must end in .h5).")


def run(size: str, checkpoint: str, output: str) -> str:
    """Convert ``checkpoint`` to ``output`` and return the report printed by the CLI.

    Args:
        size: ``"auto"`` or a size name/alias.
        checkpoint: the PyTorch checkpoint file.
        output: the ``.h5`` file to write.
    """
    start = time.perf_counter()
    report = convert_checkpoint(checkpoint, output, size=None if size == "auto" else size)
    elapsed = time.perf_counter() - start
    return "\n".join(
        [
            f"Read {checkpoint} (sha256 {_sha256(checkpoint)})",
            report.summary(),
            f"Wrote Keras weights to {output} in {elapsed:.1f} s; load them with "
            f"larq_bnext.get_model({report.checkpoint_size!r}, weights={str(output)!r}).",
        ]
    )


def main(argv):
    """absl entry point: parse the flags and convert.

    Args:
        argv: the command line left after absl parsed the flags (ignored).
    """
    del argv
    if not FLAGS.checkpoint or not FLAGS.output:
        raise app.UsageError("Both --checkpoint and --output are required.")
    print(run(FLAGS.size, FLAGS.checkpoint, FLAGS.output))


if __name__ == "__main__":
    app.run(main)
