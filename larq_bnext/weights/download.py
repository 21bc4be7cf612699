"""Download, validate and cache the official BNext checkpoints, and weights given by URL.

Files, in ``$LARQ_BNEXT_HOME`` or else ``~/.keras/models/larq_bnext/``:
``bnext_<size>_official.pth.tar`` (with its ``.sha256``), ``bnext_<size>_imagenet.h5`` (the
converted Keras weights) and ``urls/`` (files of ``weights="https://..."``). The sources come
from :mod:`larq_bnext.registry`; see docs/pretrained.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.parse
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from larq_bnext.registry import ModelInfo, Source, resolve_model
from larq_bnext.weights.http import CHECKPOINT_MAGIC, discard
from larq_bnext.weights.pytorch_reader import (
    CheckpointError,
    TorchCheckpoint,
)
from larq_bnext.weights.sources import download_first, locked
from larq_bnext.weights.spec import detect_size

#: First bytes of an HDF5 file (Keras ``.h5`` weights).
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

__all__ = [
    "cache_dir",
    "checkpoint_path",
    "converted_weights_path",
    "validate_checkpoint",
    "download_checkpoint",
    "download_url",
    "sha256",
]


_ENV_HOME = "LARQ_BNEXT_HOME"


# --------------------------------------------------------------------------------------------
# Where files live
# --------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """``$LARQ_BNEXT_HOME`` if set, else ``~/.keras/models/larq_bnext`` (created on demand)."""
    home = os.environ.get(_ENV_HOME)
    path = Path(home).expanduser() if home else Path.home() / ".keras" / "models" / "larq_bnext"
    return path


def checkpoint_path(size: str) -> Path:
    """Where the official checkpoint of ``size`` is (or will be) stored.

    Args:
        size: a size name or alias.
    """
    return cache_dir() / f"{_published(size).model_name}_official.pth.tar"


def converted_weights_path(size: str) -> Path:
    """Where the converted Keras weights of ``size`` are cached.

    Args:
        size: a size name or alias.
    """
    return cache_dir() / f"{_published(size).model_name}_imagenet.h5"


def validate_checkpoint(path, size: str, read_data: bool = True) -> None:
    """Check that ``path`` is a complete official checkpoint of ``size``.

    Args:
        path: the file.
        size: the expected official size.
        read_data: also read every state-dict tensor (checks the zip CRCs, so truncated or
            corrupted data is found) and check it is finite.

    Raises:
        CheckpointError: unreadable, truncated, corrupt, or another architecture.
    """
    info = _published(size)
    with TorchCheckpoint(path) as ckpt:
        state = ckpt.state_dict()
        shapes = {k: v.shape for k, v in state.items()}
        found = detect_size(shapes)
        if found != info.name:
            what = f"an official {resolve_model(found).display_name}" if found else "not a BNext"
            raise CheckpointError(
                f"{path} is {what} checkpoint; expected {info.display_name} ({info.name})."
            )
        if read_data:
            for key, tensor in state.items():
                values = tensor.numpy()
                if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
                    raise CheckpointError(f"{path}: tensor {key} holds NaN or infinite values.")


def sha256(path, chunk: int = 1 << 22) -> str:
    """The hex SHA-256 of a file, read in chunks.

    Args:
        path: the file.
        chunk: bytes read at a time.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _write_sha256(path: Path, hexdigest: str) -> None:
    Path(str(path) + ".sha256").write_text(f"{hexdigest}  {path.name}\n", encoding="utf-8")


def _published(size: str) -> ModelInfo:
    """The registry entry of a size of the BNext family (BNext-T/S/M/L)."""
    return resolve_model(size, family="bnext")


def _offline_message(info: ModelInfo, dest: Path) -> str:
    return (
        f"Without internet access here, download one of these elsewhere (a browser works; it "
        f"is the authors' PyTorch checkpoint) and put the file at {dest}; it will be checked "
        f"and converted from there. (Set ${_ENV_HOME} to use another directory; "
        "docs/pretrained.md explains mirrors.)"
    )


def _usable(dest: Path, size: str) -> bool:
    """Whether ``dest`` is a checkpoint of ``size`` (removing it, with a warning, if not)."""
    if not dest.exists():
        return False
    try:
        validate_checkpoint(dest, size, read_data=False)
    except CheckpointError as err:
        warnings.warn(
            f"Removing the unusable cached checkpoint {dest} ({err}); downloading it again.",
            stacklevel=3,
        )
        dest.unlink()
        return False
    if not Path(str(dest) + ".sha256").exists():
        with contextlib.suppress(OSError):  # a read-only mirror of the cache
            _write_sha256(dest, sha256(dest))
    return True


def download_checkpoint(
    size: str,
    force: bool = False,
    sources: Sequence[Source] | None = None,
    *,
    timeout: float = 30.0,
    retries: int = 5,
    backoff: float = 1.0,
) -> Path:
    """Make sure the official checkpoint of ``size`` is on disk and valid; return its path.

    An existing file is checked (structure and shapes) and used. Otherwise the sources are tried
    in order (:func:`larq_bnext.weights.sources.download_first`: resumable, retried, one process
    at a time); the file is validated completely (a readable zip holding the expected state
    dict, every tensor readable and finite, the registry's SHA-256 where known), its SHA-256
    written next to it, and only then renamed into place. A complete file that fails the checks
    is removed and the next source tried.

    Args:
        size: a size name or alias.
        force: download again even if a valid file exists.
        sources: where to download from; ``None``: the registry's
            (:attr:`larq_bnext.registry.ModelInfo.sources`, the authors' current link first).
        timeout: seconds to wait for a connection and for each read.
        retries: further tries of a source after a transient failure without progress.
        backoff: seconds before the first retry, doubled each time.

    Raises:
        OSError: every source failed; the message lists each source and its answer, and where
            to put the file by hand. ``errno.ENOSPC``: the disk is full.
        CheckpointError: every source failed, one with a file that is not a valid checkpoint
            of that size, or not the one whose checksum the registry holds.
    """
    info = _published(size)
    dest = checkpoint_path(info.name)
    if not force and _usable(dest, info.name):
        return dest
    with locked(dest):
        # Another process may have downloaded it while this one waited for the lock.
        if not force and _usable(dest, info.name):
            return dest

        def check(path: Path) -> None:
            digest = sha256(path)
            if info.sha256 is not None and digest != info.sha256.lower():
                raise CheckpointError(
                    f"it has SHA-256 {digest}, not the published {info.sha256} of the official "
                    f"{info.display_name} checkpoint"
                )
            validate_checkpoint(path, info.name, read_data=True)

        partial = dest.with_name(dest.name + ".part")
        download_first(
            info.sources if sources is None else sources,
            partial,
            what=f"the official {info.display_name} checkpoint",
            offline=_offline_message(info, dest),
            check=check,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
        )
        _write_sha256(dest, sha256(partial))
        os.replace(partial, dest)
        discard(partial)
    return dest


def download_url(
    url: str, *, timeout: float = 30.0, retries: int = 5, backoff: float = 1.0
) -> Path:
    """Download the weights file at ``url`` once into the cache; return its path.

    For ``weights="https://..."``: a lab's mirror of an official checkpoint or of converted
    Keras ``.h5`` weights. The file is kept under ``<cache>/urls/`` and reused on later calls.

    Args:
        url: an ``https://`` or ``http://`` URL of a PyTorch checkpoint or Keras HDF5 file.
        timeout: seconds to wait for a connection and for each read.
        retries: further tries after a transient failure without progress.
        backoff: seconds before the first retry, doubled each time.

    Raises:
        OSError: the download failed (the message says what the server answered and where to
            put the file by hand).
    """
    name = os.path.basename(urllib.parse.urlsplit(url).path) or "weights"
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]
    dest = cache_dir() / "urls" / f"{key}-{name}"
    if dest.exists():
        return dest
    with locked(dest):
        if dest.exists():
            return dest
        partial = dest.with_name(dest.name + ".part")
        download_first(
            [Source(url)],
            partial,
            what=f"the weights at {url}",
            offline=f"Download it elsewhere and pass its path as weights=, or put it at {dest}.",
            magic=(*CHECKPOINT_MAGIC, HDF5_MAGIC),
            timeout=timeout,
            retries=retries,
            backoff=backoff,
        )
        os.replace(partial, dest)
        discard(partial)
    return dest
