"""The real ImageNet recipe (experiments/bnext_tiny.flags) end to end on generated JPEGs.

Its own teacher architectures (EfficientNet-B0 assistant, B2 main), untrained
(``--teacher_weights=none``, offline), on an ImageNet-format folder of 300-500 px JPEGs with
the training set's odd files; the student narrowed and the images shrunk so that it runs in
CI. The run is killed after its first epoch's backup, restarted (it must resume at epoch 2),
and its saved student evaluated by the function of ``python -m larq_bnext.evaluate``. The
full-size runs of all four flag files are ``benchmarks/recipe_smoke.py``.
"""

import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from larq_bnext.training.data.synthetic_imagenet import write_imagenet_folder

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


def test_folder_is_imagenet_shaped_and_reproducible(tmp_path):
    info = write_imagenet_folder(tmp_path / "a", classes=3, train_per_class=3, val_per_class=1)
    assert info["classes"] == sorted(info["classes"]) and len(info["classes"]) == 3
    assert all(c.startswith("n") and len(c) == 9 for c in info["classes"])
    files = sorted(glob.glob(str(tmp_path / "a" / "*" / "*" / "*.JPEG")))
    assert len(files) == info["train"] + info["val"] == 12
    modes = {}
    for path in files:
        with Image.open(path) as image:
            assert 300 <= min(image.size) and max(image.size) <= 500
            modes[os.path.basename(path)] = (image.format, image.mode)
    assert sorted(modes[os.path.basename(p)] for p in info["quirks"]) == [
        ("JPEG", "CMYK"),
        ("JPEG", "L"),
        ("PNG", "RGB"),
    ]
    again = write_imagenet_folder(tmp_path / "b", classes=3, train_per_class=3, val_per_class=1)
    for path in files:
        twin = path.replace(str(tmp_path / "a"), str(tmp_path / "b"))
        assert open(path, "rb").read() == open(twin, "rb").read()
    assert again["sizes"] == info["sizes"]
    with pytest.raises(ValueError, match="already holds train"):
        write_imagenet_folder(tmp_path / "a")


def _train_args(data_dir, out):
    return [
        sys.executable,
        "-m",
        "larq_bnext.train",
        f"--flagfile={REPO}/experiments/bnext_tiny.flags",
        f"--data_dir={data_dir}",
        "--teacher_weights=none",
        # Shrunk in size and length only: the recipe's teachers, loss, schedule, augmentation.
        "--model=custom",
        "--stage_channels=8,16,16,32",
        "--stem_stride=2",
        "--image_size=32",
        "--epochs=2",
        "--steps_per_epoch=1",
        "--batch_size=4",
        f"--output_dir={out}",
        "--verbose=2",
    ]


def test_tiny_recipe_killed_resumed_and_evaluated(tmp_path):
    data_dir = tmp_path / "imagenet"
    write_imagenet_folder(data_dir, classes=3, train_per_class=2, val_per_class=1)
    out = tmp_path / "run"
    args = _train_args(data_dir, out)
    first = subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while first.poll() is None and time.time() < deadline:
            if glob.glob(str(out / "student" / "**" / "*.manifest.json"), recursive=True):
                break
            time.sleep(0.1)
    finally:
        first.kill()  # a crash right after epoch 1's backup (and no orphan if the test fails)
        first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "metrics.json").exists()

    second = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Epoch 1/2" not in second.stdout and "Epoch 2/2" in second.stdout  # resumed
    assert "UNTRAINED" in second.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["teachers"] == {
        "assistants": ["efficientnet_b0"],
        "main": "efficientnet_b2",
        "weights": "none",
        "precision": "float32",  # --teacher_precision=auto on a CPU: the student's policy
    }
    assert metrics["num_classes"] == 3 and metrics["train_examples"] == 6
    assert metrics["student"]["distilled"]
    with open(out / "student" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1"]  # one row per epoch across the kill
    assert all(np.isfinite(float(r["loss"])) and 0 < float(r["alpha_main"]) < 1 for r in rows)
    assert not glob.glob(str(out / "**" / "*.manifest.json"), recursive=True)  # backup removed

    from larq_bnext.evaluate import evaluate  # the CLI's function, in this process

    result = evaluate(
        "custom",
        str(out / "student" / "last.weights.h5"),
        dataset="folder",
        data_dir=str(data_dir),
        image_size=32,
        stage_channels=(8, 16, 16, 32),
        stem_stride=2,
    )
    assert result["examples"] == 3
    np.testing.assert_allclose(result["top1"], metrics["student"]["top1"])
