"""Knowledge distillation the BNext way: frozen float teachers, a binary student.

The paper trains every BNext size by distilling from ImageNet-pretrained float networks
(no ground-truth term). :class:`Distiller` is a :class:`tf.keras.Model` that holds the student
and the frozen teachers and implements that loss in its own ``train_step``:

* the teachers active in a step are the *main* teacher plus the *assistant* of the current
  curriculum phase (:class:`~larq_bnext.training.method.callbacks.AssistantCurriculum` switches
  phases over the epochs);
* the distribution loss per teacher is ``L_t = -sum_c softmax(z_t)_c * log_softmax(z_s)_c``;
* the knowledge-complexity weights are ``alpha = softmax_t(stop_gradient(CE(z_s, softmax(z_t))))``
  per sample: the teacher the student disagrees with more weighs more. (The cross-entropy of
  the student's logits against the teacher's probabilities *is* ``L_t``.)
* ``loss = mean over teachers and samples of alpha_t * L_t``.

Three weightings (:data:`WEIGHTINGS`):

* ``"per_sample"`` (the default, what the paper describes): ``alpha_t[i] * L_t[i]``.
* ``"batch_mean"`` (the released training runs of ``hpi-xnor/BNext``): ``L_t`` is first reduced
  to its batch mean, then weighted by the per-sample ``alpha``: ``alpha_t[i] * mean_j L_t[j]``.
  (``train_assistant_group_amp.py`` compares its default ``--hard_knowledge_grains Instance``
  with ``"instance"`` for the loss and with ``"Instance"`` for ``alpha``, and switches
  ``hard_knowledge`` on whenever it builds assistants and a main teacher, as every released
  run script does.)
* ``"constant"`` (the original with ``hard_knowledge`` off, which its script does when there
  are no assistant teachers): ``alpha = 0.5`` for every teacher, whatever their number, times
  the batch-mean ``L_t``.

Without teachers the student is trained with plain cross-entropy on the labels.

The step is written for ``tf.distribute``: it computes a per-example loss vector, reduces it
with :func:`tf.nn.compute_average_loss` (the plain mean under the default strategy), sums the
gradients over the replicas, clips that global-batch gradient to a global norm of 5 and applies
it as PyTorch's ``clip_grad_norm_`` does (``g * min(1, 5 / (norm + 1e-6))``); metrics are Keras
metrics, aggregated over replicas. Under a mixed-precision policy the logits are cast to
float32 before the loss (float64 logits stay float64), and a
:class:`tf.keras.mixed_precision.LossScaleOptimizer` is honoured.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, get_args

import tensorflow as tf

from larq_bnext.training.method.teachers import (
    Teacher,
    as_teacher,
    check_teacher_classes,
    loss_dtype,
)

__all__ = [
    "Weighting",
    "WEIGHTINGS",
    "check_weighting",
    "clip_by_global_norm",
    "distillation_loss",
    "curriculum_phase",
    "Distiller",
]


#: The teacher weightings of :func:`distillation_loss` (see the module docstring).
Weighting = Literal["per_sample", "batch_mean", "constant"]
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)


def check_weighting(weighting: str) -> str:
    """Validate a teacher weighting name and return it.

    Args:
        weighting: one of :data:`WEIGHTINGS`.

    Raises:
        ValueError: for any other value, naming the choices.
    """
    if not isinstance(weighting, str) or weighting not in WEIGHTINGS:
        raise ValueError(
            f"Unknown distillation weighting {weighting!r}. Choose 'per_sample' (the paper: each "
            "sample's teacher loss times its own alpha), 'batch_mean' (the released training "
            "runs: the batch-mean teacher loss times the per-sample alpha) or 'constant' (the "
            "original without its knowledge-complexity weights: alpha = 0.5)."
        )
    return weighting


def clip_by_global_norm(gradients, clip_norm: float):
    """Scale ``gradients`` as ``torch.nn.utils.clip_grad_norm_`` does.

    ``g * min(1, clip_norm / (norm + 1e-6))`` with ``norm`` the global L2 norm of all the
    gradients. (:func:`tf.clip_by_global_norm` divides by ``max(norm, clip_norm)`` without the
    ``1e-6``: a relative difference of ``1e-6 / norm`` whenever it clips.)

    Args:
        gradients: a list of gradient tensors (``None`` entries are kept as ``None``).
        clip_norm: the maximum global norm.

    Returns:
        ``(clipped_gradients, global_norm)``.
    """
    dense = [tf.convert_to_tensor(g) if g is not None else None for g in gradients]
    present = [g for g in dense if g is not None]
    if not present:
        return dense, tf.constant(0.0)
    norm = tf.linalg.global_norm(present)
    coef = tf.minimum(tf.cast(clip_norm, norm.dtype) / (norm + 1e-6), 1.0)
    return [g * tf.cast(coef, g.dtype) if g is not None else None for g in dense], norm


def distillation_loss(
    student_logits: tf.Tensor,
    teacher_logits: Sequence[tf.Tensor],
    weighting: Weighting = "per_sample",
) -> tuple[tf.Tensor, tf.Tensor]:
    """BNext's knowledge-complexity-weighted multi-teacher loss, per example.

    Args:
        student_logits: ``(batch, classes)`` logits of the student (computed in float32, or
            float64 when they are float64).
        teacher_logits: one ``(batch, classes)`` logits tensor per active teacher.
        weighting: ``"per_sample"`` (the paper): ``alpha_t[i] * L_t[i]``; ``"batch_mean"`` (the
            released runs): ``alpha_t[i] * mean_j L_t[j]``; ``"constant"``:
            ``0.5 * mean_j L_t[j]``.

    Returns:
        ``(per_example_loss, alpha)``: the ``(batch,)`` loss vector whose mean is the loss, and
        the ``(batch, teachers)`` teacher weights (no gradient).
    """
    check_weighting(weighting)
    if not teacher_logits:
        raise ValueError("distillation_loss needs at least one teacher's logits.")
    dtype = loss_dtype(student_logits)
    z_s = tf.cast(student_logits, dtype)
    log_p_s = tf.nn.log_softmax(z_s, axis=-1)
    per_teacher = []
    for z_t in teacher_logits:
        p_t = tf.stop_gradient(tf.nn.softmax(tf.cast(z_t, dtype), axis=-1))
        per_teacher.append(-tf.reduce_sum(p_t * log_p_s, axis=-1))
    losses = tf.stack(per_teacher, axis=-1)  # (batch, teachers)
    if weighting == "constant":
        alpha = tf.fill(tf.shape(losses), tf.constant(0.5, dtype))
    else:
        alpha = tf.stop_gradient(tf.nn.softmax(losses, axis=-1))
    if weighting in ("batch_mean", "constant"):
        losses = tf.broadcast_to(tf.reduce_mean(losses, axis=0, keepdims=True), tf.shape(alpha))
    per_example = tf.reduce_mean(alpha * losses, axis=-1)
    return per_example, alpha


def curriculum_phase(epoch: int, epochs: int, num_phases: int) -> int:
    """Index of the curriculum phase that ``epoch`` (0-based) falls in.

    The ``epochs`` are split into ``num_phases`` equal consecutive phases, as in the original
    (``epoch / (epochs / num_phases)`` rounded down, clamped to the last phase).

    Args:
        epoch: the 0-based epoch.
        epochs: total number of epochs of the run.
        num_phases: number of phases (assistant teachers); ``0`` or ``1`` give phase 0.
    """
    if num_phases <= 1:
        return 0
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}.")
    return min(int(math.floor(epoch * num_phases / epochs)), num_phases - 1)


class Distiller(tf.keras.Model):
    """Trains a BNext student from frozen teachers with the paper's multi-teacher loss.

    ``Distiller(student, teacher=main, assistants=[a0, a1, ...])``: in curriculum phase ``k``
    the active teachers are ``(assistants[k], main)``; with no assistants only ``main``; with
    no teacher at all the student learns from the labels (cross-entropy). ``fit`` on batches of
    ``(images, labels)``; labels are integer class ids or one-hot/soft vectors (mixup, cutmix).
    Evaluation (``test_step``) scores the student alone against the labels.

    Metrics: ``loss``, ``top1`` and ``top5`` of the student, ``alpha_main`` (the mean weight of
    the main teacher) and ``teacher_top1`` (the main teacher's top-1 on the training batches).

    Call the distiller like the student (``distiller(x)`` returns the student's logits); save
    the student with ``distiller.student.save_weights(...)``.

    Args:
        student: a Keras model that outputs logits (build BNext with
            ``classifier_activation=None``).
        teacher: the main teacher: a :class:`Teacher`, a Keras model (fed the student's input
            unchanged, outputs logits) or ``None`` for label training.
        assistants: assistant teachers in curriculum order (see :class:`AssistantCurriculum`).
        clip_norm: clip the gradients to this global norm (5 in BNext; ``None`` disables), as
            PyTorch does (see :func:`clip_by_global_norm`).
        weighting: ``"per_sample"`` (the paper), ``"batch_mean"`` (the released runs) or
            ``"constant"`` (see :func:`distillation_loss`).
        global_batch_size: batch size the per-example loss is averaged over; ``None`` uses the
            per-replica batch times the number of replicas (the plain batch mean without a
            distribution strategy).
        augmenter: optional ``(images, labels, seed) -> (images, labels)`` applied at the start
            of every training step, on the accelerator (the model-side augmentation stage, e.g.
            :class:`larq_bnext.augment.BNextAugmentation`); evaluation batches skip
            it. The seed is ``[augment_seed, step]`` with the replica folded in (reproducible
            across restarts, distinct per replica).
        augment_seed: the run's seed, the first half of the augmenter's per-step seed.
        name: model name.
        **kwargs: passed to :class:`tf.keras.Model`.
    """

    def __init__(
        self,
        student: tf.keras.Model,
        teacher: Teacher | tf.keras.Model | None = None,
        assistants: Sequence[Teacher | tf.keras.Model] = (),
        clip_norm: float | None = 5.0,
        weighting: Weighting = "per_sample",
        global_batch_size: int | None = None,
        augmenter: Callable | None = None,
        augment_seed: int = 0,
        name: str = "distiller",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        _check_student_outputs_logits(student)
        check_weighting(weighting)
        assistants = [as_teacher(a) for a in (assistants or ())]
        if assistants and teacher is None:
            raise ValueError("Assistant teachers need a main teacher: pass teacher=... as well.")
        self.student = student
        self.teacher = as_teacher(teacher)
        self.assistants = assistants
        check_teacher_classes(student, self._all_teachers())
        # Keep the teacher models tracked (for `summary`, device placement, checkpoints).
        self.teacher_models = [t.model for t in self._all_teachers()]
        self.clip_norm = clip_norm
        self.weighting = weighting
        self.global_batch_size = global_batch_size
        self.augmenter = augmenter
        self.augment_seed = int(augment_seed)
        self._phase = 0
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")
        self.top1 = tf.keras.metrics.SparseCategoricalAccuracy(name="top1")
        num_classes = int(student.output_shape[-1])
        self.top5 = tf.keras.metrics.SparseTopKCategoricalAccuracy(
            k=min(5, num_classes),
            name="top5",
            dtype="float32",  # in_top_k needs float32
        )
        self.alpha_main = tf.keras.metrics.Mean(name="alpha_main")
        self.teacher_top1 = tf.keras.metrics.SparseCategoricalAccuracy(name="teacher_top1")

    def _all_teachers(self) -> list[Teacher]:
        seen, out = set(), []
        for t in [*self.assistants, self.teacher]:
            if t is not None and id(t) not in seen:
                seen.add(id(t))
                out.append(t)
        return out

    @property
    def num_phases(self) -> int:
        """Number of curriculum phases (one per assistant, at least 1)."""
        return max(1, len(self.assistants))

    @property
    def phase(self) -> int:
        """The current curriculum phase (0-based)."""
        return self._phase

    def set_phase(self, phase: int) -> None:
        """Switch the curriculum to ``phase``; re-traces the train step when it changes.

        Args:
            phase: 0-based phase index, ``< num_phases``.
        """
        phase = int(phase)
        if not 0 <= phase < self.num_phases:
            raise ValueError(f"phase must be in [0, {self.num_phases}), got {phase}.")
        if phase == self._phase:
            return
        self._phase = phase
        if self.train_function is not None:
            # Keras reads `self.train_function` at every step: the new graph takes over.
            self.make_train_function(force=True)

    def active_teachers(self) -> list[Teacher]:
        """The teachers of the current phase: ``[assistant, main]``, ``[main]`` or ``[]``."""
        if self.teacher is None:
            return []
        if not self.assistants:
            return [self.teacher]
        return [self.assistants[self._phase], self.teacher]

    def make_train_function(self, force=False):
        """Keras' train function, making the optimizer's slots at its first call: before the
        first trace (slots made inside it trace the step twice), after ``fit`` restores.

        Args:
            force: make a new function even if one exists.
        """
        function = super().make_train_function(force=force)
        if not isinstance(function, _BuildsOptimizerFirst) and self.optimizer is not None:
            self.train_function = function = _BuildsOptimizerFirst(function, self)
        return function

    def call(self, inputs, training=None):
        """Run the student: returns its logits."""
        return self.student(inputs, training=training)

    @property
    def metrics(self):
        """The distiller's metrics (reset by Keras at the start of every epoch)."""
        metrics = [self.loss_tracker, self.top1, self.top5]
        if self.teacher is not None:
            metrics += [self.alpha_main, self.teacher_top1]
        return metrics

    def _average(self, per_example):
        return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)

    def _augment_seed(self):
        """``[augment_seed, step]`` with the replica id folded in: a function of the step."""
        step = tf.cast(self.optimizer.iterations, tf.int64)
        seed = tf.stack([tf.constant(self.augment_seed, tf.int64), step])
        context = tf.distribute.get_replica_context()
        replica = 0 if context is None else context.replica_id_in_sync_group
        return tf.random.experimental.stateless_fold_in(seed, tf.cast(replica, tf.int64))

    def train_step(self, data):
        """One optimisation step of the student on ``(images, labels)``."""
        images, labels = _unpack(data)
        if self.augmenter is not None:
            images, labels = self.augmenter(images, labels, self._augment_seed())
        teachers = self.active_teachers()
        computed = {}  # a teacher that is both assistant and main (BNext-L) runs once
        for t in teachers:
            if id(t) not in computed:
                computed[id(t)] = t.logits(images)
        teacher_logits = [computed[id(t)] for t in teachers]
        with tf.GradientTape() as tape:
            logits = self.student(images, training=True)
            logits = tf.cast(logits, loss_dtype(logits))
            if teacher_logits:
                per_example, alpha = distillation_loss(logits, teacher_logits, self.weighting)
            else:
                per_example = _label_cross_entropy(labels, logits)
                alpha = None
            loss = self._average(per_example)
            if self.student.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.student.losses))
            scaled = loss
            if isinstance(self.optimizer, tf.keras.mixed_precision.LossScaleOptimizer):
                scaled = self.optimizer.get_scaled_loss(loss)
        variables = self.student.trainable_variables
        grads = tape.gradient(scaled, variables)
        # Sum the replicas' gradients *before* clipping, so that the clip sees the gradient
        # of the global batch (each replica's loss is already divided by the global batch);
        # the optimizer then applies them without aggregating again.
        grads = _all_reduce_gradients(grads)
        if isinstance(self.optimizer, tf.keras.mixed_precision.LossScaleOptimizer):
            grads = self.optimizer.get_unscaled_gradients(grads)
        if self.clip_norm is not None:
            grads, _ = clip_by_global_norm(grads, self.clip_norm)
        self.optimizer.apply_gradients(
            [(grads[i], v) for i, v in enumerate(variables)],
            experimental_aggregate_gradients=False,
        )

        sparse = _sparse_labels(labels)
        self.loss_tracker.update_state(per_example)
        self.top1.update_state(sparse, logits)
        self.top5.update_state(sparse, logits)
        if alpha is not None:
            self.alpha_main.update_state(alpha[:, -1])
            self.teacher_top1.update_state(sparse, teacher_logits[-1])
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        """Score the student against the labels (cross-entropy, top-1, top-5)."""
        images, labels = _unpack(data)
        logits = self.student(images, training=False)
        logits = tf.cast(logits, loss_dtype(logits))
        per_example = _label_cross_entropy(labels, logits)
        sparse = _sparse_labels(labels)
        self.loss_tracker.update_state(per_example)
        self.top1.update_state(sparse, logits)
        self.top5.update_state(sparse, logits)
        return {m.name: m.result() for m in (self.loss_tracker, self.top1, self.top5)}


class _BuildsOptimizerFirst:
    """Builds the optimizer's slots, then calls Keras' ``tf.function`` (whose attributes it has)."""

    def __init__(self, function, distiller):
        self._function, self._distiller = function, distiller

    def __call__(self, *args, **kwargs):
        self._distiller.optimizer.build(self._distiller.student.trainable_variables)
        return self._function(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._function, name)


def _all_reduce_gradients(grads):
    """Sum gradients over the replicas in sync (identity with a single replica)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return grads
    present = [i for i, g in enumerate(grads) if g is not None]
    summed = context.all_reduce(
        tf.distribute.ReduceOp.SUM, [tf.convert_to_tensor(grads[i]) for i in present]
    )
    by_index = dict(zip(present, summed, strict=True))
    return [by_index.get(i, g) for i, g in enumerate(grads)]


def _unpack(data):
    images, labels, _ = tf.keras.utils.unpack_x_y_sample_weight(data)
    if labels is None:
        raise ValueError("Distiller needs (images, labels) batches; the labels are missing.")
    return images, labels


def _sparse_labels(labels):
    if labels.shape.rank is not None and labels.shape.rank >= 2 and labels.shape[-1] != 1:
        return tf.argmax(labels, axis=-1)
    return tf.reshape(labels, [-1])


def _label_cross_entropy(labels, logits):
    if labels.shape.rank is not None and labels.shape.rank >= 2 and labels.shape[-1] != 1:
        return tf.keras.losses.categorical_crossentropy(
            tf.cast(labels, logits.dtype), logits, from_logits=True
        )
    return tf.keras.losses.sparse_categorical_crossentropy(
        tf.reshape(labels, [-1]), logits, from_logits=True
    )


def _check_student_outputs_logits(student):
    if not isinstance(student, tf.keras.Model):
        raise TypeError(f"student must be a tf.keras.Model, got {type(student).__name__}.")
    last = student.layers[-1] if student.layers else None
    activation = getattr(last, "activation", None)
    if activation in (tf.keras.activations.softmax, tf.nn.softmax):
        raise ValueError(
            "The student ends in a softmax, but distillation needs logits. Build it with "
            "classifier_activation=None, e.g. larq_bnext.BNextT(classifier_activation=None)."
        )
