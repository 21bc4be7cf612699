"""benchmarks/demo_stability.py: the spreads and differences it reads from finished runs."""

from __future__ import annotations

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _module():
    path = os.path.join(ROOT, "benchmarks", "demo_stability.py")
    spec = importlib.util.spec_from_file_location("demo_stability_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_run(directory, top1, histories):
    os.makedirs(directory)
    metrics = {"wall_seconds": 300.0}
    for key, value in top1.items():
        metrics[key] = {"top1": value}
    for key, values in histories.items():
        os.makedirs(os.path.join(directory, key))
        with open(os.path.join(directory, key, "history.csv"), "w") as f:
            f.write("epoch,val_top1\n")
            f.writelines(f"{i},{v}\n" for i, v in enumerate(values))
    with open(os.path.join(directory, "metrics.json"), "w") as f:
        json.dump(metrics, f)


def test_spreads_are_max_minus_min_over_the_last_epochs(tmp_path, capsys):
    stability = _module()
    student = [0.5, 0.99, 0.9, 0.925, 0.95, 0.9375, 0.93]  # last 5: 0.9 ... 0.95
    _fake_run(
        tmp_path / "seed0_native",
        {"teacher": 0.97, "student": 0.93, "baseline": 0.94},
        {"student": student, "baseline": [0.94] * 7},
    )
    _fake_run(
        tmp_path / "seed0_avx2",
        {"teacher": 0.975, "student": 0.95, "baseline": 0.94},
        {"student": [0.95] * 7, "baseline": [0.9, 0.94, 0.94, 0.94, 0.94, 0.94, 0.94]},
    )
    rows = stability.summarize(str(tmp_path), [0, 1], ["native", "avx2"], last=5)
    assert [(r["seed"], r["isa"]) for r in rows] == [(0, "native"), (0, "avx2")]
    native, avx2 = rows
    assert abs(native["distilled spread"] - 5.0) < 1e-9  # 95 - 90 points
    assert native["labels-only spread"] == 0.0 and avx2["labels-only spread"] == 0.0
    assert abs(native["distilled"] - 93.0) < 1e-9
    # Both runs are done: main() trains nothing and prints the table and the differences.
    assert stability.main([f"--output_dir={tmp_path}", "--seeds=0"]) == 0
    out = capsys.readouterr().out
    assert "| 0 | native | 97.0 | 93.0 | 5.0 | 94.0 | 0.0 | 300.0 |" in out
    assert "seed 0: teacher -0.5, distilled -2.0, labels-only +0.0" in out
