"""Read PyTorch checkpoints safely, without PyTorch.

``torch.save`` (since PyTorch 1.6) writes a zip archive: ``<name>/data.pkl`` is a pickle of the
saved object in which every tensor is a call to ``torch._utils._rebuild_tensor_v2`` on a
*persistent id* naming a storage; each storage is a separate member ``<name>/data/<key>`` holding
the raw little-endian element bytes.

Unpickling runs whatever callables the pickle names, so a checkpoint from an untrusted source
could execute code (``os.system`` and friends) with ``torch.load`` (``weights_only=False``) or
``pickle.load``. This module never does: it unpickles with
:class:`~larq_bnext.weights.torch_pickle.SafeUnpickler`, which resolves only an allow-list of
harmless globals (tensor and parameter rebuilders, the ``torch.*Storage`` types,
``collections.OrderedDict``, NumPy scalars and arrays of plain dtypes, ``_codecs.encode``) to its
own implementations, and refuses everything else with :class:`UnsafeCheckpointError` before
anything is called.

Tensors come back as :class:`LazyTensor` objects: shape and dtype are known at once, the bytes are
read from the archive (and checked against the member's CRC-32) only when ``.numpy()`` is called.
A checkpoint holding optimizer state or training curves next to the weights therefore costs only
the tensors actually used.

The example reads a file ``torch.save`` wrote (PyTorch writes it; reading it needs none).

Examples:
    >>> import os, tempfile, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "model_best.pth.tar")
    >>> weights = torch.arange(4.0).reshape(2, 2)
    >>> torch.save({"epoch": 3, "state_dict": {"module.fc.weight": weights}}, path)
    >>> with TorchCheckpoint(path) as ckpt:
    ...     state = ckpt.state_dict()                 # keys without "module."
    ...     state["fc.weight"].numpy().tolist()       # read now
    [[0.0, 1.0], [2.0, 3.0]]
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping

import numpy as np

from larq_bnext.weights.torch_pickle import (
    CheckpointError,
    LazyTensor,
    SafeUnpickler,
    UnsafeCheckpointError,
)

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "LazyTensor",
    "TorchCheckpoint",
    "read_state_dict",
    "extract_state_dict",
    "ZIP_MAGIC",
]

#: First bytes of a zip archive (every ``torch.save`` file since PyTorch 1.6).
ZIP_MAGIC = b"PK\x03\x04"
# Magic number at the start of the pickles of PyTorch's legacy (< 1.6) format.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


# ------------------------------------------------------------------------------------------
# The archive
# ------------------------------------------------------------------------------------------
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
            return SafeUnpickler(io.BytesIO(data), self).load()
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
