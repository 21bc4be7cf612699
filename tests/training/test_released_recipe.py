"""The released runs' details: teacher weightings, float64 losses, PyTorch's clip, decay groups.

References are independent: numpy written out by hand and torch re-implementations.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import torch

import larq_bnext
from larq_bnext.models.layers import LearnableBias, RecouplingMix
from larq_bnext.training.method.distiller import (
    WEIGHTINGS,
    Distiller,
    check_weighting,
    clip_by_global_norm,
    distillation_loss,
)
from larq_bnext.training.method.optimizer import AdamW, is_conv_kernel
from larq_bnext.training.method.schedules import WarmupCosine


def _torch_loss(student, teachers, weighting):
    """The three weightings re-implemented in torch (float64); returns loss, grad, alpha."""
    z = torch.tensor(student, dtype=torch.float64, requires_grad=True)
    log_p = torch.log_softmax(z, dim=1)
    ce = torch.stack(
        [-(torch.softmax(torch.tensor(t), dim=1) * log_p).sum(dim=1) for t in teachers], dim=1
    )
    if weighting == "constant":
        alpha = torch.full_like(ce, 0.5)
    else:
        alpha = torch.softmax(ce, dim=1).detach()
    if weighting != "per_sample":
        ce = ce.mean(dim=0, keepdim=True)
    loss = (alpha * ce).mean(dim=1).mean()
    loss.backward()
    return loss.item(), z.grad.numpy(), alpha.numpy()


@pytest.mark.parametrize("weighting", ["per_sample", "batch_mean", "constant"])
@pytest.mark.parametrize("num_teachers", [1, 2, 3])
def test_every_weighting_matches_torch_in_float64(weighting, num_teachers):
    rng = np.random.default_rng(num_teachers)
    student = rng.normal(scale=3.0, size=(6, 7))
    teachers = [rng.normal(scale=3.0, size=(6, 7)) for _ in range(num_teachers)]
    z = tf.Variable(student)
    with tf.GradientTape() as tape:
        per_example, alpha = distillation_loss(z, [tf.constant(t) for t in teachers], weighting)
        loss = tf.reduce_mean(per_example)
    grad = tape.gradient(loss, z)
    assert loss.dtype == tf.float64 and grad.dtype == tf.float64
    ref_loss, ref_grad, ref_alpha = _torch_loss(student, teachers, weighting)
    np.testing.assert_allclose(loss.numpy(), ref_loss, rtol=1e-13)
    np.testing.assert_allclose(grad.numpy(), ref_grad, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(alpha.numpy(), ref_alpha, rtol=1e-13)


def test_constant_weighting_halves_a_single_teacher_and_ignores_disagreement():
    """With alpha fixed at 0.5 one teacher's loss is halved (the softmax would give alpha 1)."""
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    constant, alpha = distillation_loss(tf.constant(student), [tf.constant(teacher)], "constant")
    per_sample, _ = distillation_loss(tf.constant(student), [tf.constant(teacher)], "per_sample")
    np.testing.assert_allclose(alpha.numpy(), 0.5)
    np.testing.assert_allclose(
        tf.reduce_mean(constant).numpy(), 0.5 * tf.reduce_mean(per_sample).numpy(), rtol=1e-14
    )


def test_unknown_weighting_is_refused_with_the_choices():
    assert WEIGHTINGS == ("per_sample", "batch_mean", "constant")
    for bad in ("released", "Instance", None, 1):
        with pytest.raises(ValueError, match="per_sample.*batch_mean.*constant"):
            check_weighting(bad)
    inputs = tf.keras.Input((3,))
    student = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match="Unknown distillation weighting 'paper'"):
        Distiller(student, weighting="paper")
    with pytest.raises(ValueError, match="Unknown distillation weighting"):
        distillation_loss(tf.zeros((1, 2)), [tf.zeros((1, 2))], "batch")


@pytest.mark.parametrize("scale", [1e-3, 0.9999999, 30.0])
def test_clip_matches_torch_clip_grad_norm(scale):
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=(3, 4)), rng.normal(size=(5,))]
    norm = np.sqrt(sum((g**2).sum() for g in grads))
    grads = [g * 5.0 * scale / norm for g in grads]  # global norm 5 * scale
    clipped, got_norm = clip_by_global_norm([tf.constant(g) for g in grads] + [None], 5.0)
    params = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.tensor(g)
    ref_norm = torch.nn.utils.clip_grad_norm_(params, 5.0)
    assert clipped[-1] is None
    np.testing.assert_allclose(got_norm.numpy(), ref_norm.item(), rtol=1e-14)
    for c, p in zip(clipped[:-1], params, strict=True):
        np.testing.assert_allclose(c.numpy(), p.grad.numpy(), rtol=1e-14, atol=0)
    if scale == 0.9999999:  # just below 5: torch still scales by 5 / (norm + 1e-6) < 1
        assert np.abs(clipped[0].numpy()).max() < np.abs(grads[0]).max()


def test_move_and_recoupling_scale_get_the_small_decay_like_the_original():
    """The original stores them as (1, C, 1, 1): `p.ndimension() == 4` puts them at 1e-8."""
    inputs = tf.keras.Input((4, 4, 2))
    move = LearnableBias(name="move")
    mix = RecouplingMix(name="mix")
    bn = tf.keras.layers.BatchNormalization(name="bn")
    y = move(inputs)
    x = mix([inputs, bn(y)])
    x = tf.keras.layers.Conv2D(2, 1, name="conv")(x)
    model = tf.keras.Model(
        inputs, tf.keras.layers.Dense(3, name="fc")(tf.keras.layers.Flatten()(x))
    )
    optimizer = AdamW(weight_decay=1e-3, conv_weight_decay=1e-8)
    decay = {v.name.split(":")[0]: optimizer.weight_decay_of(v) for v in model.trainable_variables}
    assert decay == {
        "move/bias": 1e-8,
        "mix/scale": 1e-8,
        "conv/kernel": 1e-8,
        "bn/gamma": 1e-3,
        "bn/beta": 1e-3,
        "conv/bias": 1e-3,
        "fc/kernel": 1e-3,
        "fc/bias": 1e-3,
    }
    assert is_conv_kernel(move.bias) and not is_conv_kernel(bn.gamma)


def test_bnext_decay_groups_hold_every_original_4d_parameter():
    """In a narrow BNext the 1e-8 group is every kernel, move bias and recoupling scale."""
    model = larq_bnext.BNext((16, 32), input_shape=(32, 32, 3), num_classes=10)
    small = {v.name for v in model.trainable_variables if is_conv_kernel(v)}
    for v in model.trainable_variables:
        leaf = v.name.split("/")[-1].split(":")[0]
        original_4d = v.shape.rank == 4 or (leaf == "bias" and "_move" in v.name) or leaf == "scale"
        assert (v.name in small) == original_4d, v.name
    assert any("_move" in n for n in small) and any(n.endswith("scale:0") for n in small)


def test_warmup_cosine_is_float64_under_a_float64_floatx():
    schedule = WarmupCosine(steps_per_epoch=10, epochs=512)
    assert schedule(0).dtype == tf.float32
    tf.keras.backend.set_floatx("float64")
    try:
        lr = schedule(tf.constant(2610))  # epoch 261: t = 256, the cosine's midpoint
        assert lr.dtype == tf.float64
        assert lr.numpy() == pytest.approx((1e-3 + 1e-7) / 2, rel=1e-15)
    finally:
        tf.keras.backend.set_floatx("float32")


def _resolved_from_flag_file(path, *extra):
    from absl import flags

    from larq_bnext import train
    from larq_bnext.training.recipe import resolve

    values = train.define_flags(flags.FlagValues())
    values(["train", f"--flagfile={path}", "--data_dir=/data/imagenet", *extra])
    return resolve(train.config_from_flags(values))


@pytest.mark.parametrize("extra", [(), ("--epochs=30", "--batch_size=64")], ids=["as is", "short"])
@pytest.mark.parametrize(
    "name", ["bnext_tiny", "bnext_small", "bnext_middle", "bnext_large", "bnext18"]
)
def test_old_flag_files_give_the_same_config_as_the_short_ones(name, extra):
    """The files that spelled the whole recipe out (tests/data/experiments_before) and today's,
    which name only the model, the data, the folder and the temperature factor, give the same
    resolved RunConfig, also with a shorter run asked after the file; the teachers are weighted
    as released (batch_mean) by the recipe itself."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    before = root / "tests" / "data" / "experiments_before" / f"{name}.flags"
    old = _resolved_from_flag_file(before, *extra)
    new = _resolved_from_flag_file(root / "experiments" / f"{name}.flags", *extra)
    # The old files wrote 4/3 to 7 digits (1.3333333); the recipe has 4/3 itself (timm's).
    assert old.crop_ratio == pytest.approx(new.crop_ratio, rel=1e-7)
    assert dataclasses.replace(old, crop_ratio=new.crop_ratio) == new
    assert new.distill_weighting == "batch_mean"
    assert (new.weight_decay, new.conv_weight_decay, new.clip_norm) == (1e-3, 1e-8, 5)
    assert new.temperature_decay == 0.9 and not new.lr_per_step
    if extra:  # overrides given after the file act on both alike
        assert (new.epochs, new.batch_size) == (30, 64)
        return
    # The docstring's example (train.py) without a flag file trains the same recipe.
    from larq_bnext.training import RunConfig
    from larq_bnext.training.recipe import resolve

    plain = resolve(
        RunConfig(
            model=new.model, dataset="folder", data_dir="/data/imagenet", output_dir=new.output_dir
        )
    )
    assert plain == new
