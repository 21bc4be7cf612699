"""Images per second of BNext's distillation training step: Keras (eager, tf.function, XLA)
against a PyTorch reference of the same network on the same machine.

One step = student forward in training mode, the knowledge-complexity distillation loss
against the teacher's logits, backward, gradient clip at global norm 5, and the AdamW update
with the recipe's two decay groups. Both frameworks use the same cheap stand-in teacher
(global average pool + linear, frozen), so the figures compare the BNext step itself; the
cost of a real teacher's forward pass (``--teacher efficientnet_b2``) is measured on its own
(TensorFlow only: torchvision is not a dependency).

    python benchmarks/train_throughput.py                     # BNext-T, 224x224, batch 16
    python benchmarks/train_throughput.py --modes function,torch --steps 5 --json out.json
    python benchmarks/train_throughput.py --size large --batch 64 --modes function,xla \\
        --mixed_precision mixed_float16          # on a GPU (see docs/distributed.md)

Against the ORIGINAL model code (a checkout of github.com/hpi-xnor/BNext, fetched by you,
never vendored; its unused imports are stood in at run time), as users run it: ``--fresh``
starts every side in a fresh process per round (order rotated each round), with each
framework's default threading, and prints medians, the rounds' spread, first step,
construction, peak RSS (``os.wait4``) and the load average (see ``fresh_rounds.py``):

    git clone https://github.com/hpi-xnor/BNext /tmp/BNext
    python benchmarks/train_throughput.py --fresh --rounds 3 --modes function,original \
        --original /tmp/BNext --steps 3 --teacher none --json tiny.json

Without ``--fresh``: ``--interleave`` builds every mode in this process and steps them
round-robin; ``--threads N`` pins both frameworks to N threads (inter-op 1);
``--inter_op_threads N`` sets TensorFlow's inter-op pool alone.
``--isolate`` builds each mode in its own process (one after the other) and steps them
round-robin through pipes, for models that do not fit twice in memory; a worker killed by
the out-of-memory killer is reported as such. The Keras step runs Keras' train function on
one long-lived iterator, as ``fit`` does.
The ``torch`` mode imports ``tests/torch_reference.py`` (run from the repository root); the
``larq_bnext`` package itself never imports torch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # Keras 2 on TensorFlow 2.16+ (docs/install.md)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fresh_rounds  # noqa: E402  (benchmarks/fresh_rounds.py)

MODES = ("eager", "function", "xla", "torch", "original")

# The original imports these but never uses them on the training path; tiny stand-ins are
# written to a temporary directory at run time (real timm/torchvision break beside this torch).
_STUBS = {
    "timm/__init__.py": "",
    "timm/models/__init__.py": "",
    "timm/models/layers.py": (
        "import torch\n"
        "def trunc_normal_(t, *a, **k):\n    return t\n"
        "class DropPath(torch.nn.Identity):\n"
        "    def __init__(self, *a, **k):\n        super().__init__()\n"
    ),
    "torchinfo.py": "def summary(*a, **k):\n    return None\n",
    "einops.py": "def rearrange(*a, **k):\n    raise NotImplementedError('stand-in')\n",
}


def _timed(step, warmup: int, steps: int):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def _summary(name, times, batch, **extra):
    median = sorted(times)[len(times) // 2]
    return {
        "mode": name,
        "step_seconds_median": median,
        "step_seconds": times,
        "images_per_second": batch / median,
        **extra,
    }


def keras_step(size, batch, image_size, mode, mixed_precision, classes, timings=None):
    import numpy as np
    import tensorflow as tf

    import larq_bnext
    from larq_bnext.training import AdamW, Distiller
    from larq_bnext.training.runtime import distribute

    distribute.set_mixed_precision(mixed_precision)
    larq_bnext.keras2.set_random_seed(0)
    start = time.perf_counter()
    student = larq_bnext.get_model(
        size,
        input_shape=(image_size, image_size, 3),
        num_classes=classes,
        classifier_activation=None,
    )
    if timings is not None:
        timings["construction_seconds"] = time.perf_counter() - start
    inputs = tf.keras.Input((image_size, image_size, 3))
    pooled = tf.keras.layers.GlobalAveragePooling2D()(inputs)
    teacher = tf.keras.Model(inputs, tf.keras.layers.Dense(classes)(pooled), name="stand_in")
    distiller = Distiller(student, teacher=teacher, clip_norm=5.0)
    distiller.compile(
        optimizer=AdamW(1e-3),
        run_eagerly=mode == "eager",
        jit_compile=mode == "xla",
    )
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, image_size, image_size, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, classes, size=(batch,)))
    # As `fit` runs it: Keras' train function on one long-lived iterator. (`train_on_batch`
    # builds a dataset and an iterator per call, and deleting them stalled some calls by
    # ~2 s on this machine: that is not part of training.)
    iterator = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    distiller.make_train_function()

    def step():
        logs = distiller.train_function(iterator)
        return {name: float(value) for name, value in logs.items()}

    compile_start = time.perf_counter()
    step()
    first = time.perf_counter() - compile_start
    return step, first


def teacher_forward(name, batch, image_size, mixed_precision):
    import numpy as np
    import tensorflow as tf

    from larq_bnext.training import imagenet_teacher
    from larq_bnext.training.runtime import distribute

    distribute.set_mixed_precision(mixed_precision)
    teacher = imagenet_teacher(name, input_shape=(image_size, image_size, 3), weights=None)
    x = tf.constant(np.random.default_rng(0).normal(size=(batch, image_size, image_size, 3)))
    x = tf.cast(x, tf.float32)
    call = tf.function(teacher.logits)
    call(x)
    return lambda: call(x).numpy()


def torch_step(size, batch, image_size, classes, threads, timings=None):
    import torch

    from larq_bnext import registry
    from tests.torch_reference import TorchBNext

    torch.manual_seed(0)
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    model = TorchBNext(registry.resolve_model(size).stage_channels, num_classes=classes).train()
    if timings is not None:
        timings["construction_seconds"] = time.perf_counter() - start
    teacher = torch.nn.Linear(3, classes).eval()
    decay = [p for p in model.parameters() if p.dim() == 4]
    other = [p for p in model.parameters() if p.dim() != 4]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 1e-8}, {"params": other, "weight_decay": 1e-3}],
        lr=1e-3,
    )
    x = torch.randn(batch, 3, image_size, image_size)
    y = torch.randint(0, classes, (batch,))
    del y  # the distillation loss needs no labels

    def step():
        with torch.no_grad():
            teacher_logits = teacher(x.mean(dim=(2, 3)))
        logits = model(x)
        log_p = torch.log_softmax(logits, dim=-1)
        per_teacher = -(torch.softmax(teacher_logits, -1) * log_p).sum(-1, keepdim=True)
        alpha = torch.softmax(per_teacher.detach(), dim=-1)
        loss = (alpha * per_teacher).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    start = time.perf_counter()
    step()
    return step, time.perf_counter() - start, torch.__version__, torch.get_num_threads()


def _import_original(checkout):
    """Import ``src/bnext.py`` and ``utils/KD_loss.py`` of a checkout of hpi-xnor/BNext."""
    import importlib.util
    import tempfile

    checkout = os.path.abspath(checkout)
    for part in ("src/bnext.py", "utils/KD_loss.py"):
        if not os.path.isfile(os.path.join(checkout, part)):
            raise SystemExit(
                f"--original {checkout!r} has no {part}: pass the root of a checkout of "
                "github.com/hpi-xnor/BNext (git clone https://github.com/hpi-xnor/BNext)."
            )
    stubs = tempfile.mkdtemp(prefix="bnext_stubs_")
    for name, text in _STUBS.items():
        path = os.path.join(stubs, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    sys.path.insert(0, stubs)
    modules = []
    for name, part in (("original_bnext", "src/bnext.py"), ("original_kd", "utils/KD_loss.py")):
        spec = importlib.util.spec_from_file_location(name, os.path.join(checkout, part))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules.append(module)
    return modules


def original_step(checkout, size, batch, image_size, classes, threads, timings=None):
    """The original's training step: its model, its ``DistributionLoss``, its two AdamW
    decay groups (4-D or ``binary_conv`` parameters at 1e-8, the rest at 1e-3) and
    ``clip_grad_norm_(5)``; the same stand-in teacher as the rewrite's step."""
    import contextlib
    import io

    import torch

    bnext, kd_loss = _import_original(checkout)
    torch.manual_seed(0)
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        model = bnext.BNext(num_classes=classes, size=size).train()
    if timings is not None:
        timings["construction_seconds"] = time.perf_counter() - start
    teacher = torch.nn.Linear(3, classes).eval()
    decay = [p for n, p in model.named_parameters() if p.dim() == 4 or "binary_conv" in n]
    ids = {id(p) for p in decay}
    other = [p for p in model.parameters() if id(p) not in ids]
    optimizer = torch.optim.AdamW(
        [{"params": other, "weight_decay": 1e-3}, {"params": decay, "weight_decay": 1e-8}],
        lr=1e-3,
    )
    criterion = kd_loss.DistributionLoss()
    x = torch.randn(batch, 3, image_size, image_size)

    def step():
        with torch.no_grad():
            teacher_logits = teacher(x.mean(dim=(2, 3)))
        loss = criterion(model(x), teacher_logits)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5)
        optimizer.step()
        optimizer.zero_grad()

    start = time.perf_counter()
    step()
    return step, time.perf_counter() - start, torch.__version__, torch.get_num_threads()


def _build(mode, args):
    """``(step, extra)`` of one mode: its training step and facts about it."""
    timings = {}
    if mode in ("torch", "original"):
        make = torch_step if mode == "torch" else original_step
        head = (args.original,) if mode == "original" else ()
        step, first, version, threads = make(
            *head, args.size, args.batch, args.image_size, args.classes, args.threads, timings
        )
        return step, {"first_step_seconds": first, "threads": threads, "torch": version, **timings}
    step, first = keras_step(
        args.size, args.batch, args.image_size, mode, args.mixed_precision, args.classes, timings
    )
    return step, {"first_step_seconds": first, **timings}


def _release_free_memory():
    """Hand the allocator's free pages back to the system (glibc), so that an idle worker
    of ``--isolate`` does not hold the peak of its last step while the other one runs."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _worker(mode, args):
    """``--isolate``: build ``mode``, then run one step per ``step`` line read on stdin."""
    step, extra = _build(mode, args)
    _release_free_memory()
    print(json.dumps(extra), flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        start = time.perf_counter()
        step()
        seconds = time.perf_counter() - start
        _release_free_memory()
        print(json.dumps({"seconds": seconds}), flush=True)


class _Isolated:
    """A mode built and stepped in its own process (``--isolate``)."""

    def __init__(self, mode, argv):
        import subprocess

        command = [sys.executable, os.path.abspath(__file__), *argv, "--worker", mode]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.extra = self._reply()

    def _died(self):
        return RuntimeError(
            f"The worker of mode {self.process.args[-1]!r} died (exit code "
            f"{self.process.poll()}; -9 is usually the kernel's out-of-memory killer): run "
            "the modes one at a time, or with a smaller --batch."
        )

    def _reply(self):
        line = self.process.stdout.readline()
        if not line:
            raise self._died()
        return json.loads(line)

    def __call__(self):
        try:
            self.process.stdin.write("step\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise self._died() from None
        return self._reply()["seconds"]

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def _report(row):
    print(
        f"{row['mode']:9s} {row['images_per_second']:8.2f} img/s  (median step "
        f"{row['step_seconds_median']:.2f} s, first {row['first_step_seconds']:.1f} s)",
        flush=True,
    )


def _threads(tf, args):
    """Both frameworks' threads as --threads says, else TensorFlow's inter-op pool as asked."""
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    elif args.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", help="BNext size (tiny, small, middle, large).")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=3, help="Timed steps per mode.")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed steps after the first.")
    parser.add_argument("--modes", default=",".join(MODES), help=f"Any of {MODES}.")
    parser.add_argument("--teacher", default="efficientnet_b2", help="'none' to skip.")
    parser.add_argument("--mixed_precision", default="float32")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="Threads of both frameworks (torch.set_num_threads and TensorFlow's intra-op "
        "pool; inter-op 1); 0 keeps each framework's default.",
    )
    parser.add_argument(
        "--inter_op_threads",
        type=int,
        default=0,
        help="TensorFlow's inter-op threads without --threads (0: TensorFlow's default, as "
        "`python -m larq_bnext.train` runs; 1: one op at a time, as with --deterministic).",
    )
    parser.add_argument(
        "--original",
        default=None,
        help="Root of a checkout of github.com/hpi-xnor/BNext: adds the 'original' mode "
        "(its model code, loss and optimizer groups).",
    )
    parser.add_argument("--json", default=None, help="Write the results here.")
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="Build every mode first, then time them round-robin (fairer on a shared machine).",
    )
    parser.add_argument(
        "--isolate",
        action="store_true",
        help="With --interleave: each mode in its own process, built one after the other "
        "(BNext-L in both frameworks does not fit 24 GiB in one process).",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="As users run it: every mode in a fresh process per round (construction, first "
        "step and peak RSS per side), the rounds' order rotated; prints medians and spreads.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of --fresh.")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker or args.child:
        import tensorflow as tf

        _threads(tf, args)
        if args.child:
            return fresh_rounds.child(args.child, args, _build, _timed)
        return _worker(args.worker, args)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.original and "original" not in modes:
        modes.append("original")
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; use {MODES}")
    if "original" in modes and not args.original:
        parser.error("mode 'original' needs --original PATH (a checkout of hpi-xnor/BNext)")
    if args.fresh:
        child_argv = [a for a in (argv if argv is not None else sys.argv[1:])]
        return fresh_rounds.main(os.path.abspath(__file__), child_argv, modes, args)

    import tensorflow as tf

    _threads(tf, args)
    results = {
        "model": f"BNext-{args.size}",
        "batch": args.batch,
        "image_size": args.image_size,
        "mixed_precision": args.mixed_precision,
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
            "tensorflow": tf.__version__,
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
            "threads": args.threads or "default",
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        },
        "rows": [],
    }
    built = {}
    for mode in modes:
        if args.interleave and args.isolate:
            worker_argv = [a for a in (argv if argv is not None else sys.argv[1:])]
            worker = _Isolated(mode, worker_argv)
            if "torch" in worker.extra:
                results["machine"]["torch"] = worker.extra.pop("torch")
            built[mode] = (worker, worker.extra)
            continue
        step, extra = _build(mode, args)
        if "torch" in extra:
            results["machine"]["torch"] = extra.pop("torch")
        if not args.interleave:
            row = _summary(mode, _timed(step, args.warmup, args.steps), args.batch, **extra)
            results["rows"].append(row)
            _report(row)
            tf.keras.backend.clear_session()
        else:
            built[mode] = (step, extra)
    if args.interleave:
        # Round-robin: every mode runs once per round, so a change in the machine's load
        # (a shared machine) hits all modes alike.
        times = {mode: [] for mode in built}
        for _ in range(args.warmup):
            for step, _ in built.values():
                step()
        for _ in range(args.steps):
            for mode, (step, _) in built.items():
                start = time.perf_counter()
                seconds = step()
                # An isolated worker reports its own step time (no pipe round trip).
                if not isinstance(step, _Isolated):
                    seconds = time.perf_counter() - start
                times[mode].append(seconds)
        for mode, (step, extra) in built.items():
            if isinstance(step, _Isolated):
                step.close()
            row = _summary(mode, times[mode], args.batch, interleaved=True, **extra)
            results["rows"].append(row)
            _report(row)
    if args.teacher != "none":
        call = teacher_forward(args.teacher, args.batch, args.image_size, args.mixed_precision)
        row = _summary(f"teacher:{args.teacher}", _timed(call, 1, args.steps), args.batch)
        results["rows"].append(row)
        print(f"{row['mode']} forward {row['images_per_second']:.2f} img/s", flush=True)
    by_mode = {row["mode"]: row["images_per_second"] for row in results["rows"]}
    for base in ("original", "torch"):
        if base not in by_mode:
            continue
        label = "the original" if base == "original" else "the rewrite"
        ratios = {
            mode: by_mode[mode] / by_mode[base]
            for mode in modes
            if mode not in ("torch", "original")
        }
        results[f"ratio_to_{base}"] = ratios
        for mode, ratio in ratios.items():
            print(f"{mode:9s} / {base:8s} = {ratio:.2f}  (PyTorch side: {label})")
    results["machine"]["load_average_end"] = os.getloadavg()
    print("machine:", json.dumps(results["machine"]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
