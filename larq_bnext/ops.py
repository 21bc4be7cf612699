"""Count the operations of BNext models, beside the published figures.

    python -m larq_bnext.ops                               # every registry model, 224x224
    python -m larq_bnext.ops --models T --image_size 1024
    python -m larq_bnext.ops --models custom --stage_channels 16,32,64,64
    python -m larq_bnext.ops --float                       # real-valued MACs as FLOPs
    python -m larq_bnext.ops --figure docs/comparison/top1_vs_ops.png

prints a Markdown table: BOPs, real-valued MACs, OPs (``BOPs / 64 + FLOPs``) and the degree
of binarization (``BOPs / (64 * OPs)``, exact and from rounded figures as the authors' README
computes it) counted from the built model by :func:`larq_bnext.opcount.count_ops`, and the
registry's published OPs and degree where the model is published (at 224x224, with the
authors' 8-bit convention). ``--figure`` also draws top-1 against OPs beside the published
binary networks and prints the table of design features
(:mod:`larq_bnext.analysis.binary_networks`). See docs/comparison.md.
"""

from __future__ import annotations

from absl import app, flags

from larq_bnext import registry
from larq_bnext._cli import define, deprecated_alias, no_arguments, user_errors_exit

FLAGS = flags.FLAGS

__all__ = ["define_flags", "count_rows", "rows_markdown", "main"]

#: Input side the published figures are counted at.
PUBLISHED_SIZE = 224


def define_flags(flag_values: flags.FlagValues = FLAGS) -> flags.FlagValues:
    """Define the flags (see :mod:`larq_bnext._cli`).

    Args:
        flag_values: the absl flag registry to define them on.

    Returns:
        ``flag_values``.
    """
    f = flag_values
    define(
        f,
        "models",
        [m.model_name for m in registry.list_models()],
        f"Models to count: {registry.models_text()}, or custom (with --stage_channels).",
    )
    define(f, "stage_channels", None, "Channels of a custom BNext.")
    define(f, "image_size", PUBLISHED_SIZE, "Square input side.")
    deprecated_alias("input_size", "image_size", f)
    flags.DEFINE_bool(
        "float",
        False,
        "Count real-valued MACs as FLOPs (Bi-Real Net, ReActNet) instead of as 8-bit MACs, "
        "1/8 FLOP each (the BNext authors' figures).",
        flag_values=f,
    )
    flags.DEFINE_string(
        "figure",
        None,
        "Also write the top-1 against OPs figure here (PNG) and print the design features.",
        flag_values=f,
    )
    return flag_values


def count_rows(
    models, input_size: int = PUBLISHED_SIZE, int8_bits: bool = True, stage_channels=None
):
    """Build each model and count it: ``(display name, OpCount, ModelInfo or None)``.

    Args:
        models: registry names, or ``"custom"`` (a BNext of ``stage_channels``).
        input_size: square input side.
        int8_bits: see :func:`larq_bnext.opcount.count_ops`.
        stage_channels: the channels of ``"custom"``.
    """
    import tensorflow as tf

    from larq_bnext.models import get_model
    from larq_bnext.opcount import count_ops

    rows = []
    for name in models:
        custom = str(name).strip().lower() == "custom"
        info = None if custom else registry.resolve_model(name)
        model = get_model(name, stage_channels, input_shape=(input_size, input_size, 3))
        label = f"custom {tuple(stage_channels)}" if custom else info.display_name
        rows.append((label, count_ops(model, int8_bits=int8_bits), info))
        del model
        tf.keras.backend.clear_session()
    return rows


def rows_markdown(rows, compare: bool = True) -> str:
    """The Markdown table of :func:`count_rows`.

    The degree of binarization three ways: the counted ratio ``BOPs / (64 * OPs)``; the
    README's way from rounded figures (BOPs to 0.01 G, OPs to 0.001 G,
    :func:`larq_bnext.opcount.rounded_binarization`) with this count's OPs; and the same with
    the published OPs.

    Args:
        rows: ``count_rows``' result.
        compare: add the published OPs and degrees (only meaningful at 224x224 with 8-bit
            real-valued MACs).
    """
    from larq_bnext.opcount import rounded_binarization

    lines = [
        "| model | BOPs (M) | real-valued MACs (M) | OPs (G) | published OPs (G) "
        "| binarization | rounded | rounded, published OPs | published |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def percent(value):
        return "" if value is None or value != value else f"{100 * value:.2f} %"

    for label, counts, info in rows:
        ops = info.ops if compare and info else None
        degree = info.binarization / 100 if compare and info and info.binarization else None
        from_published = None if ops is None else rounded_binarization(counts.bops, ops * 1e9)
        lines.append(
            f"| {label} | {counts.bops / 1e6:.2f} | {counts.real_macs / 1e6:.2f} "
            f"| {counts.ops / 1e9:.4f} | {'' if ops is None else f'{ops:.3f}'} "
            f"| {percent(counts.binarization)} | {percent(counts.rounded_binarization)} "
            f"| {percent(from_published)} | {percent(degree)} |"
        )
    return "\n".join(lines)


def main(argv):
    """absl entry point: count the models of the flags and print the table.

    Args:
        argv: the command line left after absl parsed the flags (must hold no arguments).
    """
    no_arguments(argv)
    if FLAGS.image_size < 32:
        raise app.UsageError(f"--image_size must be at least 32, got {FLAGS.image_size}.")
    channels = [int(c) for c in FLAGS.stage_channels] if FLAGS.stage_channels else None
    with user_errors_exit():
        rows = count_rows(FLAGS.models, FLAGS.image_size, not FLAGS.float, channels)
    compare = FLAGS.image_size == PUBLISHED_SIZE and not FLAGS.float
    convention = "real-valued MACs as FLOPs" if FLAGS.float else "real-valued MACs as 8-bit"
    print(f"{FLAGS.image_size}x{FLAGS.image_size} input, {convention}:\n")
    print(rows_markdown(rows, compare))
    if FLAGS.figure:
        from larq_bnext.analysis.binary_networks import features_markdown, plot_top1_vs_ops

        if not compare:
            raise app.UsageError("--figure compares with published figures: 224x224, no --float.")
        print(f"\n{plot_top1_vs_ops(FLAGS.figure, rows)}\n\n{features_markdown(rows)}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
