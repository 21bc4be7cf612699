"""The recipe: AdamW's two decay groups, constraints, the LR schedule, the callbacks."""

import math
import os

import numpy as np
import pytest
import tensorflow as tf
import torch

import larq_bnext
from larq_bnext.keras2 import set_random_seed
from larq_bnext.models import BinaryConv2D, RecouplingMix
from larq_bnext.training import (
    AdamW,
    LearningRateLogger,
    StudentCheckpoint,
    TemperatureScheduler,
    WarmupCosine,
    anneal_temperatures,
    is_conv_kernel,
)


def _pairs(grads, variables):
    return [(tf.constant(g, tf.float32), v) for g, v in zip(grads, variables, strict=True)]


def _conv_model():
    inputs = tf.keras.Input((4, 4, 2))
    x = tf.keras.layers.Conv2D(3, 3, name="conv")(inputs)  # kernel 4-D, bias 1-D
    x = tf.keras.layers.Flatten()(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(2, name="dense")(x))


def test_one_adamw_step_matches_a_hand_computation_for_both_decay_groups():
    set_random_seed(0)
    model = _conv_model()
    lr, wd, conv_wd, eps = 0.5, 0.1, 0.02, 1e-8
    optimizer = AdamW(learning_rate=lr, weight_decay=wd, conv_weight_decay=conv_wd, epsilon=eps)
    variables = model.trainable_variables
    before = [v.numpy().astype(np.float64) for v in variables]
    grads = [np.random.default_rng(i).normal(size=v.shape) for i, v in enumerate(variables)]
    optimizer.apply_gradients(_pairs(grads, variables))
    for var, p, g in zip(variables, before, grads, strict=True):
        decay = conv_wd if var.shape.rank == 4 else wd
        # Step 1 by hand: m_hat = g, v_hat = g^2 (bias corrections cancel the (1 - beta)).
        m_hat = 0.1 * g / (1 - 0.9)
        v_hat = 0.001 * g**2 / (1 - 0.999)
        expected = p - lr * decay * p - lr * m_hat / (np.sqrt(v_hat) + eps)
        np.testing.assert_allclose(var.numpy(), expected, rtol=1e-5, atol=1e-6)
        assert optimizer.weight_decay_of(var) == decay
    assert [is_conv_kernel(v) for v in variables] == [True, False, False, False]


def test_adamw_matches_torch_adamw_over_steps_with_a_changing_lr():
    """Three steps against torch.optim.AdamW with the original's two parameter groups; the lr
    changes every step, so the decoupled decay must follow the scheduled lr (lr x wd)."""
    set_random_seed(1)
    model = _conv_model()
    lrs = [0.3, 0.1, 0.05]
    schedule = tf.keras.optimizers.schedules.PiecewiseConstantDecay([0, 1], lrs)  # steps 0, 1, 2
    optimizer = AdamW(learning_rate=schedule, weight_decay=0.2, conv_weight_decay=0.05)
    variables = model.trainable_variables
    params = [torch.tensor(v.numpy(), dtype=torch.float64, requires_grad=True) for v in variables]
    pairs = list(zip(params, variables, strict=True))
    groups = [
        {"params": [p for p, v in pairs if v.shape.rank != 4], "weight_decay": 0.2},
        {"params": [p for p, v in pairs if v.shape.rank == 4], "weight_decay": 0.05},
    ]
    reference = torch.optim.AdamW(groups, lr=lrs[0])
    rng = np.random.default_rng(2)
    for step in range(3):
        grads = [rng.normal(size=v.shape) for v in variables]
        optimizer.apply_gradients(_pairs(grads, variables))
        for group in reference.param_groups:
            group["lr"] = lrs[step]
        for p, g in zip(params, grads, strict=True):
            p.grad = torch.tensor(g)
        reference.step()
    for v, p in zip(variables, params, strict=True):
        np.testing.assert_allclose(v.numpy(), p.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_optimizer_applies_variable_constraints_through_the_distiller():
    inputs = tf.keras.Input((4, 4, 2))
    conv = BinaryConv2D(2, 3, name="bconv")
    y = conv(inputs)
    mix = RecouplingMix(name="mix")
    x = mix([inputs, y])
    x = tf.keras.layers.Flatten()(x)
    student = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(x))
    conv.kernel.assign(tf.fill(conv.kernel.shape, 1.49))
    mix.scale.assign([0.999, 0.001])
    distiller = larq_bnext.Distiller(student)
    distiller.compile(optimizer=AdamW(learning_rate=10.0, weight_decay=0.0, conv_weight_decay=0.0))
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 2)).astype(np.float32)
    distiller.train_on_batch(x, np.arange(8) % 3)
    kernel, scale = conv.kernel.latent_variable.numpy(), mix.scale.numpy()
    # Adam's first step moves every weight by ~lr = 10: far outside the allowed ranges.
    assert np.abs(kernel).max() <= 1.5 + 1e-6 and np.isclose(np.abs(kernel).max(), 1.5)
    assert scale.min() >= 0.0 and scale.max() <= 1.0 and set(np.round(scale, 6)) <= {0.0, 1.0}


def _timm_cosine(epoch, epochs=512, warmup=5, base=1e-3, warmup_lr=1e-5, floor=1e-7):
    """timm's CosineLRScheduler(warmup_prefix=True) written out for one epoch."""
    if epoch < warmup:
        return warmup_lr + epoch * (base - warmup_lr) / warmup
    t = epoch - warmup
    if t >= epochs:
        return floor
    return floor + 0.5 * (base - floor) * (1 + math.cos(math.pi * t / epochs))


def test_lr_schedule_key_points():
    per_epoch = WarmupCosine(steps_per_epoch=100, epochs=512)
    expected = {
        0: 1e-5,
        1: 1e-5 + (1e-3 - 1e-5) / 5,
        4: 1e-5 + 4 * (1e-3 - 1e-5) / 5,
        5: 1e-3,
        5 + 256: (1e-3 + 1e-7) / 2,
        511: 1e-7 + 0.5 * (1e-3 - 1e-7) * (1 + math.cos(math.pi * 506 / 512)),
        517: 1e-7,
        600: 1e-7,
    }
    for epoch, value in expected.items():
        assert math.isclose(value, _timm_cosine(epoch), rel_tol=1e-12)
        for step in (epoch * 100, epoch * 100 + 99):  # constant within the epoch
            np.testing.assert_allclose(per_epoch(step).numpy(), value, rtol=1e-6)
        assert math.isclose(per_epoch.lr_at_epoch(epoch), value, rel_tol=1e-9)
    per_step = WarmupCosine(steps_per_epoch=100, epochs=512, per_step=True)
    np.testing.assert_allclose(per_step(250).numpy(), 1e-5 + 2.5 * (1e-3 - 1e-5) / 5, rtol=1e-6)
    np.testing.assert_allclose(per_step(500).numpy(), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(per_step(100 * 5 + 50).numpy(), _timm_cosine(5.5), rtol=1e-6)
    config = per_step.get_config()
    assert WarmupCosine.from_config(config).get_config() == config


def _binary_model():
    set_random_seed(3)
    return larq_bnext.BNext(
        (8, 16), input_shape=(4, 4, 3), stem_stride=1, num_classes=3, classifier_activation=None
    )


def _temperatures(model):
    return {
        (layer.name, attr): float(getattr(layer, attr).numpy())
        for layer in larq_bnext.models.binary_conv_layers(model)
        for attr in ("temperature", "input_temperature")
    }


def test_temperature_callback_anneals_logs_and_resumes_without_double_applying(tmp_path):
    x = np.random.default_rng(4).normal(size=(8, 4, 4, 3)).astype(np.float32)
    y = np.arange(8) % 3
    student = _binary_model()
    distiller = larq_bnext.Distiller(student)
    distiller.compile(optimizer=AdamW(WarmupCosine(steps_per_epoch=2, epochs=3)))
    checkpoint = StudentCheckpoint(str(tmp_path))
    # The order of the training CLI: the weight files, then the anneal.
    history = distiller.fit(
        x,
        y,
        batch_size=4,
        epochs=2,
        verbose=0,
        validation_data=(x, y),
        callbacks=[LearningRateLogger(), checkpoint, TemperatureScheduler(0.9)],
    )
    temps = _temperatures(student)
    assert len(temps) == 3 * 2  # block 1: FFN-3x3 and two FFN-1x1 (8 -> 16 channels)
    np.testing.assert_allclose(list(temps.values()), 0.81, rtol=1e-6)
    np.testing.assert_allclose(history.history["temperature"], [1.0, 0.9], rtol=1e-6)
    np.testing.assert_allclose(history.history["lr"], [1e-5, 1e-5 + (1e-3 - 1e-5) / 5], rtol=1e-5)
    assert os.path.exists(checkpoint.last_path) and os.path.exists(checkpoint.best_path)

    # The files hold the model as validated: the temperature of their epoch, and the best
    # file scores what its epoch's validation logged.
    saved = _binary_model()
    saved.load_weights(checkpoint.best_path)
    best = checkpoint.best_epoch
    np.testing.assert_allclose(list(_temperatures(saved).values()), 0.9**best, rtol=1e-6)
    scores = larq_bnext.Distiller(saved)
    scores.compile()
    again = scores.evaluate(x, y, batch_size=4, return_dict=True, verbose=0)
    assert again["loss"] == pytest.approx(history.history["val_loss"][best], rel=1e-6)
    assert again["top1"] == history.history["val_top1"][best]

    # Resume by hand: last.weights.h5 carries T = 0.9 (epoch 1's); annealed once, epoch 2 runs
    # at 0.81 and ends at 0.729, not 0.6561 or 0.9.
    resumed = _binary_model()
    resumed.load_weights(checkpoint.last_path)
    np.testing.assert_allclose(list(_temperatures(resumed).values()), 0.9, rtol=1e-6)
    anneal_temperatures(resumed, 0.9)
    distiller = larq_bnext.Distiller(resumed)
    distiller.compile(optimizer=AdamW(1e-3))
    callback = TemperatureScheduler(0.9)
    history = distiller.fit(
        x, y, batch_size=4, epochs=3, initial_epoch=2, verbose=0, callbacks=[callback]
    )
    np.testing.assert_allclose(history.history["temperature"], [0.81], rtol=1e-6)
    np.testing.assert_allclose(list(_temperatures(resumed).values()), 0.729, rtol=1e-6)
    callback.on_epoch_end(2, {})  # a repeated call for the same epoch changes nothing
    np.testing.assert_allclose(list(_temperatures(resumed).values()), 0.729, rtol=1e-6)
