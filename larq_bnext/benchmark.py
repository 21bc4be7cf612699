"""Measure BNext flatbuffers with Larq Compute Engine: latency, size, and the trade-off plots.

    python -m larq_bnext.benchmark --output_dir docs/benchmark

converts every model (random weights; latency and size do not depend on them) at
``--image_size``, times it with LCE's interpreter (median of ``--repeats`` warm single-image
runs, for each of ``--threads``), and writes ``benchmark.csv``, ``benchmark.md``,
``top1_vs_latency.png`` and ``top1_vs_size.png``. Baselines: larq-zoo's QuickNet family
(converted the same way) and the float32 TFLite form of BNext (``--float_models``).
See :func:`larq_bnext.deploy.benchmark`.
"""

from __future__ import annotations

import os

from absl import app, flags

from larq_bnext._cli import define, deprecated_alias, no_arguments, user_errors_exit
from larq_bnext.deploy.catalog import BNEXT_NAMES, QUICKNET_NAMES

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> flags.FlagValues:
    """Define the benchmark flags (see :mod:`larq_bnext._cli`).

    Args:
        flag_values: the absl flag registry to define them on.

    Returns:
        ``flag_values``.
    """
    f = flag_values
    define(
        f,
        "models",
        list(BNEXT_NAMES + QUICKNET_NAMES),
        "Models to convert with LCE and time (any registry model, bnext18 included, or a "
        "QuickNet).",
    )
    flags.DEFINE_list(
        "float_models",
        list(BNEXT_NAMES[:1]),
        "BNext models to also time in float32 TFLite.",
        flag_values=f,
    )
    define(f, "image_size", 224, "Square input side.")
    deprecated_alias("input_size", "image_size", f)
    flags.DEFINE_list("threads", None, "Thread counts (default: 1 and all CPUs).", flag_values=f)
    flags.DEFINE_integer(
        "repeats", 10, "Timed runs per measurement (the median is reported).", flag_values=f
    )
    flags.DEFINE_integer("warmup", 2, "Untimed runs before timing.", flag_values=f)
    flags.DEFINE_bool(
        "indirect_bgemm",
        True,
        "Use LCE's indirect-BGEMM binary kernel (the faster one on x86; on Arm try both).",
        flag_values=f,
    )
    define(f, "output_dir", "benchmark_results", "Where to write the table and plots.")
    flags.DEFINE_string(
        "flatbuffer_dir",
        None,
        "Keep the converted .tflite files here and reuse existing ones (time again without "
        "converting).",
        flag_values=f,
    )
    flags.DEFINE_bool(
        "append",
        False,
        "Keep the rows of an existing benchmark.csv in --output_dir for models not measured "
        "in this run (e.g. measure BNext-L in a process of its own).",
        flag_values=f,
    )
    return flag_values


def main(argv):
    """absl entry point: run :func:`larq_bnext.deploy.benchmark` with the flags.

    Args:
        argv: the command line left after absl parsed the flags (must hold no arguments).
    """
    no_arguments(argv)
    from larq_bnext import deploy

    threads = [int(t) for t in FLAGS.threads] if FLAGS.threads else None
    if threads is not None and any(t < 1 for t in threads):
        raise app.UsageError(f"--threads must be positive integers, got {FLAGS.threads}.")
    with user_errors_exit():
        deploy.benchmark(
            models=FLAGS.models,
            float_models=FLAGS.float_models,
            input_size=FLAGS.image_size,
            threads=threads,
            repeats=FLAGS.repeats,
            warmup=FLAGS.warmup,
            use_indirect_bgemm=FLAGS.indirect_bgemm,
            output_dir=FLAGS.output_dir,
            append=FLAGS.append,
            flatbuffer_dir=FLAGS.flatbuffer_dir,
        )
    print((os.path.join(FLAGS.output_dir, "benchmark.md")) + ":")
    with open(os.path.join(FLAGS.output_dir, "benchmark.md")) as f:
        print(f.read())


if __name__ == "__main__":
    define_flags()
    app.run(main)
