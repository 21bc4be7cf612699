"""Where one Keras training step of BNext spends its time, from TensorFlow's profiler.

    python benchmarks/profile_train_step.py                  # BNext-T, 224x224, batch 16
    python benchmarks/profile_train_step.py --size tiny --steps 2 --json /tmp/profile_tiny.json
    python benchmarks/profile_train_step.py --size large --steps 1 --top 30

The step is the distillation training step of ``benchmarks/train_throughput.py``
(:func:`train_throughput.keras_step`, mode ``function``, float32, 1000 classes): student
forward, the knowledge-complexity loss against a stand-in teacher, backward, the gradient
clip at global norm 5 and the AdamW update. After the first (tracing) step and one warm-up
step, ``--steps`` steps run under ``tf.profiler.experimental.start``/``stop``; each is also
timed with ``time.perf_counter``.

Where the times come from. The profiler writes an XSpace (``*.xplane.pb``). On a CPU every
TensorFlow op executed is an event ``"<op name>:<op type>"`` on a host thread; an op's
*self-time* is its duration less that of the ops nested in it on the same thread. By default
(``--source xplane``) the script reads these events itself, so that every op counts.
TensorFlow's ``tensorflow_stats`` tool (``_pywrap_profiler.xspace_to_tools_data([path],
"tensorflow_stats")``, no options needed in TF 2.15) returns a *serialized*
``tensorflow.profiler.TfStatsDatabase`` protobuf (not gviz JSON; the JSON conversion lives in
``tensorboard_plugin_profile``, not used here), decoded below without its generated module;
it keeps only the 500 records of the largest self-time (``IDLE`` among them), so it is
printed as a cross-check, or used for the tables with ``--source tensorflow_stats``.
Function-call ops (``PartitionedCall`` and the like), which only wait for the ops of their
body, are left out.

What it prints, per profiled step (times are averages over the ``--steps`` steps):

1. the ``--top`` op types by self-time: occurrences, milliseconds, % of all op self-time and
   % of the wall-clock step. oneDNN kernels keep their registered names
   (``_MklNativeConv2D``, ``_MklNativeConv2DBackpropInput``, ``_MklNativeFusedBatchNormV3``,
   ``_MklMatMul``, ...);
2. the same self-time grouped by category (below), and by phase: forward (the model's scope),
   backward (``gradient_tape/`` and the unscoped ops made by ``tape.gradient``: custom
   gradients, gradient sums), gradient clip, optimizer (``AdamW/``), other (loss, metrics);
3. the ``--top_ops`` single ops of the largest self-time;
4. the wall-clock step against the time inside the ``tf.function`` call, the op self-time the
   profiler accounted for, and what the calling thread did outside the call (traced eager
   work, and the untraced Python rest).

Categories. Every op falls in the first that matches, in this order. ``name`` is the op's
name (the Keras layer's scope, e.g. ``bnext_tiny/block3_ffn_binary_conv/hard_sign_7/Sign``,
``gradient_tape/`` before the gradient ops); ``type`` its type, with oneDNN's ``_Mkl``,
``_MklNative`` and ``_MklFused`` prefixes removed for matching only.

- ``function call``: ``PartitionedCall``-like types; left out of the totals (see above);
- ``float64``: an op with a float64 input, output or ``T``/``SrcT``/``DstT``/``dtype``
  attribute in the traced graph of the train function (``Cast`` to or from double, the
  optimizer's bias corrections). Op names grappler made up are not in that graph and count
  as not float64 (their share is printed);
- ``layout``: types ``Transpose``, ``MklToTf``/``TfToMkl``/``_MklToTf``, names with
  ``LayoutOptimizer`` or ``MklLayoutRewrite``;
- ``conv fwd binary`` / ``conv fwd float``: convolution types (``Conv2D``, ``FusedConv2D``,
  ``DepthwiseConv2dNative`` and their oneDNN forms) not under ``gradient_tape/``; binary when
  the name contains ``binary_conv`` (the stem and the squeeze-and-excitation 1x1
  convolutions are float);
- ``conv bwd input binary|float`` / ``conv bwd filter binary|float``: types
  ``Conv2DBackpropInput*`` and ``Conv2DBackpropFilter*`` (oneDNN's
  ``Conv2DBackpropFilterWithBias`` included), split as above;
- ``matmul``: ``MatMul``/``BatchMatMul*`` (the classifier, forward and backward);
- ``optimizer``: names under ``AdamW/`` or ``Adam/`` (the update, the weight-clip constraints
  applied after it, their variable reads and assigns) and ``ResourceApply*``/``Apply*`` types;
- ``gradient clip``: names under ``global_norm/`` and the unscoped ops created in
  ``clip_by_global_norm`` (the traced op's creation traceback);
- ops without a scope (names without ``/``), created by a ``tf.custom_gradient`` gradient
  function (HardSign's straight-through estimator, PReLU's gradient) take the category that
  the forward ops reading the same forward tensors have by the rules below (``quantizers``
  for ``|x| <= 1.5`` of HardSign, ``prelu`` for PReLU's); see :class:`GraphInfo`;
- ``quantizers``: a name scope ``hard_sign``, ``progressive_sign``, ``ste_sign``,
  ``*quantiz*`` or ``sign`` (with an optional ``_N``), or type ``Sign``: the activation
  ``HardSign``, the kernel ``ProgressiveSign`` (``sign``, ``w / T``, clip, select) and their
  straight-through gradients;
- ``SE + recoupling``: a scope ending in ``_se_pool``, ``_se_reduce``, ``_se_relu``,
  ``_se_expand``, ``_se_sigmoid``, ``_se_scale``, ``_mix`` or ``_shortcut_pool`` (information
  recoupling; its 1x1 convolutions are already counted as float convolutions);
- ``batchnorm``: types ``*BatchNorm*`` or scopes ``*_norm1``, ``*_norm2``, ``*_bn``,
  ``*batch_norm*`` (moving-average updates, reads of the statistics);
- ``prelu``: scopes ``*_activation1``, ``*_activation2`` or ``*prelu*`` (BNext's PReLU);
- ``variables``: ``ReadVariableOp``, ``AssignVariableOp``, ``Assign{Add,Sub}VariableOp``,
  ``VarHandleOp`` outside the optimizer (the metrics, the iteration counter);
- ``element-wise``: arithmetic and comparison types (``Mul``, ``AddV2``, ``Sub``, ``RealDiv``,
  ``Select``, ``SelectV2``, ``Maximum``, ``AddN``, ``Cast``, ...) that matched no scope above:
  the ``move`` biases, attention products, residual adds, gradient sums;
- ``pool / reduce / copy``: pooling, reductions, ``Tile``, ``Pad``, ``Slice``, ``ConcatV2``,
  ``Reshape``, ...;
- ``other``: the rest (loss, softmax, metrics, data).

The load of a shared machine, the ``--threads`` and the profiler itself (one event per op)
change the numbers: compare the sum of the op self-time with the wall-clock step, printed.
With one inter-op thread the ops still run on two threads (the executor goes on on the
``tf.data`` thread after ``IteratorGetNext``), so the op self-time can exceed the call's time
by a little.
"""

from __future__ import annotations

import argparse
import glob
import inspect
import json
import os
import platform
import re
import struct
import sys
import tempfile
import time
from collections import defaultdict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

#: Categories of the breakdown, in the order in which an op is matched (see the docstring).
CATEGORIES = (
    "function call",
    "float64",
    "layout",
    "conv fwd binary",
    "conv fwd float",
    "conv bwd input binary",
    "conv bwd input float",
    "conv bwd filter binary",
    "conv bwd filter float",
    "matmul",
    "optimizer",
    "gradient clip",
    "quantizers",
    "SE + recoupling",
    "batchnorm",
    "prelu",
    "variables",
    "element-wise",
    "pool / reduce / copy",
    "other",
)

_CALL_TYPES = {"PartitionedCall", "StatefulPartitionedCall", "While", "If", "StatelessIf"}
_LAYOUT_TYPES = {"Transpose", "MklToTf", "TfToMkl", "ConjugateTranspose"}
_MATMUL = {"MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "FusedMatMul"}
_VARIABLE_TYPES = {
    "ReadVariableOp",
    "AssignVariableOp",
    "AssignAddVariableOp",
    "AssignSubVariableOp",
    "VarHandleOp",
}
_ELEMENTWISE = {
    "Abs", "Add", "AddN", "AddV2", "BiasAdd", "BiasAddGrad", "Cast", "ClipByValue", "Div",
    "DivNoNan", "Equal", "Exp", "Floor", "FloorDiv", "FloorMod", "Greater", "GreaterEqual",
    "Identity", "IdentityN", "Less", "LessEqual", "Log", "LogicalAnd", "LogicalNot",
    "LogicalOr", "Maximum", "Minimum", "Mul", "MulNoNan", "Neg", "NotEqual", "OnesLike", "Pow",
    "RealDiv", "Reciprocal", "Relu", "Relu6", "ReluGrad", "Rsqrt", "RsqrtGrad", "Select",
    "SelectV2", "Sigmoid", "SigmoidGrad", "Sqrt", "SqrtGrad", "Square", "SquaredDifference",
    "Sub", "Tanh", "TanhGrad", "ZerosLike",
}  # fmt: skip
_POOL_REDUCE_COPY = {
    "AvgPool", "AvgPoolGrad", "BroadcastTo", "Concat", "ConcatV2", "ExpandDims", "Fill",
    "GatherV2", "L2Loss", "Max", "MaxPool", "MaxPoolGrad", "Mean", "Min", "Pack", "Pad",
    "PadV2", "Prod", "Reshape", "Shape", "Slice", "Split", "SplitV", "Squeeze",
    "StridedSlice", "Sum", "Tile", "Unpack",
}  # fmt: skip
_QUANTIZER_SCOPE = re.compile(r"^(hard_sign|progressive_sign|ste_sign|sign|.*quantiz.*)(_\d+)?$")
_SE_SCOPE = re.compile(
    r"_(se_pool|se_reduce|se_relu|se_expand|se_sigmoid|se_scale|mix|shortcut_pool)(_\d+)?$"
)
_BN_SCOPE = re.compile(r"(_norm\d|^norm\d|_bn|^bn|batch_norm|batchnorm)(_\d+)?$")
_PRELU_SCOPE = re.compile(r"(_activation[12]|prelu)(_\d+)?$")
_OPTIMIZER_ROOTS = {"AdamW", "Adam"}
#: Categories given by name scope, which the custom-gradient ops of :class:`GraphInfo` inherit.
_SCOPE_CATEGORIES = {"quantizers", "SE + recoupling", "batchnorm", "prelu"}


def base_type(op_type: str) -> str:
    """The op type without oneDNN's prefixes: ``_MklNativeConv2D`` -> ``Conv2D``.

    Args:
        op_type: the op type as the profiler reports it.
    """
    for prefix in ("_MklNativeFused", "_MklNative", "_MklFused", "_Mkl", "_"):
        if op_type.startswith(prefix) and len(op_type) > len(prefix):
            return op_type[len(prefix) :]
    return op_type


class GraphInfo:
    """What the traced graph of the train function tells about its ops, by op name.

    Attributes:
        names: every op name of the graph (the profile's names not among them were made by
            grappler or ran eagerly).
        float64: names of the ops with a float64 input, output or dtype attribute.
        hints: category of the *unscoped* ops (a name without ``/``), which name rules cannot
            place: ``gradient clip`` for those created in ``clip_by_global_norm``; for those
            created in a ``tf.custom_gradient`` gradient function (BNext's HardSign
            straight-through estimator and PReLU), the category of the forward ops that read
            the same forward tensors (``quantizers``, ``prelu``, ...).
        phases: phase of the unscoped ops: ``backward`` (created under ``tape.gradient``:
            custom gradients, gradient sums), ``gradient clip``.

    Args:
        concrete_functions: the traces (concrete functions) of the train function; the ops'
            creation tracebacks tell where they were made.
    """

    def __init__(self, concrete_functions=()):
        import tensorflow as tf

        ops = [op for fn in concrete_functions for op in fn.graph.get_operations()]
        self.names = {op.name for op in ops}
        self.float64 = set()
        self.hints, self.phases = {}, {}
        runs, run, previous = {}, 0, False  # consecutive ops of one custom gradient call
        for op in ops:
            dtypes = [t.dtype for t in (*op.inputs, *op.outputs)]
            for attr in ("T", "SrcT", "DstT", "dtype"):
                try:
                    dtypes.append(tf.as_dtype(op.get_attr(attr)))
                except (ValueError, TypeError):
                    pass
            if tf.float64 in dtypes:
                self.float64.add(op.name)
            frames = {frame.name for frame in op.traceback}
            custom = "tape_grad_fn" in frames  # scoped ops too (constants), to join the run
            if "/" not in op.name:
                if "clip_by_global_norm" in frames:
                    self.hints[op.name] = self.phases[op.name] = "gradient clip"
                elif "imperative_grad" in frames:
                    self.phases[op.name] = "backward"
            if custom:
                run += not previous
                runs[op.name] = run
            previous = custom
        by_run = defaultdict(lambda: defaultdict(int))
        for op in ops:
            if op.name in runs and "/" not in op.name:
                category = self._forward_category(op, runs)
                if category:
                    self.hints[op.name] = category
                    by_run[runs[op.name]][category] += 1
        for op in ops:  # e.g. zeros_like(dy), read from no forward tensor: the run's category
            votes = by_run.get(runs.get(op.name))
            if votes and "/" not in op.name and op.name not in self.hints:
                self.hints[op.name] = max(votes, key=votes.get)

    @staticmethod
    def _forward_category(op, runs) -> str | None:
        """Most frequent named category of the forward ops that read the tensors ``op`` is
        computed from (walking back through the ops of the same custom gradient call)."""
        votes, seen, todo = defaultdict(int), set(), list(op.inputs)
        while todo:
            tensor = todo.pop()
            if tensor.name in seen:
                continue
            seen.add(tensor.name)
            if runs.get(tensor.op.name) == runs[op.name]:
                todo.extend(tensor.op.inputs)
                continue
            for consumer in tensor.consumers():
                if "/" in consumer.name and not consumer.name.startswith("gradient_tape/"):
                    category = categorize(consumer.name, consumer.type)
                    if category in _SCOPE_CATEGORIES:
                        votes[category] += 1
        return max(votes, key=votes.get) if votes else None

    @classmethod
    def of(cls, distiller) -> GraphInfo | None:
        """The graph info of ``distiller.train_function``'s traces, or ``None``.

        Args:
            distiller: the :class:`larq_bnext.training.Distiller` whose train step ran.
        """
        try:
            functions = distiller.train_function._list_all_concrete_functions()
        except AttributeError:
            return None
        return cls(functions)


def categorize(op_name: str, op_type: str, graph: GraphInfo | None = None) -> str:
    """The category of one op (see the module docstring for the rules and their order).

    Args:
        op_name: the op's name, with the Keras layer scopes (``bnext_tiny/block1_.../Sign``).
        op_type: the op's type as the profiler reports it (``_MklNativeConv2D``, ``Mul``).
        graph: the traced graph's float64 ops and unscoped-op hints (:class:`GraphInfo`).

    Returns:
        One of :data:`CATEGORIES`.
    """
    kind = base_type(op_type)
    scopes = op_name.split("/")
    backward = scopes[0] == "gradient_tape"
    binary = "binary_conv" in op_name
    conv = _conv_kind(kind)
    if kind in _CALL_TYPES or "PartitionedCall" in kind or op_type.startswith("__"):
        return "function call"
    if graph is not None and op_name in graph.float64:
        return "float64"
    if kind in _LAYOUT_TYPES or "LayoutOptimizer" in op_name or "MklLayoutRewrite" in op_name:
        return "layout"
    if conv == "forward" and not backward:
        return "conv fwd binary" if binary else "conv fwd float"
    if conv in ("input", "forward"):  # a forward convolution inside a gradient: none in BNext
        return "conv bwd input binary" if binary else "conv bwd input float"
    if conv == "filter":
        return "conv bwd filter binary" if binary else "conv bwd filter float"
    if kind in _MATMUL:
        return "matmul"
    if scopes[0] in _OPTIMIZER_ROOTS or kind.startswith(("ResourceApply", "Apply")):
        return "optimizer"
    if scopes[0] == "global_norm":
        return "gradient clip"
    if len(scopes) == 1 and graph is not None and op_name in graph.hints:
        return graph.hints[op_name]
    if kind == "Sign" or any(_QUANTIZER_SCOPE.match(s.lower()) for s in scopes[:-1]):
        return "quantizers"
    if any(_SE_SCOPE.search(s) for s in scopes[:-1]):
        return "SE + recoupling"
    if "BatchNorm" in kind or any(_BN_SCOPE.search(s.lower()) for s in scopes[:-1]):
        return "batchnorm"
    if any(_PRELU_SCOPE.search(s.lower()) for s in scopes[:-1]):
        return "prelu"
    if kind in _VARIABLE_TYPES:
        return "variables"
    if kind in _ELEMENTWISE:
        return "element-wise"
    if kind in _POOL_REDUCE_COPY:
        return "pool / reduce / copy"
    return "other"


def _conv_kind(kind: str) -> str | None:
    """``forward``, ``input`` or ``filter`` for convolution types (``Conv2DBackpropFilter`` and
    ``Conv2DBackpropFilterWithBias`` are ``filter``), else ``None``."""
    convolutions = ("Conv2D", "Conv3D", "DepthwiseConv2dNative", "FusedConv2D", "PadWithConv2D")
    if not kind.startswith(convolutions) and not kind.startswith("FusedDepthwiseConv2dNative"):
        return None
    if "BackpropInput" in kind:
        return "input"
    if "BackpropFilter" in kind:
        return "filter"
    return "forward"


def phase(op_name: str, model_name: str, graph: GraphInfo | None = None) -> str:
    """``forward``, ``backward``, ``gradient clip``, ``optimizer`` or ``other`` (loss,
    metrics, data) of an op, by its root scope (and, for unscoped ops, by ``graph``).

    Args:
        op_name: the op's name.
        model_name: the student's Keras name (``bnext_tiny``), the forward pass's scope.
        graph: the traced graph's hints (:class:`GraphInfo`), or ``None``.
    """
    root = op_name.split("/")[0]
    if root == "gradient_tape":
        return "backward"
    if root in _OPTIMIZER_ROOTS:
        return "optimizer"
    if root == "global_norm":
        return "gradient clip"
    if root == model_name:
        return "forward"
    if graph is not None and op_name in graph.phases:
        return graph.phases[op_name]
    return "other"


# --- Reading the profile -------------------------------------------------------------------


def latest_xplane(logdir: str) -> str:
    """The newest ``*.xplane.pb`` under ``logdir`` (the profiler's ``plugins/profile/<run>``).

    Args:
        logdir: the directory passed to ``tf.profiler.experimental.start``.

    Raises:
        FileNotFoundError: when the profiler wrote none.
    """
    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise FileNotFoundError(f"no *.xplane.pb under {logdir}")
    return max(paths, key=os.path.getmtime)


def _split_op(metadata) -> tuple[str, str] | None:
    """``(op_name, op_type)`` of an XPlane event that is a TensorFlow op, else ``None``."""
    op_type = metadata.display_name
    if not op_type or ":" in op_type or not metadata.name.endswith(":" + op_type):
        return None
    op_name = metadata.name[: -len(op_type) - 1]
    return (op_name, op_type) if op_name else None


def xplane_op_records(path: str) -> tuple[list[dict], dict]:
    """Per-op totals of every TensorFlow op on the host threads of an XSpace.

    Args:
        path: a ``*.xplane.pb`` file.

    Returns:
        ``(records, calls)``: one record per ``(op_name, op_type)`` with ``occurrences``,
        ``total_us`` and ``self_us`` (duration less the ops nested in it on the same thread);
        ``calls`` the ``tf.function`` calls on the host threads, ``{"count", "total_us",
        "outside_us"}``, where ``outside_us`` maps the outermost traced events of the calling
        thread outside the calls (``TFE_DeleteTensorHandle``, ``EagerLocalExecute: <op>``,
        ...) to their total time.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with open(path, "rb") as f:
        space = xplane_pb2.XSpace.FromString(f.read())
    totals = defaultdict(lambda: [0, 0, 0])  # occurrences, total ps, self ps
    calls = {"count": 0, "total_us": 0.0, "outside_us": defaultdict(float)}
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        function_call_stats = {
            key for key, meta in plane.stat_metadata.items() if meta.name == "tf_function_call"
        }
        ops = {key: _split_op(meta) for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            events = sorted(line.events, key=lambda e: (e.offset_ps, -e.duration_ps))
            stack = []  # [end_ps, key, self_ps] of the enclosing ops
            for event in events:
                if any(s.metadata_id in function_call_stats for s in event.stats):
                    calls["count"] += 1
                    calls["total_us"] += event.duration_ps / 1e6
                op = ops.get(event.metadata_id)
                if op is None:
                    continue
                start, end = event.offset_ps, event.offset_ps + event.duration_ps
                while stack and stack[-1][0] <= start:
                    _, key, own = stack.pop()
                    totals[key][2] += own
                if stack:
                    stack[-1][2] -= event.duration_ps
                totals[op][0] += 1
                totals[op][1] += event.duration_ps
                stack.append([end, op, event.duration_ps])
            for _, key, own in stack:
                totals[key][2] += own
            if any(s.metadata_id in function_call_stats for e in events for s in e.stats):
                _outside_calls(plane, events, function_call_stats, calls["outside_us"])
    calls["outside_us"] = dict(sorted(calls["outside_us"].items(), key=lambda kv: -kv[1]))
    records = [
        {
            "op_name": name,
            "op_type": op_type,
            "occurrences": count,
            "total_us": total / 1e6,
            "self_us": own / 1e6,
        }
        for (name, op_type), (count, total, own) in totals.items()
    ]
    return records, calls


def _outside_calls(plane, events, call_stats, outside) -> None:
    """Add the outermost events of a thread that calls tf.functions, other than the calls,
    to ``outside`` (name -> microseconds); an ``EagerLocalExecute: <op>`` inside one names it."""
    end, label, duration = -1, None, 0
    for event in events:
        name = plane.event_metadata[event.metadata_id].name
        if event.offset_ps >= end:  # outermost
            if label is not None:
                outside[label] += duration / 1e6
            end = event.offset_ps + event.duration_ps
            is_call = any(s.metadata_id in call_stats for s in event.stats)
            label, duration = (None if is_call else name), event.duration_ps
        elif (
            label is not None
            and name.startswith("EagerLocalExecute: ")
            and "EagerLocal" not in label
        ):
            label = name
    if label is not None:
        outside[label] += duration / 1e6


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(data: bytes):
    """Yield ``(field_number, value)`` of a serialized protobuf message (wire format)."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value = struct.unpack_from("<d", data, i)[0]
            i += 8
        elif wire == 2:
            size, i = _varint(data, i)
            value = data[i : i + size]
            i += size
        elif wire == 5:
            value = struct.unpack_from("<f", data, i)[0]
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, value


# tensorflow/core/profiler/protobuf/tf_stats.proto (TF 2.15): TfStatsDatabase.with_idle = 4,
# without_idle = 5; TfStatsTable.tf_stats_record = 1; TfStatsRecord fields below.
_TF_STATS_FIELDS = {
    2: "host_or_device",
    3: "op_type",
    4: "op_name",
    5: "occurrences",
    6: "total_us",
    8: "self_us",
}


def tensorflow_stats_records(path: str) -> tuple[list[dict], float]:
    """The records of TensorFlow's ``tensorflow_stats`` tool for an XSpace.

    Args:
        path: a ``*.xplane.pb`` file.

    Returns:
        ``(records, idle_us)``: the op records (the tool keeps the 500 of the largest
        self-time) in the format of :func:`xplane_op_records`, and the ``IDLE`` time.

    Raises:
        RuntimeError: when the tool fails or answers in a format other than the protobuf.
    """
    from tensorflow.python.profiler.internal import _pywrap_profiler

    data, ok = _pywrap_profiler.xspace_to_tools_data([path], "tensorflow_stats")
    if not ok or not isinstance(data, bytes) or data[:1] in (b"{", b"["):
        raise RuntimeError(f"tensorflow_stats gave no TfStatsDatabase protobuf (ok={ok})")
    tables = {number: value for number, value in _fields(data) if number in (4, 5)}
    records, idle = [], 0.0
    for number, table in tables.items():
        for field, raw in _fields(table):
            if field != 1:
                continue
            record = {"occurrences": 0, "total_us": 0.0, "self_us": 0.0}
            for key, value in _fields(raw):
                if key in _TF_STATS_FIELDS:
                    record[_TF_STATS_FIELDS[key]] = (
                        value.decode() if isinstance(value, bytes) else value
                    )
            if record.get("op_type") == "IDLE":
                idle += record["self_us"] if number == 4 else 0.0
            elif number == 5:
                records.append(record)
    return records, idle


# --- Summaries -----------------------------------------------------------------------------


def summarize(
    records: list[dict],
    steps: int,
    wall_s: float,
    model_name: str,
    graph: GraphInfo | None,
) -> dict:
    """Group per-op records by op type, category and phase, per step.

    Args:
        records: from :func:`xplane_op_records` or :func:`tensorflow_stats_records`.
        steps: number of profiled steps (the records' totals are divided by it).
        wall_s: mean wall-clock seconds of a profiled step.
        model_name: the student's Keras name (the forward pass's scope).
        graph: the traced graph's float64 ops and hints (:class:`GraphInfo`), or ``None``.

    Returns:
        ``{"op_self_ms", "by_type", "by_category", "by_phase", "ops", "excluded_ms"}``, times in
        milliseconds per step, each list sorted by self-time.
    """
    by_type = defaultdict(lambda: {"occurrences": 0, "self_ms": 0.0})
    by_category = defaultdict(lambda: {"ops": 0, "self_ms": 0.0, "types": defaultdict(float)})
    by_phase = defaultdict(float)
    ops, excluded = [], 0.0
    for record in records:
        self_ms = record["self_us"] / 1e3 / steps
        category = categorize(record["op_name"], record["op_type"], graph)
        if category == "function call":
            excluded += self_ms
            continue
        by_type[record["op_type"]]["occurrences"] += record["occurrences"] / steps
        by_type[record["op_type"]]["self_ms"] += self_ms
        by_category[category]["ops"] += 1
        by_category[category]["self_ms"] += self_ms
        by_category[category]["types"][base_type(record["op_type"])] += self_ms
        by_phase[phase(record["op_name"], model_name, graph)] += self_ms
        ops.append({**record, "category": category, "self_ms": self_ms})
    total = sum(v["self_ms"] for v in by_type.values())
    wall_ms = wall_s * 1e3

    def share(ms):
        return {"pct_op_time": 100 * ms / total if total else 0.0, "pct_wall": 100 * ms / wall_ms}

    return {
        "op_self_ms": total,
        "excluded_ms": excluded,
        "by_type": [
            {"op_type": t, **v, **share(v["self_ms"])}
            for t, v in sorted(by_type.items(), key=lambda kv: -kv[1]["self_ms"])
        ],
        "by_category": [
            {
                "category": c,
                "ops": by_category[c]["ops"],
                "self_ms": by_category[c]["self_ms"],
                **share(by_category[c]["self_ms"]),
                "types": dict(sorted(by_category[c]["types"].items(), key=lambda kv: -kv[1])),
            }
            for c in CATEGORIES
            if c in by_category or c != "function call"
        ],
        "by_phase": [
            {"phase": p, "self_ms": ms, **share(ms)}
            for p, ms in sorted(by_phase.items(), key=lambda kv: -kv[1])
        ],
        "ops": sorted(ops, key=lambda r: -r["self_ms"]),
    }


def _print_tables(summary: dict, top: int, top_ops: int) -> None:
    print(f"\nTop {top} op types by self-time (per step)")
    print(f"{'op type':44s} {'count':>7s} {'self ms':>9s} {'% ops':>6s} {'% wall':>6s}")
    for row in summary["by_type"][:top]:
        print(
            f"{row['op_type'][:44]:44s} {row['occurrences']:7.0f} {row['self_ms']:9.1f} "
            f"{row['pct_op_time']:6.1f} {row['pct_wall']:6.1f}"
        )
    print("\nSelf-time by category (per step; the main op types in brackets)")
    print(f"{'category':24s} {'ops':>6s} {'self ms':>9s} {'% ops':>6s} {'% wall':>6s}")
    for row in summary["by_category"]:
        types = ", ".join(f"{t} {ms:.0f}" for t, ms in list(row["types"].items())[:3])
        print(
            f"{row['category']:24s} {row['ops']:6d} {row['self_ms']:9.1f} "
            f"{row['pct_op_time']:6.1f} {row['pct_wall']:6.1f}  [{types}]"
        )
    print("\nSelf-time by phase (per step)")
    for row in summary["by_phase"]:
        print(
            f"{row['phase']:24s} {'':6s} {row['self_ms']:9.1f} "
            f"{row['pct_op_time']:6.1f} {row['pct_wall']:6.1f}"
        )
    if top_ops:
        print(f"\nTop {top_ops} ops by self-time (per step)")
        for row in summary["ops"][:top_ops]:
            print(f"{row['self_ms']:9.1f} ms  {row['op_type']:32s} {row['op_name']}")


# --- Main ----------------------------------------------------------------------------------


def main(argv=None) -> dict:
    """Build the step, profile it, print the tables and return them (also to ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", help="BNext size (tiny, small, medium, large).")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=2, help="Profiled steps (after 1 warm-up).")
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="TensorFlow's intra-op threads (inter-op 1, one op at a time); 0 keeps defaults.",
    )
    parser.add_argument("--logdir", default=None, help="Profiler output (default: a temp dir).")
    parser.add_argument("--top", type=int, default=25, help="Op types to list.")
    parser.add_argument("--top_ops", type=int, default=10, help="Single ops to list.")
    parser.add_argument(
        "--source",
        choices=("xplane", "tensorflow_stats"),
        default="xplane",
        help="Op times from the XSpace's events (all ops) or TensorFlow's tensorflow_stats "
        "tool (the 500 ops of the largest self-time).",
    )
    parser.add_argument("--json", default=None, help="Write the results here.")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")

    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)

    from train_throughput import keras_step

    from larq_bnext import registry

    info = registry.resolve_model(args.size)
    print(f"Building {info.display_name} (batch {args.batch}, {args.image_size}px) ...", flush=True)
    step, first_s = keras_step(args.size, args.batch, args.image_size, "function", "float32", 1000)
    distiller = inspect.getclosurevars(step).nonlocals.get("distiller")
    start = time.perf_counter()
    step()
    warmup_s = time.perf_counter() - start
    print(f"first step {first_s:.1f} s (tracing), warm-up step {warmup_s:.2f} s", flush=True)

    logdir = args.logdir or tempfile.mkdtemp(prefix="bnext_profile_")
    walls = []
    tf.profiler.experimental.start(logdir)
    try:
        for _ in range(args.steps):
            start = time.perf_counter()
            step()
            walls.append(time.perf_counter() - start)
    finally:
        tf.profiler.experimental.stop()
    wall_s = sum(walls) / len(walls)
    path = latest_xplane(logdir)

    model_name = distiller.student.name if distiller is not None else info.model_name
    graph = GraphInfo.of(distiller) if distiller is not None else None
    graph_ops = graph.names if graph is not None else set()
    xplane_records, calls = xplane_op_records(path)
    try:
        stats_records, idle_us = tensorflow_stats_records(path)
    except RuntimeError as error:
        print(f"tensorflow_stats: {error}")
        stats_records, idle_us = None, None
    if args.source == "tensorflow_stats":
        if stats_records is None:
            raise SystemExit("--source tensorflow_stats: the tool gave no records")
        records = stats_records
    else:
        records = xplane_records
    summary = summarize(records, args.steps, wall_s, model_name, graph)

    xplane_ms = sum(r["self_us"] for r in xplane_records) / 1e3 / args.steps
    unmatched_ms = (
        sum(r["self_us"] for r in xplane_records if r["op_name"] not in graph_ops)
        / 1e3
        / args.steps
    )
    call_ms = calls["total_us"] / 1e3 / args.steps
    _print_tables(summary, args.top, args.top_ops)
    print("\nTime per step")
    each = ", ".join(f"{w:.2f} s" for w in walls)
    print(f"  wall clock (perf_counter)     {wall_s * 1e3:9.1f} ms  (steps: {each})")
    print(
        f"  inside the tf.function call   {call_ms:9.1f} ms  "
        f"({100 * call_ms / (wall_s * 1e3):.1f}% of wall; {calls['count'] / args.steps:.0f} "
        "call(s) per step)"
    )
    print(
        f"  op self-time, {args.source + ':':17s}{summary['op_self_ms']:9.1f} ms  "
        f"({100 * summary['op_self_ms'] / (wall_s * 1e3):.1f}% of wall, "
        f"{100 * summary['op_self_ms'] / call_ms if call_ms else float('nan'):.1f}% of the call)"
    )
    outside = {k: v / 1e3 / args.steps for k, v in calls["outside_us"].items()}
    traced_ms = sum(outside.values())
    print(
        f"  outside the call, traced      {traced_ms:9.1f} ms  ("
        + ", ".join(f"{k} {v:.1f}" for k, v in list(outside.items())[:3])
        + ")"
    )
    print(f"  outside the call, untraced    {wall_s * 1e3 - call_ms - traced_ms:9.1f} ms  (Python)")
    if summary["excluded_ms"]:
        print(f"  function-call ops left out    {summary['excluded_ms']:9.1f} ms")
    print(
        f"  op self-time not in the traced graph (grappler's or eager ops) {unmatched_ms:.1f} ms;"
        f" float64 ops found in the graph: {len(graph.float64) if graph is not None else '?'}"
    )
    if stats_records is not None:
        stats_ms = sum(r["self_us"] for r in stats_records) / 1e3 / args.steps
        print(
            f"  tensorflow_stats tool: {len(stats_records)} ops, {stats_ms:.1f} ms "
            f"({100 * stats_ms / xplane_ms if xplane_ms else float('nan'):.1f}% of the "
            f"{len(xplane_records)} ops' {xplane_ms:.1f} ms in the XSpace); "
            f"IDLE {idle_us / 1e3 / args.steps:.1f} ms"
        )
    print(f"  profile: {path}")

    results = {
        "model": info.display_name,
        "batch": args.batch,
        "image_size": args.image_size,
        "steps": args.steps,
        "source": args.source,
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "tensorflow": tf.__version__,
            "threads": args.threads or "default",
            "load_average": os.getloadavg(),
        },
        "first_step_seconds": first_s,
        "warmup_step_seconds": warmup_s,
        "step_seconds": walls,
        "wall_ms": wall_s * 1e3,
        "function_call_ms": call_ms,
        "outside_call_traced_ms": outside,
        "xplane_op_self_ms": xplane_ms,
        "xplane_ops": len(xplane_records),
        "not_in_graph_ms": unmatched_ms,
        "tensorflow_stats_ops": None if stats_records is None else len(stats_records),
        "tensorflow_stats_idle_ms": None if idle_us is None else idle_us / 1e3 / args.steps,
        "xplane": path,
        **{k: v for k, v in summary.items() if k != "ops"},
        "top_ops": summary["ops"][: max(args.top_ops, 50)],
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=float)
    return results


if __name__ == "__main__":
    main()
