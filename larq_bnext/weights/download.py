"""Download, validate and cache the official BNext checkpoints.

Files, in ``$LARQ_BNEXT_HOME`` or else ``~/.keras/models/larq_bnext/``:

* ``bnext_<size>_official.pth.tar``: the downloaded checkpoint, with ``.sha256`` next to it (what
  was downloaded; where the registry knows the checkpoint's checksum,
  :attr:`larq_bnext.registry.ModelInfo.sha256`, a download that differs is refused);
* ``bnext_<size>_imagenet.h5``: the converted Keras weights (``model.save_weights`` HDF5 format).

The URLs come from :mod:`larq_bnext.registry`. Downloads go to a partial file that is renamed
into place only once complete and valid.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np

from larq_bnext.registry import ModelInfo, resolve_model
from larq_bnext.weights.pytorch_reader import (
    CheckpointError,
    TorchCheckpoint,
)
from larq_bnext.weights.spec import detect_size

__all__ = [
    "cache_dir",
    "checkpoint_path",
    "converted_weights_path",
    "validate_checkpoint",
    "download_checkpoint",
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


def _offline_message(info: ModelInfo, url: str, dest: Path, reason) -> str:
    return (
        f"Could not download the official {info.display_name} checkpoint from {url} "
        f"({reason}). Without internet access here, download {url} elsewhere (it is the "
        f"authors' PyTorch checkpoint, shared at {info.share}) and put the file at "
        f"{dest}; it will be checked and converted from there. (Set ${_ENV_HOME} to use "
        "another directory.)"
    )


def _download(url: str, dest: Path, description: str) -> str:
    """Stream ``url`` into ``dest`` with a progress bar; return the SHA-256 of the bytes."""
    from tqdm.auto import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "larq_bnext"})
    digest = hashlib.sha256()
    with urllib.request.urlopen(request, timeout=60) as response, open(dest, "wb") as out:
        total = response.headers.get("Content-Length")
        with tqdm(
            total=int(total) if total else None,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=description,
            file=sys.stderr,
        ) as bar:
            while block := response.read(1 << 20):
                out.write(block)
                digest.update(block)
                bar.update(len(block))
    return digest.hexdigest()


def download_checkpoint(size: str, force: bool = False) -> Path:
    """Make sure the official checkpoint of ``size`` is on disk and valid; return its path.

    An existing file is checked (structure and shapes) and used. Otherwise the file is
    downloaded to a temporary name, its SHA-256 compared with the registry's
    (:attr:`larq_bnext.registry.ModelInfo.sha256`, where known), validated completely (a
    readable zip holding the expected state dict, every tensor readable and finite), its
    SHA-256 written next to it, and only then renamed into place. A failed, corrupt or
    different download is removed and reported.

    Args:
        size: a size name or alias.
        force: download again even if a valid file exists.

    Raises:
        OSError: the download failed (offline); the message names the URL and the path.
        CheckpointError: the downloaded file is not a valid checkpoint of that size, or not
            the one whose checksum the registry holds.
    """
    info = _published(size)
    size = info.name
    dest = checkpoint_path(size)
    url = info.url
    if dest.exists() and not force:
        try:
            validate_checkpoint(dest, size, read_data=False)
        except CheckpointError as err:
            warnings.warn(
                f"Removing the unusable cached checkpoint {dest} ({err}); downloading it again.",
                stacklevel=2,
            )
            dest.unlink()
        else:
            if not Path(str(dest) + ".sha256").exists():
                _write_sha256(dest, sha256(dest))
            return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.part{os.getpid()}")
    try:
        try:
            digest = _download(url, partial, info.display_name)
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise OSError(_offline_message(info, url, dest, err)) from err
        if info.sha256 is not None and digest != info.sha256.lower():
            raise CheckpointError(
                f"The file downloaded from {url} has SHA-256 {digest}, not the published "
                f"{info.sha256} of the official {info.display_name} checkpoint, and was "
                f"removed. Try again later, or download it by hand and put it at {dest}."
            )
        try:
            validate_checkpoint(partial, size, read_data=True)
        except CheckpointError as err:
            raise CheckpointError(
                f"The file downloaded from {url} is not a valid {info.display_name} "
                f"checkpoint and was removed ({err}). Try again later, or download it by hand "
                f"and put it at {dest}."
            ) from err
        _write_sha256(dest, digest)
        os.replace(partial, dest)
    finally:
        if partial.exists():
            partial.unlink()
    return dest
