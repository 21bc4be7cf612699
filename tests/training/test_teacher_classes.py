"""ImageNet teachers on a subset of ImageNet's classes, and the mismatch the Distiller refuses."""

import numpy as np
import pytest
import tensorflow as tf

import larq_bnext
from larq_bnext.preprocessing import imagenet_class_index
from larq_bnext.training.method.distiller import Distiller
from larq_bnext.training.method.teachers import Teacher, imagenet_class_indices, imagenet_teacher


def _student(num_classes):
    return larq_bnext.BNext(
        (8, 16),
        input_shape=(32, 32, 3),
        stem_stride=1,
        num_classes=num_classes,
        classifier_activation=None,
    )


def test_class_indices_follow_the_sorted_wnid_order():
    wnids = [w for w, _ in imagenet_class_index()]
    assert imagenet_class_indices(["n01440764", wnids[999], wnids[500]]) == [0, 999, 500]
    with pytest.raises(ValueError, match="not ImageNet WordNet ids.*cats"):
        imagenet_class_indices(["n01440764", "cats"])


def test_teacher_keeps_the_subset_logits_in_order():
    inputs = tf.keras.Input((4,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(6, use_bias=False)(inputs))
    x = tf.constant(np.random.default_rng(0).normal(size=(3, 4)), tf.float32)
    full = model(x).numpy()
    teacher = Teacher(model, class_indices=[4, 1])
    assert teacher.num_classes == 2
    np.testing.assert_allclose(teacher.logits(x).numpy(), full[:, [4, 1]], rtol=1e-6)
    with pytest.raises(ValueError, match="indices into its 6 outputs"):
        Teacher(model, class_indices=[6])


def test_untrained_imagenet_teacher_on_a_subset_and_the_mismatch_error():
    classes = [w for w, _ in imagenet_class_index()][:3]
    teacher = imagenet_teacher("efficientnet_b0", (32, 32, 3), weights=None, class_names=classes)
    assert teacher.num_classes == 3 and teacher.model.output_shape[-1] == 1000
    assert teacher.logits(tf.zeros((2, 32, 32, 3))).shape == (2, 3)
    Distiller(_student(3), teacher=teacher)  # matching classes: accepted
    with pytest.raises(ValueError, match="scores 3 classes but the student 4"):
        Distiller(_student(4), teacher=teacher)
