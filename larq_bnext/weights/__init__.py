"""Weights of the published BNexts: the safe PyTorch reader, the official-key mapping and
validation, download and cache, and loading into a Keras BNext.

Nothing here builds a model (this package does not import :mod:`larq_bnext.models`):

* :mod:`~larq_bnext.weights.pytorch_reader`: reads ``torch.save`` files without PyTorch;
* :mod:`~larq_bnext.weights.torch_pickle`: what a checkpoint's pickle may hold;
* :mod:`~larq_bnext.weights.spec`: the keys and shapes of an official checkpoint;
* :mod:`~larq_bnext.weights.matching`: checkpoint tensors <-> Keras weights, checked;
* :mod:`~larq_bnext.weights.mapping`: official key -> Keras weight, and loading a state dict;
* :mod:`~larq_bnext.weights.bnext18`: the same for BNext-18;
* :mod:`~larq_bnext.weights.download`: download, validation and the cache;
* :mod:`~larq_bnext.weights.sources`: each source's URL, tried in order under a lock;
* :mod:`~larq_bnext.weights.http`: resumable, retried downloads of one URL;
* :mod:`~larq_bnext.weights.loading`: ``weights="imagenet"``, checkpoint or HDF5 files: the one
  loader of every builder.
"""

from larq_bnext.weights.download import (
    cache_dir,
    checkpoint_path,
    converted_weights_path,
    download_checkpoint,
    download_url,
    sha256,
    validate_checkpoint,
)
from larq_bnext.weights.loading import HDF5_MAGIC, load_keras_weights, load_weights
from larq_bnext.weights.mapping import (
    keras_weight_map,
    load_official_checkpoint,
    load_state_dict_into_model,
)
from larq_bnext.weights.matching import ConversionReport, WeightsMismatchError
from larq_bnext.weights.pytorch_reader import (
    CheckpointError,
    UnsafeCheckpointError,
    read_state_dict,
)
from larq_bnext.weights.spec import detect_size, official_state_dict_spec
