"""Ablations over seeds: :func:`run_ablations` trains a grid of variants, one run per seed.

The variants (:data:`VARIANTS`) switch one thing of a base
:class:`~larq_bnext.training.RunConfig` (the digits demo by default): ELM-Attention off,
information recoupling off, distillation off (``teachers="none"``: the labels alone), or the
teacher weighting (``per_sample``, the paper's, is the full model's). Every run is
:func:`larq_bnext.training.run` of its own config in ``<output_dir>/<variant>/seed_<n>``,
without the labels-only baseline (that is the ``labels_only`` variant) and with
``eval_train_split`` on (the clean train-split top-1, for the train-validation gap).

Written in ``output_dir`` after every run: ``ablation.csv`` (one row per variant and seed:
:data:`~larq_bnext.analysis.ablation_table.ROW_FIELDS`), ``summary.csv`` and ``summary.md``
(mean ± std per variant); at the end ``ablation.png``.

Resumable: a variant/seed whose row is in ``ablation.csv``, or whose run left its
``metrics.json``, is not run again (its settings must be those asked for, else an
:class:`AblationMismatchError`); an interrupted run (a directory without ``metrics.json``)
is deleted and run again from its start, so every row comes from one uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time

from larq_bnext.analysis.ablation_table import (
    plot_summary,
    read_rows,
    summarize,
    write_rows,
    write_summary,
)
from larq_bnext.training.config import RunConfig

__all__ = [
    "VARIANTS",
    "VARIANT_NOTES",
    "Ablation",
    "AblationMismatchError",
    "run_ablations",
    "variant_config",
    "config_digest",
    "row_from_metrics",
]

#: The variants: the fields each one changes in the base config.
VARIANTS = {
    "bnext": {},
    "no_elm_attention": {"elm_attention": False},
    "no_info_recoupling": {"info_recoupling": False},
    "labels_only": {"teachers": "none"},
    "batch_mean": {"distill_weighting": "batch_mean"},
    "constant": {"distill_weighting": "constant"},
}
#: What each variant is, for the tables.
VARIANT_NOTES = {
    "bnext": "full: ELM-Attention, recoupling, distilled, per_sample",
    "no_elm_attention": "ELM-Attention off",
    "no_info_recoupling": "information recoupling off",
    "labels_only": "no distillation: labels only",
    "batch_mean": "teacher weighting batch_mean",
    "constant": "teacher weighting constant",
}
# Fields that do not change what a run computes (where it writes, how much it prints).
_NOT_SETTINGS = ("output_dir", "verbose")


class AblationMismatchError(ValueError):
    """An output folder holds a run of the same variant and seed with other settings."""


@dataclasses.dataclass(frozen=True)
class Ablation:
    """What :func:`run_ablations` gives.

    Args:
        rows: one dict per variant and seed (the CSV's rows, in grid order).
        summary: per variant, ``runs`` and the mean and std of each score.
        ran: the ``(variant, seed)`` pairs trained by this call (the others were done).
        csv: ``ablation.csv``.
        summary_csv: ``summary.csv``.
        summary_md: ``summary.md``.
        plot: ``ablation.png`` (``None`` when not drawn).
        seconds: wall time of this call.
    """

    rows: list
    summary: list
    ran: list
    csv: str
    summary_csv: str
    summary_md: str
    plot: str | None
    seconds: float


def variant_config(
    base: RunConfig,
    variant: str,
    seed: int,
    output_dir: str,
    label_fraction: float | None = None,
    label_noise: float | None = None,
) -> RunConfig:
    """The config of one run of the grid.

    Args:
        base: the settings every variant shares.
        variant: a key of :data:`VARIANTS`.
        seed: the run's seed.
        output_dir: the ablation's folder (the run goes to ``<variant>/seed_<seed>`` in it).
        label_fraction: overrides the base's, for every variant.
        label_noise: likewise.

    Raises:
        ValueError: for an unknown variant.
        larq_bnext.training.ConfigError: for settings that cannot work.
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}: use some of {', '.join(VARIANTS)}.")
    changes = dict(VARIANTS[variant])
    if label_fraction is not None:
        changes["label_fraction"] = label_fraction
    if label_noise is not None:
        changes["label_noise"] = label_noise
    return dataclasses.replace(
        base,
        **changes,
        seed=int(seed),
        output_dir=os.path.join(output_dir, variant, f"seed_{int(seed)}"),
        baseline=False,
        eval_train_split=True,
        backup=False,  # an interrupted run restarts from its beginning
    )


def config_digest(config) -> str:
    """A short digest of the settings of a run (a config or its ``flags.json``), which a
    finished run must match to be reused: every field but ``output_dir`` and ``verbose``.

    Args:
        config: a :class:`~larq_bnext.training.RunConfig` or its ``to_dict()``.
    """
    values = _as_recorded(config.to_dict() if isinstance(config, RunConfig) else dict(config))
    values = {k: v for k, v in values.items() if k not in _NOT_SETTINGS}
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _as_recorded(values: dict) -> dict:
    """Settings spelled as runs recorded them before ``init_weights`` became ``weights`` and
    the teacher weighting a recipe default (digits: ``per_sample``), so that their digests and
    rows stay valid."""
    values = dict(values)
    if "weights" in values:
        values["init_weights"] = values.pop("weights")
    if values.get("distill_weighting") is None and values.get("dataset") == "digits":
        values["distill_weighting"] = "per_sample"
    return values


def row_from_metrics(metrics: dict, flags: dict, variant: str, directory: str) -> dict:
    """The CSV row of one finished run from its ``metrics.json`` and ``flags.json``.

    Args:
        metrics: the run's ``metrics.json``.
        flags: the run's ``flags.json`` (the config as given).
        variant: the variant's name.
        directory: the run's folder.
    """
    flags = _as_recorded(flags)
    student = metrics["student"]
    val, train = student["top1"], student.get("train_split_top1")
    teacher = metrics.get("teacher")
    return {
        "variant": variant,
        "seed": flags["seed"],
        "val_top1": val,
        "best_val_top1": student.get("best_val_top1"),
        "train_top1": train,
        "gap": None if train is None else train - val,
        "train_top1_given_labels": student.get("train_split_top1_given_labels"),
        "fit_train_top1": student.get("train_top1"),
        "teacher_val_top1": None if teacher is None else teacher["top1"],
        "distilled": bool(student.get("distilled")),
        "elm_attention": flags["elm_attention"],
        "info_recoupling": flags["info_recoupling"],
        "teachers": flags["teachers"],
        "distill_weighting": flags["distill_weighting"],
        "label_fraction": flags.get("label_fraction", 1.0),
        "label_noise": flags.get("label_noise", 0.0),
        "epochs": student["epochs"],
        "train_examples": metrics["train_examples"],
        "train_seconds": student["train_seconds"],
        "wall_seconds": metrics["wall_seconds"],
        "config_digest": config_digest(flags),
        "directory": directory,
    }


def _finished(config: RunConfig, variant: str, recorded: dict) -> dict | None:
    """The row of a finished run of ``config`` (from the CSV or its files), else ``None``."""
    digest = config_digest(config)
    key = (variant, config.seed)
    where = config.output_dir
    mismatch = AblationMismatchError(
        f"{where} already holds a run of {variant}, seed {config.seed} with other settings: "
        "use another output_dir for these settings, or delete that run to redo it."
    )
    if key in recorded:
        if recorded[key]["config_digest"] != digest:
            raise mismatch
        return recorded[key]
    metrics_path = os.path.join(where, "metrics.json")
    if not os.path.isfile(metrics_path):
        return None
    with open(os.path.join(where, "flags.json")) as f:
        flags = json.load(f)
    if config_digest(flags) != digest:
        raise mismatch
    with open(metrics_path) as f:
        metrics = json.load(f)
    return row_from_metrics(metrics, flags, variant, where)


def run_ablations(
    output_dir: str = "runs/ablations",
    variants=tuple(VARIANTS),
    seeds=(0, 1, 2),
    base: RunConfig | None = None,
    label_fraction: float | None = None,
    label_noise: float | None = None,
    plot: bool = True,
    log=print,
) -> Ablation:
    """Train every variant with every seed (skipping finished ones); write the records.

    Args:
        output_dir: the ablation's folder.
        variants: keys of :data:`VARIANTS`, in the order of the tables.
        seeds: the seeds (each run's ``seed``: initialisation, data order, label draws).
        base: the settings every variant shares; ``None``: the digits demo
            (``RunConfig(verbose=0)``: 30 epochs, the float CNN teacher).
        label_fraction: train every variant on this stratified fraction of the labels.
        label_noise: replace this fraction of every variant's training labels.
        plot: draw ``ablation.png`` at the end.
        log: called with one line per run (``None``: silent).

    Returns:
        An :class:`Ablation`.

    Raises:
        AblationMismatchError: a finished run in ``output_dir`` has other settings.
        ValueError: for an unknown variant or no seeds.
    """
    from larq_bnext.training.runner import run

    start = time.time()
    base = RunConfig(verbose=0) if base is None else base
    variants, seeds = list(variants), [int(s) for s in seeds]
    if not variants or not seeds:
        raise ValueError("run_ablations needs at least one variant and one seed.")
    grid = [
        (
            variant,
            seed,
            variant_config(base, variant, seed, output_dir, label_fraction, label_noise),
        )
        for variant in variants
        for seed in seeds
    ]
    os.makedirs(output_dir, exist_ok=True)
    paths = {
        name: os.path.join(output_dir, name)
        for name in ("ablation.csv", "summary.csv", "summary.md", "ablation.png")
    }
    recorded = {}
    if os.path.isfile(paths["ablation.csv"]):
        recorded = {(r["variant"], r["seed"]): r for r in read_rows(paths["ablation.csv"])}
    done = {(v, s): _finished(c, v, recorded) for v, s, c in grid}  # mismatches fail first
    ran = []
    for index, (variant, seed, config) in enumerate(grid, 1):
        if done[variant, seed] is not None:
            continue
        if os.path.isdir(config.output_dir):
            shutil.rmtree(config.output_dir)  # an interrupted run: start it again
        if log:
            log(f"[{index}/{len(grid)}] {variant}, seed {seed} -> {config.output_dir}")
        result = run(config)
        with open(result.metrics_json) as f:
            metrics = json.load(f)
        done[variant, seed] = row_from_metrics(
            metrics, config.to_dict(), variant, config.output_dir
        )
        ran.append((variant, seed))
        _write(paths, [r for r in done.values() if r is not None], variants)
        if log:
            row = done[variant, seed]
            log(
                f"    val top-1 {row['val_top1']:.4f}, train top-1 {row['train_top1']:.4f}, "
                f"{row['wall_seconds']:.0f} s"
            )
    rows = [done[v, s] for v, s, _ in grid]
    # Rows of other variants or seeds recorded before stay in the CSV.
    kept = [r for key, r in recorded.items() if key not in done]
    summary = _write(paths, kept + rows, variants)
    figure = plot_summary(summary, paths["ablation.png"]) if plot and summary else None
    return Ablation(
        rows=rows,
        summary=[s for s in summary if s["variant"] in variants],
        ran=ran,
        csv=paths["ablation.csv"],
        summary_csv=paths["summary.csv"],
        summary_md=paths["summary.md"],
        plot=figure,
        seconds=round(time.time() - start, 1),
    )


def _write(paths: dict, rows: list, variants: list) -> list:
    rank = {v: i for i, v in enumerate(variants)}
    rows = sorted(rows, key=lambda r: (rank.get(r["variant"], len(rank)), r["variant"], r["seed"]))
    write_rows(paths["ablation.csv"], rows)
    summary = summarize(rows)
    write_summary(summary, paths["summary.csv"], paths["summary.md"], VARIANT_NOTES)
    return summary
