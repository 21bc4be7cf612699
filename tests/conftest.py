"""Shared test set-up: quiet TensorFlow, deterministic seeds, float32 restored after each test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Before TensorFlow: on TensorFlow 2.16 and later larq_bnext selects Keras 2 (tf_keras), and only
# before TensorFlow's import; subprocesses of the tests inherit the switch.
import larq_bnext  # noqa: E402, F401

# isort: split
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from larq_bnext.keras2 import set_random_seed


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    # A global dtype policy (even "float32") set by one test would override set_floatx in the
    # next: reset it to the default, which follows floatx.
    tf.keras.mixed_precision.set_global_policy(None)
    tf.keras.backend.set_floatx("float32")
    set_random_seed(0)
    yield
    tf.keras.mixed_precision.set_global_policy(None)
    tf.keras.backend.set_floatx("float32")
    tf.keras.backend.clear_session()
