"""Load weights into a BNext or BNext-18: ``weights="imagenet"`` (download, convert once, cache),
a PyTorch checkpoint of the original code or Keras HDF5 weights (told apart by their first
bytes). :func:`load_weights` is the one loader every builder calls.

``larq_bnext.BNextL(weights="imagenet")`` downloads the authors' PyTorch checkpoint of that size
(:mod:`larq_bnext.weights.download`), converts it once to Keras weights
(:mod:`larq_bnext.weights.mapping`) and caches both; later calls load the cached Keras weights.
PyTorch is not needed: checkpoints are read by :mod:`larq_bnext.weights.pytorch_reader`, which
never executes code from the file. This module builds no model: the caller passes one.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf

from larq_bnext.registry import ModelInfo, resolve_model
from larq_bnext.weights.bnext18 import load_bnext18_state_dict
from larq_bnext.weights.download import (
    HDF5_MAGIC,
    converted_weights_path,
    download_checkpoint,
    download_url,
)
from larq_bnext.weights.mapping import keras_weight_map, load_official_checkpoint
from larq_bnext.weights.matching import ConversionReport, Target, WeightsMismatchError
from larq_bnext.weights.pytorch_reader import ZIP_MAGIC, TorchCheckpoint
from larq_bnext.weights.spec import published_keys

__all__ = [
    "HDF5_MAGIC",
    "URL_SCHEMES",
    "load_keras_weights",
    "load_weights",
    "keras_weights_file",
    "floatx",
    "save_weights_atomically",
]


#: ``weights=`` values that start so are downloaded (once) before loading.
URL_SCHEMES = ("https://", "http://")


# --------------------------------------------------------------------------------------------
# Keras weight files
# --------------------------------------------------------------------------------------------
def _file_magic(path) -> bytes:
    with open(path, "rb") as f:
        return f.read(len(HDF5_MAGIC))


def keras_weights_file(weights, info: ModelInfo | str | None = None) -> str | None:
    """The Keras HDF5 file that loading ``weights`` will read, when it is on disk already:
    the file ``weights`` names, or the cached conversion for ``"imagenet"``; else ``None``
    (a URL, a PyTorch checkpoint, weights not converted yet). A model can then be built with
    the file's values (:func:`larq_bnext.models.construction.values_from_file`).

    Args:
        weights: a builder's ``weights`` argument.
        info: the registry model (an entry or a name), for ``"imagenet"``.
    """
    if weights is None:
        return None
    if isinstance(weights, str) and weights == "imagenet":
        if info is None:
            return None
        try:
            path = converted_weights_path(info if isinstance(info, str) else info.name)
        except ValueError:  # no published checkpoint: load_weights says so
            return None
    elif isinstance(weights, str) and weights.startswith(URL_SCHEMES):
        return None
    else:
        try:
            path = os.fspath(weights)
        except TypeError:
            return None
    try:
        return os.fspath(path) if _file_magic(path) == HDF5_MAGIC else None
    except (OSError, ValueError):
        return None


def load_keras_weights(model: tf.keras.Model, path) -> None:
    """Load Keras HDF5 weights (``model.save_weights(".h5")``) into ``model``, by layer name.

    Every layer of ``model`` that has weights must be in the file (layers of the file that the
    model lacks, such as the classifier for ``include_top=False``, are ignored). Files in the
    Keras 3 ``.weights.h5`` layout are handed to ``model.load_weights``.

    Args:
        model: the Keras model.
        path: the ``.h5`` file.

    Raises:
        WeightsMismatchError: a layer of the model is missing from the file or its weights differ.
    """
    import h5py

    path = os.fspath(path)
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" in group.attrs:
            names = {_as_str(n) for n in group.attrs["layer_names"]}
            problems = []
            for layer in model.layers:
                if not layer.weights:
                    continue
                if layer.name not in names:
                    problems.append(f"missing layer {layer.name!r}")
                    continue
                stored = [_as_str(n) for n in group[layer.name].attrs.get("weight_names", [])]
                for variable, name in zip(layer.weights, stored, strict=False):
                    shape = tuple(group[layer.name][name].shape)
                    if shape != tuple(variable.shape):
                        problems.append(
                            f"{name}: file has shape {shape}, model {tuple(variable.shape)}"
                        )
                if len(stored) != len(layer.weights):
                    problems.append(
                        f"layer {layer.name!r}: file has {len(stored)} weights, "
                        f"model {len(layer.weights)}"
                    )
            if problems:
                raise WeightsMismatchError(
                    f"{path} does not fit the model {model.name!r}:\n  "
                    + "\n  ".join(problems[:25])
                    + "\nUse weights saved from a model of the same architecture."
                )
            _assign_by_name(model, group)
            return
    model.load_weights(path)


def _assign_by_name(model: tf.keras.Model, group) -> None:
    """Each weight of ``model`` from the layer of its name in ``group`` (HDF5), one at a time:
    what Keras' ``load_weights(by_name=True)`` does with files that Keras 2 wrote, without
    reading the whole file into memory first."""
    for layer in model.layers:
        if not layer.weights:
            continue
        stored = group[layer.name]
        for variable, name in zip(layer.weights, stored.attrs["weight_names"], strict=True):
            dtype = variable.dtype.base_dtype.as_numpy_dtype
            variable.assign(np.asarray(stored[_as_str(name)][()], dtype=dtype))


def _as_str(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


@contextlib.contextmanager
def floatx(dtype: str):
    """Build models with Keras' default float type set to ``dtype`` inside the block.

    Args:
        dtype: ``"float32"``, ``"float64"``, ...
    """
    previous = tf.keras.backend.floatx()
    tf.keras.backend.set_floatx(dtype)
    try:
        yield
    finally:
        tf.keras.backend.set_floatx(previous)


def _check_published_architecture(model: tf.keras.Model, size: str) -> list[Target]:
    """Refuse ``weights="imagenet"`` for ablation variants; return the model's targets."""
    targets = keras_weight_map(model)
    mapped = {t.key for t in targets}
    published = published_keys(size)
    without_top = {k for k in published if not k.startswith("fc.")}
    if mapped - {"fc.weight", "fc.bias"} != without_top:
        raise WeightsMismatchError(
            f"weights='imagenet' holds the published {resolve_model(size).display_name}, with "
            "ELM-Attention and information recoupling; this model differs from it "
            f"({len(mapped ^ published)} weights differ). Build it with elm_attention=True and "
            "info_recoupling=True, or use weights=None."
        )
    return targets


def save_weights_atomically(model: tf.keras.Model, dest: Path, attrs: Mapping[str, str]) -> None:
    """Write ``model``'s weights to the HDF5 file ``dest`` with ``attrs``, or leave it as it was.

    Args:
        model: the Keras model.
        dest: the ``.h5`` file.
        attrs: file attributes to record (where the weights came from).
    """
    import h5py

    tmp = dest.with_name(f"{dest.stem}.tmp{os.getpid()}.h5")
    try:
        model.save_weights(str(tmp), save_format="h5")
        with h5py.File(tmp, "a") as f:
            for k, v in attrs.items():
                f.attrs[k] = v
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def _load_imagenet(
    model: tf.keras.Model, size: str, full_model: Callable[[], tf.keras.Model], preloaded=None
) -> None:
    _check_published_architecture(model, size)
    cached = converted_weights_path(size)
    if preloaded is not None and preloaded.covers(model):
        return
    if cached.exists():
        try:
            load_keras_weights(model, cached)
            return
        except (OSError, KeyError, ValueError) as err:
            if isinstance(err, WeightsMismatchError):
                raise
            warnings.warn(
                f"Removing the unreadable converted weights {cached} ({err}); converting again.",
                stacklevel=3,
            )
            cached.unlink()
    ckpt = download_checkpoint(size)
    sha = Path(str(ckpt) + ".sha256")
    attrs = {
        "larq_bnext_size": size,
        "larq_bnext_source": resolve_model(size).url,
        "larq_bnext_source_sha256": sha.read_text().split()[0] if sha.exists() else "",
    }
    targets = _check_published_architecture(model, size)
    has_top = any(t.key == "fc.weight" for t in targets)
    if has_top and all(t.variable.dtype == tf.float32 for t in targets):
        load_official_checkpoint(model, ckpt, size=size)
        save_weights_atomically(model, cached, attrs)
        return
    # The model lacks part of the weights (no top) or is not float32: convert into a full
    # float32 model once, cache that, and load by name.
    if full_model is None:
        raise ValueError(
            "Loading weights='imagenet' into a model without a top or not in float32 needs "
            "full_model, a callable that builds the float32 model with its top; "
            "larq_bnext.BNext passes it."
        )
    with floatx("float32"):
        full = full_model()
        load_official_checkpoint(full, ckpt, size=size)
    save_weights_atomically(full, cached, attrs)
    del full
    load_keras_weights(model, cached)


def load_weights(
    model: tf.keras.Model,
    weights,
    info: ModelInfo | str | None = None,
    full_model: Callable[[], tf.keras.Model] | None = None,
    preloaded=None,
) -> ConversionReport | None:
    """Load ``weights`` into a BNext or BNext-18 (what the builders' ``weights=...`` calls).

    Args:
        model: the Keras model.
        weights: ``"imagenet"`` (the official checkpoint of ``info``: downloaded, converted and
            cached on first use), or the path or ``https://``/``http://`` URL (downloaded once
            into the cache) of a PyTorch checkpoint of the original code (a zip file from
            ``torch.save``) or of Keras HDF5 weights (told apart by their first bytes).
        info: the registry model ``model`` is (an entry or any name of
            :func:`larq_bnext.registry.resolve_model`); ``None`` for a BNext of custom width.
            Required for ``"imagenet"``; picks BNext-18's checkpoint layout for its family.
        full_model: builds the float32 BNext of ``info`` with its top, for ``"imagenet"``
            into a model that lacks part of the weights or is not float32 (the builder of
            :mod:`larq_bnext.models` passes it; this package builds no models).
        preloaded: the :class:`~larq_bnext.models.construction.FileValues` the model was
            built with (the file of :func:`keras_weights_file`); when they cover every weight
            of the model, nothing is read again.

    Returns:
        The :class:`~larq_bnext.weights.matching.ConversionReport` of a PyTorch checkpoint
        file, else ``None``.

    Raises:
        ValueError: ``"imagenet"`` without a published model, or a file of neither kind.
        WeightsMismatchError: the weights do not fit the model.
        OSError: the download failed (the message lists the sources tried, what each answered,
            and where to put the file by hand).
        larq_bnext.weights.pytorch_reader.CheckpointError: a corrupt, truncated or unsafe
            checkpoint.
    """
    if isinstance(info, str):
        info = resolve_model(info)
    family = info.family if info is not None else "bnext"
    if isinstance(weights, str) and weights == "imagenet":
        if info is None:
            raise ValueError(
                "weights='imagenet' needs a published model: use larq_bnext.BNextT/S/M/L."
            )
        _ = info.url  # raises where no checkpoint is published
        _load_imagenet(model, info.name, full_model, preloaded)
        return None
    if isinstance(weights, str) and weights.startswith(URL_SCHEMES):
        weights = download_url(weights)
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ValueError(f"weights={path!r}: no such file.")
    magic = _file_magic(path)
    if magic.startswith(ZIP_MAGIC):
        if family == "bnext18":
            with TorchCheckpoint(path) as ckpt:
                return load_bnext18_state_dict(model, ckpt.state_dict(), source=path)
        return load_official_checkpoint(model, path, size=info.name if info else None)
    if magic == HDF5_MAGIC:
        if preloaded is None or not preloaded.covers(model):
            load_keras_weights(model, path)
        return None
    raise ValueError(
        f"weights={path!r} is neither a PyTorch checkpoint (a zip archive from torch.save) "
        f"nor Keras HDF5 weights (first bytes {magic!r}). Pass the official .pth.tar file (or "
        "a checkpoint of the original code), a file written by `python -m larq_bnext.convert`, "
        "or model.save_weights('x.h5')."
    )
