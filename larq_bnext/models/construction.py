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
* :func:`values_from_file`: with a Keras HDF5 weights file known before construction (a file
  ``weights=`` names, or the cached ``"imagenet"`` weights), each variable whose name and shape
  the file holds is created with the file's values, read one dataset at a time straight into
  the buffer the variable then holds (:func:`_read_once`): no zeros are written and then
  overwritten, no value is copied after it leaves the file, and the weights are never held
  twice. When every weight of the model came from the file (:meth:`FileValues.covers`),
  loading has nothing left to do; otherwise (a missing layer, a shape that differs) the
  loader runs as before and its error names the problem.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading

import numpy as np
import tensorflow as tf

from larq_bnext.keras2 import keras_src

__all__ = ["shape_only_calls", "initial_values_skipped", "values_from_file", "FileValues"]

_state = threading.local()
_lock = threading.Lock()
_pages_lock = threading.Lock()
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


def _as_str(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


#: TensorFlow's alignment for tensor buffers (``EIGEN_MAX_ALIGN_BYTES``): an array aligned to it
#: is shared with a tensor rather than copied.
_ALIGNMENT = 64


def _aligned_empty(shape, dtype) -> np.ndarray:
    """An uninitialized array whose buffer starts at a multiple of :data:`_ALIGNMENT`."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(size + _ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % _ALIGNMENT
    return raw[start : start + size].view(dtype).reshape(shape)


@contextlib.contextmanager
def _small_pages():
    """NumPy's large arrays without its request for transparent huge pages (``madvise``).

    Where the kernel compacts memory for such requests (``/sys/kernel/mm/transparent_hugepage/
    defrag`` set to ``madvise``, a common default), filling BNext-L's 1.3 GB took 1.6-2.9 s
    instead of 0.9 s on the 2-core development machine. NumPy's setting is restored after.
    """
    multiarray = getattr(getattr(np, "_core", None), "multiarray", None) or np.core.multiarray
    setting = getattr(multiarray, "_set_madvise_hugepage", None)
    if setting is None:
        yield
        return
    with _pages_lock:
        previous = setting(False)
        try:
            yield
        finally:
            setting(previous)


def _read_once(dataset, dtype) -> tf.Tensor:
    """A dataset's values as a tensor, copied once from the file into the tensor's buffer.

    ``tf.constant(dataset[()])`` copies what HDF5 read once more, and again where NumPy's
    buffer is not aligned as TensorFlow needs: reading BNext-L's 1.3 GB that way took 2.3-4.2 s
    and a peak of 2.9 GiB on the 2-core development machine, against 0.9 s and 1.7 GiB here.
    HDF5 reads into an aligned array that the tensor then shares (DLPack), and a variable
    created from the tensor shares it too (resource variables copy on write).
    """
    if dataset.dtype != dtype or dataset.ndim == 0 or dataset.size == 0:
        return tf.constant(np.asarray(dataset[()], dtype=dtype))
    with _small_pages():
        array = _aligned_empty(dataset.shape, dtype)
    dataset.read_direct(array)
    return tf.experimental.dlpack.from_dlpack(array.__dlpack__())


class FileValues:
    """The weights of a Keras HDF5 file (``model.save_weights(".h5")``), by variable name.

    Args:
        group: the file's root group, or its ``model_weights`` group.
    """

    def __init__(self, group):
        self._group = group
        #: Layer name -> the names of its weights in the file, in order (``x/kernel:0``).
        self.layers = {}
        self._where = {}
        for layer in group.attrs.get("layer_names", []):
            layer = _as_str(layer)
            names = [_as_str(n) for n in group[layer].attrs.get("weight_names", [])]
            self.layers[layer] = names
            for name in names:
                self._where[name.rsplit(":", 1)[0]] = (layer, name)
        #: Names (``x/kernel:0``) of the variables created with the file's values.
        self.filled = set()

    def value(self, name: str, shape, dtype):
        """The file's values of a variable, or ``None`` when the file lacks it or holds
        another shape.

        Args:
            name: the variable's full name without ``:0`` (``block1_ffn_norm1/gamma``).
            shape: the variable's shape.
            dtype: the variable's dtype (the values are cast to it, as loading casts them).
        """
        where = self._where.get(name)
        if where is None or shape is None:
            return None
        dataset = self._group[where[0]][where[1]]
        if tuple(dataset.shape) != tuple(tf.TensorShape(shape).as_list()):
            return None
        self.filled.add(where[1])
        return _read_once(dataset, tf.as_dtype(dtype).as_numpy_dtype)

    def covers(self, model) -> bool:
        """Whether every weight of ``model`` was created with this file's values, layer by
        layer in the file's order (then loading the file again would change nothing).

        Args:
            model: the Keras model built inside :func:`values_from_file`.
        """
        for layer in model.layers:
            if not layer.weights:
                continue
            names = [w.name for w in layer.weights]
            if self.layers.get(layer.name) != names or not self.filled.issuperset(names):
                return False
        return True


def _from_file(values: FileValues):
    def creator(next_creator, **kwargs):
        initial = kwargs.get("initial_value")
        if isinstance(initial, functools.partial) and initial.args:
            scope = tf.get_current_name_scope()
            name = f"{scope}/{kwargs.get('name')}" if scope else str(kwargs.get("name"))
            dtype = kwargs.get("dtype") or initial.keywords.get("dtype") or tf.float32
            value = values.value(name, initial.args[0], dtype)
            if value is not None:
                generator = getattr(initial.func, "_random_generator", None)
                if generator is not None:
                    generator._maybe_init()  # takes its seed as the draw would
                kwargs["initial_value"] = value
                return next_creator(**kwargs)
        return _zeros_instead(next_creator, **kwargs)

    return creator


@contextlib.contextmanager
def values_from_file(path):
    """Inside the block, variables are created with the values of the Keras HDF5 weights file
    ``path`` where it holds them (by name and shape), and with zeros in place of random draws
    elsewhere (as :func:`initial_values_skipped`); see the module.

    Args:
        path: a file of ``model.save_weights(".h5")`` (Keras 2's layout).

    Yields:
        The :class:`FileValues`: :meth:`FileValues.covers` says whether loading is done.
    """
    import h5py

    with h5py.File(os.fspath(path), "r") as f:
        values = FileValues(f["model_weights"] if "model_weights" in f else f)
        with tf.variable_creator_scope(_from_file(values)):
            yield values
