"""Run and time a converted flatbuffer with LCE's interpreter."""

from __future__ import annotations

import statistics
import time

import numpy as np

__all__ = [
    "lce_interpreter",
    "predict",
    "measure_latency",
]


def lce_interpreter(
    flatbuffer: bytes,
    num_threads: int = 1,
    use_indirect_bgemm: bool = False,
    use_xnnpack: bool = False,
    use_reference_bconv: bool = False,
):
    """An LCE interpreter (TFLite with LCE's ops) for a flatbuffer.

    Args:
        flatbuffer: the bytes of a ``.tflite`` file.
        num_threads: CPU threads.
        use_indirect_bgemm: use LCE's indirect-BGEMM binary convolution kernel instead of the
            default im2col + BGEMM one (on x86 the indirect kernel is the faster of the two;
            on Arm the default has hand-written NEON assembly).
        use_xnnpack: delegate float ops to XNNPACK (TFLite's fast float kernels).
        use_reference_bconv: use LCE's slow reference binary convolution (for checks).

    Returns:
        A :class:`larq_compute_engine.tflite.python.interpreter.Interpreter`.
    """
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    return Interpreter(
        flatbuffer,
        num_threads=num_threads,
        use_indirect_bgemm=use_indirect_bgemm,
        use_xnnpack=use_xnnpack,
        use_reference_bconv=use_reference_bconv,
    )


def predict(flatbuffer: bytes, images: np.ndarray, num_threads: int = 1, **kwargs) -> np.ndarray:
    """Run a flatbuffer on a batch of images with LCE's interpreter, one image at a time.

    Args:
        flatbuffer: the bytes of a ``.tflite`` file with one input.
        images: ``(batch, height, width, channels)`` float32 array.
        num_threads: CPU threads.
        **kwargs: :func:`lce_interpreter` options.

    Returns:
        The stacked outputs, ``(batch, ...)``; a list of them for a flatbuffer with several
        outputs (converted from a multi-output Keras model, they come sorted by the Keras
        output names, which is the order :func:`convert`'s frozen graph gives them).
    """
    # A fresh array: LCE's pybind11 wrapper rejects arrays whose dtype object did not come
    # from NumPy's canonical table (e.g. unpickled ones: "NumPy type info missing").
    fresh = np.empty(np.shape(images), dtype=np.float32)
    fresh[...] = images
    images = fresh
    if images.ndim != 4:
        raise ValueError(f"images must be (batch, height, width, channels); got {images.shape}.")
    interpreter = lce_interpreter(flatbuffer, num_threads=num_threads, **kwargs)
    expected = tuple(interpreter.input_shapes[0][1:])
    if tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"The flatbuffer expects images of shape {expected}, got {images.shape[1:]}. "
            "Convert a model built with that input_shape, or resize the images."
        )
    return interpreter.predict(images)


def measure_latency(
    flatbuffer: bytes,
    num_threads: int = 1,
    repeats: int = 10,
    warmup: int = 2,
    **kwargs,
) -> dict[str, float]:
    """Warm single-image latency of a flatbuffer with LCE's interpreter.

    Runs ``warmup`` untimed inferences on one random image, then ``repeats`` timed ones.

    Args:
        flatbuffer: the bytes of a ``.tflite`` file with one float32 input.
        num_threads: CPU threads.
        repeats: timed runs (at least 1).
        warmup: untimed runs first.
        **kwargs: :func:`lce_interpreter` options.

    Returns:
        ``{"median_ms", "min_ms", "max_ms", "repeats"}``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}.")
    interpreter = lce_interpreter(flatbuffer, num_threads=num_threads, **kwargs)
    shape = (1, *interpreter.input_shapes[0][1:])
    image = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    run = interpreter.interpreter.predict  # the C++ call, without the Python batching loop
    for _ in range(warmup):
        run([image])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run([image])
        times.append((time.perf_counter() - start) * 1e3)
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "repeats": repeats,
    }
