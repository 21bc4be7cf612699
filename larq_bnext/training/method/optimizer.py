"""AdamW with the original's two weight-decay groups: 1e-3 for every parameter except those
the original stores as 4-D (convolution kernels, ``move``, recoupling ``scale``), which get 1e-8.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf

from larq_bnext.models.layers import is_4d_in_original
from larq_bnext.registry import RECIPE

__all__ = ["is_conv_kernel", "AdamW", "float64_supported", "bias_correction"]


def is_conv_kernel(variable: tf.Variable) -> bool:
    """The original's weight-decay predicate: ``True`` for the parameters it stores as 4-D.

    The original puts every 4-D parameter (``p.ndimension() == 4``) in its 1e-8 decay group.
    In BNext that is every binary convolution, the stem convolution and the SE 1x1
    convolutions, *and* the per-channel ``move`` bias and recoupling ``scale``, which it
    stores as ``(1, C, 1, 1)`` (vectors here: :func:`larq_bnext.models.layers.is_4d_in_original`).
    BatchNorm, PReLU and the classifier are not.

    Args:
        variable: a model variable.
    """
    return variable.shape.rank == 4 or is_4d_in_original(variable)


def float64_supported(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether the step's scalars may be computed in float64: not on TPUs, which lack it.

    ``False`` under a ``TPUStrategy`` or when TPU devices are visible; ``True`` otherwise.

    Args:
        strategy: the strategy; defaults to the current one.
    """
    strategy = strategy or tf.distribute.get_strategy()
    tpu_kinds = (tf.distribute.TPUStrategy, tf.distribute.experimental.TPUStrategy)
    if isinstance(strategy, tpu_kinds):
        return False
    return not tf.config.list_logical_devices("TPU")


def bias_correction(beta: float, step: tf.Tensor, float64: bool = True) -> tf.Tensor:
    """``1 - beta^step`` (Adam's bias correction): float64, or float32 on devices without it.

    In float64 (the caller rounds it to the variable's dtype) like PyTorch's Python floats,
    or in float32 alone as ``-expm1(step * log(beta))``, which has no cancellation
    (``1 - 0.999^t`` in float32 loses five digits for small ``t``): both agree to a few
    float32 ulps.

    Args:
        beta: the decay (e.g. 0.999).
        step: the 1-based step (integer tensor).
        float64: compute in float64 (CPUs, GPUs) or float32 only (TPUs).
    """
    if float64:
        t = tf.cast(step, tf.float64)
        return 1 - tf.pow(tf.constant(beta, tf.float64), t)
    t = tf.cast(step, tf.float32)
    return -tf.math.expm1(t * tf.constant(math.log(beta), tf.float32))


class _StepCache:
    """The per-step scalars of one apply: a plain object, so that the optimizer's checkpoint
    does not try to track it (a dict attribute would be wrapped and refused by the saver)."""

    def __init__(self):
        self.values = None


def _step_cache(optimizer) -> _StepCache:
    cache = optimizer.__dict__.get("_larq_bnext_step_cache")
    if cache is None:
        cache = _StepCache()
        optimizer.__dict__["_larq_bnext_step_cache"] = cache
    return cache


class AdamW(tf.keras.optimizers.Adam):
    """AdamW exactly as PyTorch's ``torch.optim.AdamW``, with a per-variable weight decay.

    Each step, for a variable ``p`` with gradient ``g``, learning rate ``lr`` (the scheduled
    one) and decay ``wd`` (``conv_weight_decay`` where ``decay_predicate(p)``, else
    ``weight_decay``)::

        p <- p - lr * wd * p                                  # decoupled decay, x lr
        m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
        p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

    Variable constraints (the binary weight clip at 1.5, the recoupling scale in ``[0, 1]``)
    are applied after every step by Keras' optimizer.

    Why not ``tfa.optimizers.AdamW`` inside a ``larq.optimizers.CaseOptimizer``: TensorFlow
    Addons is end-of-life, its AdamW is a legacy optimizer whose ``weight_decay`` is *not*
    multiplied by the learning rate (it would need a callable tied to the schedule), and two
    wrapped optimizers mean two step counters and two slot sets. This single Keras optimizer
    keeps one step counter and one schedule, works under ``tf.distribute`` and inside
    :class:`tf.keras.mixed_precision.LossScaleOptimizer`, and places epsilon where PyTorch does
    (Keras' ``Adam`` adds it to ``sqrt(v)`` before the bias correction).

    Args:
        learning_rate: a float or a :class:`tf.keras.optimizers.schedules.LearningRateSchedule`.
        weight_decay: decay of the variables the predicate rejects (1e-3 in BNext).
        conv_weight_decay: decay of the variables the predicate accepts (1e-8 in BNext).
        beta_1: first-moment decay.
        beta_2: second-moment decay.
        epsilon: PyTorch's ``eps`` (added to the bias-corrected ``sqrt(v)``).
        decay_predicate: ``variable -> bool`` choosing ``conv_weight_decay``; defaults to
            :func:`is_conv_kernel`.
        float64: compute the bias corrections in float64 (as PyTorch does in Python) or in
            float32 only (:func:`bias_correction`; TPUs have no float64); ``None`` picks
            float64 where the device has it (:func:`float64_supported`).
        name: optimizer name.
        **kwargs: other :class:`tf.keras.optimizers.Optimizer` arguments (``jit_compile``, ...).
    """

    def __init__(
        self,
        learning_rate=RECIPE.lr,
        weight_decay: float = RECIPE.weight_decay,
        conv_weight_decay: float = RECIPE.conv_weight_decay,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        decay_predicate: Callable[[tf.Variable], bool] | None = None,
        float64: bool | None = None,
        name: str = "AdamW",
        **kwargs,
    ):
        kwargs.pop("amsgrad", None)
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=False,
            name=name,
            **kwargs,
        )
        if weight_decay < 0 or conv_weight_decay < 0:
            raise ValueError("Weight decays must be non-negative.")
        self.other_weight_decay = float(weight_decay)
        self.conv_weight_decay = float(conv_weight_decay)
        self.decay_predicate = decay_predicate or is_conv_kernel
        self.float64 = float64

    def weight_decay_of(self, variable: tf.Variable) -> float:
        """The weight decay this optimizer applies to ``variable``.

        Args:
            variable: a trainable variable.
        """
        if self.decay_predicate(variable):
            return self.conv_weight_decay
        return self.other_weight_decay

    def _step_coefficients(self, dtype):
        """``(lr, 1 - b1^t, 1 - b2^t)`` of this step in ``dtype``: bias corrections in float64,
        as PyTorch computes them in Python (``1 - 0.999`` in float32 is off by 1e-5 relative,
        which would show in the first steps), or, without float64 (TPUs), in the exact float32
        form of :func:`bias_correction`."""
        cache = _step_cache(self).values
        if cache is not None and dtype in cache:
            return cache[dtype]
        float64 = float64_supported() if self.float64 is None else self.float64
        step = self.iterations + 1
        coefficients = (
            tf.cast(self.learning_rate, dtype),
            tf.cast(bias_correction(self.beta_1, step, float64), dtype),
            tf.cast(bias_correction(self.beta_2, step, float64), dtype),
        )
        if cache is not None:
            cache[dtype] = coefficients
        return coefficients

    def _distributed_apply_gradients_fn(self, distribution, grads_and_vars, **kwargs):
        # The learning rate and both bias corrections are the same for every variable of a
        # dtype: compute them once per step instead of once per variable (hundreds of tiny
        # float64 ops per step otherwise). The XLA path traces each update on its own.
        grads_and_vars = list(grads_and_vars)
        cache = _step_cache(self)
        cache.values = None if self.jit_compile else {}
        try:
            return super()._distributed_apply_gradients_fn(distribution, grads_and_vars, **kwargs)
        finally:
            cache.values = None

    def _fused_coefficients(self, dtype):
        """``(lr', eps', beta_1, beta_2)`` of :meth:`update_step`'s fused kernel in ``dtype``."""
        cache = _step_cache(self).values
        key = ("fused", dtype)
        if cache is not None and key in cache:
            return cache[key]
        lr, bias_1, bias_2 = self._step_coefficients(dtype)
        np_dtype = dtype.as_numpy_dtype
        # The kernel computes 1 - beta in `dtype`; PyTorch (and the formula) use the rounded
        # 1 - beta. Its moments are then r_1 = m_kernel / m and r_2 = v_kernel / v times the
        # exact ones (r_2 - 1 = 4.7e-5 for beta_2 = 0.999 in float32): divide them out.
        ratios = [
            float(np_dtype(1) - np_dtype(beta)) / float(np_dtype(1 - beta))
            for beta in (self.beta_1, self.beta_2)
        ]
        root_2 = math.sqrt(ratios[1])
        root_bias_2 = tf.sqrt(bias_2)
        coefficients = (
            lr * root_bias_2 / bias_1 * tf.cast(root_2 / ratios[0], dtype),
            tf.cast(self.epsilon * root_2, dtype) * root_bias_2,
            tf.constant(self.beta_1, dtype),
            tf.constant(self.beta_2, dtype),
        )
        if cache is not None:
            cache[key] = coefficients
        return coefficients

    def update_step(self, gradient, variable):
        """One AdamW update of ``variable`` (PyTorch's formula).

        The decay is PyTorch's ``p *= 1 - lr * wd``; the Adam part runs as TensorFlow's fused
        ``ResourceApplyAdam`` kernel: one op and one pass over the variable instead of a dozen
        element-wise ones, which also makes the traced step (and graph optimisation before the
        first step) much smaller. The bias corrections ``b1``, ``b2`` (as in
        :meth:`_step_coefficients`) are folded into the kernel's learning rate and epsilon,
        its own ``beta_power`` inputs being 0::

            lr (m / b1) / (sqrt(v / b2) + eps) = [lr sqrt(b2) / b1] m / (sqrt(v) + eps sqrt(b2))

        with the kernel's float32 ``1 - beta`` rounding divided out (see
        :meth:`_fused_coefficients`). Variables without a resource handle take the same step
        as element-wise ops.
        """
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.convert_to_tensor(gradient)
        index = self._index_dict[self._var_key(variable)]
        m = self._momentums[index]
        v = self._velocities[index]
        wd = self.weight_decay_of(variable)
        lr, bias_1, bias_2 = self._step_coefficients(variable.dtype)
        if wd:
            variable.assign(variable * (1 - lr * wd))
        if all(hasattr(x, "handle") for x in (variable, m, v)):
            fused_lr, fused_epsilon, beta_1, beta_2 = self._fused_coefficients(variable.dtype)
            zero = tf.zeros([], variable.dtype)
            tf.raw_ops.ResourceApplyAdam(
                var=variable.handle,
                m=m.handle,
                v=v.handle,
                beta1_power=zero,
                beta2_power=zero,
                lr=fused_lr,
                beta1=beta_1,
                beta2=beta_2,
                epsilon=fused_epsilon,
                grad=tf.cast(gradient, variable.dtype),
                use_locking=False,
            )
            return
        m.assign_add((gradient - m) * (1 - self.beta_1))
        v.assign_add((tf.square(gradient) - v) * (1 - self.beta_2))
        variable.assign_sub(lr * (m / bias_1) / (tf.sqrt(v / bias_2) + self.epsilon))

    def get_config(self):
        config = super().get_config()
        config.update(
            weight_decay=self.other_weight_decay,
            conv_weight_decay=self.conv_weight_decay,
            float64=self.float64,
        )
        config.pop("amsgrad", None)
        return config
