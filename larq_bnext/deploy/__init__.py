"""Deploy BNext to edge devices with Larq Compute Engine (LCE), and measure it.

A trained model converts as it is (``larq_bnext.BNextT(weights="imagenet")`` gives 31
``LceBconv2d`` ops); the example converts a small random one, its kernels binarized as
training ends them.

* :mod:`~larq_bnext.deploy.inference`: the inference form (exact ``sign(w)`` kernels, padding
  that LCE converts to binary convolutions);
* :mod:`~larq_bnext.deploy.lce`: LCE conversion and flatbuffer inspection;
* :mod:`~larq_bnext.deploy.interpreter`: LCE's interpreter and latency measurement;
* :mod:`~larq_bnext.deploy.benchmarking` and :mod:`~larq_bnext.deploy.plots`: the benchmark
  table and its plots.

Examples:
    >>> import larq_bnext
    >>> from larq_bnext import deploy
    >>> model = larq_bnext.BNext((8, 16, 32), input_shape=(32, 32, 3), num_classes=10)
    >>> flatbuffer = deploy.convert(deploy.binarize_for_demo(model))  # bytes of a .tflite file
    >>> deploy.op_counts(flatbuffer)["LceBconv2d"]  # 3 per block (FFN-3x3 or ELM, FFN_1, FFN_2)
    6
"""

from larq_bnext.deploy.benchmarking import (
    PUBLISHED_TOP1,
    benchmark,
    build_model,
    read_table,
    write_table,
)
from larq_bnext.deploy.inference import (
    SymmetricPadQuantConv2D,
    binarize_for_demo,
    float_model,
    inference_model,
    unbinarized_layers,
    zero_sign_weights,
)
from larq_bnext.deploy.interpreter import lce_interpreter, measure_latency, predict
from larq_bnext.deploy.lce import BINARY_CONV_OP, convert, convert_float, ideal_size, op_counts
from larq_bnext.deploy.plots import plot_benchmark
from larq_bnext.models.layers import binary_conv_layers
