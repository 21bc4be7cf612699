"""Building a BNext without scratch-graph calls, and without drawing the initial values that
loading replaces: the same model as Keras' own construction, the same seeded values after."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

import larq_bnext
from larq_bnext.keras2 import keras_src, set_random_seed
from larq_bnext.models.construction import initial_values_skipped, shape_only_calls
from larq_bnext.weights.loading import load_keras_weights

# Construction reaches into Keras' own classes: run these on the second stack too (make compat).
pytestmark = pytest.mark.compat

SHAPE = (32, 32, 3)
CHANNELS = (8, 16, 32, 32)


def _tiny(**kwargs):
    return larq_bnext.get_model(
        "custom", CHANNELS, input_shape=SHAPE, num_classes=10, stem_stride=1, **kwargs
    )


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_shape_only_construction_builds_what_keras_scratch_graph_calls_build(policy):
    tf.keras.mixed_precision.set_global_policy(policy)
    model = _tiny(classifier_activation="softmax")
    # clone_model calls every layer on Keras tensors again, outside shape_only_calls: Keras'
    # own construction, each layer run in a scratch graph.
    keras_built = tf.keras.models.clone_model(model)
    assert json.dumps(model.get_config(), sort_keys=True, default=str) == json.dumps(
        keras_built.get_config(), sort_keys=True, default=str
    )
    assert [(w.name, w.shape, w.dtype) for w in model.weights] == [
        (w.name, w.shape, w.dtype) for w in keras_built.weights
    ]
    for ours, theirs in zip(model.layers, keras_built.layers, strict=True):
        for a, b in zip(tf.nest.flatten(ours.output), tf.nest.flatten(theirs.output), strict=True):
            assert (a.shape.as_list(), a.dtype) == (b.shape.as_list(), b.dtype), ours.name
    keras_built.set_weights(model.get_weights())
    x = np.random.default_rng(0).normal(size=(2, *SHAPE)).astype("float32")
    for training in (False, True):
        np.testing.assert_array_equal(
            model(x, training=training).numpy(), keras_built(x, training=training).numpy()
        )


def test_keras_is_as_it_was_after_the_block():
    base_layer = keras_src("engine.base_layer")
    before = base_layer.Layer._infer_output_signature
    with shape_only_calls(), shape_only_calls():
        assert base_layer.Layer._infer_output_signature is not before
    assert base_layer.Layer._infer_output_signature is before


def test_skipped_initial_values_are_zeros_and_constant_ones_stay():
    with initial_values_skipped():
        model = _tiny()
    for w in model.weights:
        kind = w.name.split("/")[-1].split(":")[0]
        if kind in ("kernel",):  # random initializers: N(0, 0.001^2), Glorot
            assert not np.any(w.numpy()), w.name
        if kind in ("gamma", "moving_variance", "temperature", "input_temperature"):
            assert np.all(w.numpy() == 1), w.name
        if kind == "alpha":
            assert np.all(w.numpy() == 0.25), w.name


def test_models_built_after_skipped_ones_get_their_seeded_values():
    set_random_seed(0)
    _tiny()
    expected = [w.numpy() for w in _tiny().weights]
    set_random_seed(0)
    with initial_values_skipped():
        _tiny()
    got = [w.numpy() for w in _tiny().weights]
    assert any(np.any(e) and e.std() > 0 for e in expected)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(e, g)


def test_weights_given_load_into_a_model_built_without_draws(tmp_path):
    set_random_seed(1)
    source = _tiny()
    path = str(tmp_path / "tiny.h5")
    source.save_weights(path)
    loaded = _tiny(weights=path)
    assert [w.name for w in loaded.weights] == [w.name for w in source.weights]
    for a, b in zip(loaded.weights, source.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Keras' own by-name loading gives the same variables.
    keras_loaded = _tiny()
    keras_loaded.load_weights(path, by_name=True)
    reloaded = _tiny()
    load_keras_weights(reloaded, path)
    for a, b in zip(reloaded.weights, keras_loaded.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
