"""The run's learning-rate schedule: the demo's cosine ends before its cooldown, ImageNet's is
timm's."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from larq_bnext.training import RunConfig
from larq_bnext.training.builders import build_optimizer
from larq_bnext.training.checks import ConfigError
from larq_bnext.training.method.schedules import current_learning_rate
from larq_bnext.training.recipe import resolve


def _lr_by_epoch(config, epochs, steps=22):
    run_data = SimpleNamespace(batch_size=config.batch_size, steps_per_epoch=steps)
    optimizer = build_optimizer(config, run_data, epochs)
    lrs = []
    for epoch in range(epochs):
        optimizer.iterations.assign(epoch * steps)
        lrs.append(current_learning_rate(optimizer))
    return lrs


def _cosine(t, length, base=1e-3, floor=1e-7):
    return floor + 0.5 * (base - floor) * (1 + math.cos(math.pi * t / length))


def test_the_demo_cosine_ends_five_epochs_before_the_run_then_cools_down():
    config = resolve(RunConfig(dataset="digits"))
    assert (config.epochs, config.cosine_to_end, config.bn_reestimation) == (30, True, True)
    assert config.cooldown_epochs == 5
    lrs = _lr_by_epoch(config, 30)
    assert math.isclose(lrs[5], 1e-3, rel_tol=1e-6)
    # Epochs 5-24: a 20-epoch cosine; epoch 24 is t = 19 of 20, (1 + cos(0.95 pi)) / 2 = 0.00616.
    np.testing.assert_allclose(lrs[5:25], [_cosine(e - 5, 20) for e in range(5, 25)], rtol=1e-5)
    assert 6.1e-6 < lrs[24] < 6.3e-6
    # Epochs 25-29: the cooldown, at the floor.
    np.testing.assert_allclose(lrs[25:], [1e-7] * 5, rtol=1e-5)


def test_without_cooldown_the_demo_cosine_spans_the_epochs_after_the_warmup():
    config = resolve(RunConfig(dataset="digits", cooldown_epochs=0))
    lrs = _lr_by_epoch(config, 30)
    # Epoch 29: t = 24 of a 25-epoch cosine, (1 + cos(0.96 pi)) / 2 = 0.00394 of the peak.
    assert math.isclose(lrs[29], _cosine(24, 25), rel_tol=1e-5)
    assert 3.9e-6 < lrs[29] < 4.1e-6
    np.testing.assert_allclose(lrs[5:], [_cosine(e - 5, 25) for e in range(5, 30)], rtol=1e-5)


def test_a_cooldown_needs_a_cosine_that_ends():
    with pytest.raises(ConfigError, match="cooldown_epochs=3 needs cosine_to_end=True"):
        resolve(RunConfig(dataset="imagenet2012", model="tiny", cooldown_epochs=3))
    with pytest.raises(ConfigError, match="cooldown_epochs=-1 must be"):
        RunConfig(dataset="digits", cooldown_epochs=-1)


def test_the_original_schedule_is_kept_where_the_cosine_does_not_end_with_the_run():
    # The released recipe (t_initial=epochs after a 5-epoch prefix): a 30-epoch run stops at
    # t = 24 of 30, (1 + cos(0.8 pi)) / 2 = 0.0955 of the peak.
    for config in (
        resolve(RunConfig(dataset="digits", cosine_to_end=False, cooldown_epochs=0)),
        resolve(RunConfig(dataset="imagenet2012", model="tiny", epochs=30)),
    ):
        assert not config.cosine_to_end
        lrs = _lr_by_epoch(config, 30)
        assert math.isclose(lrs[29], _cosine(24, 30), rel_tol=1e-5)
        assert 9.5e-5 < lrs[29] < 9.6e-5
    assert not resolve(RunConfig(dataset="imagenet2012", model="tiny")).bn_reestimation


def test_a_warmup_clamped_short_run_ends_its_cosine_too():
    config = resolve(RunConfig(dataset="digits", epochs=3))  # warm-up clamped to 2 epochs
    lrs = _lr_by_epoch(config, 3)
    assert math.isclose(lrs[2], 1e-3, rel_tol=1e-6)  # t = 0 of a 1-epoch cosine
