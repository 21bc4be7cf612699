"""Convert BNext with Larq Compute Engine into a TFLite flatbuffer, and read flatbuffers back.

:func:`convert` rebuilds the model in its inference form
(:func:`larq_bnext.deploy.inference.inference_model`) and converts it; binary convolutions
become ``LceBconv2d`` ops. :func:`convert_float` converts the float form for comparison;
:func:`op_counts` and :func:`ideal_size` read a flatbuffer and a model.
"""

from __future__ import annotations

import collections
import gc
import os
import warnings

import larq as lq
import numpy as np
import tensorflow as tf

from larq_bnext.deploy.inference import float_model, inference_model
from larq_bnext.models.layers import BinaryConv2D, binary_conv_layers

__all__ = [
    "BINARY_CONV_OP",
    "convert",
    "convert_float",
    "op_counts",
    "ideal_size",
]


#: Op name of a binary convolution in an LCE flatbuffer.
BINARY_CONV_OP = "LceBconv2d"


def convert(
    model: tf.keras.Model,
    allow_float_kernels: bool = False,
    target: str = "arm",
) -> bytes:
    """Convert a BNext (or any Larq) model to an LCE TFLite flatbuffer.

    A model with :class:`~larq_bnext.models.layers.BinaryConv2D` layers is first rebuilt by
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
