"""``train_throughput.py --fresh``: each side in a fresh process per round, as users run it.

Every round starts one child process per mode (``function``, ``original``, ...), in an order
rotated each round so that no side always runs first on a warming or loading machine. A child
builds its side (the model construction is timed on its own), runs the first step (trace and
first update for Keras), ``--warmup`` untimed steps and ``--steps`` timed steps, and prints one
JSON line. Peak memory is the child's whole process (framework, model, optimizer state and the
step's activations): its ``VmHWM`` since exec, and ``os.wait4``'s ``ru_maxrss`` (which Linux
starts at the parent's size at the fork, so the parent stays small) as a check.

Printed per mode: the median over rounds of the round's median step as images per second, the
spread (min-max) of the rounds, the first step and the construction (median and min-max), the
peak RSS (largest over rounds); the ratio of each mode to ``original`` per round (same round,
neighbouring processes) with its median and spread; the load average at the start and the end.
Threading is each framework's default unless ``--threads`` is given.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time

_TAG = "FRESH_RESULT "


def own_peak_rss_gib():
    """This process's peak resident memory since it was exec'd (``VmHWM``), or ``None``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20  # kB
    except OSError:
        return None
    return None


def child(mode, args, build, timed):
    """In the child: build ``mode``, time its steps, print one tagged JSON line."""
    step, extra = build(mode, args)
    times = timed(step, args.warmup, args.steps)
    extra.pop("torch", None)
    result = {"mode": mode, "step_seconds": times, "vm_hwm_gib": own_peak_rss_gib(), **extra}
    print(_TAG + json.dumps(result), flush=True)


def _run_child(script, child_argv, mode):
    command = [sys.executable, script, *child_argv, "--child", mode]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    process.stdout.close()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss (KiB on Linux) is the child's high-water mark, but Linux starts it at the
    # parent's resident size when the child is forked; the parent here is small (it never
    # imports a framework). The child's own VmHWM, reset at exec, is used where it has one.
    peak_gib = usage.ru_maxrss / 2**20
    for line in output.splitlines():
        if line.startswith(_TAG):
            result = json.loads(line[len(_TAG) :])
            result["ru_maxrss_gib"] = peak_gib
            result["peak_rss_gib"] = result.get("vm_hwm_gib") or peak_gib
            return result
    reason = "killed (-9: usually the out-of-memory killer)" if process.returncode == -9 else ""
    return {"mode": mode, "failed": process.returncode, "reason": reason, "peak_rss_gib": peak_gib}


def _spread(values):
    return [min(values), max(values)] if values else None


def summarize(rounds, modes, batch):
    """Medians and spreads per mode, and per-round ratios to ``original``."""
    summary = {}
    for mode in modes:
        done = [r[mode] for r in rounds if mode in r and "failed" not in r[mode]]
        if not done:
            summary[mode] = {"failed": [r[mode] for r in rounds if mode in r]}
            continue
        step_medians = [statistics.median(r["step_seconds"]) for r in done]
        ips = [batch / s for s in step_medians]
        row = {
            "rounds": len(done),
            "images_per_second": batch / statistics.median(step_medians),
            "images_per_second_spread": _spread(ips),
            "step_seconds_median": statistics.median(step_medians),
            "peak_rss_gib": max(r["peak_rss_gib"] for r in done),
        }
        for key in ("first_step_seconds", "construction_seconds"):
            values = [r[key] for r in done if key in r]
            if values:
                row[key] = statistics.median(values)
                row[key + "_spread"] = _spread(values)
        summary[mode] = row
    ratios = {}
    for mode in modes:
        if mode == "original":
            continue
        per_round = [
            statistics.median(r["original"]["step_seconds"])
            / statistics.median(r[mode]["step_seconds"])
            for r in rounds
            if all(m in r and "failed" not in r[m] for m in (mode, "original"))
        ]
        if per_round:
            ratios[mode] = {"median": statistics.median(per_round), "spread": _spread(per_round)}
    return summary, ratios


def _fmt_spread(values, digits=2):
    return "-".join(f"{v:.{digits}f}" for v in values) if values else "n/a"


def main(script, child_argv, modes, args):
    """Run ``--rounds`` rounds of fresh children and print/save the summary."""
    load_start = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    rounds = []
    for index in range(args.rounds):
        shift = index % len(modes)
        order = modes[shift:] + modes[:shift]
        results = {}
        for mode in order:
            result = _run_child(script, child_argv, mode)
            results[mode] = result
            if "failed" in result:
                print(f"round {index + 1}: {mode} failed {result}", flush=True)
            else:
                median = statistics.median(result["step_seconds"])
                print(
                    f"round {index + 1}: {mode:9s} {args.batch / median:7.2f} img/s  first "
                    f"{result['first_step_seconds']:.1f} s  construction "
                    f"{result.get('construction_seconds', float('nan')):.1f} s  peak RSS "
                    f"{result['peak_rss_gib']:.2f} GiB  load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
        rounds.append(results)
    summary, ratios = summarize(rounds, modes, args.batch)
    load_end = os.getloadavg()
    print(f"\nBNext-{args.size}, batch {args.batch} at {args.image_size}, {args.rounds} rounds:")
    for mode, row in summary.items():
        if "failed" in row:
            print(f"{mode:9s} failed: {row['failed']}")
            continue
        print(
            f"{mode:9s} {row['images_per_second']:7.2f} img/s (rounds "
            f"{_fmt_spread(row['images_per_second_spread'])})  first step "
            f"{row.get('first_step_seconds', float('nan')):.1f} s "
            f"({_fmt_spread(row.get('first_step_seconds_spread'), 1)})  construction "
            f"{row.get('construction_seconds', float('nan')):.1f} s "
            f"({_fmt_spread(row.get('construction_seconds_spread'), 1)})  peak RSS "
            f"{row['peak_rss_gib']:.2f} GiB"
        )
    for mode, ratio in ratios.items():
        print(f"{mode} / original = {ratio['median']:.2f} (rounds {_fmt_spread(ratio['spread'])})")
    print(f"load average: start {load_start}, end {load_end}")
    results = {
        "model": f"BNext-{args.size}",
        "batch": args.batch,
        "image_size": args.image_size,
        "mixed_precision": args.mixed_precision,
        "rounds": rounds,
        "summary": summary,
        "ratio_to_original": ratios,
        "machine": {
            "started": started,
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "threads": args.threads or "default",
            "inter_op_threads": getattr(args, "inter_op_threads", 0) or "default",
            "load_average_start": load_start,
            "load_average_end": load_end,
        },
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results
