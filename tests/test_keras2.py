"""Keras 2 on every supported TensorFlow: the switch, the error that names the fix, private imports.

These run on both tested stacks (``make suite``: TensorFlow 2.15, whose ``tf.keras`` is Keras 2;
``make compat``: TensorFlow 2.17 with ``tf_keras``), each asserting what its stack must do.
"""

import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import larq_bnext
from larq_bnext import keras2
from larq_bnext.weights import load_keras_weights
from larq_bnext.weights.mapping import load_state_dict_into_model
from larq_bnext.weights.spec import official_state_dict_spec

pytestmark = pytest.mark.compat

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# TensorFlow 2.16 and later ship Keras 3 as `keras`; Keras 2 is the tf_keras package there.
NEEDS_SWITCH = tuple(int(v) for v in tf.__version__.split(".")[:2]) >= (2, 16)


def _python(code, **env_changes):
    env = {k: v for k, v in os.environ.items() if k != keras2.LEGACY_KERAS_VARIABLE}
    env.update(PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", **env_changes)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_tf_keras_is_keras_2_from_the_package_tensorflow_brings():
    package = keras2.keras_package()
    assert package == ("tf_keras" if NEEDS_SWITCH else "keras")
    assert sys.modules[package].__version__.startswith("2.")
    assert issubclass(larq_bnext.BinaryConv2D, sys.modules[package].layers.Layer)
    # The private modules of the resumable backup come from that same package.
    state = keras2.keras_src("distribute.worker_training_state")
    assert state.__name__ == f"{package}.src.distribute.worker_training_state"
    assert keras2.keras3_installed() == NEEDS_SWITCH


def test_the_switch_is_set_only_before_tensorflow_and_only_where_keras_3_is_installed():
    run = _python(
        """
        import os
        import larq_bnext
        import tensorflow as tf
        print(os.environ.get("TF_USE_LEGACY_KERAS"), tf.keras.layers.Layer.__module__)
        """
    )
    assert run.returncode == 0, run.stderr[-3000:]
    setting, module = run.stdout.split()
    package = module.split(".")[0]
    assert (setting, package) == (("1", "tf_keras") if NEEDS_SWITCH else ("None", "keras"))
    assert keras2.select_keras2(environ={}, modules={"tensorflow": tf}) is False
    environ = {keras2.LEGACY_KERAS_VARIABLE: "0"}
    assert keras2.select_keras2(environ=environ, modules={}) is False
    assert environ == {keras2.LEGACY_KERAS_VARIABLE: "0"}  # the user's choice is kept
    environ = {}
    assert keras2.select_keras2(environ=environ, modules={}) is NEEDS_SWITCH
    assert environ == ({keras2.LEGACY_KERAS_VARIABLE: "1"} if NEEDS_SWITCH else {})


@pytest.mark.parametrize("how", ["tensorflow imported first", "TF_USE_LEGACY_KERAS=0"])
def test_keras_3_is_refused_with_the_fix(how):
    code = "import tensorflow\nimport larq_bnext\n" if "first" in how else "import larq_bnext\n"
    env = {keras2.LEGACY_KERAS_VARIABLE: "0"} if "=0" in how else {}
    run = _python(code + "print('imported')", **env)
    if not NEEDS_SWITCH:  # TensorFlow 2.15: tf.keras is Keras 2 whatever the order
        assert run.returncode == 0 and run.stdout.strip() == "imported", run.stderr[-3000:]
        return
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()
    message = run.stderr[run.stderr.index("larq_bnext.keras2.Keras2Error") :]
    assert "needs Keras 2, but tf.keras is Keras 3." in message, last[-5:]
    assert 'pip install "tf-keras~=' in message and "TF_USE_LEGACY_KERAS=1 before" in message
    why = "is set to '0'" if "=0" in how else "TensorFlow was imported before larq_bnext"
    assert why in message


def test_messages_for_keras_3_and_a_missing_tf_keras():
    assert keras2.keras2_problem("2.15.0", "2.15.1", environ={}) is None
    missing = keras2.keras2_problem(None, "2.16.2", environ={"TF_USE_LEGACY_KERAS": "1"})
    assert "tf.keras cannot be imported" in missing and "tf_keras package" in missing
    assert 'pip install "tf-keras~=2.16.0"' in missing
    keras3 = keras2.keras2_problem("3.4.1", "2.17.1", environ={})
    assert "Keras 3.4.1 (TensorFlow 2.17.1)" in keras3 and "tf-keras~=2.17.0" in keras3


def test_set_random_seed_builds_models_and_repeats_python_3_11s_draws():
    # tf.keras.utils.set_random_seed alone makes tf_keras 2.17 fail on Python 3.12 at the first
    # unseeded initializer (randint(1, 1e9)); the draws must stay those of Python 3.11.
    def kernel():
        layer = tf.keras.layers.Dense(3)
        layer.build((None, 4))
        return layer.kernel.numpy()

    keras2.set_random_seed(7)
    first = kernel()
    keras2.set_random_seed(7)
    np.testing.assert_array_equal(kernel(), first)
    keras2.set_random_seed(7)
    generator = keras2.keras_src("backend")._SEED_GENERATOR.generator
    expected = random.Random(7)
    assert [generator.randint(1, 1e9) for _ in range(3)] == [
        expected.randint(1, 10**9) for _ in range(3)
    ]
    keras2.set_random_seed(7)
    assert random.random() == random.Random(7).random()  # Python's own generator seeded too


def test_official_layout_weights_load_and_round_trip_through_h5(tmp_path):
    """The weight conversion and the HDF5 weights files on this stack's Keras 2."""
    channels = (8, 16, 32, 32, 64)
    spec = official_state_dict_spec(channels, num_classes=5)
    rng = np.random.default_rng(0)
    state = {
        key: (rng.uniform(0.1, 0.9, shape) if shape else np.array(7)).astype(np.float32)
        for key, shape in spec.items()
    }
    model = larq_bnext.BNext(channels, input_shape=(32, 32, 3), num_classes=5)
    report = load_state_dict_into_model(model, state)
    assert "feature.0.conv1.weight" in report.converted and "fc.weight" in report.converted
    stem = next(v for v in model.weights if len(v.shape) == 4 and v.shape[2] == 3)
    # PyTorch's (out, in, kh, kw) becomes Keras' (kh, kw, in, out).
    np.testing.assert_array_equal(
        stem.numpy(), state["feature.0.conv1.weight"].transpose(2, 3, 1, 0)
    )
    dense = next(v for v in model.weights if tuple(v.shape) == (64, 5))
    np.testing.assert_array_equal(dense.numpy(), state["fc.weight"].T)

    path = tmp_path / "weights.h5"
    model.save_weights(str(path))
    fresh = larq_bnext.BNext(channels, input_shape=(32, 32, 3), num_classes=5)
    x = tf.random.stateless_uniform((2, 32, 32, 3), (1, 2), -1.0, 1.0)
    assert not np.allclose(fresh(x, training=False), model(x, training=False))
    load_keras_weights(fresh, path)
    np.testing.assert_array_equal(fresh(x, training=False), model(x, training=False))
