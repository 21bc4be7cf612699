"""Deploy BNext to edge devices with Larq Compute Engine (LCE), and measure it.

A trained BNext ends its progressive binarization with every kernel temperature below
``1e-7``, where each binary convolution is exactly ``sign(x) * sign(w)``. :func:`convert`
rebuilds a model in that *inference form* and converts it with LCE into a TFLite flatbuffer
whose binary convolutions are ``LceBconv2d`` ops (bit-packed weights, XNOR-popcount kernels)::

    import larq_bnext
    from larq_bnext import deploy

    model = larq_bnext.BNextT(weights="imagenet")
    flatbuffer = deploy.convert(model)            # bytes of a .tflite file
    deploy.op_counts(flatbuffer)["LceBconv2d"]    # 31

The inference form (:func:`inference_model`) is a clone in which

* every stride-1 ``BinaryConv2D`` becomes a plain :class:`larq.layers.QuantConv2D` with
  ``input_quantizer="ste_sign"``, its kernel stored as ``sign(w)`` (+-1 floats, which is
  what ``kernel_quantizer="ste_sign"`` would compute, minus the ops the converter would fold)
  and ``"same"`` zero padding, which LCE converts to ``LceBconv2d`` with ``padding=SAME,
  pad_values=0``;
* every stride-2 ``BinaryConv2D`` becomes a :class:`SymmetricPadQuantConv2D`. PyTorch pads a
  stride-2 3x3 convolution by one pixel on *every* side, so on even sizes it samples rows
  ``2i-1, 2i, 2i+1``, while TensorFlow's ``"same"`` padding samples ``2i, 2i+1, 2i+2``. An
  explicit ``tf.pad`` of the binarized input followed by a ``"valid"`` convolution has the
  right numbers, but LCE (0.16) cannot turn ``pad -> conv`` into a binary convolution, and,
  worse, its padding-fusion pass rewrites a symmetric ``(1, 1)`` pad before a stride-2
  ``"valid"`` convolution into ``"same"`` padding (it checks only that the pad is centred),
  which silently shifts the sampling grid by one pixel. The layer instead flips the input
  spatially, runs a ``"same"`` binary convolution with the flipped kernel and flips the
  result back: exactly PyTorch's symmetric zero padding, recognised as ``LceBconv2d``, at the
  cost of two ``REVERSE_V2`` ops per stride-2 binary layer (four such layers in every size);
* for the same reason the stem's symmetric ``ZeroPadding2D(1)`` before its stride-2 float
  convolution becomes a top/left-only ``ZeroPadding2D(((1, 0), (1, 0)))``, which samples the
  same pixels on even input sizes (the bottom/right pad is never read) and is left alone by
  LCE's padding fusion.

A model still in the ``clip(w / T, -1, 1)`` regime (a temperature ``>= 1e-7``) is refused,
unless ``allow_float_kernels=True``: then those layers keep their real-valued kernels and
stay float ``CONV_2D`` ops on binarized inputs (correct numbers, no binary speed-up).

:func:`benchmark` measures converted models (latency with LCE's interpreter, file size)
against the float TFLite form of the same architecture and larq-zoo's QuickNet family.
"""

from __future__ import annotations

import collections
import csv
import gc
import os
import platform
import statistics
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import larq as lq
import numpy as np
import tensorflow as tf

from larq_bnext import models as bnext_models
from larq_bnext.layers import TEMPERATURE_THRESHOLD, BinaryConv2D

__all__ = [
    "BINARY_CONV_OP",
    "PUBLISHED_TOP1",
    "SymmetricPadQuantConv2D",
    "binary_conv_layers",
    "unbinarized_layers",
    "binarize_for_demo",
    "inference_model",
    "float_model",
    "convert",
    "convert_float",
    "op_counts",
    "ideal_size",
    "lce_interpreter",
    "predict",
    "measure_latency",
    "build_model",
    "benchmark",
    "write_table",
    "read_table",
    "plot_benchmark",
]

#: Op name of a binary convolution in an LCE flatbuffer.
BINARY_CONV_OP = "LceBconv2d"

#: Published ImageNet top-1 (%) of the models :func:`benchmark` knows: BNext from the
#: official checkpoints, QuickNet from larq-zoo's documentation (``larq_zoo.sota``).
PUBLISHED_TOP1 = {
    "bnext_tiny": 72.4,
    "bnext_small": 76.1,
    "bnext_middle": 78.3,
    "bnext_large": 80.6,
    "quicknet_small": 59.4,
    "quicknet": 63.3,
    "quicknet_large": 66.9,
}

_DISPLAY_NAMES = {
    "bnext_tiny": "BNext-T",
    "bnext_small": "BNext-S",
    "bnext_middle": "BNext-M",
    "bnext_large": "BNext-L",
    "quicknet_small": "QuickNet-S",
    "quicknet": "QuickNet",
    "quicknet_large": "QuickNet-L",
}
_BNEXT_NAMES = ("bnext_tiny", "bnext_small", "bnext_middle", "bnext_large")
_QUICKNET_NAMES = ("quicknet_small", "quicknet", "quicknet_large")

_register = tf.keras.utils.register_keras_serializable(package="larq_bnext")


@_register
class SymmetricPadQuantConv2D(lq.layers.QuantConv2D):
    """A quantized convolution with PyTorch's symmetric zero padding, in an LCE-friendly form.

    Computes ``conv(pad(q(x)), q(w))`` with ``kernel_size // 2`` zeros on every side of the
    quantized input (PyTorch's ``padding=k//2``) for any stride, as
    ``reverse(conv_same(q(reverse(x)), reverse(w)))``: flipping the image and the kernel
    turns TensorFlow's bottom/right ``"same"`` padding into top/left padding, and for the odd
    kernels used here the flipped ``"same"`` grid samples exactly PyTorch's pixels. LCE
    recognises the inner convolution as ``LceBconv2d`` (``padding=SAME, pad_values=0``).

    The kernel this layer holds is the *flipped* kernel; :func:`inference_model` flips the
    original kernel when it copies the weights.

    Args:
        filters: number of output channels.
        kernel_size: an odd kernel size.
        strides: the convolution stride.
        **kwargs: other :class:`larq.layers.QuantConv2D` arguments (``padding`` is forced to
            ``"same"`` with zero padding).
    """

    def __init__(self, filters, kernel_size, strides=1, **kwargs):
        kwargs.pop("padding", None)
        kwargs.pop("pad_values", None)
        super().__init__(
            filters, kernel_size, strides=strides, padding="same", pad_values=0.0, **kwargs
        )
        if any(k % 2 == 0 for k in self.kernel_size):
            raise ValueError(
                f"SymmetricPadQuantConv2D needs odd kernel sizes, got {self.kernel_size}."
            )

    def call(self, inputs):
        flipped = tf.reverse(inputs, axis=[1, 2])
        # Explicit base-class call: autograph can mis-resolve a zero-argument super() here.
        return tf.reverse(lq.layers.QuantConv2D.call(self, flipped), axis=[1, 2])


def binary_conv_layers(model: tf.keras.Model) -> list[BinaryConv2D]:
    """The :class:`~larq_bnext.layers.BinaryConv2D` layers of ``model``, in graph order.

    Args:
        model: a Keras model (nested models are searched too).
    """
    found = []
    for layer in model.layers:
        if isinstance(layer, BinaryConv2D):
            found.append(layer)
        elif isinstance(layer, tf.keras.Model):
            found.extend(binary_conv_layers(layer))
    return found


def unbinarized_layers(model: tf.keras.Model) -> dict[str, float]:
    """Binary layers whose kernel is still ``clip(w / T, -1, 1)`` (temperature ``>= 1e-7``).

    Args:
        model: a BNext Keras model.

    Returns:
        ``{layer name: temperature}`` for every such layer; empty when all kernels are
        ``sign(w)``.
    """
    return {
        layer.name: float(layer.temperature.numpy())
        for layer in binary_conv_layers(model)
        if float(layer.temperature.numpy()) >= TEMPERATURE_THRESHOLD
    }


def binarize_for_demo(model: tf.keras.Model) -> tf.keras.Model:
    """Set every kernel temperature to 0, as at the end of training (kernels become ``sign(w)``).

    Meant for randomly initialised models (demos, latency measurements); a trained checkpoint
    already carries its annealed temperatures.

    Args:
        model: a BNext Keras model, modified in place.

    Returns:
        ``model``.
    """
    for layer in binary_conv_layers(model):
        layer.temperature.assign(0.0)
        layer.input_temperature.assign(0.0)
    return model


def _consumers(layer) -> list:
    return [node.outbound_layer for node in layer._outbound_nodes]


def _is_pytorch_stem_pad(layer) -> bool:
    """A symmetric 1-pixel ZeroPadding2D whose only reader is a 3x3 stride-2 "valid" conv."""
    if not isinstance(layer, tf.keras.layers.ZeroPadding2D):
        return False
    if tuple(map(tuple, layer.padding)) != ((1, 1), (1, 1)):
        return False
    consumers = _consumers(layer)
    if len(consumers) != 1 or not isinstance(consumers[0], tf.keras.layers.Conv2D):
        return False
    conv = consumers[0]
    spatial = layer.input_shape[1:3]
    return (
        conv.padding == "valid"
        and tuple(conv.kernel_size) == (3, 3)
        and tuple(conv.strides) == (2, 2)
        and all(s is not None and s % 2 == 0 for s in spatial)
    )


def _clone(model: tf.keras.Model, replace) -> tf.keras.Model:
    """Clone ``model`` layer by layer, letting ``replace(layer)`` swap layers; copy weights."""
    replaced = {}

    def clone_function(layer):
        new = replace(layer)
        if new is None:
            new = layer.__class__.from_config(layer.get_config())
        else:
            replaced[layer.name] = new
        return new

    clone = tf.keras.models.clone_model(model, clone_function=clone_function)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        new = clone.get_layer(layer.name)
        weights = getattr(new, "_bnext_weights", None)
        if weights is not None:
            new.set_weights(weights)
            del new._bnext_weights
        elif layer.weights:
            new.set_weights(layer.get_weights())
    return clone


def _sign_kernel_quantized(layer: BinaryConv2D) -> bool:
    return float(layer.temperature.numpy()) < TEMPERATURE_THRESHOLD


def _inference_conv(layer: BinaryConv2D):
    """The inference-form replacement of one BinaryConv2D, with its weights attached."""
    kernel = layer.kernel.numpy()
    common = dict(
        filters=layer.filters,
        kernel_size=layer.kernel_size,
        strides=layer.strides,
        use_bias=False,
        input_quantizer="ste_sign",
        kernel_quantizer=None,
        name=layer.name,
    )
    if _sign_kernel_quantized(layer):
        # Stored already binarized (sign(0) = +1, as in Larq): LCE recognises a convolution
        # whose constant kernel is all +-1, and the converter has no sign ops to fold, which
        # saves it a few full-size copies of the weights.
        kernel = np.where(kernel >= 0, 1.0, -1.0).astype(kernel.dtype)
    else:
        temperature = float(layer.temperature.numpy())
        kernel = np.clip(kernel / temperature, -1.0, 1.0)
    if layer._explicit_padding:
        new = SymmetricPadQuantConv2D(**common)
        new._bnext_weights = [kernel[::-1, ::-1].copy()]
    else:
        new = lq.layers.QuantConv2D(padding="same", pad_values=0.0, **common)
        new._bnext_weights = [kernel]
    return new


def inference_model(model: tf.keras.Model, allow_float_kernels: bool = False) -> tf.keras.Model:
    """Rebuild a BNext model in the inference form that LCE converts to binary ops.

    See the module docstring for the rewrite. The clone computes the same function as
    ``model`` in inference mode (``sign(0) = +1`` as in Larq and LCE).

    Args:
        model: a BNext Keras model (with :class:`~larq_bnext.layers.BinaryConv2D` layers).
        allow_float_kernels: keep binary layers whose temperature is still ``>= 1e-7`` as
            float convolutions with kernel ``clip(w / T, -1, 1)`` on binarized inputs,
            instead of refusing the model.

    Returns:
        A new :class:`tf.keras.Model` sharing no variables with ``model``.

    Raises:
        ValueError: if ``model`` has no binary layers, or if some binary layer is still
            progressive and ``allow_float_kernels`` is False.
    """
    binary = binary_conv_layers(model)
    if not binary:
        raise ValueError(
            f"Model {model.name!r} has no larq_bnext BinaryConv2D layers: it is not a BNext "
            "model. Convert other Larq models with "
            "larq_compute_engine.convert_keras_model (or larq_bnext.deploy.convert)."
        )
    if any(isinstance(layer, tf.keras.Model) for layer in model.layers):
        raise ValueError(
            "Nested models are not supported by inference_model; build BNext with "
            "input_tensor=... instead of wrapping it in another model."
        )
    progressive = unbinarized_layers(model)
    if progressive and not allow_float_kernels:
        examples = ", ".join(f"{n} (T={t:.3g})" for n, t in list(progressive.items())[:3])
        raise ValueError(
            f"{len(progressive)} of {len(binary)} binary layers still have a kernel "
            f"temperature >= {TEMPERATURE_THRESHOLD:g} (e.g. {examples}), so their kernels are "
            "clip(w / T, -1, 1), not sign(w), and cannot become binary convolutions. Finish "
            "training (temperatures decay to below 1e-7 after about 153 epochs), or pass "
            "allow_float_kernels=True (CLI: --allow_float_binary_layers) to keep those layers "
            "as float convolutions on binarized inputs (correct outputs, no binary speed-up)."
        )

    def replace(layer):
        if isinstance(layer, BinaryConv2D):
            return _inference_conv(layer)
        if _is_pytorch_stem_pad(layer):
            return tf.keras.layers.ZeroPadding2D(((1, 0), (1, 0)), name=layer.name)
        return None

    return _clone(model, replace)


@_register
class _TopLeftPaddedConv2D(tf.keras.layers.Layer):
    """A float convolution with PyTorch's padding for stride 2: pad top/left, then "valid".

    For even input sizes PyTorch's bottom/right pad is never read, so this samples exactly
    the pixels of ``Conv2d(padding=k//2)``.
    """

    def __init__(self, filters, kernel_size, strides, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(kernel_size)
        self.strides = tuple(strides)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(*self.kernel_size, int(input_shape[-1]), self.filters)
        )
        super().build(input_shape)

    def call(self, inputs):
        pad_h, pad_w = (k // 2 for k in self.kernel_size)
        x = tf.pad(inputs, [[0, 0], [pad_h, 0], [pad_w, 0], [0, 0]])
        return tf.nn.conv2d(x, self.kernel, strides=self.strides, padding="VALID")

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
        }


def float_model(model: tf.keras.Model) -> tf.keras.Model:
    """The same architecture with every binary convolution as a float convolution.

    The float baseline of :func:`benchmark`: ``BinaryConv2D`` layers become
    :class:`tf.keras.layers.Conv2D` (no sign on inputs or kernels, real-valued kernels copied
    from the latent weights), with PyTorch's padding. Its outputs are not those of the
    binary network; it measures what the same network costs in float32.

    Args:
        model: a BNext Keras model.

    Returns:
        A new float :class:`tf.keras.Model`.
    """

    def replace(layer):
        if isinstance(layer, BinaryConv2D):
            if layer._explicit_padding:
                new = _TopLeftPaddedConv2D(
                    layer.filters, layer.kernel_size, layer.strides, name=layer.name
                )
            else:
                new = tf.keras.layers.Conv2D(
                    layer.filters,
                    layer.kernel_size,
                    strides=layer.strides,
                    padding="same",
                    use_bias=False,
                    name=layer.name,
                )
            new._bnext_weights = [layer.kernel.numpy()]
            return new
        if _is_pytorch_stem_pad(layer):
            return tf.keras.layers.ZeroPadding2D(((1, 0), (1, 0)), name=layer.name)
        return None

    return _clone(model, replace)


def convert(
    model: tf.keras.Model,
    allow_float_kernels: bool = False,
    target: str = "arm",
) -> bytes:
    """Convert a BNext (or any Larq) model to an LCE TFLite flatbuffer.

    A model with :class:`~larq_bnext.layers.BinaryConv2D` layers is first rebuilt by
    :func:`inference_model`; other models (e.g. larq-zoo's QuickNet) are converted as they
    are. The input batch size is fixed to 1 when it is unspecified.

    Args:
        model: the Keras model.
        allow_float_kernels: see :func:`inference_model`.
        target: LCE target, ``"arm"`` (Arm CPUs: every binary convolution, zero-padded ones
            included, becomes ``LceBconv2d``) or ``"xcore"``.

    Returns:
        The flatbuffer, as bytes (write them to a ``.tflite`` file).

    Raises:
        ValueError: see :func:`inference_model`; also for a model with a non-float32 policy.
        ImportError: if ``larq-compute-engine`` is not installed.
    """
    if target not in ("arm", "xcore"):
        raise ValueError(f"target must be 'arm' or 'xcore', not {target!r}.")
    _warn_small_zero_padded_maps(model)
    if binary_conv_layers(model):
        # Not bound to a name here, so that the converter can free the clone's variables.
        return _lce_convert_keras(
            inference_model(model, allow_float_kernels=allow_float_kernels), target
        )
    return _lce_convert_keras(model, target)


def _warn_small_zero_padded_maps(model: tf.keras.Model) -> None:
    """Warn about zero-padded 3x3 binary convolutions on feature maps smaller than 3x3.

    LCE 0.16's optimized binary kernels (the default one and the indirect-BGEMM one) compute
    zero-padded 3x3 convolutions wrongly when the feature map is smaller than the kernel
    (2x2 or 1x1); its reference kernel is right. BNext's last stage is input/32 pixels wide,
    so this concerns inputs below 96x96.
    """
    small = [
        layer.name
        for layer in binary_conv_layers(model)
        if max(layer.kernel_size) > 1
        and any(d is not None and d < max(layer.kernel_size) for d in layer.input_shape[1:3])
    ]
    if small:
        warnings.warn(
            f"{len(small)} zero-padded binary convolutions (e.g. {small[0]}) run on feature "
            "maps smaller than their kernel. LCE's optimized kernels compute those wrongly; "
            "use an input of at least 96x96 (32 x 3), or run the flatbuffer with "
            "use_reference_bconv=True (lce_benchmark_model --use_reference_bconv).",
            stacklevel=3,
        )


def _freeze_lean(func, model: tf.keras.Model) -> bytes | None:
    """Serialize ``func``'s graph with every variable read replaced by a constant.

    Does what ``convert_variables_to_constants_v2`` does for the plain graphs of Keras
    models (a ``ReadVariableOp`` per captured variable, no nested functions), holding about
    two copies of the weights instead of six to nine: the difference between converting
    BNext-L (1.3 GB of float32 weights) on a 24 GB machine or not.

    Returns:
        The serialized ``GraphDef``, or ``None`` when the graph has anything else (nested
        functions, other uses of variables), for the caller to fall back on TensorFlow's
        general freezing.
    """
    graph_def = func.graph.as_graph_def()
    if graph_def.library.function:
        return None
    variables = {id(v.handle): v for v in model.variables}
    captured = {}
    for external, internal in func.graph.captures:
        variable = variables.get(id(external))
        if variable is None:
            return None
        captured[internal.op.name] = variable
    kept = []
    for node in graph_def.node:
        if node.name in captured:
            if node.op != "Placeholder":
                return None
            continue  # the resource placeholder disappears with its reads
        data_inputs = [name for name in node.input if not name.startswith("^")]
        if any(name[1:] in captured for name in node.input if name.startswith("^")):
            controls = [n for n in node.input if n.startswith("^") and n[1:] not in captured]
            del node.input[:]
            node.input.extend(data_inputs + controls)
        if any(name.split(":")[0] in captured for name in data_inputs):
            if node.op != "ReadVariableOp" or len(data_inputs) != 1:
                return None
            variable = captured[data_inputs[0].split(":")[0]]
            node.op = "Const"
            del node.input[:]
            node.attr.clear()
            node.attr["dtype"].type = variable.dtype.as_datatype_enum
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(variable.numpy()))
        kept.append(node)
    del graph_def.node[:]
    graph_def.node.extend(kept)
    del kept
    return graph_def.SerializeToString()


def _frozen_graph(model: tf.keras.Model) -> dict:
    """Trace ``model`` and freeze its weights into a serialized ``GraphDef``.

    Returns:
        ``{"graph_def", "input_names", "input_types", "input_shapes", "output_names"}``, the
        arguments of LCE's graph converter (the batch dimension fixed to 1).
    """
    from larq_compute_engine.mlir.python.converter import concrete_function_from_keras_model
    from tensorflow.core.framework.types_pb2 import DataType
    from tensorflow.lite.python.util import get_tensor_name
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    if model.dtype_policy.name != "float32":
        raise ValueError(
            f"Only float32 models can be converted; this one uses {model.dtype_policy.name!r}. "
            "Rebuild it under the 'float32' policy and copy the weights."
        )
    func = concrete_function_from_keras_model(model)
    serialized = _freeze_lean(func, model)
    graph = func
    if serialized is None:
        graph = convert_variables_to_constants_v2(func, lower_control_flow=False)
        serialized = graph.graph.as_graph_def().SerializeToString()
    inputs = [t for t in graph.inputs if t.dtype != tf.dtypes.resource]
    shapes = []
    for tensor in inputs:
        shape = tensor.shape.as_list()
        if None in shape[1:]:
            raise ValueError(
                f"Input {get_tensor_name(tensor)} has shape {shape}: give the model a fixed "
                "input_shape (height, width, channels) before converting."
            )
        shapes.append([1 if shape[0] is None else shape[0], *shape[1:]])
    return {
        "graph_def": serialized,
        "input_names": [get_tensor_name(t) for t in inputs],
        "input_types": [DataType.Name(t.dtype.as_datatype_enum) for t in inputs],
        "input_shapes": shapes,
        "output_names": [get_tensor_name(t) for t in graph.outputs],
    }


def _lce_convert_keras(model: tf.keras.Model, target: str) -> bytes:
    """LCE's Keras conversion through a frozen graph.

    ``larq_compute_engine.convert_keras_model`` first saves a SavedModel, which for BNext
    takes minutes (Keras traces every layer), then falls back to exactly this frozen-graph
    route on failure. Going to the graph directly gives the same ops ~15x faster, and
    :func:`_freeze_lean` keeps the memory low enough for BNext-L.
    """
    try:
        from larq_compute_engine.mlir._tf_tfl_flatbuffer import (
            convert_graphdef_to_tflite_flatbuffer,
        )
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "larq_bnext.deploy needs Larq Compute Engine: pip install 'larq_bnext[deploy]' "
            "(larq-compute-engine 0.16)."
        ) from err
    frozen = _frozen_graph(model)
    del model  # the serialized graph holds the weights now (the caller may drop its own)
    gc.collect()
    return convert_graphdef_to_tflite_flatbuffer(
        frozen["graph_def"],
        frozen["input_names"],
        frozen["input_types"],
        frozen["input_shapes"],
        frozen["output_names"],
        False,  # no int8 quantization
        target,
        None,
    )


def convert_float(model: tf.keras.Model) -> bytes:
    """Convert the float form of a model with the plain TFLite converter.

    BNext models are rebuilt by :func:`float_model` first; other models are converted as
    they are (their Larq quantizers, if any, then stay float ops). The model is frozen to a
    graph first (TensorFlow's ``from_keras_model`` saves a SavedModel, which takes minutes
    for BNext).

    Args:
        model: the Keras model.

    Returns:
        The float32 TFLite flatbuffer, as bytes.
    """
    import tempfile

    frozen = _frozen_graph(float_model(model) if binary_conv_layers(model) else model)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "frozen.pb")
        with open(path, "wb") as f:
            f.write(frozen["graph_def"])
        del frozen["graph_def"]
        names = [name.split(":")[0] for name in frozen["input_names"]]
        converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
            path,
            names,
            [name.split(":")[0] for name in frozen["output_names"]],
            dict(zip(names, frozen["input_shapes"], strict=True)),
        )
        return converter.convert()


def _schema():
    from larq_compute_engine.mlir.python import tflite_schema

    return tflite_schema


def op_counts(flatbuffer: bytes) -> collections.Counter:
    """Count the operators of a TFLite flatbuffer by name (all subgraphs).

    Built-in ops get their TFLite names (``"CONV_2D"``, ``"FULLY_CONNECTED"``, ...), custom
    ops their custom code (``"LceBconv2d"``, ``"LceQuantize"``, ...).

    Args:
        flatbuffer: the bytes of a ``.tflite`` file.

    Returns:
        A :class:`collections.Counter` of op names.
    """
    schema = _schema()
    builtin_names = {
        value: key for key, value in vars(schema.BuiltinOperator).items() if key.isupper()
    }
    model = schema.Model.GetRootAsModel(bytearray(flatbuffer), 0)
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        custom = code.CustomCode()
        if custom:
            names.append(custom.decode())
        else:
            # Schema v3a: builtin codes >= 127 live in BuiltinCode(), older ones in both.
            names.append(builtin_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
    counts = collections.Counter()
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for j in range(graph.OperatorsLength()):
            counts[names[graph.Operators(j).OpcodeIndex()]] += 1
    return counts


def ideal_size(model: tf.keras.Model) -> dict[str, int]:
    """The ideal deployed size of a Larq model: binary kernels at 1 bit, the rest float32.

    A kernel is binary when its layer is a :class:`larq.layers.QuantConv2D` (BNext's
    ``BinaryConv2D`` included) whose kernel quantizer has ``precision == 1``. Every other
    weight (stem, BatchNorm scale/offset/mean/variance, PReLU, biases, recoupling scales,
    SE convolutions, classifier) counts 4 bytes. ``BinaryConv2D``'s two temperature scalars
    are training state and are not counted.

    Args:
        model: a Keras model (BNext, QuickNet, ...).

    Returns:
        ``{"binary_params", "float_params", "bytes"}``.
    """
    skip = set()
    binary_params = 0
    for layer in model.layers:
        if isinstance(layer, BinaryConv2D):
            skip.update(id(w) for w in (layer.temperature, layer.input_temperature))
        if (
            isinstance(layer, lq.layers.QuantConv2D)
            and getattr(layer.kernel_quantizer, "precision", None) == 1
        ):
            binary_params += int(np.prod(layer.kernel.shape))
            skip.add(id(layer.kernel))
    float_params = sum(int(np.prod(w.shape)) for w in model.weights if id(w) not in skip)
    return {
        "binary_params": binary_params,
        "float_params": float_params,
        "bytes": binary_params // 8 + 4 * float_params,
    }


def lce_interpreter(
    flatbuffer: bytes,
    num_threads: int = 1,
    use_indirect_bgemm: bool = False,
    use_xnnpack: bool = False,
    use_reference_bconv: bool = False,
):
    """An LCE interpreter (TFLite with LCE's ops) for a flatbuffer.

    Args:
        flatbuffer: the bytes of a ``.tflite`` file.
        num_threads: CPU threads.
        use_indirect_bgemm: use LCE's indirect-BGEMM binary convolution kernel instead of the
            default im2col + BGEMM one (on x86 the indirect kernel is the faster of the two;
            on Arm the default has hand-written NEON assembly).
        use_xnnpack: delegate float ops to XNNPACK (TFLite's fast float kernels).
        use_reference_bconv: use LCE's slow reference binary convolution (for checks).

    Returns:
        A :class:`larq_compute_engine.tflite.python.interpreter.Interpreter`.
    """
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    return Interpreter(
        flatbuffer,
        num_threads=num_threads,
        use_indirect_bgemm=use_indirect_bgemm,
        use_xnnpack=use_xnnpack,
        use_reference_bconv=use_reference_bconv,
    )


def predict(flatbuffer: bytes, images: np.ndarray, num_threads: int = 1, **kwargs) -> np.ndarray:
    """Run a flatbuffer on a batch of images with LCE's interpreter, one image at a time.

    Args:
        flatbuffer: the bytes of a ``.tflite`` file with one input.
        images: ``(batch, height, width, channels)`` float32 array.
        num_threads: CPU threads.
        **kwargs: :func:`lce_interpreter` options.

    Returns:
        The stacked outputs, ``(batch, ...)``; a list of them for a flatbuffer with several
        outputs (converted from a multi-output Keras model, they come sorted by the Keras
        output names, which is the order :func:`convert`'s frozen graph gives them).
    """
    # A fresh array: LCE's pybind11 wrapper rejects arrays whose dtype object did not come
    # from NumPy's canonical table (e.g. unpickled ones: "NumPy type info missing").
    fresh = np.empty(np.shape(images), dtype=np.float32)
    fresh[...] = images
    images = fresh
    if images.ndim != 4:
        raise ValueError(f"images must be (batch, height, width, channels); got {images.shape}.")
    interpreter = lce_interpreter(flatbuffer, num_threads=num_threads, **kwargs)
    expected = tuple(interpreter.input_shapes[0][1:])
    if tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"The flatbuffer expects images of shape {expected}, got {images.shape[1:]}. "
            "Convert a model built with that input_shape, or resize the images."
        )
    return interpreter.predict(images)


def measure_latency(
    flatbuffer: bytes,
    num_threads: int = 1,
    repeats: int = 10,
    warmup: int = 2,
    **kwargs,
) -> dict[str, float]:
    """Warm single-image latency of a flatbuffer with LCE's interpreter.

    Runs ``warmup`` untimed inferences on one random image, then ``repeats`` timed ones.

    Args:
        flatbuffer: the bytes of a ``.tflite`` file with one float32 input.
        num_threads: CPU threads.
        repeats: timed runs (at least 1).
        warmup: untimed runs first.
        **kwargs: :func:`lce_interpreter` options.

    Returns:
        ``{"median_ms", "min_ms", "max_ms", "repeats"}``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}.")
    interpreter = lce_interpreter(flatbuffer, num_threads=num_threads, **kwargs)
    shape = (1, *interpreter.input_shapes[0][1:])
    image = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    run = interpreter.interpreter.predict  # the C++ call, without the Python batching loop
    for _ in range(warmup):
        run([image])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run([image])
        times.append((time.perf_counter() - start) * 1e3)
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "repeats": repeats,
    }


def build_model(name: str, input_size: int = 224) -> tf.keras.Model:
    """A randomly initialised model of :data:`PUBLISHED_TOP1` for benchmarking.

    BNext models get their temperatures set below the threshold (:func:`binarize_for_demo`);
    QuickNets come from ``larq_zoo.sota`` with ``weights=None``. Latency and file size do
    not depend on the weight values.

    Args:
        name: ``"bnext_tiny"`` ... ``"bnext_large"`` (any size alias) or ``"quicknet_small"``,
            ``"quicknet"``, ``"quicknet_large"``.
        input_size: square input resolution.
    """
    shape = (input_size, input_size, 3)
    if name in _QUICKNET_NAMES:
        import larq_zoo

        builder = {
            "quicknet_small": larq_zoo.sota.QuickNetSmall,
            "quicknet": larq_zoo.sota.QuickNet,
            "quicknet_large": larq_zoo.sota.QuickNetLarge,
        }[name]
        return builder(input_shape=shape, weights=None)
    try:
        size = bnext_models.canonical_size(name)
    except ValueError:
        raise ValueError(
            f"Unknown model {name!r}; use one of {', '.join(PUBLISHED_TOP1)}."
        ) from None
    model = bnext_models.get_model(size, input_shape=shape, weights=None)
    return binarize_for_demo(model)


def _canonical_name(name: str) -> str:
    if name in _QUICKNET_NAMES:
        return name
    try:
        return f"bnext_{bnext_models.canonical_size(name)}"
    except ValueError:
        raise ValueError(
            f"Unknown model {name!r}; use one of {', '.join(PUBLISHED_TOP1)}."
        ) from None


def benchmark(
    models: Sequence[str] = _BNEXT_NAMES + _QUICKNET_NAMES,
    float_models: Sequence[str] = ("bnext_tiny",),
    input_size: int = 224,
    threads: Iterable[int] | None = None,
    repeats: int = 10,
    warmup: int = 2,
    use_indirect_bgemm: bool = True,
    output_dir: str | os.PathLike | None = None,
    log=print,
    build_fn=None,
    append: bool = False,
    flatbuffer_dir: str | os.PathLike | None = None,
) -> list[dict]:
    """Convert and time models; optionally write a table (CSV + markdown) and PNG plots.

    Every model is built with random weights (:func:`build_model`), converted with LCE
    (:func:`convert`; binary layers as ``LceBconv2d``) and timed with LCE's interpreter for
    each thread count: warm single-image runs, taken round-robin over all the models
    (``repeats`` rounds) so that other load on the machine affects them alike. Models in
    ``float_models`` are also converted in float (:func:`convert_float`) and timed with
    TFLite's float kernels (XNNPACK), as the "same network without binarization" baseline.

    Args:
        models: names from :data:`PUBLISHED_TOP1` (BNext size aliases accepted).
        float_models: BNext models to also measure in float32.
        input_size: square input resolution.
        threads: thread counts; default ``(1, os.cpu_count())``.
        repeats: timed runs per measurement (the median is reported).
        warmup: untimed runs before timing.
        use_indirect_bgemm: LCE binary kernel choice (see :func:`lce_interpreter`).
        output_dir: where to write ``benchmark.csv``, ``benchmark.md`` and the plots; ``None``
            writes nothing.
        log: a ``print``-like callable for progress, or ``None``.
        build_fn: ``build_fn(name, input_size) -> tf.keras.Model`` replacing
            :func:`build_model` (e.g. to time fine-tuned models or custom widths).
        append: keep the rows of an existing ``benchmark.csv`` in ``output_dir`` for the
            (model, form) pairs not measured now (to measure large models in separate runs).
        flatbuffer_dir: where to keep the converted ``<model>_<form>_<input_size>.tflite``
            files; an existing file is timed again instead of converting anew.

    Returns:
        One dict per (model, form): ``model``, ``form`` (``"lce"`` or ``"float"``),
        ``top1`` (published, ``None`` for float forms), ``size_mb`` (the flatbuffer),
        ``ideal_mb`` (:func:`ideal_size`), ``keras_float32_mb`` (all Keras weights at 4 bytes),
        ``binary_convs``, ``float_convs``, ``convert_s`` (``None`` for a reused file), and
        ``latency_ms_<n>t`` (median) / ``latency_min_ms_<n>t`` per thread count.
    """
    log = log or (lambda *a, **k: None)
    threads = tuple(threads or sorted({1, os.cpu_count() or 1}))
    names = [_canonical_name(n) for n in models]
    float_names = {_canonical_name(n) for n in float_models}
    unknown = float_names - set(_BNEXT_NAMES)
    if unknown:
        raise ValueError(f"float_models must be BNext models, got {sorted(unknown)}.")
    rows, flatbuffers = [], []
    for name in names + [n for n in _BNEXT_NAMES if n in float_names and n not in names]:
        forms = (["lce"] if name in names else []) + (["float"] if name in float_names else [])
        model = (build_fn or build_model)(name, input_size)
        for form in forms:
            start = time.perf_counter()
            cached = None
            if flatbuffer_dir is not None:
                cached = Path(flatbuffer_dir) / f"{name}_{form}_{input_size}.tflite"
            reused = cached is not None and cached.exists()
            if reused:
                log(f"[{name} / {form}] reusing {cached}")
                flatbuffer = cached.read_bytes()
            else:
                log(f"[{name} / {form}] converting at {input_size}x{input_size} ...")
                flatbuffer = convert(model) if form == "lce" else convert_float(model)
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    cached.write_bytes(flatbuffer)
            counts = op_counts(flatbuffer)
            rows.append(
                {
                    "model": name,
                    "form": form,
                    "top1": PUBLISHED_TOP1[name] if form == "lce" else None,
                    "size_mb": len(flatbuffer) / 1e6,
                    "ideal_mb": ideal_size(model)["bytes"] / 1e6 if form == "lce" else None,
                    "keras_float32_mb": 4 * model.count_params() / 1e6,
                    "binary_convs": counts.get(BINARY_CONV_OP, 0),
                    "float_convs": counts.get("CONV_2D", 0) + counts.get("DEPTHWISE_CONV_2D", 0),
                    # None when the flatbuffer came from flatbuffer_dir.
                    "convert_s": None if reused else time.perf_counter() - start,
                }
            )
            flatbuffers.append(flatbuffer)
            log(f"    {rows[-1]['size_mb']:.2f} MB, {rows[-1]['binary_convs']} LceBconv2d")
        del model
        tf.keras.backend.clear_session()
    # Timing round-robin over all models, so that a busy machine slows them all alike.
    for n in threads:
        log(f"timing with {n} thread(s): {repeats} rounds over {len(rows)} flatbuffers ...")
        runners, images = [], []
        for row, flatbuffer in zip(rows, flatbuffers, strict=True):
            interpreter = lce_interpreter(
                flatbuffer,
                num_threads=n,
                use_indirect_bgemm=use_indirect_bgemm and row["form"] == "lce",
                use_xnnpack=row["form"] == "float",
            )
            shape = (1, *interpreter.input_shapes[0][1:])
            images.append(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
            runners.append(interpreter.interpreter.predict)
        for run, image in zip(runners, images, strict=True):
            for _ in range(warmup):
                run([image])
        times = [[] for _ in rows]
        for _ in range(repeats):
            for run, image, record in zip(runners, images, times, strict=True):
                start = time.perf_counter()
                run([image])
                record.append((time.perf_counter() - start) * 1e3)
        for row, record in zip(rows, times, strict=True):
            row[f"latency_ms_{n}t"] = statistics.median(record)
            row[f"latency_min_ms_{n}t"] = min(record)
            log(f"    {row['model']} / {row['form']}: median {statistics.median(record):.1f} ms")
        del runners
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        table = rows
        if append and (output_dir / "benchmark.csv").exists():
            measured = {(r["model"], r["form"]) for r in rows}
            kept = [
                r
                for r in read_table(output_dir / "benchmark.csv")
                if (r["model"], r["form"]) not in measured
            ]
            table = kept + list(rows)
        write_table(table, output_dir)
        plot_benchmark(
            table,
            output_dir,
            title=f"LCE, {input_size}x{input_size}, batch 1, {platform.machine()} CPU",
        )
    return rows


def read_table(path: str | os.PathLike) -> list[dict]:
    """Read a ``benchmark.csv`` written by :func:`write_table` back into rows.

    Args:
        path: the CSV file.

    Returns:
        Rows with numbers as ``int``/``float`` and empty cells as ``None``.
    """

    def parse(value: str):
        if value == "":
            return None
        for cast in (int, float):
            try:
                return cast(value)
            except ValueError:
                pass
        return value

    with open(path, newline="") as f:
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_table(rows: Sequence[dict], output_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write benchmark rows as ``benchmark.csv`` and ``benchmark.md``.

    Args:
        rows: the output of :func:`benchmark`.
        output_dir: target directory (created if needed).

    Returns:
        The paths of the CSV and the markdown files.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    csv_path = output_dir / "benchmark.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    thread_keys = [k for k in keys if k.startswith("latency_ms_")]
    header = [
        "model",
        "form",
        "ImageNet top-1 (%)",
        "size (MB)",
        "ideal (MB)",
        "Keras float32 (MB)",
        "LceBconv2d",
        "float convs",
    ]
    header += [
        f"latency {k.removeprefix('latency_ms_').removesuffix('t')} thr., ms: median (min)"
        for k in thread_keys
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["model"],
            row["form"],
            "—" if row["top1"] is None else f"{row['top1']:.1f}",
            f"{row['size_mb']:.2f}",
            "—" if row.get("ideal_mb") is None else f"{row['ideal_mb']:.2f}",
            f"{row['keras_float32_mb']:.1f}",
            str(row["binary_convs"]),
            str(row["float_convs"]),
        ] + [
            f"{row[k]:.0f} ({row[k.replace('latency_ms_', 'latency_min_ms_')]:.0f})"
            for k in thread_keys
        ]
        lines.append("| " + " | ".join(cells) + " |")
    md_path = output_dir / "benchmark.md"
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def plot_benchmark(
    rows: Sequence[dict], output_dir: str | os.PathLike, title: str | None = None
) -> list[Path]:
    """Plot published top-1 against latency and against file size (PNG, matplotlib Agg).

    Only rows with a published top-1 (LCE forms) are plotted.

    Args:
        rows: the output of :func:`benchmark`.
        output_dir: target directory.
        title: a title for both plots (e.g. the machine and input size).

    Returns:
        The paths of ``top1_vs_latency.png`` and ``top1_vs_size.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    import matplotlib.ticker  # noqa: F401  (loads matplotlib.ticker for the formatters)

    rows = [r for r in rows if r["top1"] is not None]
    order = {name: i for i, name in enumerate(PUBLISHED_TOP1)}
    latency_key = next((k for k in rows[0] if k.startswith("latency_ms_")), None) if rows else None
    paths = []
    for key, label, fname in [
        (
            latency_key,
            f"latency, {_threads_label(latency_key)} (ms, log scale)",
            "top1_vs_latency.png",
        ),
        ("size_mb", "flatbuffer size (MB, log scale)", "top1_vs_size.png"),
    ]:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for family, marker in (("bnext", "o"), ("quicknet", "s")):
            # In the order of PUBLISHED_TOP1 (model size), not sorted by the measured value.
            pts = sorted(
                (order.get(r["model"], len(order)), r[key], r["top1"], r["model"])
                for r in rows
                if key and r["model"].startswith(family)
            )
            if not pts:
                continue
            ax.plot([p[1] for p in pts], [p[2] for p in pts], marker=marker, label=family)
            for _, x, y, name in pts:
                ax.annotate(
                    _DISPLAY_NAMES.get(name, name),
                    (x, y),
                    textcoords="offset points",
                    xytext=(5, -11),
                    fontsize=8,
                )
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("ImageNet top-1 (%, published)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        if title:
            ax.set_title(title, fontsize=10)
        fig.tight_layout()
        path = output_dir / fname
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def _threads_label(key: str | None) -> str:
    if not key:
        return ""
    n = key.removeprefix("latency_ms_").removesuffix("t")
    return f"{n} thread" + ("" if n == "1" else "s")
