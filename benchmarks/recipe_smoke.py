"""Smoke-test the real ImageNet recipes end to end, offline: every ``experiments/*.flags``.

    python benchmarks/recipe_smoke.py [--sizes=tiny,small,middle,large] [--image_size=224]
        [--steps=2] [--batch_size=4] [--out=/tmp/recipe_smoke] [--data_dir=DIR]

For each size it runs ``python -m larq_bnext.train --flagfile=experiments/bnext_<size>.flags``
on a generated ImageNet-format JPEG folder
(:mod:`larq_bnext.training.data.synthetic_imagenet`; written into ``<out>/data`` unless
``--data_dir`` is given) with the recipe's own teacher
architectures built untrained (``--teacher_weights=none``: no download), shrunk only in
length: ``--epochs`` = one per curriculum phase (at least 2), ``--steps_per_epoch``,
``--batch_size``. Each run is

1. **killed** (SIGKILL) as soon as the backup of its first epoch is complete,
2. **restarted** with the same command, which must resume at epoch 2 from the backup and
   finish (the curriculum then moves through every phase),
3. **evaluated** with ``python -m larq_bnext.evaluate`` on the saved ``best.weights.h5``,
   whose top-1 must equal the run's own final evaluation (the student's best epoch is its
   last here only if the top-1 rose; the check compares against the best epoch's score).

It prints and writes (``<out>/recipe_smoke.json``) per size: wall and CPU seconds and peak
resident memory of each process, the seconds per step Keras reported for every epoch, the
curriculum phase (active assistant) per epoch from ``history.csv``, and whether the
checkpoint, the resume and the evaluation worked. Run it ``nice``'d on a shared machine;
the models are full size, so building them takes most of the time on a CPU.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

#: Assistants per size (the curriculum's phases), as in the flag files.
PHASES = {"tiny": 1, "small": 1, "middle": 2, "large": 3}
_STEP_TIME = re.compile(r"(\d+)/\d+ - .*? - (\d+(?:\.\d+)?)(s|ms)/step")


def _env():
    return dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


def _launch(args, log_path):
    log = open(log_path, "w")  # noqa: SIM115 - closed by _wait
    process = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return process, log, time.time()


def _wait(process, log, started, kill_when=None, timeout=7200):
    """Wait for ``process`` (killing it once ``kill_when()`` is true); returns its usage."""
    killed = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if kill_when is not None and not killed and kill_when():
            os.kill(process.pid, signal.SIGKILL)
            killed = True
        if time.time() - started > timeout:
            os.kill(process.pid, signal.SIGKILL)
        time.sleep(0.2)
    process.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    return {
        "returncode": process.returncode,
        "killed": killed,
        "wall_s": round(time.time() - started, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),  # KiB on Linux
    }


def _backup_done(run_dir):
    """A complete (manifested) backup checkpoint exists somewhere under ``run_dir``."""
    return bool(glob.glob(os.path.join(run_dir, "**", "*.manifest.json"), recursive=True))


def _step_times(log_path):
    """Seconds per step Keras printed for each epoch (``verbose=2``)."""
    with open(log_path) as f:
        text = f.read()
    times = []
    for match in _STEP_TIME.finditer(text):
        value = float(match.group(2)) / (1000.0 if match.group(3) == "ms" else 1.0)
        times.append(round(value, 3))
    return times


def _history(run_dir):
    path = os.path.join(run_dir, "student", "history.csv")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def smoke(size, args, data_dir):
    """Kill, resume and evaluate one size's recipe; returns its measurements."""
    run_dir = os.path.join(args.out, f"bnext_{size}")
    if os.path.exists(run_dir):
        raise SystemExit(f"{run_dir} exists: remove it or choose another --out.")
    os.makedirs(run_dir)
    epochs = max(2, PHASES[size])
    train = [
        "larq_bnext.train",
        f"--flagfile={os.path.join(REPO, 'experiments', f'bnext_{size}.flags')}",
        f"--data_dir={data_dir}",
        "--teacher_weights=none",
        f"--image_size={args.image_size}",
        f"--epochs={epochs}",
        f"--steps_per_epoch={args.steps}",
        f"--batch_size={args.batch_size}",
        f"--output_dir={run_dir}",
        "--verbose=2",
    ]
    result = {"size": size, "epochs": epochs, "steps_per_epoch": args.steps}
    print(f"== bnext_{size}: {epochs} epochs x {args.steps} steps, batch {args.batch_size}")
    first_log = os.path.join(run_dir, "train_killed.log")
    result["killed_run"] = _wait(
        *_launch(train, first_log), kill_when=lambda: _backup_done(run_dir)
    )
    result["checkpoint_written"] = _backup_done(run_dir)
    print(f"   killed run: {result['killed_run']}", flush=True)
    second_log = os.path.join(run_dir, "train_resumed.log")
    result["resumed_run"] = _wait(*_launch(train, second_log))
    with open(second_log) as f:
        resumed_text = f.read()
    epochs_seen = [int(e) for e in re.findall(r"Epoch (\d+)/\d+", resumed_text)]
    result["resumed_epochs"] = epochs_seen
    result["resumed"] = bool(epochs_seen) and epochs_seen[0] > 1
    result["step_seconds"] = {
        "killed_run": _step_times(first_log),
        "resumed_run": _step_times(second_log),
    }
    rows = _history(run_dir)
    result["history_epochs"] = [int(r["epoch"]) for r in rows]
    result["phase_per_epoch"] = [
        int(float(r["curriculum_phase"])) if r.get("curriculum_phase") else 0 for r in rows
    ]
    print(f"   resumed run: {result['resumed_run']}, epochs {epochs_seen}", flush=True)
    if result["resumed_run"]["returncode"] != 0:
        print(resumed_text[-3000:])
        result["ok"] = False
        return result
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    result["teachers"] = metrics.get("teachers")
    result["train_top1"] = metrics["student"]["top1"]
    result["best_val_top1"] = metrics["student"]["best_val_top1"]
    result["backup_removed"] = not _backup_done(run_dir)
    scores = os.path.join(run_dir, "evaluate.json")
    evaluate = [
        "larq_bnext.evaluate",
        f"--model={size}",
        f"--weights={os.path.join(run_dir, 'student', 'best.weights.h5')}",
        "--dataset=folder",
        f"--data_dir={data_dir}",
        f"--image_size={args.image_size}",
        f"--batch_size={args.batch_size}",
        f"--output={scores}",
    ]
    result["evaluate_run"] = _wait(*_launch(evaluate, os.path.join(run_dir, "evaluate.log")))
    evaluated_ok = result["evaluate_run"]["returncode"] == 0
    if evaluated_ok:
        with open(scores) as f:
            result["evaluate_top1"] = json.load(f)["top1"]
        evaluated_ok = abs(result["evaluate_top1"] - result["best_val_top1"]) < 1e-6
    result["evaluated"] = evaluated_ok
    result["ok"] = bool(
        result["checkpoint_written"]
        and result["resumed"]
        and evaluated_ok
        and result["backup_removed"]
        and result["phase_per_epoch"] == _expected_phases(epochs, PHASES[size])
    )
    print(f"   evaluate: {result['evaluate_run']}; ok={result['ok']}", flush=True)
    return result


def _expected_phases(epochs, assistants):
    from larq_bnext.training.method.distiller import curriculum_phase

    return [curriculum_phase(e, epochs, assistants) for e in range(epochs)]


def main(argv=None):
    """Command line entry point.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,small,middle,large")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--out", default="/tmp/recipe_smoke")
    parser.add_argument("--data_dir", default=None, help="An image folder; default generated.")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    data_dir = args.data_dir
    if data_dir is None:
        from larq_bnext.training.data.synthetic_imagenet import write_imagenet_folder

        data_dir = os.path.join(args.out, "data")
        if not os.path.isdir(os.path.join(data_dir, "train")):
            # Enough images for every step of one epoch without repeating within it.
            per_class = max(2, -(-args.steps * args.batch_size // 4))
            write_imagenet_folder(data_dir, classes=4, train_per_class=per_class, seed=0)
    results = []
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        start = time.time()
        results.append(smoke(size, args, data_dir))
        results[-1]["total_wall_s"] = round(time.time() - start, 1)
        with open(os.path.join(args.out, "recipe_smoke.json"), "w") as f:
            json.dump(results, f, indent=2)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps(results, indent=2))
    print(f"CPU seconds of all runs: {children.ru_utime + children.ru_stime:.0f}")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
