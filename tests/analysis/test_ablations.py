"""run_ablations and python -m larq_bnext.ablate: rows, resuming, the summary, the label draws."""

import csv
import json
import os
import statistics
import subprocess
import sys

import numpy as np
import pytest

from larq_bnext.analysis import AblationMismatchError, read_rows, run_ablations, summarize
from larq_bnext.training import ConfigError, RunConfig
from larq_bnext.training.builders import build_datasets
from larq_bnext.training.data.datasets import load_digits
from larq_bnext.training.data.labels import corrupt_labels, label_subset, restrict_labels
from larq_bnext.training.recipe import resolve

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = dict(
    image_size=8,
    stage_channels=(8, 16),
    epochs=1,
    teacher_epochs=1,
    batch_size=32,
    steps_per_epoch=2,
    verbose=0,
)


# ----------------------------------------------------------------------------- label draws
def test_label_subset_keeps_the_rounded_fraction_of_every_class_seeded():
    labels = np.array([0] * 10 + [1] * 7 + [2] * 3 + [3] * 1)
    kept = label_subset(labels, 0.3, seed=5)
    # round(0.3 * n) per class, at least one: 10 -> 3, 7 -> 2, 3 -> 1, 1 -> 1
    assert np.bincount(labels[kept], minlength=4).tolist() == [3, 2, 1, 1]
    assert len(set(kept.tolist())) == len(kept) and np.all(np.diff(kept) > 0)
    assert np.array_equal(kept, label_subset(labels, 0.3, seed=5))
    others = {tuple(label_subset(labels, 0.3, seed=s)) for s in range(6)}
    assert len(others) > 1  # the seed picks the examples
    assert np.array_equal(label_subset(labels, 1.0), np.arange(len(labels)))
    with pytest.raises(ValueError, match="label_fraction=0"):
        label_subset(labels, 0.0)


def test_corrupt_labels_flips_exactly_the_fraction_to_wrong_classes_seeded():
    labels = np.arange(200) % 5
    noisy, flipped = corrupt_labels(labels, 5, 0.3, seed=1)
    assert flipped.sum() == 60
    assert np.all(noisy[flipped] != labels[flipped])
    assert np.array_equal(noisy[~flipped], labels[~flipped])
    assert noisy.min() >= 0 and noisy.max() <= 4
    again, same = corrupt_labels(labels, 5, 0.3, seed=1)
    assert np.array_equal(again, noisy) and np.array_equal(same, flipped)
    assert not np.array_equal(corrupt_labels(labels, 5, 0.3, seed=2)[1], flipped)
    # every wrong class is drawn (offsets 1..4)
    assert set(((noisy[flipped] - labels[flipped]) % 5).tolist()) == {1, 2, 3, 4}
    clean, none = corrupt_labels(labels, 5, 0.0)
    assert np.array_equal(clean, labels) and not none.any()


def test_restrict_labels_keeps_the_images_of_the_kept_indices_with_true_labels():
    train, _ = load_digits(image_size=8)
    split = restrict_labels(train, fraction=0.25, noise=0.2, seed=3)
    kept = label_subset(train.labels, 0.25, seed=3)
    assert np.array_equal(split.indices, kept)
    assert np.array_equal(split.source.items, train.items[kept])
    assert np.array_equal(split.true_labels, train.labels[kept])
    assert split.source.num_examples == len(kept)
    assert split.flipped.sum() == round(0.2 * len(kept))
    wrong = split.source.labels != split.true_labels
    assert np.array_equal(wrong, split.flipped)


def test_a_run_trains_on_the_selected_examples():
    config = resolve(RunConfig(dataset="digits", label_fraction=0.1, **TINY))
    run_data = build_datasets(config)
    train, _ = load_digits(image_size=8)
    counts = np.bincount(train.labels)
    assert run_data.train_examples == sum(max(1, round(0.1 * c)) for c in counts)
    assert run_data.train_eval is None  # eval_train_split off


def test_label_settings_errors_name_the_field_and_the_fix():
    with pytest.raises(ConfigError, match=r"label_fraction=0 must be in \(0, 1\]") as error:
        RunConfig(label_fraction=0)
    assert error.value.field == "label_fraction"
    with pytest.raises(ConfigError, match=r"label_noise=1.0 must be in \[0, 1\)"):
        RunConfig(label_noise=1.0)
    with pytest.raises(ConfigError, match="dataset=digits or dataset=folder") as error:
        RunConfig(dataset="imagenet2012", label_noise=0.2)
    assert error.value.field == "label_noise"


# ----------------------------------------------------------------------------- the grid
def test_tiny_grid_writes_its_rows_resumes_and_summarizes(tmp_path):
    out = str(tmp_path / "abl")
    base = RunConfig(**TINY)
    variants, seeds = ["labels_only", "no_elm_attention"], [0, 1]
    first = run_ablations(out, variants=variants, seeds=seeds, base=base, label_noise=0.2, log=None)
    assert first.ran == [(v, s) for v in variants for s in seeds]
    rows = read_rows(first.csv)
    assert [(r["variant"], r["seed"]) for r in rows] == first.ran
    for row in rows:
        assert row["label_noise"] == 0.2 and row["epochs"] == 1
        assert row["distilled"] == (row["variant"] != "labels_only")
        assert row["elm_attention"] == (row["variant"] != "no_elm_attention")
        assert row["gap"] == pytest.approx(row["train_top1"] - row["val_top1"])
        metrics = json.load(open(os.path.join(row["directory"], "metrics.json")))
        assert row["val_top1"] == pytest.approx(metrics["student"]["top1"])
        assert row["train_top1"] == pytest.approx(metrics["student"]["train_split_top1"])
        assert 0 <= row["train_top1_given_labels"] <= 1
    assert os.path.isfile(first.plot) and os.path.isfile(first.summary_md)

    # The summary: mean and sample std over the seeds, by hand from the CSV.
    with open(first.summary_csv) as f:
        summary = {r["variant"]: r for r in csv.DictReader(f)}
    for variant in variants:
        values = [r["val_top1"] for r in rows if r["variant"] == variant]
        assert float(summary[variant]["val_top1_mean"]) == pytest.approx(sum(values) / 2)
        assert float(summary[variant]["val_top1_std"]) == pytest.approx(statistics.stdev(values))
        gaps = [r["gap"] for r in rows if r["variant"] == variant]
        assert float(summary[variant]["gap_mean"]) == pytest.approx(statistics.mean(gaps))

    # Again: nothing new is trained, the same rows come back.
    before = open(first.csv).read()
    second = run_ablations(
        out, variants=variants, seeds=seeds, base=base, label_noise=0.2, log=None
    )
    assert second.ran == [] and open(second.csv).read() == before

    # An interrupted run (no metrics.json) is deleted and run again; the others are not.
    stale = os.path.join(out, "labels_only", "seed_1")
    os.remove(os.path.join(stale, "metrics.json"))
    with open(os.path.join(stale, "junk.txt"), "w") as f:
        f.write("left by a kill")
    rows_without = [r for r in rows if (r["variant"], r["seed"]) != ("labels_only", 1)]
    from larq_bnext.analysis.ablation_table import write_rows

    write_rows(first.csv, rows_without)
    third = run_ablations(out, variants=variants, seeds=seeds, base=base, label_noise=0.2, log=None)
    assert third.ran == [("labels_only", 1)]
    assert not os.path.exists(os.path.join(stale, "junk.txt"))
    redone = [r for r in third.rows if (r["variant"], r["seed"]) == ("labels_only", 1)][0]
    old = [r for r in rows if (r["variant"], r["seed"]) == ("labels_only", 1)][0]
    assert redone["val_top1"] == pytest.approx(old["val_top1"])  # deterministic digits runs

    # Other settings in the same folder: refused, naming the fix.
    with pytest.raises(AblationMismatchError, match="use another output_dir"):
        run_ablations(out, variants=variants, seeds=seeds, base=base, log=None)


def test_summarize_by_hand():
    rows = [
        {
            "variant": "x",
            "seed": s,
            "val_top1": v,
            "best_val_top1": v,
            "train_top1": t,
            "gap": t - v,
        }
        for s, v, t in ((0, 0.5, 0.9), (1, 0.7, 1.0), (2, 0.6, 0.8))
    ] + [{"variant": "y", "seed": 0, "val_top1": 0.4, "best_val_top1": None, "train_top1": 0.4}]
    x, y = summarize(rows)
    assert x["runs"] == 3 and x["val_top1_mean"] == pytest.approx(0.6)
    assert x["val_top1_std"] == pytest.approx(0.1)  # sqrt(((-.1)^2 + .1^2 + 0) / 2)
    assert x["gap_mean"] == pytest.approx((0.4 + 0.3 + 0.2) / 3)
    assert y["runs"] == 1 and np.isnan(y["val_top1_std"]) and np.isnan(y["best_val_top1_mean"])


def test_cli_runs_a_tiny_grid_and_refuses_bad_seeds(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    out = tmp_path / "cli"
    common = [sys.executable, "-m", "larq_bnext.ablate", f"--output_dir={out}"]
    tiny = [
        "--variants=labels_only",
        "--epochs=1",
        "--image_size=8",
        "--stage_channels=8,16",
        "--batch_size=32",
        "--steps_per_epoch=2",
        "--label_fraction=0.5",
    ]
    result = subprocess.run(
        [*common, *tiny, "--seeds=4"], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| labels_only (no distillation: labels only) | 1 |" in result.stdout
    assert "1 runs trained, 0 already done" in result.stdout
    (row,) = read_rows(out / "ablation.csv")
    assert row["seed"] == 4 and row["label_fraction"] == 0.5 and row["train_examples"] == 718
    bad = subprocess.run(
        [*common, "--seeds=a"], env=env, capture_output=True, text=True, timeout=600
    )
    assert bad.returncode == 2 and "--seeds=a must be integers" in bad.stderr
