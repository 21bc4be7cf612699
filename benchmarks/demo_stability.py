"""How stable the digits demo's answer is: over its last epochs and across instruction sets.

Runs ``python -m larq_bnext.train`` (the demo: its defaults) once per seed and per oneDNN
instruction set, each in a fresh process (``native``: the machine's own; ``avx2``:
``ONEDNN_MAX_CPU_ISA=AVX2``, another rounding), at most ``--jobs`` at a time, and prints per
run the test top-1 of the float teacher, the distilled student and the labels-only student,
with the spread (max - min) of each binary student's validation top-1 over the last
``--last`` epochs; then per seed the difference between the instruction sets. Runs whose
``metrics.json`` is already in ``--output_dir`` are read, not trained again; any other is
started (resuming from its backup if a killed run left one), so never point two invocations,
or one and a run still going, at the same ``--output_dir``.

    python benchmarks/demo_stability.py --output_dir=runs/stability
    python benchmarks/demo_stability.py --output_dir=runs/stability_before \
        --flags="--nocosine_to_end --cooldown_epochs=0 --nobn_reestimation"  # as at 083f66a
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time

ISAS = {"native": None, "avx2": "AVX2"}
MODELS = (("teacher", "teacher"), ("student", "distilled"), ("baseline", "labels-only"))


def run_dir(output_dir: str, seed: int, isa: str) -> str:
    """The run directory of one seed and instruction set."""
    return os.path.join(output_dir, f"seed{seed}_{isa}")


def last_spread(history_csv: str, last: int) -> tuple[float, list[float]]:
    """``(max - min, values)`` of the validation top-1 (points) over the last ``last`` epochs."""
    with open(history_csv) as f:
        values = [100 * float(row["val_top1"]) for row in csv.DictReader(f)][-last:]
    return max(values) - min(values), values


def summarize(output_dir: str, seeds, isas, last: int) -> list[dict]:
    """One row per finished run: top-1 of each model and the binary students' spreads."""
    rows = []
    for seed in seeds:
        for isa in isas:
            directory = run_dir(output_dir, seed, isa)
            metrics_json = os.path.join(directory, "metrics.json")
            if not os.path.isfile(metrics_json):
                continue
            with open(metrics_json) as f:
                metrics = json.load(f)
            row = {"seed": seed, "isa": isa, "wall_s": metrics.get("wall_seconds")}
            for key, name in MODELS:
                if metrics.get(key):
                    row[name] = 100 * metrics[key]["top1"]
                if key != "teacher" and metrics.get(key):
                    spread, values = last_spread(os.path.join(directory, key, "history.csv"), last)
                    row[f"{name} spread"] = spread
                    row[f"{name} last"] = values
            rows.append(row)
    return rows


def train(output_dir: str, seed: int, isa: str, extra: list[str]) -> subprocess.Popen:
    """Start the demo for one seed and instruction set in a fresh process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    if ISAS[isa]:
        env["ONEDNN_MAX_CPU_ISA"] = ISAS[isa]
    directory = run_dir(output_dir, seed, isa)
    os.makedirs(directory, exist_ok=True)
    command = [sys.executable, "-m", "larq_bnext.train", f"--seed={seed}"]
    command += [f"--output_dir={directory}", "--verbose=2", *extra]
    log = open(os.path.join(output_dir, f"seed{seed}_{isa}.log"), "w")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="runs/stability")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--isas", default="native,avx2")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--last", type=int, default=5, help="epochs of the spread")
    parser.add_argument("--flags", default="", help="extra flags of every run")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    isas = args.isas.split(",")
    done = {(r["seed"], r["isa"]) for r in summarize(args.output_dir, seeds, isas, args.last)}
    todo = [(s, i) for s in seeds for i in isas if (s, i) not in done]
    running = []
    start = time.time()
    while todo or running:
        running = [p for p in running if p.poll() is None]
        while todo and len(running) < args.jobs:
            running.append(train(args.output_dir, *todo.pop(0), args.flags.split()))
        time.sleep(5)
    rows = summarize(args.output_dir, seeds, isas, args.last)
    print(f"{len(rows)} runs ({time.time() - start:.0f} s); test top-1 (%), spread = max - min")
    print(f"of the validation top-1 over the last {args.last} epochs (points)\n")
    print("| seed | ISA | teacher | distilled | spread | labels-only | spread | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [r.get(k) for k in ("teacher", "distilled", "distilled spread")]
        cells += [r.get(k) for k in ("labels-only", "labels-only spread", "wall_s")]
        text = " | ".join("-" if c is None else f"{c:.1f}" for c in cells)
        print(f"| {r['seed']} | {r['isa']} | {text} |")
    by_run = {(r["seed"], r["isa"]): r for r in rows}
    if len(isas) == 2:
        print(f"\nPer seed, {isas[0]} minus {isas[1]} (points):")
        for seed in seeds:
            a, b = by_run.get((seed, isas[0])), by_run.get((seed, isas[1]))
            if a and b:
                diffs = [f"{name} {a[name] - b[name]:+.1f}" for _, name in MODELS if name in a]
                print(f"  seed {seed}: " + ", ".join(diffs))
    for r in rows:
        for name in ("distilled", "labels-only"):
            if f"{name} last" in r:
                values = " ".join(f"{v:.1f}" for v in r[f"{name} last"])
                print(f"seed {r['seed']} {r['isa']} {name}: last epochs {values}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
