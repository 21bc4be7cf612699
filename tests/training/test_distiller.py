"""Distiller, the multi-teacher loss and the curriculum, against independent computations."""

import numpy as np
import pytest
import tensorflow as tf
import torch

import larq_bnext
from larq_bnext.keras2 import set_random_seed
from larq_bnext.training import (
    AssistantCurriculum,
    Distiller,
    Teacher,
    curriculum_phase,
    default_teachers,
    distillation_loss,
    imagenet_teacher,
)
from larq_bnext.training.method.teachers import denormalize_to_255

STUDENT = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
TEACHER_A = np.array([[1.0, 0.0, 0.0], [0.0, 3.0, -1.0]])
TEACHER_B = np.array([[0.0, 0.0, 4.0], [0.5, 0.5, 0.5]])


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _hand_loss(student, teachers, batch_mean=False):
    """The paper's loss written out sample by sample in float64."""
    log_p = np.log(_softmax(student))
    ce = np.array([[-(_softmax(t)[i] * log_p[i]).sum() for t in teachers] for i in range(2)])
    alpha = np.exp(ce) / np.exp(ce).sum(axis=1, keepdims=True)
    weighted = ce.mean(axis=0, keepdims=True) if batch_mean else ce
    return (alpha * weighted).mean(axis=1), alpha


def test_loss_and_alpha_match_a_hand_computation():
    per_example, alpha = distillation_loss(
        tf.constant(STUDENT, tf.float32), [tf.constant(TEACHER_A), tf.constant(TEACHER_B)]
    )
    expected, expected_alpha = _hand_loss(STUDENT, [TEACHER_A, TEACHER_B])
    np.testing.assert_allclose(per_example.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(alpha.numpy(), expected_alpha, rtol=1e-5)
    # Teacher B disagrees more with sample 0 (it puts its mass on class 2): it weighs more.
    assert alpha.numpy()[0, 1] > 0.8
    np.testing.assert_allclose(alpha.numpy().sum(axis=1), 1.0, rtol=1e-6)

    per_example, alpha = distillation_loss(
        tf.constant(STUDENT, tf.float32),
        [tf.constant(TEACHER_A), tf.constant(TEACHER_B)],
        weighting="batch_mean",
    )
    expected, _ = _hand_loss(STUDENT, [TEACHER_A, TEACHER_B], batch_mean=True)
    np.testing.assert_allclose(per_example.numpy(), expected, rtol=1e-5)


def _tiny_student(num_classes=5):
    return larq_bnext.BNext(
        (8, 16),
        input_shape=(8, 8, 3),
        stem_stride=1,
        num_classes=num_classes,
        classifier_activation=None,
        name="student",
    )


def _dense_model(seed, num_classes=5, name=None):
    set_random_seed(seed)
    inputs = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Flatten()(inputs)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(num_classes)(x), name=name)


def test_train_step_matches_pytorch_reference_with_clipping():
    """One SGD step of the Distiller equals the original's loss + clip_grad_norm_(5) in torch."""
    student = _dense_model(0, name="student")
    teacher_a, teacher_b = _dense_model(1, name="assistant"), _dense_model(2, name="main")
    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 8, 8, 3)).astype(np.float32) * 3.0
    labels = np.array([0, 1, 2, 3])

    distiller = Distiller(student, teacher=teacher_b, assistants=[teacher_a], clip_norm=5.0)
    distiller.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=1.0))
    kernel0, bias0 = (w.numpy().copy() for w in student.weights)
    logs = distiller.train_on_batch(images, labels, return_dict=True)

    # The reference: the original's per-sample KD loss, autograd, global-norm clip, SGD.
    flat = torch.tensor(images.reshape(4, -1), dtype=torch.float64)
    w = torch.tensor(kernel0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(bias0, dtype=torch.float64, requires_grad=True)
    z_s = flat @ w + b
    losses = []
    for teacher in (teacher_a, teacher_b):
        tk, tb = (torch.tensor(v.numpy(), dtype=torch.float64) for v in teacher.weights)
        p_t = torch.softmax(flat @ tk + tb, dim=1)
        losses.append(-(p_t * torch.log_softmax(z_s, dim=1)).sum(dim=1))
    ce = torch.stack(losses, dim=1)
    alpha = torch.softmax(ce, dim=1).detach()
    loss = (ce * alpha).mean(dim=1).mean()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_([w, b], 5.0)
    assert norm.item() > 5.0, "the test should exercise the clipping"
    np.testing.assert_allclose(logs["loss"], loss.item(), rtol=1e-4)
    np.testing.assert_allclose(logs["alpha_main"], alpha[:, 1].mean().item(), rtol=1e-4)
    np.testing.assert_allclose(student.weights[0].numpy(), kernel0 - w.grad.numpy(), atol=2e-5)
    np.testing.assert_allclose(student.weights[1].numpy(), bias0 - b.grad.numpy(), atol=2e-5)
    assert {"loss", "top1", "top5", "alpha_main", "teacher_top1"} <= set(logs)


def test_label_training_without_teacher_and_evaluation():
    student = _dense_model(0)
    distiller = Distiller(student)
    distiller.compile(optimizer=larq_bnext.training.AdamW(1e-2))
    x = np.random.default_rng(1).normal(size=(16, 8, 8, 3)).astype(np.float32)
    y = np.arange(16) % 5
    history = distiller.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "top1", "top5"}
    logits = student(x, training=False).numpy()
    expected = -np.mean(np.log(_softmax(logits.astype(np.float64)))[np.arange(16), y])
    scores = distiller.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    np.testing.assert_allclose(scores["loss"], expected, rtol=1e-4)
    np.testing.assert_allclose(scores["top1"], np.mean(logits.argmax(1) == y))
    # One-hot (mixup/cutmix) labels give the same loss as integer labels.
    onehot = np.eye(5, dtype=np.float32)[y]
    scores_1h = distiller.evaluate(x, onehot, batch_size=16, return_dict=True, verbose=0)
    np.testing.assert_allclose(scores_1h["loss"], expected, rtol=1e-4)


def test_curriculum_phases_match_the_original_rule():
    # The original: phase k while epoch / (epochs / n) < k + 1.
    for epochs, n in [(512, 1), (512, 2), (512, 3), (10, 3), (7, 2)]:
        for epoch in range(epochs):
            ratio = epoch / (epochs / n)
            expected = next((k for k in range(n) if ratio < k + 1), n - 1)
            assert curriculum_phase(epoch, epochs, n) == expected
    assert [curriculum_phase(e, 6, 3) for e in range(6)] == [0, 0, 1, 1, 2, 2]


class _ActiveTeachers(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = {}

    def on_epoch_end(self, epoch, logs=None):
        self.seen[epoch] = [t.name for t in self.model.active_teachers()]
        self.seen[epoch].append(round(logs["alpha_main"], 6))


def test_curriculum_callback_switches_and_resumes_in_the_right_phase():
    x = np.random.default_rng(2).normal(size=(8, 8, 8, 3)).astype(np.float32)
    y = np.arange(8) % 5
    teachers = [_dense_model(s, name=f"t{s}") for s in (3, 4, 5)]

    def make():
        distiller = Distiller(
            _dense_model(0, name="s"),
            teacher=teachers[2],
            assistants=[teachers[0], teachers[1]],
        )
        distiller.compile(optimizer=tf.keras.optimizers.SGD(0.0))
        return distiller

    record = _ActiveTeachers()
    make().fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[AssistantCurriculum(), record])
    assert [record.seen[e][:2] for e in range(4)] == [["t3", "t5"]] * 2 + [["t4", "t5"]] * 2
    # The weights of the main teacher differ between phases: the graph really changed.
    assert record.seen[0][2] == record.seen[1][2] != record.seen[2][2] == record.seen[3][2]

    resumed = _ActiveTeachers()
    make().fit(
        x,
        y,
        epochs=4,
        initial_epoch=3,
        batch_size=8,
        verbose=0,
        callbacks=[AssistantCurriculum(), resumed],
    )
    assert resumed.seen == {3: record.seen[3]}


def test_clear_errors():
    softmax_student = larq_bnext.BNext((8, 16), input_shape=(8, 8, 3), stem_stride=1, num_classes=5)
    with pytest.raises(ValueError, match="classifier_activation=None"):
        Distiller(softmax_student)
    with pytest.raises(ValueError, match="main teacher"):
        Distiller(_tiny_student(), assistants=[_dense_model(1)])
    with pytest.raises(ValueError, match="Unknown teacher"):
        imagenet_teacher("resnet50")
    # Offline: the Keras ImageNet weights cannot be downloaded -> a clear error.
    with pytest.raises(RuntimeError, match="internet"):
        imagenet_teacher("efficientnet_b0", input_shape=(32, 32, 3))


def test_teacher_adapter_and_default_assignments():
    images = tf.constant(np.random.default_rng(3).uniform(0, 1, (2, 4, 4, 3)), tf.float32)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    normalised = (images.numpy() - mean) / std
    np.testing.assert_allclose(
        denormalize_to_255(tf.constant(normalised, tf.float32)).numpy(),
        images.numpy() * 255,
        rtol=1e-5,
        atol=1e-3,
    )
    # A probabilities-output teacher gives back log-probabilities as logits.
    probs = tf.keras.Sequential([tf.keras.layers.Flatten(), tf.keras.layers.Softmax()])
    probs.build((None, 1, 3))
    teacher = Teacher(probs, from_logits=False)
    out = teacher.logits(tf.constant([[[1.0, 2.0, 3.0]]]))
    np.testing.assert_allclose(
        tf.nn.softmax(out).numpy(), _softmax(np.array([[1.0, 2.0, 3.0]])), rtol=1e-6
    )
    assert not probs.trainable


def test_default_teacher_assignments_build_each_teacher_once(monkeypatch):
    built = []

    def fake(name, input_shape, weights, class_names=None):
        built.append(name)
        return Teacher(_dense_model(0, name=name), input_adapter=denormalize_to_255, name=name)

    monkeypatch.setattr(larq_bnext.training.method.teachers, "imagenet_teacher", fake)
    expected = {
        "T": (["efficientnet_b0"], "efficientnet_b2"),
        "small": (["efficientnet_b0"], "efficientnet_b2"),
        "M": (["efficientnet_b0", "efficientnet_b2"], "efficientnet_b4"),
        "L": (["efficientnet_b0", "efficientnet_b4", "convnext_tiny"], "convnext_tiny"),
    }
    for size, (assistant_names, main_name) in expected.items():
        built.clear()
        assistants, main = default_teachers(size, input_shape=(8, 8, 3), weights=None)
        assert [t.name for t in assistants] == assistant_names
        assert main.name == main_name
        assert sorted(built) == sorted(set(assistant_names + [main_name]))
    assert assistants[2] is main  # BNext-L: the last assistant is the main teacher
