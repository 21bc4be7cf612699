"""`larq_bnext.predict`: classify image files (random weights: only the mechanics are tested)."""

import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import larq_bnext
from larq_bnext import predict
from larq_bnext.keras2 import set_random_seed
from larq_bnext.preprocessing import eval_transform, imagenet_class_index

pytestmark = pytest.mark.compat  # also run on the second stack (make compat)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A JPEG (RGB), a PNG (RGBA) and a grey PNG of different sizes, a corrupt JPEG."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 50)[:, None] + np.linspace(0, 255, 70)[None, :]
    rgb = np.clip(np.stack([ramp / 2, 255 - ramp / 2, rng.uniform(0, 255, ramp.shape)], -1), 0, 255)
    Image.fromarray(rgb.astype(np.uint8)).save(root / "photo.jpg", quality=95)
    rgba = rng.integers(0, 256, size=(40, 36, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(root / "icon.png")
    grey = rng.integers(0, 256, size=(33, 45), dtype=np.uint8)
    Image.fromarray(grey, "L").save(root / "grey.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    # A name that is not UTF-8 (Latin-1 bytes), and a PNG whose header claims 100000^2 pixels.
    with open(os.path.join(os.fsencode(root), b"caf\xe9.jpg"), "wb") as handle:
        handle.write((root / "photo.jpg").read_bytes())
    huge = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    (root / "huge.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + huge + b"\0" * 4
    )
    return root


@pytest.fixture(scope="module")
def model():
    set_random_seed(0)
    return larq_bnext.BNext((8, 16), input_shape=(32, 32, 3), classifier_activation=None)


def _direct_logits(model, path):
    # The original's loader: PIL decodes the file and converts it to RGB.
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    return model(eval_transform(pixels, 32)[None], training=False).numpy()[0].astype(np.float64)


def test_probabilities_are_the_softmax_of_the_logits_in_their_order(model, images):
    paths = [images / "photo.jpg", images / "icon.png", images / "grey.png"]
    results = predict.classify(paths, model, top=1000, batch_size=2)
    classes = imagenet_class_index()
    for path, result in zip(paths, results, strict=True):
        assert result.error is None and result.path == str(path)
        logits = _direct_logits(model, path)
        expected = np.exp(logits - logits.max())
        expected /= expected.sum()
        probs = np.array([p for _, _, p in result.classes])
        assert abs(probs.sum() - 1.0) < 1e-5
        assert np.all(np.diff(probs) <= 0)  # most likely first
        order = [next(i for i, c in enumerate(classes) if c[0] == w) for w, _, _ in result.classes]
        np.testing.assert_allclose(probs, expected[order], rtol=1e-4, atol=1e-7)
        # The top-5 are the five largest logits (ties aside: random logits have none).
        assert order[:5] == list(np.argsort(-logits)[:5])
        assert result.classes[0][1] == classes[order[0]][1]


def test_top_k_and_a_softmax_model_agree_with_the_logits_model(model, images):
    path = images / "photo.jpg"
    (full,) = predict.classify([path], model, top=1000)
    (short,) = predict.classify([path], model, top=3)
    assert short.classes == full.classes[:3]
    with_softmax = tf.keras.Model(model.input, tf.keras.layers.Activation("softmax")(model.output))
    (same,) = predict.classify([path], with_softmax, top=3)
    assert [c[0] for c in same.classes] == [c[0] for c in short.classes]
    np.testing.assert_allclose([c[2] for c in same.classes], [c[2] for c in short.classes], 1e-5)


def test_missing_and_corrupt_files_are_reported_and_the_rest_classified(model, images):
    paths = [images / "missing.png", images / "broken.jpg", images / "photo.jpg"]
    missing, broken, good = predict.classify(paths, model, top=2)
    assert missing.classes == [] and str(images / "missing.png") in missing.error
    assert "no such file" in missing.error
    assert broken.classes == [] and str(images / "broken.jpg") in broken.error
    assert "JPEG or PNG" in broken.error and "{{" not in broken.error
    assert good.error is None and len(good.classes) == 2


def test_bad_arguments_say_what_to_do(model, images):
    with pytest.raises(ValueError, match="top must be between 1 and 1000"):
        predict.classify([images / "photo.jpg"], model, top=0)
    ten = larq_bnext.BNext((8, 16), input_shape=(32, 32, 3), num_classes=10)
    with pytest.raises(ValueError, match="class_names"):
        predict.classify([images / "photo.jpg"], ten)
    (result,) = predict.classify([images / "photo.jpg"], ten, top=2, class_names="abcdefghij")
    assert [c[0] for c in result.classes][0] in "abcdefghij" and len(result.classes) == 2


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        [sys.executable, "-m", "larq_bnext.predict", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_prints_top_k_per_file_and_exits_2_on_a_bad_file(images):
    result = _cli(
        str(images / "photo.jpg"),
        str(images / "broken.jpg"),
        "--model=bnext_tiny",
        "--weights=none",
        "--top",
        "3",
        str(images / "icon.png"),
        str(images / "nope.jpg"),
        os.path.join(os.fsencode(images), b"caf\xe9.jpg"),
        str(images / "huge.png"),
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "random weights" in result.stdout
    row = re.compile(r"^  ([123])\. +(\d+\.\d\d)%  (n\d{8})  (.+)$")
    blocks = {}
    for line in result.stdout.splitlines():
        if line.startswith(str(images)):
            current = blocks.setdefault(line, [])
        elif row.match(line):
            current.append(row.match(line).groups())
    named = [str(images / "photo.jpg"), str(images / "icon.png"), f"{images}/caf\\xe9.jpg"]
    assert list(blocks) == named
    for lines in blocks.values():
        assert [r[0] for r in lines] == ["1", "2", "3"]
        probs = [float(r[1]) for r in lines]
        assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 100
    assert f"error: {images / 'broken.jpg'}: not a readable image" in result.stderr
    assert f"error: {images / 'nope.jpg'}: no such file" in result.stderr
    assert f"error: {images / 'huge.png'}: 100000 x 100000 pixels" in result.stderr
    assert "more than the limit of 89,478,485 pixels" in result.stderr
    assert "3 of 6 files could not be classified" in result.stderr


def test_cli_wrong_model_name_exits_2_with_the_names_to_use(images):
    result = _cli(str(images / "photo.jpg"), "--model=bnext_huge", "--weights=none")
    assert result.returncode == 2
    assert "Unknown BNext model 'bnext_huge'" in result.stderr
    assert "bnext_tiny" in result.stderr and "bnext18" in result.stderr
    assert result.stdout == ""


def test_importing_predict_loads_no_training_code():
    """Classifying a photograph needs the models and weights, not the training package."""
    code = (
        "import sys, larq_bnext.predict, larq_bnext; "
        "print(sorted(m for m in sys.modules if m.startswith('larq_bnext.training'))); "
        "larq_bnext.Distiller; print('larq_bnext.training.method.distiller' in sys.modules)"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["[]", "True"]  # loaded on first use


def test_run_then_exit_keeps_the_output_and_the_exit_status(tmp_path):
    """predict leaves without the interpreter's teardown (larq_bnext._cli.run_then_exit): what
    it printed, buffered or not, arrives whole, and sys.exit's status is the process's."""
    script = tmp_path / "prog.py"
    script.write_text(
        "import sys\n"
        "from larq_bnext._cli import run_then_exit\n"
        "def main(argv):\n"
        "    print('x' * 100000)\n"  # more than one buffer, not flushed by main
        "    print('to stderr', file=sys.stderr)\n"
        "    sys.exit(int(argv[1]))\n"
        "run_then_exit(main)\n"
    )
    for status in (0, 2):
        result = subprocess.run(
            [sys.executable, str(script), str(status)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": REPO},
        )
        assert result.returncode == status
        assert result.stdout == "x" * 100000 + "\n"
        assert result.stderr.endswith("to stderr\n")
