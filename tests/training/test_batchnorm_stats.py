"""BatchNorm re-estimation: the moving statistics become those of the data under the weights."""

import numpy as np
import tensorflow as tf

from larq_bnext.training.method.batchnorm_stats import (
    BatchNormReestimation,
    batchnorm_layers,
    reestimate_batchnorm,
)


def _model():
    tf.keras.utils.set_random_seed(3)
    inputs = tf.keras.Input((8, 8, 3))
    conv = tf.keras.layers.Conv2D(4, 3, padding="same", use_bias=True, name="conv")
    x = conv(inputs)
    x = tf.keras.layers.BatchNormalization(momentum=0.9, name="bn")(x)
    outputs = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, outputs), conv


def test_moving_statistics_become_those_of_the_whole_dataset():
    model, conv = _model()
    bn = model.get_layer("bn")
    bn.gamma.assign([2.0, 0.5, 1.0, 3.0])
    rng = np.random.default_rng(0)
    # Three batches of unequal size and different means: the per-batch statistics differ.
    images = [
        rng.normal(loc, 1.0, (n, 8, 8, 3)).astype("float32")
        for loc, n in ((0.0, 32), (2.0, 32), (-1.0, 20))
    ]
    dataset = tf.data.Dataset.from_generator(
        lambda: iter((x, np.zeros(len(x), "int64")) for x in images),
        output_signature=(
            tf.TensorSpec((None, 8, 8, 3), tf.float32),
            tf.TensorSpec((None,), tf.int64),
        ),
    )
    # The expectation, by hand: the convolution's outputs over all 84 images, per channel.
    features = conv(np.concatenate(images)).numpy().reshape(-1, 4)
    count = reestimate_batchnorm(model, dataset)
    assert count == 84
    np.testing.assert_allclose(bn.moving_mean.numpy(), features.mean(0), rtol=1e-5, atol=1e-6)
    # Keras' per-batch variance carries Bessel's correction over >= 20*64 pixels: 1e-3.
    np.testing.assert_allclose(bn.moving_variance.numpy(), features.var(0), rtol=1e-3)
    assert bn.momentum == 0.9  # restored
    np.testing.assert_array_equal(bn.gamma.numpy(), [2.0, 0.5, 1.0, 3.0])


def test_the_callback_reestimates_before_validation_and_training_is_unchanged():
    """fit validates with re-estimated statistics; the weights train exactly as without it."""
    rng = np.random.default_rng(1)
    x = rng.normal(1.5, 2.0, (64, 8, 8, 3)).astype("float32")
    y = rng.normal(size=(64, 4)).astype("float32")
    stats = tf.data.Dataset.from_tensor_slices(x).batch(16)
    kernels = []
    for reestimate in (False, True):
        model, conv = _model()
        model.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss="mse")
        callbacks = [BatchNormReestimation(model, stats)] if reestimate else []
        model.fit(
            x,
            y,
            batch_size=16,
            epochs=2,
            shuffle=False,
            validation_data=(x[:8], y[:8]),
            callbacks=callbacks,
            verbose=0,
        )
        kernels.append(conv.kernel.numpy())
        features = conv(x).numpy().reshape(-1, 4)
        moving = model.get_layer("bn").moving_mean.numpy()
    np.testing.assert_array_equal(kernels[0], kernels[1])
    np.testing.assert_allclose(moving, features.mean(0), rtol=1e-5, atol=1e-6)


def test_batchnorm_layers_finds_nested_models_once():
    inner, _ = _model()
    inputs = tf.keras.Input((8, 8, 3))
    outer = tf.keras.Model(inputs, inner(inputs))
    assert [b.name for b in batchnorm_layers(outer)] == ["bn"]
