"""Read PyTorch checkpoints safely, without PyTorch.

``torch.save`` (since PyTorch 1.6) writes a zip archive: ``<name>/data.pkl`` is a pickle of the
saved object in which every tensor is a call to ``torch._utils._rebuild_tensor_v2`` on a
*persistent id* naming a storage; each storage is a separate member ``<name>/data/<key>`` holding
the raw little-endian element bytes.

Unpickling runs whatever callables the pickle names, so a checkpoint from an untrusted source
could execute code (``os.system`` and friends) with ``torch.load`` (``weights_only=False``) or
``pickle.load``. This module never does: its unpickler resolves only an allow-list of harmless
globals (tensor and parameter rebuilders, the ``torch.*Storage`` types, ``collections.OrderedDict``,
NumPy scalars and arrays of plain dtypes, ``_codecs.encode``) to its own implementations, and
refuses everything else with :class:`UnsafeCheckpointError` before anything is called.

Tensors come back as :class:`LazyTensor` objects: shape and dtype are known at once, the bytes are
read from the archive (and checked against the member's CRC-32) only when ``.numpy()`` is called.
A checkpoint holding optimizer state or training curves next to the weights therefore costs only
the tensors actually used.

Example::

    from larq_bnext.weights.pytorch_reader import TorchCheckpoint

    with TorchCheckpoint("model_best.pth.tar") as ckpt:
        state = ckpt.state_dict()                        # keys without "module."
        kernel = state["feature.0.conv1.weight"].numpy()  # float32, OIHW, read now
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from collections.abc import Mapping

import numpy as np

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "LazyTensor",
    "TorchCheckpoint",
    "load_checkpoint",
    "read_state_dict",
    "extract_state_dict",
    "is_zip_file",
    "ZIP_MAGIC",
]

#: First bytes of a zip archive (every ``torch.save`` file since PyTorch 1.6).
ZIP_MAGIC = b"PK\x03\x04"
# Magic number at the start of the pickles of PyTorch's legacy (< 1.6) format.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


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


class _StorageType:
    """Stand-in for a ``torch.*Storage`` class: knows only its element dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == _BFLOAT16 else self.dtype.itemsize

    def __repr__(self):
        return f"torch.{self.name}"


class _Storage:
    """A storage of the archive, read on first use."""

    def __init__(self, archive: _Archive, key: str, storage_type: _StorageType, numel: int):
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

    def __init__(self, storage: _Storage, offset: int, shape, stride):
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
    if not isinstance(storage, _Storage):
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
    _SAFE_GLOBALS[("torch", _name)] = _StorageType(_name)
    _SAFE_GLOBALS[("torch.storage", _name)] = _StorageType(_name)


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`_SAFE_GLOBALS` and the archive's storages."""

    def __init__(self, file, archive: _Archive):
        super().__init__(file)
        self._archive = archive
        self._storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
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
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(
                f"{self._archive.path}: unknown persistent reference {pid!r} in the pickle."
            )
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"{self._archive.path}: malformed storage reference {pid!r}.")
        key = str(key)
        if key not in self._storages:
            self._storages[key] = _Storage(self._archive, key, storage_type, int(numel))
        return self._storages[key]


# ------------------------------------------------------------------------------------------
# The archive
# ------------------------------------------------------------------------------------------
def is_zip_file(path) -> bool:
    """Whether ``path`` starts with the zip magic bytes (a ``torch.save`` file since 1.6).

    Args:
        path: the file to check.
    """
    with open(path, "rb") as f:
        return f.read(4) == ZIP_MAGIC


class _Archive:
    """An open ``torch.save`` zip archive."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._zip = _open_zip(self.path)
        names = self._zip.namelist()
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            self._zip.close()
            raise CheckpointError(
                f"{self.path} is a zip archive but not a PyTorch checkpoint "
                f"(expected one '<name>/data.pkl' member, found {len(pickles)})."
            )
        self.prefix = pickles[0][: -len("data.pkl")]
        self.byteorder = "<"
        if self.prefix + "byteorder" in names:
            order = self._zip.read(self.prefix + "byteorder").decode("ascii", "replace").strip()
            self.byteorder = ">" if order == "big" else "<"
        self._names = set(names)

    def read_storage(self, key: str) -> bytes:
        name = f"{self.prefix}data/{key}"
        if name not in self._names:
            raise CheckpointError(
                f"{self.path}: storage member '{name}' is missing: the file is truncated or "
                "corrupt. Download it again."
            )
        try:
            return self._zip.read(name)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            raise CheckpointError(
                f"{self.path}: could not read '{name}' ({err}): the file is corrupt or was "
                "only partly downloaded. Download it again."
            ) from err

    def unpickle(self):
        try:
            data = self._zip.read(self.prefix + "data.pkl")
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise CheckpointError(f"{self.path}: could not read data.pkl ({err}).") from err
        try:
            return _SafeUnpickler(io.BytesIO(data), self).load()
        except CheckpointError:
            raise
        except Exception as err:  # a malformed pickle can fail in many ways
            raise CheckpointError(
                f"{self.path}: the checkpoint's pickle is malformed ({type(err).__name__}: {err})."
            ) from err

    def close(self):
        self._zip.close()


def _open_zip(path: str) -> zipfile.ZipFile:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as err:
        raise CheckpointError(f"Cannot read checkpoint {path}: {err}") from err
    if head[:4] != ZIP_MAGIC:
        if head[:1] == b"\x80":
            with open(path, "rb") as f:
                magic = _peek_legacy_magic(f)
            if magic == _LEGACY_MAGIC:
                raise CheckpointError(
                    f"{path} uses PyTorch's legacy (< 1.6) serialization, which this reader "
                    "does not support. Re-save it with a recent PyTorch: "
                    "torch.save(torch.load(old), new)."
                )
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (no zip archive; first bytes {head[:8]!r})."
        )
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CheckpointError(
            f"{path} is truncated or corrupt (a zip archive without a readable directory: "
            f"{err}). This happens with an interrupted download: delete it and download again."
        ) from err


def _peek_legacy_magic(f):
    """Read the first pickled value of a legacy file: protocol-2 int only (no globals)."""
    data = f.read(64)
    # A legacy file starts with the pickled magic number: PROTO 2, LONG1 <n bytes>.
    if len(data) > 3 and data[2:3] == b"\x8a":
        n = data[3]
        return int.from_bytes(data[4 : 4 + n], "little", signed=True)
    return None


class TorchCheckpoint:
    """A PyTorch checkpoint opened for safe, lazy reading (use as a context manager).

    Args:
        path: a file written by ``torch.save`` (PyTorch >= 1.6 zip format).

    Attributes:
        path: the file.
        object: the unpickled top-level object, with tensors as :class:`LazyTensor`.

    Raises:
        CheckpointError: the file is not a readable PyTorch checkpoint.
        UnsafeCheckpointError: its pickle names a global outside the allow-list.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._archive = _Archive(self.path)
        try:
            self.object = self._archive.unpickle()
        except BaseException:
            self._archive.close()
            raise

    def state_dict(self, strip_prefix: str = "module.") -> dict[str, LazyTensor]:
        """The model state dict (see :func:`extract_state_dict`).

        Args:
            strip_prefix: prefix removed from every key that has it (``""`` keeps the keys).
        """
        return extract_state_dict(self.object, strip_prefix=strip_prefix, source=self.path)

    def close(self) -> None:
        """Close the archive (tensors not read yet can no longer be read)."""
        self._archive.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_checkpoint(path) -> TorchCheckpoint:
    """Open ``path`` as a :class:`TorchCheckpoint` (remember to close it, or use ``with``).

    Args:
        path: a ``torch.save`` file.
    """
    return TorchCheckpoint(path)


def extract_state_dict(obj, strip_prefix: str = "module.", source: str = "checkpoint") -> dict:
    """Find the model state dict in a checkpoint object and strip a wrapper prefix.

    Accepts a bare state dict (a mapping of names to tensors) or a training checkpoint dict
    holding one under ``"state_dict"``, ``"model"``, ``"model_state_dict"`` or ``"net"``.

    Args:
        obj: the unpickled checkpoint.
        strip_prefix: prefix removed from every key that has it (``"module."``, added by
            ``DataParallel``/``DistributedDataParallel``); ``""`` keeps the keys.
        source: name of the file, for error messages.

    Raises:
        CheckpointError: when no state dict is found.
    """
    state = None
    if isinstance(obj, Mapping):
        tensors = [v for v in obj.values() if isinstance(v, LazyTensor)]
        if obj and len(tensors) == len(obj):
            state = obj
        else:
            for key in ("state_dict", "model", "model_state_dict", "net"):
                candidate = obj.get(key)
                if isinstance(candidate, Mapping) and candidate:
                    if all(isinstance(v, LazyTensor) for v in candidate.values()):
                        state = candidate
                        break
    if state is None:
        found = list(obj.keys())[:12] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{source}: no model state dict found (expected a dict of tensors, or a dict with "
            f"a 'state_dict' entry); the file holds {found}."
        )
    out = {}
    for key, value in state.items():
        key = str(key)
        if strip_prefix and key.startswith(strip_prefix):
            key = key[len(strip_prefix) :]
        out[key] = value
    return out


def read_state_dict(path, strip_prefix: str = "module.") -> dict[str, np.ndarray]:
    """Read every tensor of a checkpoint's state dict into NumPy arrays (closes the file).

    Args:
        path: a ``torch.save`` file (a training checkpoint dict or a bare state dict).
        strip_prefix: wrapper prefix to remove from the keys.

    Returns:
        An ordered dict of key -> ``np.ndarray``.
    """
    with TorchCheckpoint(path) as ckpt:
        return {k: v.numpy() for k, v in ckpt.state_dict(strip_prefix).items()}
