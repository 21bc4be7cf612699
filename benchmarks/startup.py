"""Start-up: the seconds a user waits for one photograph, beside the original in PyTorch.

    python benchmarks/startup.py                  # 3 rounds, BNext-T and BNext-L (~3 min quiet)
    python benchmarks/startup.py --rounds 5 --sizes T --json startup.json
    python benchmarks/startup.py --baseline /tmp/main_copy   # interleaved with another checkout

Every case runs in a fresh process per round, in an order rotated each round so that no case
always runs first, as a user would start it:

* ``predict``: ``python -m larq_bnext.predict IMAGE --model S --weights=FILE`` with converted
  weights on disk (the cached ``weights="imagenet"`` case), timed from the start of the process
  to its end, TensorFlow's import included;
* ``torch``: the reference doing the same job: import torch, build the original ``BNext`` from
  its own source (``src/bnext.py`` of hpi-xnor/BNext, read from ``--original``: a checkout or
  the bare git mirror; the packages it imports but never uses are stand-ins, as in
  ``benchmarks/original/_original.py``), load the same weights as a state dict, decode, resize
  and crop the image (PIL and NumPy: the original's eval transform), one forward pass;
* ``load``: inside a process, ``larq_bnext.BNext<S>(weights=FILE)`` alone (``torch-load``: the
  original's construction and ``load_state_dict``);
* ``phases`` (not compared): one process that times each step of ``predict`` on its own (import
  TensorFlow, import larq_bnext, build, load, decode, first call, second call), to show where
  the seconds go.

With ``--baseline DIR`` (another checkout, e.g. ``git archive main | tar -x -C DIR``), the
``predict``, ``load`` and ``phases`` cases of that checkout run in the same rounds, interleaved,
and the table gives the ratios now/baseline of wall and CPU seconds: on a busy machine the
ratios are the sturdier figures.

Wall seconds are medians over rounds with their min-max; CPU seconds (user + system, from
``os.wait4``) are less sensitive to other work on the machine; peak RSS is the child's
``ru_maxrss`` (the parent never imports a framework, so its size at the fork does not count)
or, in-process, ``VmHWM``. Each round records the load average. The weights are made once in
``--workdir``: the original's random initial state dict (``torch.save``) and its conversion
with ``larq_bnext.models.convert_checkpoint``, so both sides load the same numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time

SCRIPT = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(SCRIPT))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from fresh_rounds import _spread, own_peak_rss_gib  # noqa: E402

MIRROR = "/work/.mirror/hpi-xnor+BNext/repo"
SIZES = {"T": "tiny", "S": "small", "M": "middle", "L": "large"}
#: Goals of issue #34 (seconds, on the 2-core development machine).
GOALS = {("predict", "T"): 5.0, ("predict", "L"): 9.0, ("load", "L"): 4.0}
_TAG = "STARTUP_RESULT "


# ---------------------------------------------------------------------------------------------
# Children
# ---------------------------------------------------------------------------------------------
def _emit(**result):
    result["vm_hwm_gib"] = own_peak_rss_gib()
    print(_TAG + json.dumps(result), flush=True)


def _original_bnext(workdir):
    """The original's ``bnext`` module, from ``workdir/original/`` (see :func:`prepare`)."""
    sys.path[:0] = [os.path.join(workdir, "original"), os.path.join(workdir, "stand_ins")]
    import bnext

    return bnext


def _torch_image(path, side=224, resize=235):
    """The original's eval transform with PIL and NumPy: shorter side to 235 (bicubic),
    centre crop 224, ImageNet mean and std, NCHW."""
    import numpy as np
    import torch
    from PIL import Image

    image = Image.open(path).convert("RGB")
    w, h = image.size
    scale = resize / min(w, h)
    image = image.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
    w, h = image.size
    left, top = (w - side) // 2, (h - side) // 2
    x = np.asarray(image.crop((left, top, left + side, top + side)), np.float32) / 255.0
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225])
    return torch.from_numpy(x.astype(np.float32).transpose(2, 0, 1)[None])


def child_torch(args, only_load=False):
    """Build the original, load the state dict, classify the image (or only build and load)."""
    start = time.perf_counter()
    import torch

    bnext = _original_bnext(args.workdir)
    built, cpu = time.perf_counter(), time.process_time()
    model = bnext.BNext(num_classes=1000, size=SIZES[args.size])
    state = torch.load(_files(args)["torch"], map_location="cpu", weights_only=True)
    model.load_state_dict(state["state_dict"])
    model.eval()
    loaded = time.perf_counter()
    if only_load:
        _emit(seconds=loaded - built, cpu_seconds=time.process_time() - cpu)
        return
    with torch.no_grad():
        logits = model(_torch_image(args.image))
    top = int(logits.argmax())
    print(f"top-1 class {top}", flush=True)
    _emit(seconds=time.perf_counter() - start, top1=top)


def child_load(args):
    """``larq_bnext.BNext<S>(weights=FILE)`` in a process that has imported larq_bnext."""
    import larq_bnext

    builder = getattr(larq_bnext, f"BNext{args.size}")
    start, cpu = time.perf_counter(), time.process_time()
    builder(weights=_files(args)["keras"], classifier_activation=None)
    _emit(seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu)


def child_phases(args):
    """Each step of ``predict`` timed on its own (wall and CPU seconds)."""
    phases = {}
    clock = [time.perf_counter(), time.process_time()]

    def mark(name):
        now = [time.perf_counter(), time.process_time()]
        phases[name] = [now[0] - clock[0], now[1] - clock[1]]
        clock[:] = now

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    import tensorflow as tf

    mark("import tensorflow")
    from larq_bnext import models, predict
    from larq_bnext.preprocessing import decode_and_center_crop

    mark("import larq_bnext.predict")
    try:
        from larq_bnext.models.construction import initial_values_skipped
    except ImportError:  # --repo of a version before it
        initial_values_skipped = contextlib.nullcontext

    try:
        from larq_bnext.models.construction import values_from_file  # noqa: F401
    except ImportError:  # --repo of a version before it: build, then load
        with initial_values_skipped():
            model = models.get_model(args.size, weights=None, classifier_activation=None)
        mark("build (no initial values)")
        from larq_bnext.weights.loading import load_keras_weights

        load_keras_weights(model, _files(args)["keras"])
        mark("load weights")
    else:  # variables created with the file's values: building is loading
        model = models.get_model(
            args.size, weights=_files(args)["keras"], classifier_activation=None
        )
        mark("build with the file's values")
    x = decode_and_center_crop(predict._read(args.image, None), 224)
    x = tf.stack([x])
    mark("read and decode image")
    model(x, training=False).numpy()
    mark("first call")
    model(x, training=False).numpy()
    mark("second call")
    _emit(phases=phases)


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------
def _files(args):
    name = SIZES[args.size]
    return {
        "torch": os.path.join(args.workdir, f"bnext_{name}_original.pth.tar"),
        "keras": os.path.join(args.workdir, f"bnext_{name}_converted.h5"),
    }


def _git_show(repo, path):
    return subprocess.run(
        ["git", "-C", repo, "show", f"HEAD:{path}"], check=True, capture_output=True
    ).stdout


def prepare(args):
    """Write the original's source, stand-ins, an image and the weights into ``--workdir``."""
    os.makedirs(os.path.join(args.workdir, "original"), exist_ok=True)
    source = os.path.join(args.original, "src", "bnext.py")
    if os.path.isfile(source):
        with open(source, "rb") as f:
            text = f.read()
    else:
        text = _git_show(args.original, "src/bnext.py")
    with open(os.path.join(args.workdir, "original", "bnext.py"), "wb") as f:
        f.write(text)
    sys.path.insert(0, os.path.join(ROOT, "benchmarks", "original"))
    from _original import _write_stand_ins

    _write_stand_ins(os.path.join(args.workdir, "stand_ins"))
    if not os.path.exists(args.image):
        import numpy as np
        from PIL import Image

        pixels = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(args.image, quality=90)
    for size in args.sizes:
        files = _files(argparse.Namespace(**{**vars(args), "size": size}))
        if not os.path.exists(files["keras"]):
            command = [sys.executable, SCRIPT, *_common(args), "--child", "fixture"]
            env = {**os.environ, "PYTHONPATH": ROOT, "PYTHONDONTWRITEBYTECODE": "1"}
            subprocess.run([*command, "--size", size], check=True, env=env)


def child_fixture(args):
    """The original's random initial state dict and its Keras conversion."""
    import torch

    files = _files(args)
    torch.manual_seed(0)
    model = _original_bnext(args.workdir).BNext(num_classes=1000, size=SIZES[args.size])
    torch.save({"state_dict": model.state_dict()}, files["torch"])
    from larq_bnext.models import convert_checkpoint

    convert_checkpoint(files["torch"], files["keras"], size=SIZES[args.size])


# ---------------------------------------------------------------------------------------------
# Rounds
# ---------------------------------------------------------------------------------------------
def _common(args):
    return ["--workdir", args.workdir, "--image", args.image, "--original", args.original,
            "--repo", args.repo]  # fmt: skip


def _command(case, size, args):
    if case == "predict":
        weights = _files(argparse.Namespace(**{**vars(args), "size": size}))["keras"]
        return [sys.executable, "-m", "larq_bnext.predict", args.image, "--model", size,
                f"--weights={weights}", "--top", "1"]  # fmt: skip
    child = {"torch": "torch", "load": "load", "torch-load": "torch_load", "phases": "phases"}
    return [sys.executable, SCRIPT, *_common(args), "--size", size, "--child", child[case]]


def run_case(case, size, args, repo=None):
    """One fresh process: wall seconds from its start to its end, CPU seconds, peak RSS.

    ``repo``: the larq_bnext checkout it imports (default ``--repo``).
    """
    path = os.pathsep.join([repo or args.repo, os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    # cwd outside any checkout: python -m puts the working directory before PYTHONPATH.
    process = subprocess.Popen(
        _command(case, size, args), stdout=subprocess.PIPE, text=True, env=env, cwd=args.workdir
    )
    output = process.stdout.read()
    process.stdout.close()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    row = {
        "case": case,
        "size": size,
        "repo": "baseline" if repo and repo != args.repo else "current",
        "process_seconds": wall,
        "process_cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_gib": usage.ru_maxrss / 2**20,
        "load_average": load,
        "exit": os.waitstatus_to_exitcode(status),
    }
    for line in output.splitlines():
        if line.startswith(_TAG):
            row.update(json.loads(line[len(_TAG) :]))
    if case in ("predict", "torch"):
        row["seconds"], row["cpu_seconds"] = wall, row["process_cpu_seconds"]
    if row["exit"] != 0:
        row["failed"] = output[-2000:]
    return row


def summarize(rows, args):
    """Per (case, size): medians, spreads, peak RSS, ratio to the reference, goal."""
    table = []
    reference = {"predict": "torch", "load": "torch-load"}
    baseline = [r for r in rows if r.get("repo") == "baseline"]
    rows = [r for r in rows if r.get("repo") != "baseline"]
    for size in args.sizes:
        for case in ("predict", "torch", "load", "torch-load"):
            done = [r for r in rows if (r["case"], r["size"]) == (case, size) and "seconds" in r]
            if not done:
                continue
            before = [
                r for r in baseline if (r["case"], r["size"]) == (case, size) and "seconds" in r
            ]
            seconds = [r["seconds"] for r in done]
            entry = {
                "case": case,
                "size": size,
                "seconds": statistics.median(seconds),
                "spread": _spread(seconds),
                "cpu_seconds": statistics.median(r["cpu_seconds"] for r in done),
                "peak_rss_gib": max(r.get("vm_hwm_gib") or r["peak_rss_gib"] for r in done),
            }
            ref = [
                r["seconds"] for r in rows if (r["case"], r["size"]) == (reference.get(case), size)
            ]
            if ref and "seconds" in entry:
                entry["ratio_to_reference"] = entry["seconds"] / statistics.median(ref)
            if before:
                entry["baseline_seconds"] = statistics.median(r["seconds"] for r in before)
                entry["baseline_spread"] = _spread([r["seconds"] for r in before])
                entry["baseline_cpu_seconds"] = statistics.median(r["cpu_seconds"] for r in before)
                entry["baseline_peak_rss_gib"] = max(
                    r.get("vm_hwm_gib") or r["peak_rss_gib"] for r in before
                )
                entry["ratio_to_baseline"] = entry["seconds"] / entry["baseline_seconds"]
                entry["cpu_ratio_to_baseline"] = (
                    entry["cpu_seconds"] / entry["baseline_cpu_seconds"]
                )
            goal = GOALS.get((case, size))
            if goal is not None:
                entry["goal_seconds"] = goal
                entry["goal_met"] = entry["seconds"] <= goal
            table.append(entry)
    phases = {}
    for label, source in (("", rows), (" (baseline)", baseline)):
        for size in args.sizes:
            done = [
                r["phases"]
                for r in source
                if (r["case"], r["size"]) == ("phases", size) and "phases" in r
            ]
            if done:
                phases[size + label] = {
                    name: [statistics.median(p[name][i] for p in done) for i in (0, 1)]
                    for name in done[0]
                }
    return table, phases


def print_table(table, phases, loads):
    print(f"\n{'case':22s} {'median s':>8s} {'min-max':>13s} {'CPU s':>6s} {'peak RSS':>9s} "
          f"{'x ref':>6s}  goal")  # fmt: skip
    for e in table:
        label = {
            "predict": f"predict BNext-{e['size']}",
            "torch": f"original BNext-{e['size']} (torch)",
            "load": f"BNext{e['size']}(weights=h5)",
            "torch-load": f"original build+load {e['size']}",
        }[e["case"]]
        ratio = f"{e['ratio_to_reference']:6.2f}" if "ratio_to_reference" in e else "      "
        goal = ""
        if "goal_seconds" in e:
            goal = f"<= {e['goal_seconds']:.0f} s: {'met' if e['goal_met'] else 'NOT met'}"
        print(f"{label:22s} {e['seconds']:8.2f} {e['spread'][0]:6.2f}-{e['spread'][1]:<6.2f} "
              f"{e['cpu_seconds']:6.2f} {e['peak_rss_gib']:6.2f} GiB {ratio}  {goal}")  # fmt: skip
        if "baseline_seconds" in e:
            b = e["baseline_spread"]
            print(f"{'  baseline':22s} {e['baseline_seconds']:8.2f} {b[0]:6.2f}-{b[1]:<6.2f} "
                  f"{e['baseline_cpu_seconds']:6.2f} {e['baseline_peak_rss_gib']:6.2f} GiB "
                  f"        now/baseline: wall {e['ratio_to_baseline']:.2f}, "
                  f"CPU {e['cpu_ratio_to_baseline']:.2f}")  # fmt: skip
    for size, steps in phases.items():
        print(f"\nwhere predict BNext-{size}'s seconds go (medians, wall / CPU):")
        for name, (wall, cpu) in steps.items():
            print(f"  {name:28s} {wall:6.2f} s / {cpu:6.2f} s")
    print(f"\nload average (1 min) at each process: {', '.join(f'{x:.2f}' for x in loads)}")
    if loads and max(loads) > (os.cpu_count() or 1):
        print("The machine was busy (load above its CPU count): wall seconds are inflated; "
              "CPU seconds and the ratios to the baseline are the sturdier figures.")  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="T,L", help="BNext sizes: T, S, M, L.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default="predict,torch,load,torch-load,phases")
    parser.add_argument("--original", default=MIRROR, help="hpi-xnor/BNext: checkout or git dir")
    parser.add_argument("--workdir", default=os.path.join("/tmp", "larq_bnext_startup"))
    parser.add_argument("--image", default=None, help="default: a 500x375 JPEG in --workdir")
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--repo", default=ROOT, help="the larq_bnext checkout to time (before/after)"
    )
    parser.add_argument(
        "--baseline",
        default=None,
        help="another larq_bnext checkout (e.g. `git archive main | tar -x -C DIR`) whose "
        "predict, load and phases cases run interleaved with --repo's in every round",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--size", default="T", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.workdir, args.repo = os.path.abspath(args.workdir), os.path.abspath(args.repo)
    args.image = os.path.abspath(args.image or os.path.join(args.workdir, "photo.jpg"))
    if args.child:
        children = {
            "torch": child_torch,
            "torch_load": lambda a: child_torch(a, only_load=True),
            "load": child_load,
            "phases": child_phases,
            "fixture": child_fixture,
        }
        return children[args.child](args)
    args.sizes = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    prepare(args)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    jobs = [(case, size, None) for size in args.sizes for case in cases]
    if args.baseline:
        args.baseline = os.path.abspath(args.baseline)
        ours = ("predict", "load", "phases")
        jobs += [(c, s, args.baseline) for s in args.sizes for c in cases if c in ours]
    rows = []
    for index in range(args.rounds):
        shift = index % len(jobs)
        for case, size, repo in jobs[shift:] + jobs[:shift]:
            row = run_case(case, size, args, repo)
            rows.append({**row, "round": index + 1})
            shown = row.get("seconds", row["process_seconds"])
            status = "" if "failed" not in row else f"  FAILED {row['failed'][-300:]}"
            cpu = row.get("cpu_seconds", row["process_cpu_seconds"])
            tag = "" if repo is None else " (baseline)"
            print(f"round {index + 1}: {case + tag:21s} {size}  {shown:6.2f} s  CPU {cpu:6.2f} s  "
                  f"peak "
                  f"{row['peak_rss_gib']:.2f} GiB  load {row['load_average']:.2f}{status}",
                  flush=True)  # fmt: skip
    table, phases = summarize(rows, args)
    print_table(table, phases, [r["load_average"] for r in rows])
    results = {
        "started": started,
        "repo": args.repo,
        "baseline": args.baseline,
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "rounds": rows,
        "table": table,
        "phases": phases,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
