"""Building a BNext without the work that loading weights or a forward pass never needs.

Two context managers, entered by :func:`larq_bnext.models.bnext.BNext`:

* :func:`shape_only_calls`: a layer called on a Keras symbolic tensor normally runs its
  ``call`` in a scratch ``FuncGraph`` (through AutoGraph) only to learn its output's shape and
  dtype, which is then thrown away; about half of building BNext-T. Inside the block, a layer
  whose class computes its output shape itself (every layer BNext uses) is built and given a
  Keras tensor of ``compute_output_shape`` and its compute dtype instead. The model, its
  layers, weights, names and outputs are the same (``tests/models/test_construction.py``).
* :func:`initial_values_skipped`: where weights are loaded right after construction, the
  random initial values (``N(0, 0.001^2)`` for BNext-L's 327 million binary weights) are not
  drawn: variables start at zero. Each skipped initializer still takes its seed from Keras'
  seed generator as a draw would, so models built after it get the values they always got.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import tensorflow as tf

from larq_bnext.keras2 import keras_src

__all__ = ["shape_only_calls", "initial_values_skipped"]

_state = threading.local()
_lock = threading.Lock()
_installed = {"count": 0, "original": None}


def _base_layer():
    return keras_src("engine.base_layer").Layer


def _shape_only(layer) -> bool:
    """Whether ``layer``'s class computes output shapes without calling the layer."""
    base = _base_layer()
    if isinstance(layer, tf.keras.Model) or isinstance(layer, tf.keras.layers.Lambda):
        return False
    return type(layer).compute_output_shape is not base.compute_output_shape


def _infer_output_signature(self, inputs, args, kwargs, input_masks):
    if not getattr(_state, "active", False) or args or not _shape_only(self):
        return _installed["original"](self, inputs, args, kwargs, input_masks)
    backend = keras_src("backend")
    keras_tensor = keras_src("engine.keras_tensor")
    autocast_variable = keras_src("mixed_precision.autocast_variable")
    with backend.name_scope(self._name_scope()):  # the variables' names, as Keras gives them
        with autocast_variable.enable_auto_cast_variables(self._compute_dtype_object):
            self._maybe_build(inputs)
    shape = self.compute_output_shape(tf.nest.map_structure(lambda t: t.shape, inputs))
    dtype = self._compute_dtype or tf.nest.flatten(inputs)[0].dtype
    self._set_save_spec(inputs, args, kwargs)
    return keras_tensor.KerasTensor(tf.TensorSpec(shape, dtype))


@contextlib.contextmanager
def shape_only_calls():
    """Inside the block, layers called on Keras tensors in this thread are built and shaped
    without running their ``call`` (see the module); Keras is as it was after the block."""
    base = _base_layer()
    with _lock:
        if _installed["count"] == 0:
            _installed["original"] = base._infer_output_signature
            base._infer_output_signature = _infer_output_signature
        _installed["count"] += 1
    previous = getattr(_state, "active", False)
    _state.active = True
    try:
        yield
    finally:
        _state.active = previous
        with _lock:
            _installed["count"] -= 1
            if _installed["count"] == 0:
                base._infer_output_signature = _installed["original"]


def _zeros_instead(next_creator, **kwargs):
    initial = kwargs.get("initial_value")
    if isinstance(initial, functools.partial) and initial.args:
        generator = getattr(initial.func, "_random_generator", None)
        if generator is not None:
            generator._maybe_init()  # takes its seed as the draw would
            kwargs["initial_value"] = functools.partial(
                tf.zeros, initial.args[0], dtype=initial.keywords.get("dtype")
            )
    return next_creator(**kwargs)


@contextlib.contextmanager
def initial_values_skipped(skip: bool = True):
    """Inside the block (with ``skip``), Keras' random initializers give zeros (see the module).

    Args:
        skip: ``False`` makes the block do nothing.
    """
    if not skip:
        yield
        return
    with tf.variable_creator_scope(_zeros_instead):
        yield
