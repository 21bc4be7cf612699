"""GPU check: BNext-T and BNext-L training images/s and peak memory per precision, with and
without XLA, and how much of the step the convolutions take.

    python benchmarks/gpu_check.py                       # on one GPU: under 8 minutes
    python benchmarks/gpu_check.py --json gpu_check.json --batch 64
    python benchmarks/gpu_check.py --cpu_fallback        # tiny sizes on a CPU (what the tests run)

First, ``predict``'s start-up (``--startup_sizes``, default BNext-T and BNext-L): one photograph
classified with weights on disk, ``--startup_rounds`` fresh processes each (median, min-max,
peak RSS).

Then, for each model (``--sizes``, default BNext-T and BNext-L), precision policy and XLA
off/on, the script builds the distillation training step of ``benchmarks/train_throughput.py``
(student forward, the knowledge-complexity loss, backward, the clip at global norm 5 and AdamW).
Policies: ``released`` (the student float32 and the recipe's teachers, untrained, in
``--teacher_precision=auto``: float16 on a GPU, as the released script ran them; the main
teacher and the first assistant, one curriculum phase), and ``float32``, ``mixed_float16``,
``mixed_bfloat16`` for student and a frozen stand-in teacher alike. It runs the first step,
``--warmup`` steps and ``--steps`` timed steps, and prints:

- images/s (``batch`` over the median step) and the first step (trace, compile, first update);
- peak GPU memory of the configuration (``tf.config.experimental.get_memory_info``, reset
  before each; on a CPU the process's peak RSS so far, which only grows);
- ``conv``: the time of a *convolution replay*, every convolution of the model (stem, binary
  and squeeze-and-excitation) forward and both backward convolutions (input and kernel
  gradients) on tensors of the step's shapes and compute dtype, in one ``tf.function`` (XLA as
  the configuration); ``rest`` is the step minus it: on a GPU, BNext's element-wise chain
  (move, sign, BatchNorm, PReLU, recoupling, SE gating), the optimizer and the loss. The split
  is an estimate: the replay runs the convolutions back to back, without the step's other work
  between them.

A configuration that fails (out of memory, a missing kernel) prints its error and the script
goes on; configurations left when ``--budget_s`` has passed are reported as skipped. Without a
GPU the script refuses to run at ImageNet sizes unless ``--cpu_fallback`` (tiny custom BNext,
32x32 images, batch 2, one step) or ``--allow_cpu`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # Keras 2 on TensorFlow 2.16+ (docs/install.md)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

#: ``released``: the student float32, the recipe's teachers (untrained EfficientNets/ConvNeXt)
#: in ``--teacher_precision=auto`` (float16 on a GPU), as the released script ran them.
POLICIES = ("released", "float32", "mixed_float16", "mixed_bfloat16")
#: The tiny custom BNext of ``--cpu_fallback``.
TINY_CHANNELS = (8, 16, 32)


def _teachers(size, shape, classes, policy):
    """``(assistants, main, teacher_policy)``: a stand-in, or the recipe's teachers as released."""
    import tensorflow as tf

    from larq_bnext.training.method.teachers import default_teachers
    from larq_bnext.training.recipe import model_recipe
    from larq_bnext.training.runtime.precision import resolve_teacher_precision, teacher_policy

    if policy == "released":
        teachers = resolve_teacher_precision("auto", "float32")
        with teacher_policy(teachers):
            assistants, main = default_teachers(model_recipe(size), shape, weights=None)
        return assistants[:1], main, teachers
    inputs = tf.keras.Input(shape)
    pooled = tf.keras.layers.GlobalAveragePooling2D()(inputs)
    teacher = tf.keras.Model(inputs, tf.keras.layers.Dense(classes)(pooled), name="stand_in")
    return [], teacher, policy


def build_step(size, batch, image_size, classes, policy, xla):
    """``(step, model, teacher_policy)``: one training step of the distiller (as
    ``train_throughput``)."""
    import numpy as np
    import tensorflow as tf

    import larq_bnext
    from larq_bnext.training import AdamW, Distiller
    from larq_bnext.training.runtime import distribute

    tf.keras.backend.clear_session()
    distribute.set_mixed_precision("float32" if policy == "released" else policy)
    if policy == "released":
        classes = 1000  # the ImageNet teachers' classes
    larq_bnext.keras2.set_random_seed(0)
    shape = (image_size, image_size, 3)
    if size == "custom":
        student = larq_bnext.get_model(
            "custom",
            TINY_CHANNELS,
            input_shape=shape,
            num_classes=classes,
            classifier_activation=None,
            stem_stride=1,
        )
    else:
        student = larq_bnext.get_model(
            size, input_shape=shape, num_classes=classes, classifier_activation=None
        )
    assistants, teacher, teachers = _teachers(size, shape, classes, policy)
    distiller = Distiller(student, teacher=teacher, assistants=assistants, clip_norm=5.0)
    distiller.compile(optimizer=AdamW(1e-3), jit_compile=xla)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, *shape)).astype("float32"))
    y = tf.constant(rng.integers(0, classes, size=(batch,)))
    iterator = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    distiller.make_train_function()

    def step():
        logs = distiller.train_function(iterator)
        return float(logs["loss"])

    return step, student, teachers


def conv_replay(model, batch, xla):
    """A ``tf.function`` running every convolution of ``model`` forward and backward."""
    import tensorflow as tf

    convs = []
    for layer in model.submodules:
        if not isinstance(layer, tf.keras.layers.Conv2D):
            continue
        in_shape = list(layer.input.shape)
        in_shape[0] = batch
        k = layer.kernel_size[0]
        # BNext's strided binary convolutions pad symmetrically before a "valid" convolution.
        if layer.padding == "valid" and k > 1 and "binary_conv" in layer.name:
            in_shape[1] += 2 * (k // 2)
            in_shape[2] += 2 * (k // 2)
        dtype = tf.as_dtype(layer.compute_dtype)
        x = tf.random.normal(in_shape, dtype=tf.float32)
        w = tf.random.normal(layer.kernel.shape, dtype=tf.float32)
        convs.append((tf.cast(x, dtype), tf.Variable(tf.cast(w, dtype)), layer))

    @tf.function(jit_compile=xla)
    def replay():
        total = []
        for x, w, layer in convs:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.nn.conv2d(
                    x,
                    w,
                    strides=layer.strides[0],
                    padding=layer.padding.upper(),
                    data_format="NHWC",
                )
            dx, dw = tape.gradient(y, [x, w], output_gradients=tf.ones_like(y))
            total.append(tf.reduce_sum(tf.cast(dx[:1, :1, :1], tf.float32)))
            total.append(tf.reduce_sum(tf.cast(dw[:1, :1, :1], tf.float32)))
        return tf.add_n(total)

    def run():
        return float(replay())

    return run, len(convs)


def startup(sizes, rounds, workdir):
    """Rows of ``python -m larq_bnext.predict`` on one photograph with weights on disk, each
    round a fresh process timed from its start to its end (``benchmarks/startup.py`` has the
    CPU comparison with the original). Weights are written by a CPU-only child first."""
    import numpy as np
    from PIL import Image

    image = os.path.join(workdir, "photo.jpg")
    pixels = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image, quality=90)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    rows = []
    for size in sizes:
        weights = os.path.join(workdir, f"bnext_{size}.h5")
        save = (
            "import larq_bnext; larq_bnext.get_model("
            f"{size!r}, weights=None, classifier_activation=None).save_weights({weights!r})"
        )
        cpu_only = {**env, "CUDA_VISIBLE_DEVICES": ""}
        subprocess.run([sys.executable, "-c", save], check=True, env=cpu_only)
        command = [sys.executable, "-m", "larq_bnext.predict", image, "--model", size,
                   f"--weights={weights}", "--top", "1"]  # fmt: skip
        seconds, peaks = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
            _, status, usage = os.wait4(process.pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise RuntimeError(f"predict --model {size} failed ({status})")
            seconds.append(time.perf_counter() - start)
            peaks.append(usage.ru_maxrss / 2**20)
        row = {
            "startup": "predict",
            "size": size,
            "seconds": statistics.median(seconds),
            "spread": [min(seconds), max(seconds)],
            "peak_rss_gib": max(peaks),
            "rounds": rounds,
        }
        print(
            f"predict BNext-{size} (one image, cached weights): {row['seconds']:.2f} s "
            f"(rounds {min(seconds):.2f}-{max(seconds):.2f})  peak RSS {max(peaks):.2f} GiB",
            flush=True,
        )
        rows.append(row)
    return rows


def _timed(fn, warmup, steps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak_memory_gib(gpu):
    import tensorflow as tf

    if gpu:
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_config(size, policy, xla, args, gpu):
    """One row: images/s, first step, peak memory and the convolution split."""
    import tensorflow as tf

    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    start = time.perf_counter()
    step, model, teachers = build_step(size, args.batch, args.image_size, args.classes, policy, xla)
    step()
    first = time.perf_counter() - start
    seconds = _timed(step, args.warmup, args.steps)
    peak = _peak_memory_gib(gpu)
    replay, n_convs = conv_replay(model, args.batch, xla)
    replay()
    conv = _timed(replay, args.warmup, args.steps)
    return {
        "size": size,
        "policy": policy,
        "teacher_policy": teachers,
        "xla": xla,
        "images_per_second": args.batch / seconds,
        "step_seconds": seconds,
        "first_step_seconds": first,
        "peak_memory_gib": peak,
        "peak_memory_kind": "GPU" if gpu else "process RSS",
        "conv_seconds": conv,
        "rest_seconds": max(seconds - conv, 0.0),
        "conv_share": min(conv / seconds, 1.0),
        "convolutions": n_convs,
    }


def _print_row(row):
    print(
        f"{row['size']:7s} {row['policy']:15s} xla={'on ' if row['xla'] else 'off'} "
        f"{row['images_per_second']:9.2f} img/s  first {row['first_step_seconds']:6.1f} s  "
        f"peak {row['peak_memory_gib']:6.2f} GiB ({row['peak_memory_kind']})  "
        f"conv {row['conv_seconds'] * 1e3:8.1f} ms  rest {row['rest_seconds'] * 1e3:8.1f} ms "
        f"({100 * row['conv_share']:.0f}% conv)",
        flush=True,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,large", help="Registry sizes, comma-separated.")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--xla", default="off,on", help="off, on or both (off,on).")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--budget_s", type=float, default=450.0, help="Skip what is left after.")
    parser.add_argument(
        "--cpu_fallback",
        action="store_true",
        help="Tiny sizes for a machine without a GPU (a custom BNext, 32x32, batch 2).",
    )
    parser.add_argument("--allow_cpu", action="store_true", help="Run the given sizes on a CPU.")
    parser.add_argument(
        "--startup_sizes",
        default=None,
        help="Time predict's start-up for these sizes first (default T,L; none in the fallback).",
    )
    parser.add_argument("--startup_rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from larq_bnext.startup import import_tensorflow_quietly

    tf = import_tensorflow_quietly()

    gpu = bool(tf.config.list_physical_devices("GPU"))
    if args.cpu_fallback:
        args.sizes, args.batch, args.image_size, args.classes = "custom", 2, 32, 10
        args.steps, args.warmup = 1, 0
    elif not gpu and not args.allow_cpu:
        parser.error("no GPU found: pass --cpu_fallback (tiny sizes) or --allow_cpu")
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = set(policies) - set(POLICIES)
    if unknown:
        parser.error(f"unknown policies {sorted(unknown)}; use {POLICIES}")
    xlas = [x.strip() == "on" for x in args.xla.split(",") if x.strip()]
    device = "CPU (fallback)"
    if gpu:
        gpu_device = tf.config.list_physical_devices("GPU")[0]
        device = tf.config.experimental.get_device_details(gpu_device).get("device_name", "GPU")
    print(f"device: {device}; batch {args.batch} at {args.image_size}", flush=True)
    started = time.perf_counter()
    if args.startup_sizes is None:
        args.startup_sizes = "" if args.cpu_fallback else "T,L"
    startup_sizes = [s.strip() for s in args.startup_sizes.split(",") if s.strip()]
    startup_rows = []
    if startup_sizes:  # first: before this process holds the GPU's memory
        with tempfile.TemporaryDirectory() as workdir:
            startup_rows = startup(startup_sizes, args.startup_rounds, workdir)
    rows = []
    for size in sizes:
        for policy in policies:
            for xla in xlas:
                if time.perf_counter() - started > args.budget_s:
                    row = {"size": size, "policy": policy, "xla": xla, "skipped": "time budget"}
                    print(f"{size:7s} {policy:15s} xla={xla}: skipped (time budget)", flush=True)
                    rows.append(row)
                    continue
                try:
                    row = run_config(size, policy, xla, args, gpu)
                except (tf.errors.OpError, ValueError, RuntimeError) as error:
                    message = str(error).splitlines()[0][:300]
                    row = {"size": size, "policy": policy, "xla": xla, "error": message}
                    print(f"{size:7s} {policy:15s} xla={xla}: failed: {message}", flush=True)
                else:
                    _print_row(row)
                rows.append(row)
    results = {
        "device": device,
        "batch": args.batch,
        "image_size": args.image_size,
        "tensorflow": tf.__version__,
        "seconds": time.perf_counter() - started,
        "rows": rows,
        "startup": startup_rows,
    }
    print(f"total {results['seconds']:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
