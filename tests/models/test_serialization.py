"""Saving and loading BNext models: H5 and SavedModel, temperatures included, no custom_objects."""

import numpy as np
import pytest
import tensorflow as tf

import larq_bnext
from larq_bnext.models import BinaryConv2D

NARROW = (8, 16, 32, 32, 64)


def set_distinct_temperatures(model):
    """Give every binary conv its own temperatures, half of them in the sign(w) regime."""
    values = {}
    for i, layer in enumerate(x for x in model.layers if isinstance(x, BinaryConv2D)):
        kernel_t = 0.9 ** (i * 10) if i % 2 else 1e-9 * (i + 1)
        layer.temperature.assign(kernel_t)
        layer.input_temperature.assign(0.5 + i / 1000)
        values[layer.name] = (kernel_t, 0.5 + i / 1000)
    return values


def check_round_trip(model, restored, values, x, train=True, outputs=True):
    assert restored.__class__ is model.__class__
    for name, (kernel_t, input_t) in values.items():
        layer = restored.get_layer(name)
        assert isinstance(layer, BinaryConv2D)
        assert float(layer.temperature.numpy()) == pytest.approx(kernel_t, rel=1e-6)
        assert float(layer.input_temperature.numpy()) == pytest.approx(input_t, rel=1e-6)
    assert [w.name for w in restored.weights] == [w.name for w in model.weights]
    for saved, loaded in zip(model.weights, restored.weights, strict=True):
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy(), err_msg=saved.name)
    if outputs:
        np.testing.assert_array_equal(model(x, training=False), restored(x, training=False))
    if train:  # the restored model still trains, and its constraints still hold
        restored.compile(optimizer=tf.keras.optimizers.SGD(1e3), loss="mse")
        restored.train_on_batch(x, np.ones((len(x), restored.output_shape[-1])))
        for layer in restored.layers:
            if isinstance(layer, BinaryConv2D):
                assert np.abs(layer.kernel.latent_variable.numpy()).max() <= 1.5


# The default (with traces) also on the second stack (make compat).
@pytest.mark.parametrize("save_traces", [pytest.param(True, marks=pytest.mark.compat), False])
def test_savedmodel_round_trip(save_traces, tmp_path):
    # The SavedModel path is per layer type, not per size: a narrow BNext has every layer type
    # (ELM-Attention, FFN-3x3 and FFN-1x1, stride 2, channel doubling). Saving with traces takes
    # about a minute per full-size model here; test_bnext.py round-trips every size in H5.
    model = larq_bnext.BNext(NARROW, input_shape=(32, 32, 3), num_classes=7)
    values = set_distinct_temperatures(model)
    model.save(tmp_path / "saved", save_traces=save_traces)
    restored = tf.keras.models.load_model(tmp_path / "saved")
    x = tf.random.uniform((2, 32, 32, 3), -1, 1, seed=3)
    check_round_trip(model, restored, values, x, train=False)


def test_weights_only_round_trip(tmp_path):
    model = larq_bnext.BNext(NARROW, input_shape=(32, 32, 3), num_classes=7)
    values = set_distinct_temperatures(model)
    model.save_weights(tmp_path / "w.h5")
    fresh = larq_bnext.BNext(NARROW, input_shape=(32, 32, 3), num_classes=7)
    fresh.load_weights(tmp_path / "w.h5")
    check_round_trip(model, fresh, values, tf.random.uniform((2, 32, 32, 3), seed=5))
