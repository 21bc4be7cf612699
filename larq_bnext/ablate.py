r"""Ablations over seeds: ``python -m larq_bnext.ablate``.

Trains each variant (full BNext, ELM-Attention off, information recoupling off, labels only,
teacher weighting ``batch_mean``/``constant``) with each seed on the digits demo's settings,
each run into ``<output_dir>/<variant>/seed_<n>``, and writes ``ablation.csv`` (one row per
variant and seed), ``summary.csv``/``summary.md`` (mean ± std per variant) and
``ablation.png``. The same command run again skips the finished runs (and reruns an
interrupted one from its start). This program is :func:`larq_bnext.analysis.run_ablations`
behind flags.

Examples::

    python -m larq_bnext.ablate --seeds=0,1,2 --output_dir=runs/ablations
    # Distillation against the labels alone with a tenth of the labels:
    python -m larq_bnext.ablate --variants=bnext,labels_only --label_fraction=0.1 \
        --output_dir=runs/ablations_labels10
"""

from __future__ import annotations

from absl import app, flags

from larq_bnext._cli import define, define_config_flags, no_arguments, user_errors_exit

FLAGS = flags.FLAGS

#: The demo settings a command line may change, passed to every variant's RunConfig.
BASE_FLAGS = ("epochs", "teacher_epochs", "batch_size", "steps_per_epoch", "image_size")


def define_flags(flag_values: flags.FlagValues = FLAGS) -> flags.FlagValues:
    """Define this program's flags on ``flag_values`` (only when it runs as a program).

    The settings passed to every variant are the training run's flags of the same names
    (:class:`~larq_bnext.training.RunConfig`'s fields), unset by default: the demo's.

    Args:
        flag_values: the absl flag registry.

    Returns:
        ``flag_values``.
    """
    from larq_bnext.analysis.ablations import VARIANTS
    from larq_bnext.training.config import RunConfig

    f = flag_values
    define(f, "output_dir", "runs/ablations", "The ablation's folder.")
    flags.DEFINE_list(
        "variants",
        list(VARIANTS),
        f"Variants, in table order: some of {', '.join(VARIANTS)}.",
        flag_values=f,
    )
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of every variant.", flag_values=f)
    shared = (*BASE_FLAGS, "stage_channels", "label_fraction", "label_noise")
    define_config_flags(RunConfig, f, names=shared, defaults=dict.fromkeys(shared))
    flags.DEFINE_bool("plot", True, "Draw ablation.png.", flag_values=f)
    return flag_values


def main(argv):
    """absl entry point.

    Args:
        argv: the command line left after absl parsed the flags (must hold no arguments).
    """
    no_arguments(argv)
    with user_errors_exit():
        from larq_bnext.analysis import run_ablations
        from larq_bnext.training import RunConfig

        settings = {name: FLAGS[name].value for name in BASE_FLAGS if FLAGS[name].value}
        if FLAGS.stage_channels:
            settings["stage_channels"] = FLAGS.stage_channels
        try:
            seeds = [int(s) for s in FLAGS.seeds]
        except ValueError:
            raise ValueError(
                f"--seeds={','.join(FLAGS.seeds)} must be integers, e.g. 0,1,2."
            ) from None
        result = run_ablations(
            FLAGS.output_dir,
            variants=FLAGS.variants,
            seeds=seeds,
            base=RunConfig(verbose=0, **settings),
            label_fraction=FLAGS.label_fraction,
            label_noise=FLAGS.label_noise,
            plot=FLAGS.plot,
        )
        with open(result.summary_md) as f:
            print(f.read(), end="")
        print(
            f"{len(result.ran)} runs trained, {len(result.rows) - len(result.ran)} already "
            f"done; {result.seconds:.0f} s. Rows: {result.csv}"
        )


if __name__ == "__main__":
    define_flags()
    app.run(main)
