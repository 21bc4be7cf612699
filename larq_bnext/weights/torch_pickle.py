"""What a ``torch.save`` pickle may hold, and the unpickler that allows nothing else.

A PyTorch checkpoint's pickle names the callables that rebuild its objects. :class:`SafeUnpickler`
resolves only an allow-list of harmless ones (tensor and parameter rebuilders, the
``torch.*Storage`` types, ``collections.OrderedDict``, NumPy scalars and arrays of plain dtypes,
``_codecs.encode``) to the implementations here, and refuses every other name with
:class:`UnsafeCheckpointError` before anything is called. Tensors come back as
:class:`LazyTensor`: shape and dtype at once, the bytes read from the archive only on
``.numpy()``. :mod:`larq_bnext.weights.pytorch_reader` opens the archive and reads the pickle
with it.
"""

from __future__ import annotations

import collections
import pickle

import numpy as np

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "StorageType",
    "Storage",
    "LazyTensor",
    "SafeUnpickler",
]


class CheckpointError(ValueError):
    """A file is not a readable PyTorch checkpoint (truncated, corrupt, wrong format or content)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint's pickle names a global outside the allow-list (it could run code)."""


# ------------------------------------------------------------------------------------------
# Storages and tensors
# ------------------------------------------------------------------------------------------
_BFLOAT16 = "bfloat16"

#: ``torch.<Name>Storage`` -> NumPy dtype of its elements.
_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("float64"),
    "FloatStorage": np.dtype("float32"),
    "HalfStorage": np.dtype("float16"),
    "BFloat16Storage": _BFLOAT16,
    "LongStorage": np.dtype("int64"),
    "IntStorage": np.dtype("int32"),
    "ShortStorage": np.dtype("int16"),
    "CharStorage": np.dtype("int8"),
    "ByteStorage": np.dtype("uint8"),
    "BoolStorage": np.dtype("bool"),
    "ComplexFloatStorage": np.dtype("complex64"),
    "ComplexDoubleStorage": np.dtype("complex128"),
    "UntypedStorage": np.dtype("uint8"),
}


class StorageType:
    """Stand-in for a ``torch.*Storage`` class: knows only its element dtype.

    Args:
        name: the class name (``"FloatStorage"``, ...).
    """

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return 2 if self.dtype == _BFLOAT16 else self.dtype.itemsize

    def __repr__(self):
        return f"torch.{self.name}"


class Storage:
    """A storage of the archive, read on first use.

    Args:
        archive: the open archive; ``archive.read_storage(key)`` gives the bytes, and it has
            ``path`` and ``byteorder`` (``"<"`` or ``">"``).
        key: the storage's name in the archive.
        storage_type: its element type.
        numel: its number of elements.
    """

    def __init__(self, archive, key: str, storage_type: StorageType, numel: int):
        self.archive = archive
        self.key = key
        self.storage_type = storage_type
        self.numel = numel

    def read(self) -> np.ndarray:
        """The storage's elements as a 1-D array (read and CRC-checked now)."""
        raw = self.archive.read_storage(self.key)
        itemsize = self.storage_type.itemsize
        if len(raw) < self.numel * itemsize:
            raise CheckpointError(
                f"{self.archive.path}: storage {self.key} holds {len(raw)} bytes, fewer than "
                f"its {self.numel} elements of {itemsize} bytes: the file is corrupt."
            )
        dtype = self.storage_type.dtype
        if dtype == _BFLOAT16:
            bits = np.frombuffer(raw, dtype=self.archive.byteorder + "u2", count=self.numel)
            return (bits.astype(np.uint32) << 16).view(np.float32)
        array = np.frombuffer(
            raw, dtype=dtype.newbyteorder(self.archive.byteorder), count=self.numel
        )
        return array.astype(dtype, copy=False)


class LazyTensor:
    """A tensor of a checkpoint whose data is read on demand.

    Args:
        storage: the archive storage holding the data.
        offset: offset of the first element in the storage, in elements.
        shape: the tensor's size.
        stride: the tensor's strides, in elements.

    Attributes:
        shape: tuple of ints.
        dtype: NumPy dtype of the values (``float32`` for PyTorch ``bfloat16``, upcast on read).
        storage_key: name of the archive member holding the data.
    """

    def __init__(self, storage: Storage, offset: int, shape, stride):
        self._storage = storage
        self._offset = int(offset)
        self.shape = tuple(int(s) for s in shape)
        self._stride = tuple(int(s) for s in stride)
        dtype = storage.storage_type.dtype
        self.dtype = np.dtype("float32") if dtype == _BFLOAT16 else dtype
        self.storage_key = storage.key
        if len(self.shape) != len(self._stride) or min(self._stride, default=0) < 0:
            raise CheckpointError(
                f"Malformed tensor in the checkpoint: size {self.shape}, stride {self._stride}."
            )
        extent = sum((s - 1) * st for s, st in zip(self.shape, self._stride, strict=True))
        needed = self._offset + 1 + extent
        if any(s == 0 for s in self.shape):
            needed = 0
        if needed > storage.numel:
            raise CheckpointError(
                f"A tensor of shape {self.shape} needs {needed} elements of storage "
                f"{storage.key}, which has {storage.numel}: the checkpoint is corrupt."
            )

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    def numpy(self) -> np.ndarray:
        """Read the tensor into a NumPy array of :attr:`shape` (C-contiguous).

        The array may be a read-only view of the bytes read from the archive (no copy is made
        for a contiguous tensor); use ``.copy()`` to modify it.

        Raises:
            CheckpointError: when the archive member is missing, truncated or fails its CRC.
        """
        flat = self._storage.read()
        if self.size == 0:
            return np.zeros(self.shape, dtype=self.dtype)
        contiguous = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
        if all(
            s == c for s, c, n in zip(self._stride, contiguous, self.shape, strict=True) if n > 1
        ):
            view = flat[self._offset : self._offset + self.size].reshape(self.shape)
            return view if view.dtype == self.dtype else view.astype(self.dtype)
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self._offset :],
            shape=self.shape,
            strides=tuple(s * itemsize for s in self._stride),
            writeable=False,
        )
        return np.array(view, dtype=self.dtype, order="C", copy=True)

    def __array__(self, dtype=None, copy=None):
        array = self.numpy()
        return array if dtype is None else array.astype(dtype, copy=False)

    def __repr__(self):
        return f"LazyTensor(shape={self.shape}, dtype={self.dtype}, storage={self.storage_key})"


# ------------------------------------------------------------------------------------------
# Allowed globals
# ------------------------------------------------------------------------------------------
def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, *_args):
    if not isinstance(storage, Storage):
        raise CheckpointError("Malformed checkpoint: a tensor is not backed by a storage.")
    return LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _rebuild_tensor_v2(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None, *_args):
    return data


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafeCheckpointError("Refusing a NumPy object scalar in the checkpoint.")
    if data is None:
        return dtype.type(0)
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


def _numpy_dtype(spec, align=False, copy=False):
    dtype = np.dtype(str(spec))
    if dtype.hasobject:
        raise UnsafeCheckpointError(f"Refusing NumPy dtype {spec!r} (Python objects).")
    return dtype


def _numpy_reconstruct(cls, shape, typecode):
    if cls is not np.ndarray:
        raise UnsafeCheckpointError("Refusing a NumPy array subclass in the checkpoint.")
    return np.ndarray.__new__(np.ndarray, shape, np.dtype(typecode))


def _codecs_encode(text, encoding="utf-8"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError(f"Refusing _codecs.encode({encoding!r}) in the checkpoint.")
    return text.encode("latin1")


_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("_codecs", "encode"): _codecs_encode,
}
for _name in _STORAGE_DTYPES:
    _SAFE_GLOBALS[("torch", _name)] = StorageType(_name)
    _SAFE_GLOBALS[("torch.storage", _name)] = StorageType(_name)


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the allow-list of harmless globals and the archive's
    storages.

    Args:
        file: the pickle's bytes, as a file.
        archive: the open archive its storages are read from (see :class:`Storage`).
    """

    def __init__(self, file, archive):
        super().__init__(file)
        self._archive = archive
        self._storages: dict[str, Storage] = {}

    def find_class(self, module, name):
        """The allowed stand-in for ``module.name``.

        Args:
            module: the global's module.
            name: its name.

        Raises:
            UnsafeCheckpointError: for a global outside the allow-list.
        """
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self._archive.path}: refusing to load: the checkpoint's pickle asks for "
                f"'{module}.{name}', which is not a tensor, a storage or a plain value. Loading it "
                "could run code from the file, so nothing was executed. If you trust the file "
                "and need it anyway, load it with PyTorch (torch.load) and re-save the bare "
                "state_dict with torch.save."
            ) from None

    def persistent_load(self, pid):
        """The :class:`Storage` of a persistent id ``("storage", type, key, location, numel)``.

        Args:
            pid: the persistent id.
        """
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(
                f"{self._archive.path}: unknown persistent reference {pid!r} in the pickle."
            )
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, StorageType):
            raise CheckpointError(f"{self._archive.path}: malformed storage reference {pid!r}.")
        key = str(key)
        if key not in self._storages:
            self._storages[key] = Storage(self._archive, key, storage_type, int(numel))
        return self._storages[key]
