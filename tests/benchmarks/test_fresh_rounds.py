"""benchmarks/fresh_rounds.py: the medians, spreads and per-round ratios it reports."""

from __future__ import annotations

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _module():
    path = os.path.join(ROOT, "benchmarks", "fresh_rounds.py")
    spec = importlib.util.spec_from_file_location("fresh_rounds_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _side(steps, first, construction, rss):
    return {
        "step_seconds": steps,
        "first_step_seconds": first,
        "construction_seconds": construction,
        "peak_rss_gib": rss,
    }


def test_summary_takes_medians_over_rounds_and_ratios_within_a_round():
    fresh = _module()
    rounds = [
        {"function": _side([4.0, 2.0, 3.0], 20, 3, 4.0), "original": _side([4.0, 4.0], 14, 1, 5)},
        {"function": _side([8.0], 30, 4, 4.5), "original": _side([16.0], 16, 2, 5.5)},
        {"function": _side([2.0], 25, 5, 3.9), "original": _side([2.0], 15, 3, 5.2)},
    ]
    summary, ratios = fresh.summarize(rounds, ["function", "original"], batch=16)
    # Round medians 3, 8, 2 s: median 3 s, 16 / 3 img/s; rounds 2-8 img/s.
    assert summary["function"]["images_per_second"] == pytest.approx(16 / 3)
    assert summary["function"]["images_per_second_spread"] == pytest.approx([2.0, 8.0])
    assert summary["function"]["first_step_seconds"] == 25
    assert summary["function"]["first_step_seconds_spread"] == [20, 30]
    assert summary["function"]["construction_seconds"] == 4
    assert summary["function"]["peak_rss_gib"] == 4.5
    # Same-round ratios original / function step: 4/3, 16/8, 2/2.
    assert ratios["function"]["median"] == pytest.approx(4 / 3)
    assert ratios["function"]["spread"] == pytest.approx([1.0, 2.0])


def test_a_killed_side_is_reported_and_left_out_of_the_ratios():
    fresh = _module()
    rounds = [
        {"function": _side([2.0], 20, 3, 4.0), "original": {"failed": -9, "peak_rss_gib": 23}},
        {"function": _side([2.0], 20, 3, 4.0), "original": _side([4.0], 14, 1, 5)},
    ]
    summary, ratios = fresh.summarize(rounds, ["function", "original"], batch=16)
    assert summary["function"]["rounds"] == 2 and summary["original"]["rounds"] == 1
    assert ratios["function"] == {"median": 2.0, "spread": [2.0, 2.0]}
    rounds[1]["original"] = {"failed": -9, "peak_rss_gib": 23}
    summary, ratios = fresh.summarize(rounds, ["function", "original"], batch=16)
    assert "failed" in summary["original"] and "function" not in ratios


def test_children_report_their_own_peak_memory(tmp_path):
    fresh = _module()
    script = tmp_path / "child.py"
    # A child that holds about 200 MiB, then prints its tagged result line.
    script.write_text(
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('f', {fresh.__file__!r})\n"
        "f = importlib.util.module_from_spec(spec); spec.loader.exec_module(f)\n"
        "block = bytearray(200 * 2**20); block[::4096] = b'x' * len(block[::4096])\n"
        "peak = f.own_peak_rss_gib()\n"
        "result = {'mode': sys.argv[-1], 'step_seconds': [1.0], 'vm_hwm_gib': peak}\n"
        "print('FRESH_RESULT ' + json.dumps(result))\n"
    )
    result = fresh._run_child(str(script), [], "function")
    assert result["mode"] == "function" and result["step_seconds"] == [1.0]
    # 200 MiB touched, a bare interpreter around it; however large this test's process is.
    assert 0.19 < result["peak_rss_gib"] < 1.0
    assert result["ru_maxrss_gib"] >= result["peak_rss_gib"]
    failing = tmp_path / "fail.py"
    failing.write_text("import sys\nsys.exit(3)\n")
    assert fresh._run_child(str(failing), [], "original")["failed"] == 3
