"""Decoding: every image PIL reads, as PIL converts it (16-bit: the high byte), the limit."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from larq_bnext.images import decode, files
from tests.images import matrix


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return matrix.write(tmp_path_factory.mktemp("matrix"))


def _read(path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _pil_rgb(path) -> np.ndarray:
    """What torchvision's loader gives (PIL, converted to RGB), except for 16-bit grey, whose
    high byte is kept (PIL's conversion clips every value above 255 to white)."""
    with Image.open(path) as image:
        if image.mode.startswith("I"):
            return np.repeat((np.asarray(image).astype(np.uint16) >> 8)[..., None], 3, -1)
        return np.asarray(image.convert("RGB"))


def test_every_readable_image_decodes_as_pil_reads_it(written):
    decoded = 0
    for case in matrix.CASES:
        path = written[case.name]
        if case.outcome != matrix.OK or not os.path.isfile(path):
            continue
        image = decode.decode_rgb(_read(path))
        assert image.dtype == tf.uint8 and image.shape[-1] == 3
        # CMYK to RGB: TensorFlow and PIL round c * k / 255 apart by up to one level.
        tolerance = 1 if case.name == b"cmyk.jpg" else 0
        difference = np.abs(image.numpy().astype(int) - _pil_rgb(path))
        assert difference.max() <= tolerance, case.name
        decoded += 1
    assert decoded == sum(case.outcome == matrix.OK for case in matrix.CASES)


def test_each_format_goes_to_the_decoder_that_reads_it_right(written):
    kinds = {
        b"rgb.jpg": decode.JPEG,
        b"cmyk.jpg": decode.JPEG,
        b"grey16.png": decode.PNG,
        b"palette.png": decode.PNG,
        b"rgb.bmp": decode.BMP,
        # TensorFlow ignores a BMP's palette (its colours came out up to 103 levels off),
        # reads no 1-bit BMP and decodes every frame of a GIF: PIL reads these.
        b"palette.bmp": decode.OTHER,
        b"bilevel.bmp": decode.OTHER,
        b"palette.gif": decode.OTHER,
        b"rgb.tiff": decode.OTHER,
        b"rgb.webp": decode.OTHER,
        b"notes.jpg": decode.OTHER,
    }
    for name, kind in kinds.items():
        assert int(decode.image_kind(_read(written[name]))) == kind, name
    for name in (b"rgb.jpg", b"grey16.png", b"rgb.bmp", b"strip_20000x1.png"):
        header = files.read_header(written[name])
        data = _read(written[name])
        size = decode.encoded_size(data, decode.image_kind(data)).numpy()
        assert list(size) == [header.height, header.width], name


def test_the_limit_refuses_before_decoding_in_every_decoder(written):
    for name in (b"rgb.jpg", b"grey.png", b"rgb.bmp"):  # 56 x 40 pixels
        data = _read(written[name])
        decode.decode_rgb(data, max_image_pixels=56 * 40)
        with pytest.raises(tf.errors.InvalidArgumentError, match="max_image_pixels"):
            decode.decode_rgb(data, max_image_pixels=56 * 40 - 1)
    with pytest.raises(files.ImageTooLargeError, match="more than the limit"):
        decode.decode_rgb(_read(written[b"rgb.tiff"]), max_image_pixels=100)
    huge = _read(written[b"header_100000x100000.png"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_image_pixels"):
        decode.decode_rgb(huge)


def test_decoding_in_a_pipeline(written):
    names = [b"rgb.tiff", b"grey16.png", b"palette.bmp", b"header_100000x100000.png", b"rgb.jpg"]
    paths = tf.constant([written[n] for n in names])  # bytes: no name needs to be UTF-8
    ds = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda p: tf.shape(decode.decode_rgb(tf.io.read_file(p)))
    )
    shapes = list(ds.ignore_errors().as_numpy_iterator())
    assert [list(s) for s in shapes] == [[40, 56, 3]] * 4  # the oversized PNG is dropped
    float_tiff = tf.data.Dataset.from_tensors(written[b"float.tif"]).map(
        lambda p: decode.decode_rgb(tf.io.read_file(p))
    )
    with pytest.raises(tf.errors.OpError, match="floating-point"):
        next(iter(float_tiff))


def test_jpeg_scale_is_the_coarsest_that_keeps_the_output_size():
    cases = {(447, 900): 1, (448, 448): 2, (900, 1000): 4, (1792, 1800): 8, (100, 4000): 1}
    for (height, width), ratio in cases.items():
        assert decode.JPEG_SCALES[int(decode.jpeg_scale_index(height, width, 224))] == ratio
