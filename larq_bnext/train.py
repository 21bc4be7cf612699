r"""Train BNext the paper's way: ``python -m larq_bnext.train [--flags]``.

With no flags it runs the embedded default on the CPU in a few minutes: scikit-learn's
handwritten digits at 32x32, a small float CNN teacher trained first, then a narrow binary
BNext student (stage channels 16-32-64-128, stem stride 1) distilled from it, and the
same student trained on the labels alone; it prints the test top-1 of all three.

ImageNet, BNext-T with the original's recipe (see ``experiments/`` for all sizes)::

    python -m larq_bnext.train --model=tiny --dataset=folder --data_dir=/data/imagenet \
        --epochs=512 --batch_size=512 --output_dir=runs/bnext_tiny

Every choice of the recipe is a flag (``--helpfull`` lists them). Outputs in
``--output_dir``: per trained model (``teacher/``, ``student/``, ``baseline/``) the best and
last weights (``best.weights.h5``, ``last.weights.h5``), TensorBoard logs (``logs/``: loss,
top-1/5, lr, temperature, alpha) and ``history.csv``; a picture of each model's curves per epoch
(``student_curves.png``, ...: loss, top-1, learning rate, temperature, teacher weights);
``metrics.json`` with the final results and ``flags.txt``/``flags.json`` with the flags used.

The flags are generated from the fields of :class:`larq_bnext.training.RunConfig` (same names,
types, defaults, choices; the help is the field's entry in its docstring), so a setting is
written once; the run itself is :func:`larq_bnext.training.run`, callable from Python with the
same settings. The defaults of unset flags (per dataset, and per model from
:mod:`larq_bnext.registry`) are :mod:`larq_bnext.training.recipe`. ``--init_weights`` is the
deprecated spelling of ``--weights``.
"""

from __future__ import annotations

import dataclasses

from absl import app, flags

from larq_bnext._cli import (
    define_config_flags,
    deprecated_alias,
    no_arguments,
    removed_flag,
    user_errors_exit,
)
from larq_bnext.registry import models_text
from larq_bnext.training.checks import ConfigError
from larq_bnext.training.config import RunConfig

__all__ = ["FLAG_NAMES", "config_from_flags", "define_flags", "main"]

FLAGS = flags.FLAGS
#: The flags of this program: the fields of :class:`~larq_bnext.training.RunConfig`.
FLAG_NAMES = tuple(f.name for f in dataclasses.fields(RunConfig))
#: Former spellings, still accepted with a warning: old -> new.
DEPRECATED = {"init_weights": "weights"}
#: Flags of keras-cv's RandAugment option, removed with it: old flag files still parse.
REMOVED = {
    name: "keras-cv's RandAugment option was removed (RandAugment is timm's policy, "
    "--randaugment_policy); remove the flag."
    for name in (
        "randaugment_ops",
        "randaugment_rate",
        "randaugment_magnitude",
        "randaugment_magnitude_stddev",
    )
}


def define_flags(flag_values: flags.FlagValues = FLAGS) -> flags.FlagValues:
    """Define one flag per :class:`~larq_bnext.training.RunConfig` field on ``flag_values``.

    Args:
        flag_values: the absl flag registry to define them on.

    Returns:
        ``flag_values``.
    """
    helps = {"model": f"{models_text()}, or custom (--stage_channels)."}
    define_config_flags(RunConfig, flag_values, helps=helps)
    for old, new in DEPRECATED.items():
        deprecated_alias(old, new, flag_values)
    for name, reason in REMOVED.items():
        removed_flag(name, reason, flag_values)
    return flag_values


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> RunConfig:
    """The :class:`~larq_bnext.training.RunConfig` of parsed flags: each flag to its field.

    Args:
        flag_values: the parsed flags (absl's global ``FLAGS`` by default).

    Raises:
        ConfigError: for a value that cannot work (the message names the flag).
    """
    return RunConfig(**{name: flag_values[name].value for name in FLAG_NAMES})


def main(argv):
    """absl entry point.

    Args:
        argv: the command line left after absl parsed the flags (must hold no arguments).
    """
    no_arguments(argv)
    from larq_bnext.training import run
    from larq_bnext.training.recipe import resolve
    from larq_bnext.training.runtime import distribute

    with user_errors_exit():
        try:
            config = config_from_flags()
            if resolve(config).deterministic:
                # This process is the run's: one op at a time, before TensorFlow starts.
                distribute.one_op_at_a_time()
            run(config)
        except ConfigError as error:  # name the flag as it is spelled on the command line
            raise ConfigError(error.field, f"--{error}") from None


if __name__ == "__main__":
    define_flags()
    app.run(main)
