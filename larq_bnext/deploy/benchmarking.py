"""Measure converted models (latency with LCE's interpreter, file size) against the float TFLite
form of the same architecture and larq-zoo's QuickNet family, and write the table.

The published top-1 of the BNexts comes from :mod:`larq_bnext.registry`.
"""

from __future__ import annotations

import csv
import os
import platform
import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from larq_bnext.deploy.catalog import BNEXT_NAMES, PUBLISHED_TOP1, QUICKNET_NAMES
from larq_bnext.deploy.inference import binarize_for_demo
from larq_bnext.deploy.interpreter import lce_interpreter
from larq_bnext.deploy.lce import BINARY_CONV_OP, convert, convert_float, ideal_size, op_counts
from larq_bnext.deploy.plots import plot_benchmark
from larq_bnext.models.bnext import get_model
from larq_bnext.registry import resolve_model

__all__ = [
    "build_model",
    "benchmark",
    "read_table",
    "write_table",
]


def build_model(name: str, input_size: int = 224) -> tf.keras.Model:
    """A randomly initialised model of :data:`PUBLISHED_TOP1` for benchmarking.

    BNext models get their temperatures set below the threshold (:func:`binarize_for_demo`);
    QuickNets come from ``larq_zoo.sota`` with ``weights=None``. Latency and file size do
    not depend on the weight values.

    Args:
        name: ``"bnext_tiny"`` ... ``"bnext_large"`` (any size alias) or ``"quicknet_small"``,
            ``"quicknet"``, ``"quicknet_large"``.
        input_size: square input resolution.
    """
    shape = (input_size, input_size, 3)
    if name in QUICKNET_NAMES:
        import larq_zoo

        builder = {
            "quicknet_small": larq_zoo.sota.QuickNetSmall,
            "quicknet": larq_zoo.sota.QuickNet,
            "quicknet_large": larq_zoo.sota.QuickNetLarge,
        }[name]
        return builder(input_shape=shape, weights=None)
    model = get_model(_canonical_name(name), input_shape=shape, weights=None)
    return binarize_for_demo(model)


def _canonical_name(name: str) -> str:
    if name in QUICKNET_NAMES:
        return name
    try:
        return resolve_model(name).model_name
    except ValueError:
        raise ValueError(
            f"Unknown model {name!r}; use one of {', '.join(PUBLISHED_TOP1)}."
        ) from None


def benchmark(
    models: Sequence[str] = BNEXT_NAMES + QUICKNET_NAMES,
    float_models: Sequence[str] = BNEXT_NAMES[:1],
    input_size: int = 224,
    threads: Iterable[int] | None = None,
    repeats: int = 10,
    warmup: int = 2,
    use_indirect_bgemm: bool = True,
    output_dir: str | os.PathLike | None = None,
    log=print,
    build_fn=None,
    append: bool = False,
    flatbuffer_dir: str | os.PathLike | None = None,
) -> list[dict]:
    """Convert and time models; optionally write a table (CSV + markdown) and PNG plots.

    Every model is built with random weights (:func:`build_model`), converted with LCE
    (:func:`convert`; binary layers as ``LceBconv2d``) and timed with LCE's interpreter for
    each thread count: warm single-image runs, taken round-robin over all the models
    (``repeats`` rounds) so that other load on the machine affects them alike. Models in
    ``float_models`` are also converted in float (:func:`convert_float`) and timed with
    TFLite's float kernels (XNNPACK), as the "same network without binarization" baseline.

    Args:
        models: names from :data:`PUBLISHED_TOP1` (BNext size aliases accepted).
        float_models: BNext models to also measure in float32.
        input_size: square input resolution.
        threads: thread counts; default ``(1, os.cpu_count())``.
        repeats: timed runs per measurement (the median is reported).
        warmup: untimed runs before timing.
        use_indirect_bgemm: LCE binary kernel choice (see :func:`lce_interpreter`).
        output_dir: where to write ``benchmark.csv``, ``benchmark.md`` and the plots; ``None``
            writes nothing.
        log: a ``print``-like callable for progress, or ``None``.
        build_fn: ``build_fn(name, input_size) -> tf.keras.Model`` replacing
            :func:`build_model` (e.g. to time fine-tuned models or custom widths).
        append: keep the rows of an existing ``benchmark.csv`` in ``output_dir`` for the
            (model, form) pairs not measured now (to measure large models in separate runs).
        flatbuffer_dir: where to keep the converted ``<model>_<form>_<input_size>.tflite``
            files; an existing file is timed again instead of converting anew.

    Returns:
        One dict per (model, form): ``model``, ``form`` (``"lce"`` or ``"float"``),
        ``top1`` (published, ``None`` for float forms), ``size_mb`` (the flatbuffer),
        ``ideal_mb`` (:func:`ideal_size`), ``keras_float32_mb`` (all Keras weights at 4 bytes),
        ``binary_convs``, ``float_convs``, ``convert_s`` (``None`` for a reused file), and
        ``latency_ms_<n>t`` (median) / ``latency_min_ms_<n>t`` per thread count.
    """
    log = log or (lambda *a, **k: None)
    threads = tuple(threads or sorted({1, os.cpu_count() or 1}))
    names = [_canonical_name(n) for n in models]
    float_names = {_canonical_name(n) for n in float_models}
    unknown = float_names - set(BNEXT_NAMES)
    if unknown:
        raise ValueError(f"float_models must be BNext models, got {sorted(unknown)}.")
    rows, flatbuffers = [], []
    for name in names + [n for n in BNEXT_NAMES if n in float_names and n not in names]:
        forms = (["lce"] if name in names else []) + (["float"] if name in float_names else [])
        model = (build_fn or build_model)(name, input_size)
        for form in forms:
            start = time.perf_counter()
            cached = None
            if flatbuffer_dir is not None:
                cached = Path(flatbuffer_dir) / f"{name}_{form}_{input_size}.tflite"
            reused = cached is not None and cached.exists()
            if reused:
                log(f"[{name} / {form}] reusing {cached}")
                flatbuffer = cached.read_bytes()
            else:
                log(f"[{name} / {form}] converting at {input_size}x{input_size} ...")
                flatbuffer = convert(model) if form == "lce" else convert_float(model)
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    cached.write_bytes(flatbuffer)
            counts = op_counts(flatbuffer)
            rows.append(
                {
                    "model": name,
                    "form": form,
                    "top1": PUBLISHED_TOP1.get(name) if form == "lce" else None,
                    "size_mb": len(flatbuffer) / 1e6,
                    "ideal_mb": ideal_size(model)["bytes"] / 1e6 if form == "lce" else None,
                    "keras_float32_mb": 4 * model.count_params() / 1e6,
                    "binary_convs": counts.get(BINARY_CONV_OP, 0),
                    "float_convs": counts.get("CONV_2D", 0) + counts.get("DEPTHWISE_CONV_2D", 0),
                    # None when the flatbuffer came from flatbuffer_dir.
                    "convert_s": None if reused else time.perf_counter() - start,
                }
            )
            flatbuffers.append(flatbuffer)
            log(f"    {rows[-1]['size_mb']:.2f} MB, {rows[-1]['binary_convs']} LceBconv2d")
        del model
        tf.keras.backend.clear_session()
    # Timing round-robin over all models, so that a busy machine slows them all alike.
    for n in threads:
        log(f"timing with {n} thread(s): {repeats} rounds over {len(rows)} flatbuffers ...")
        runners, images = [], []
        for row, flatbuffer in zip(rows, flatbuffers, strict=True):
            interpreter = lce_interpreter(
                flatbuffer,
                num_threads=n,
                use_indirect_bgemm=use_indirect_bgemm and row["form"] == "lce",
                use_xnnpack=row["form"] == "float",
            )
            shape = (1, *interpreter.input_shapes[0][1:])
            images.append(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
            runners.append(interpreter.interpreter.predict)
        for run, image in zip(runners, images, strict=True):
            for _ in range(warmup):
                run([image])
        times = [[] for _ in rows]
        for _ in range(repeats):
            for run, image, record in zip(runners, images, times, strict=True):
                start = time.perf_counter()
                run([image])
                record.append((time.perf_counter() - start) * 1e3)
        for row, record in zip(rows, times, strict=True):
            row[f"latency_ms_{n}t"] = statistics.median(record)
            row[f"latency_min_ms_{n}t"] = min(record)
            log(f"    {row['model']} / {row['form']}: median {statistics.median(record):.1f} ms")
        del runners
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        table = rows
        if append and (output_dir / "benchmark.csv").exists():
            measured = {(r["model"], r["form"]) for r in rows}
            kept = [
                r
                for r in read_table(output_dir / "benchmark.csv")
                if (r["model"], r["form"]) not in measured
            ]
            table = kept + list(rows)
        write_table(table, output_dir)
        plot_benchmark(
            table,
            output_dir,
            title=f"LCE, {input_size}x{input_size}, batch 1, {platform.machine()} CPU",
        )
    return rows


def read_table(path: str | os.PathLike) -> list[dict]:
    """Read a ``benchmark.csv`` written by :func:`write_table` back into rows.

    Args:
        path: the CSV file.

    Returns:
        Rows with numbers as ``int``/``float`` and empty cells as ``None``.
    """

    def parse(value: str):
        if value == "":
            return None
        for cast in (int, float):
            try:
                return cast(value)
            except ValueError:
                pass
        return value

    with open(path, newline="") as f:
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_table(rows: Sequence[dict], output_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write benchmark rows as ``benchmark.csv`` and ``benchmark.md``.

    Args:
        rows: the output of :func:`benchmark`.
        output_dir: target directory (created if needed).

    Returns:
        The paths of the CSV and the markdown files.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    csv_path = output_dir / "benchmark.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    thread_keys = [k for k in keys if k.startswith("latency_ms_")]
    header = [
        "model",
        "form",
        "ImageNet top-1 (%)",
        "size (MB)",
        "ideal (MB)",
        "Keras float32 (MB)",
        "LceBconv2d",
        "float convs",
    ]
    header += [
        f"latency {k.removeprefix('latency_ms_').removesuffix('t')} thr., ms: median (min)"
        for k in thread_keys
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["model"],
            row["form"],
            "—" if row["top1"] is None else f"{row['top1']:.1f}",
            f"{row['size_mb']:.2f}",
            "—" if row.get("ideal_mb") is None else f"{row['ideal_mb']:.2f}",
            f"{row['keras_float32_mb']:.1f}",
            str(row["binary_convs"]),
            str(row["float_convs"]),
        ] + [
            "—"  # not measured (e.g. a row added on a machine too busy to time it)
            if row.get(k) is None
            else f"{row[k]:.0f} ({row[k.replace('latency_ms_', 'latency_min_ms_')]:.0f})"
            for k in thread_keys
        ]
        lines.append("| " + " | ".join(cells) + " |")
    md_path = output_dir / "benchmark.md"
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path
