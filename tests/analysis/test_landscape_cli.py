"""`python -m larq_bnext.landscape` end to end on a tiny BNext, and the figures."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from matplotlib.image import imread

import larq_bnext
from larq_bnext.analysis import (
    Landscape,
    loss_landscape,
    plot_comparison,
    plot_contour,
    plot_figures,
)
from larq_bnext.evaluate import evaluate

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_cli_writes_the_npz_and_both_figures_centred_on_the_evaluated_model(tmp_path):
    model = larq_bnext.BNext(
        (8, 16),
        input_shape=(8, 8, 3),
        num_classes=10,
        classifier_activation=None,
        stem_stride=1,
    )
    weights = str(tmp_path / "tiny.weights.h5")
    model.save_weights(weights)
    output = tmp_path / "out" / "tiny.npz"
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "larq_bnext.landscape",
            "--stage_channels=8,16",
            "--image_size=8",
            f"--weights={weights}",
            "--points=3",
            "--span=0.5",
            "--examples=0",
            f"--output={output}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "9 points x 360 examples" in result.stdout and "point-examples/s" in result.stdout
    landscape = Landscape.load(output)
    assert landscape.complete and landscape.loss.shape == (3, 3)
    scores = evaluate("custom", weights, image_size=8, stage_channels=(8, 16))
    assert landscape.centre()["loss"] == pytest.approx(scores["loss"], rel=1e-5)
    assert landscape.centre()["top1"] == pytest.approx(scores["top1"], abs=1e-9)
    for figure in ("tiny_contour.png", "tiny_surface.png"):
        image = imread(tmp_path / "out" / figure)
        assert image.ndim == 3 and image.shape[0] > 300 and image.std() > 0.05


def _plane_and_line(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=32)
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3)])
    plane = loss_landscape(model, (x, y), points=5, verbose=0, name="dense")
    line = loss_landscape(model, (x, y), dims=1, points=5, verbose=0)
    return plane, line


def test_figures_of_planes_lines_and_comparisons(tmp_path):
    plane, line = _plane_and_line(tmp_path)
    written = plot_figures(plane, tmp_path / "plane")
    assert [os.path.basename(p) for p in written] == ["plane_contour.png", "plane_surface.png"]
    assert [os.path.basename(p) for p in plot_figures(line, tmp_path / "line")] == ["line_line.png"]
    one = imread(plot_comparison([plane], tmp_path / "one.png", kind="contour"))
    three = imread(plot_comparison([plane] * 3, tmp_path / "three.png", kind="surface"))
    assert three.shape[1] > 2 * one.shape[1]  # side by side
    plot_comparison([line, line], tmp_path / "lines.png", kind="line", names=["a", "b"])
    with pytest.raises(ValueError, match="dims=1"):
        plot_contour(line, tmp_path / "no.png")
    with pytest.raises(ValueError, match="2 names for 3"):
        plot_comparison([plane] * 3, tmp_path / "no.png", names=["a", "b"])
