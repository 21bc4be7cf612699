"""Teachers in the precision the released runs used: the policy per device kind, and the
distillation loss with half-precision teachers against float32 teachers (on the CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import larq_bnext
from larq_bnext.keras2 import set_random_seed
from larq_bnext.registry import RECIPE
from larq_bnext.training import AdamW, Distiller, Teacher
from larq_bnext.training.config import RunConfig
from larq_bnext.training.method.distiller import distillation_loss
from larq_bnext.training.runtime.precision import (
    device_kind,
    resolve_teacher_precision,
    teacher_policy,
    teachers_precision,
)

CLASSES = 10
SHAPE = (32, 32, 3)


def _devices(*present):
    return lambda kind: [f"/physical_device:{kind}:0"] if kind in present else []


def test_device_kind_prefers_tpu_then_gpu_then_cpu():
    assert device_kind(_devices("CPU")) == "CPU"
    assert device_kind(_devices("CPU", "GPU")) == "GPU"
    assert device_kind(_devices("CPU", "GPU", "TPU")) == "TPU"


def test_auto_is_float16_on_gpus_as_released_and_the_students_policy_on_cpus():
    # The released script autocasts only the teachers' forward: float16 on its CUDA devices.
    assert RECIPE.teacher_precision == "mixed_float16"
    assert resolve_teacher_precision("auto", "float32", "GPU") == "mixed_float16"
    assert resolve_teacher_precision("auto", "float32", "TPU") == "mixed_bfloat16"
    assert resolve_teacher_precision("auto", "float32", "CPU") == "float32"
    assert resolve_teacher_precision("auto", "mixed_bfloat16", "CPU") == "mixed_bfloat16"


@pytest.mark.parametrize("kind", ["CPU", "GPU", "TPU"])
@pytest.mark.parametrize("choice", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_an_explicit_choice_wins_on_every_device(kind, choice):
    assert resolve_teacher_precision(choice, "float32", kind) == choice


def test_unknown_choice_is_refused():
    with pytest.raises(ValueError, match="--teacher_precision 'float16'"):
        resolve_teacher_precision("float16", "float32", "GPU")


def test_run_config_default_resolves_on_this_machines_devices():
    config = RunConfig()
    assert config.teacher_precision == "auto"
    expected = {"GPU": "mixed_float16", "TPU": "mixed_bfloat16"}.get(device_kind(), "float32")
    assert teachers_precision(config) == expected
    assert teachers_precision(RunConfig(teacher_precision="mixed_bfloat16")) == "mixed_bfloat16"


def _teacher_net(seed):
    set_random_seed(seed)
    inputs = tf.keras.Input(SHAPE)
    x = tf.keras.layers.Conv2D(16, 3, strides=2, activation="relu")(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(CLASSES)(x), name=f"teacher{seed}")


def _teachers(policy):
    """Two teachers with the same weights whatever the policy they are built in."""
    reference = [_teacher_net(1), _teacher_net(2)]
    with teacher_policy(policy):
        built = [_teacher_net(1), _teacher_net(2)]
    for model, weights in zip(built, reference, strict=True):
        model.set_weights(weights.get_weights())
    assert tf.keras.mixed_precision.global_policy().name == "float32"
    return [Teacher(m) for m in built]


def _batch():
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=(16, *SHAPE)).astype("float32") * 2)
    return images, tf.constant(rng.integers(0, CLASSES, size=(16,)))


# bfloat16 keeps 8 significant bits (unit round-off 2**-9 = 2e-3), float16 11 (2**-12 = 2.4e-4).
# The loss moves far less than the teachers' logits (measured: 3.2e-5 and 2.2e-6 relative);
# the bounds are the round-off over two.
TOLERANCE = {"mixed_bfloat16": 1e-3, "mixed_float16": 1e-4}


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_distillation_loss_with_half_precision_teachers_matches_float32(policy):
    images, _ = _batch()
    student_logits = tf.constant(np.random.default_rng(1).normal(size=(16, CLASSES)), tf.float32)
    losses = {}
    for p in ("float32", policy):
        teachers = _teachers(p)
        compute = teachers[0].model.layers[1].compute_dtype
        assert compute == {"float32": "float32", policy: policy.split("_")[1]}[p]
        logits = [t.logits(images) for t in teachers]
        assert all(z.dtype == tf.float32 for z in logits)
        losses[p] = distillation_loss(student_logits, logits, "batch_mean")[0].numpy()
    assert not np.array_equal(losses[policy], losses["float32"])  # half precision did run
    relative = np.abs(losses[policy] - losses["float32"]).max() / np.abs(losses["float32"]).max()
    assert relative < TOLERANCE[policy], relative


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_distiller_step_keeps_the_student_float32_with_half_precision_teachers(policy):
    images, labels = _batch()
    logs = {}
    for p in ("float32", policy):
        set_random_seed(0)
        student = larq_bnext.get_model(
            "custom", (8, 16), input_shape=SHAPE, num_classes=CLASSES, stem_stride=1,
            classifier_activation=None,
        )  # fmt: skip
        assistant, main = _teachers(p)
        distiller = Distiller(student, teacher=main, assistants=[assistant])
        distiller.compile(optimizer=AdamW(1e-3))
        assert student.compute_dtype == "float32"
        assert all(v.dtype == tf.float32 for v in student.weights)
        logs[p] = distiller.train_on_batch(images, labels, return_dict=True)
    assert logs[policy]["loss"] != logs["float32"]["loss"]
    assert abs(logs[policy]["loss"] - logs["float32"]["loss"]) < (
        TOLERANCE[policy] * abs(logs["float32"]["loss"])
    )
