"""Keeping Keras from running AutoGraph on BNext's layers.

Keras passes the ``call`` of every layer defined outside Keras through AutoGraph each time the
layer is called on a symbolic tensor: it parses the method's source, rewrites it and runs the
rewritten code, whose Python ``if`` statements become AutoGraph's conditional helpers. BNext's
layers have no tensor-dependent Python control flow, so that work only slows building a model
(BNext-T has about 160 such layers) and tracing its training step.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["no_autograph"]


def no_autograph(method):
    """Mark a layer's ``call`` so that AutoGraph leaves it (and what it calls) as written.

    Unlike a bare ``tf.autograph.experimental.do_not_convert``, the marked method keeps its
    signature for Keras' argument inspection (a ``training`` argument is still seen).

    Args:
        method: the ``call`` method of a layer class.

    Returns:
        The method, unconverted by AutoGraph, with its signature.

    Examples:
        >>> class Double(tf.keras.layers.Layer):
        ...     @no_autograph
        ...     def call(self, inputs, training=None):
        ...         return 2 * inputs
        >>> Double()._call_spec.expects_training_arg
        True
    """
    return tf.__internal__.decorator.make_decorator(
        method, tf.autograph.experimental.do_not_convert(method)
    )
