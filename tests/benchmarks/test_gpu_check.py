"""benchmarks/gpu_check.py's CPU fallback runs end to end at tiny sizes (the GPU table itself
needs a GPU; see docs/distributed.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.py")

# The tiny BNext of the fallback, channels (8, 16, 32): the stem convolution, then two blocks
# that double the channels, each with three binary units (FFN-3x3 or ELM-Attention, FFN_1,
# FFN_2) of one binary convolution and two squeeze-and-excitation 1x1 convolutions.
TINY_CONVOLUTIONS = 1 + 2 * 3 * (1 + 2)


def _run(tmp_path, *extra):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": ROOT, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, SCRIPT, *extra, "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    return result, out


def test_cpu_fallback_prints_every_configuration_with_the_convolution_split(tmp_path):
    result, out = _run(
        tmp_path, "--cpu_fallback", "--policies", "float32,mixed_bfloat16", "--xla", "off,on"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["policy"], r["xla"]) for r in rows] == [
        ("float32", False),
        ("float32", True),
        ("mixed_bfloat16", False),
        ("mixed_bfloat16", True),
    ]
    for row in rows:
        assert "error" not in row, row
        assert row["size"] == "custom" and row["peak_memory_kind"] == "process RSS"
        assert row["images_per_second"] > 0 and row["peak_memory_gib"] > 0
        assert row["convolutions"] == TINY_CONVOLUTIONS
        assert 0 < row["conv_seconds"] and row["rest_seconds"] >= 0
        assert (
            abs(
                row["conv_share"] * row["step_seconds"]
                - min(row["conv_seconds"], row["step_seconds"])
            )
            < 1e-9
        )
    printed = [line for line in result.stdout.splitlines() if "img/s" in line]
    assert len(printed) == 4 and all("% conv)" in line for line in printed)


def test_refuses_imagenet_sizes_without_a_gpu(tmp_path):
    result, _ = _run(tmp_path)
    assert result.returncode == 2
    assert "no GPU found: pass --cpu_fallback" in result.stderr


def test_cpu_fallback_runs_the_released_teachers_and_predicts_start_up(tmp_path):
    result, out = _run(
        tmp_path,
        "--cpu_fallback",
        "--policies",
        "released",
        "--xla",
        "off",
        "--startup_sizes",
        "T",
        "--startup_rounds",
        "1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    (row,) = results["rows"]
    assert "error" not in row, row
    # On a CPU, auto keeps the teachers in the student's float32 (float16 on a GPU).
    assert (row["policy"], row["teacher_policy"]) == ("released", "float32")
    assert row["images_per_second"] > 0
    (startup,) = results["startup"]
    assert (startup["startup"], startup["size"], startup["rounds"]) == ("predict", "T", 1)
    assert startup["seconds"] > 0 and startup["peak_rss_gib"] > 0
    assert "predict BNext-T (one image, cached weights):" in result.stdout
