"""Building a BNext without scratch-graph calls, without drawing the initial values that
loading replaces, and with a weights file's values as its variables are created: the same
model as Keras' own construction and loading, the same seeded values after."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

import larq_bnext
from larq_bnext.keras2 import keras_src, set_random_seed
from larq_bnext.models.construction import (
    initial_values_skipped,
    shape_only_calls,
    values_from_file,
)
from larq_bnext.weights import loading
from larq_bnext.weights.loading import load_keras_weights
from larq_bnext.weights.matching import WeightsMismatchError

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


def _saved(tmp_path, seed=2, channels=CHANNELS):
    set_random_seed(seed)
    source = larq_bnext.get_model(
        "custom", channels, input_shape=SHAPE, num_classes=10, stem_stride=1
    )
    for layer in source.layers:  # non-default buffers and statistics, not only kernels
        for w in layer.weights:
            w.assign(np.random.default_rng(len(w.name)).uniform(0.1, 1, w.shape).astype("f"))
    path = str(tmp_path / "weights.h5")
    source.save_weights(path)
    return source, path


def test_variables_created_from_the_file_equal_the_file_and_nothing_is_loaded_after(
    tmp_path, monkeypatch
):
    import h5py

    _, path = _saved(tmp_path)

    def no_second_read(*args, **kwargs):
        raise AssertionError("the weights were read a second time")

    monkeypatch.setattr(loading, "load_keras_weights", no_second_read)
    model = _tiny(weights=path)
    with h5py.File(path, "r") as f:
        for layer in model.layers:
            for w in layer.weights:
                stored = f[layer.name][w.name][()]
                np.testing.assert_array_equal(w.numpy(), stored, err_msg=w.name)


def test_model_built_from_the_file_computes_what_the_loaded_model_computes(tmp_path):
    _, path = _saved(tmp_path)
    from_file = _tiny(weights=path, classifier_activation=None)
    with initial_values_skipped():
        loaded = _tiny(classifier_activation=None)
    load_keras_weights(loaded, path)  # the previous path: zeros, then assigned from the file
    for a, b in zip(from_file.weights, loaded.weights, strict=True):
        assert a.name == b.name
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = np.random.default_rng(3).normal(size=(2, *SHAPE)).astype("float32")
    for training in (False, True):
        np.testing.assert_array_equal(
            from_file(x, training=training).numpy(), loaded(x, training=training).numpy()
        )


def test_a_file_of_other_shapes_gives_the_loaders_error(tmp_path):
    _, path = _saved(tmp_path, channels=(16, 32, 64, 64))  # the same layer names, twice as wide
    with values_from_file(path) as values:
        model = _tiny()
    assert not values.covers(model)
    with pytest.raises(
        WeightsMismatchError, match=r"file has shape \(3, 3, 3, 16\), model \(3, 3, 3, 8\)"
    ):
        _tiny(weights=path)


class _Capsule:
    """A DLPack capsule as NumPy's ``from_dlpack`` takes it (TensorFlow 2.15 gives bare ones)."""

    def __init__(self, tensor):
        self._capsule = tf.experimental.dlpack.to_dlpack(tensor)

    def __dlpack__(self, stream=None):
        return self._capsule

    def __dlpack_device__(self):
        return (1, 0)  # kDLCPU


def _buffer_address(tensor) -> int:
    return np.from_dlpack(_Capsule(tensor)).ctypes.data


def test_each_variable_holds_the_buffer_the_file_was_read_into(tmp_path, monkeypatch):
    """One copy from the file, none after: the memory HDF5 wrote is the variable's memory."""
    from larq_bnext.models import construction

    _, path = _saved(tmp_path)
    written = {}
    allocate = construction._aligned_empty

    def recorded(shape, dtype):
        array = allocate(shape, dtype)
        written[array.ctypes.data] = array.shape
        return array

    monkeypatch.setattr(construction, "_aligned_empty", recorded)
    model = _tiny(weights=path)
    monkeypatch.undo()
    arrays = [w for w in model.weights if w.shape.rank]
    assert arrays and len(written) == len(arrays)
    for w in arrays:
        address = _buffer_address(w.value())
        assert written.get(address) == tuple(w.shape), w.name
        assert address % construction._ALIGNMENT == 0
    # Written to (as training writes), a variable changes alone: a second model read from the
    # same file, and the file, keep their values.
    before = model.weights[0].numpy()
    model.weights[0].assign_add(tf.ones_like(model.weights[0]))
    np.testing.assert_array_equal(model.weights[0].numpy(), before + 1)
    np.testing.assert_array_equal(_tiny(weights=path).weights[0].numpy(), before)


def test_values_of_another_dtype_or_rank_zero_are_read_and_cast(tmp_path):
    import h5py

    from larq_bnext.models.construction import _read_once

    with h5py.File(tmp_path / "values.h5", "w") as f:
        f["half"] = np.array([[0.5, -1.25], [3.0, 1e-3]], dtype=np.float16)
        f["scalar"] = np.float32(7.5)
        f["empty"] = np.zeros((0, 3), dtype=np.float32)
        f["float"] = np.arange(6, dtype=np.float32).reshape(2, 3)
        got = {name: _read_once(f[name], np.float32) for name in f}
        expected = {name: f[name][()].astype(np.float32) for name in f}
    for name, value in got.items():
        assert value.dtype == tf.float32, name
        np.testing.assert_array_equal(value.numpy(), expected[name], err_msg=name)


def test_numpys_huge_page_setting_is_as_it_was_after_building(tmp_path):
    _, path = _saved(tmp_path)
    multiarray = getattr(getattr(np, "_core", None), "multiarray", None) or np.core.multiarray
    for setting in (True, False):
        multiarray._set_madvise_hugepage(setting)
        try:
            _tiny(weights=path)
        finally:
            assert multiarray._set_madvise_hugepage(True) is setting
