"""Evaluation preprocessing and prediction decoding, against hand values and a PIL pipeline."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import larq_bnext
from larq_bnext.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    decode_and_center_crop,
    eval_resize_size,
    eval_transform,
    imagenet_class_index,
)


def test_preprocess_input_by_hand():
    pixel = np.array([[[255, 0, 128]]], dtype=np.uint8)
    want = [
        (1.0 - 0.485) / 0.229,
        (0.0 - 0.456) / 0.224,
        (128 / 255 - 0.406) / 0.225,
    ]
    got = larq_bnext.preprocess_input(pixel)
    assert got.dtype == np.float32 and got.shape == (1, 1, 3)
    np.testing.assert_allclose(got.ravel(), want, rtol=1e-6)

    as_tensor = larq_bnext.preprocess_input(tf.constant(pixel[None]))
    assert isinstance(as_tensor, tf.Tensor) and as_tensor.dtype == tf.float32
    np.testing.assert_allclose(as_tensor.numpy().ravel(), want, rtol=1e-6)

    doubles = larq_bnext.preprocess_input(pixel.astype(np.float64))
    assert doubles.dtype == np.float64
    np.testing.assert_allclose(doubles.ravel(), want, rtol=1e-12)

    first = larq_bnext.preprocess_input(
        np.transpose(pixel, (2, 0, 1)), data_format="channels_first"
    )
    np.testing.assert_allclose(first.ravel(), want, rtol=1e-6)


def test_preprocess_input_rejects_non_rgb():
    with pytest.raises(ValueError, match="3 channels"):
        larq_bnext.preprocess_input(np.zeros((2, 8, 8, 4)))
    with pytest.raises(ValueError, match="data_format"):
        larq_bnext.preprocess_input(np.zeros((8, 8, 3)), data_format="nhwc")


def _pil_eval(image: np.ndarray) -> np.ndarray:
    """The original evaluation pipeline, step by step with PIL (torchvision semantics)."""
    height, width = image.shape[:2]
    size = int(224 / 0.95)
    if width <= height:
        new_w, new_h = size, int(size * height / width)
    else:
        new_h, new_w = size, int(size * width / height)
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BICUBIC))
    top = int(round((new_h - 224) / 2.0))
    left = int(round((new_w - 224) / 2.0))
    crop = resized[top : top + 224, left : left + 224].astype(np.float64) / 255.0
    return (crop - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)


def _photo_like(height, width, seed):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 12 + 2, width // 12 + 2, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))
    noise = rng.integers(-12, 13, smooth.shape)
    return np.clip(smooth.astype(int) + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(300, 400), (500, 333), (180, 260), (900, 240)])
def test_eval_transform_matches_the_pil_pipeline(shape):
    image = _photo_like(*shape, seed=sum(shape))
    got = eval_transform(image).numpy()
    want = _pil_eval(image)
    assert got.shape == (224, 224, 3) and got.dtype == np.float32
    grey_levels = np.abs(got - want) * np.array(IMAGENET_STD) * 255
    # Both resizes are antialiased Keys-cubic; they differ by rounding at the edges only.
    assert grey_levels.mean() < 0.5
    assert grey_levels.max() <= 4


def test_eval_transform_crop_offsets_are_exact():
    """Shorter side already 235 and the longer one in proportion: no resampling, only the crop.
    Offsets round half to even like torchvision's CenterCrop: (235-224)/2 = 5.5 -> 6."""
    assert eval_resize_size() == 235
    image = _photo_like(235, 300, seed=1)
    got = eval_transform(image).numpy()
    want = (image[6:230, 38:262] / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_eval_transform_in_tf_data_and_grayscale():
    images = np.stack([_photo_like(260, 300, seed=2), _photo_like(260, 300, seed=3)])
    dataset = tf.data.Dataset.from_tensor_slices(images).map(larq_bnext.eval_transform)
    batch = next(iter(dataset.batch(2)))
    assert batch.shape == (2, 224, 224, 3)
    np.testing.assert_allclose(batch[1].numpy(), eval_transform(images[1]).numpy(), atol=1e-6)

    gray = _photo_like(240, 240, seed=4)[..., :1]
    out = eval_transform(gray).numpy()
    rgb = eval_transform(np.repeat(gray, 3, axis=-1)).numpy()
    np.testing.assert_allclose(out, rgb, atol=1e-6)
    with pytest.raises(ValueError, match="one image"):
        eval_transform(images)


def test_decode_predictions():
    classes = imagenet_class_index()
    assert len(classes) == 1000
    assert classes[0] == ("n01440764", "tench, Tinca tinca")
    assert classes[999][0] == "n15075141"
    assert [c[0] for c in classes] == sorted(c[0] for c in classes)

    preds = np.zeros((2, 1000), np.float32)
    preds[0, [0, 1, 999]] = [0.5, 0.3, 0.2]
    preds[1, 207] = 0.9  # golden retriever
    decoded = larq_bnext.decode_predictions(preds, top=3)
    assert [d[0] for d in decoded[0]] == ["n01440764", "n01443537", "n15075141"]
    assert decoded[0][0][2] == pytest.approx(0.5)
    assert decoded[1][0][1].startswith("golden retriever")
    assert len(decoded[1]) == 3
    with pytest.raises(ValueError, match=r"\(samples, 1000\)"):
        larq_bnext.decode_predictions(np.zeros((2, 10)))


def test_preprocess_input_tensor_rows_match_the_numpy_path():
    mean = np.array([0.485, 0.456, 0.406]) * 255
    np.testing.assert_allclose(
        larq_bnext.preprocess_input(tf.constant(mean[None], tf.float32)), 0, atol=1e-5
    )
    x = np.random.default_rng(1).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    # The tensor path (rows against the tiled mean and std) against the NumPy path, up to
    # float32 rounding; a graph of unknown width takes the broadcast.
    for images in (x, x[0], np.random.default_rng(2).uniform(0, 255, (2, 224, 224, 3))):
        images = images.astype(np.float32)
        np.testing.assert_allclose(
            larq_bnext.preprocess_input(tf.constant(images)),
            larq_bnext.preprocess_input(images),
            rtol=1e-6,
            atol=1e-6,
        )
    unknown_width = tf.function(
        larq_bnext.preprocess_input, input_signature=[tf.TensorSpec([None, 4, None, 3])]
    )
    np.testing.assert_allclose(
        unknown_width(x), larq_bnext.preprocess_input(x), rtol=1e-6, atol=1e-6
    )


def _resize_then_crop(image, size=224, crop_fraction=0.95):
    """The former transform, written out: resize the whole image (shorter side 235, the longer
    in proportion, rounded down) with TensorFlow's antialiased bicubic, then centre crop.
    Returns the crop before rounding."""
    height, width = image.shape[:2]
    resize = int(size / crop_fraction)
    if height <= width:
        new_h, new_w = resize, int(resize * width / height)
    else:
        new_h, new_w = int(resize * height / width), resize
    resized = tf.image.resize(image.astype(np.float32), [new_h, new_w], "bicubic", antialias=True)
    top, left = round((new_h - size) / 2), round((new_w - size) / 2)  # half to even
    return resized.numpy()[top : top + size, left : left + size]


def _grey_levels(normalised):
    return normalised * np.array(IMAGENET_STD) * 255 + np.array(IMAGENET_MEAN) * 255


@pytest.mark.parametrize(
    "shape, boundary",
    [
        ((300, 400), 0.002),
        ((500, 333), 0.002),
        ((375, 500), 0.002),
        ((224, 224), 0.002),
        ((900, 240), 0.002),
        ((100, 80), 0.002),
        # Thin strips (each output row resamples one source row 78 times over): the sample
        # positions round differently by a little more.
        ((3, 300), 0.02),
        ((300, 1), 0.02),
    ],
)
def test_eval_transform_equals_resizing_the_whole_image_then_cropping(shape, boundary):
    """Only the window is resampled now; the result is the former one to float32 rounding:
    equal, except that a value within ``boundary`` of .5 may round the other way."""
    image = (
        _photo_like(*shape, seed=shape[0])
        if min(shape) > 12
        else np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    )
    before = _resize_then_crop(image)
    want = np.clip(np.round(before), 0, 255)
    got = _grey_levels(eval_transform(image).numpy())
    np.testing.assert_allclose(got, np.round(got), atol=1e-3)  # whole grey levels
    differ = np.abs(got - want) > 0.5
    assert np.abs(got - want).max() < 1.01 and differ.mean() < 0.005
    on_the_edge = np.abs(before - np.floor(before) - 0.5) < boundary
    assert (on_the_edge | ~differ).all()


def test_bad_crop_fractions_are_refused():
    image = np.zeros((40, 40, 3), np.uint8)
    for fraction in (0.0, 1.2):
        with pytest.raises(ValueError, match=r"crop_fraction must be in \(0, 1\]"):
            eval_transform(image, crop_fraction=fraction)
    assert eval_transform(image, image_size=32, crop_fraction=1.0).shape == (32, 32, 3)


def test_the_interpolation_is_the_registrys_and_others_are_refused_by_name():
    from larq_bnext import registry
    from larq_bnext.preprocessing import EVAL_INTERPOLATION, decode_and_center_crop

    assert EVAL_INTERPOLATION == registry.IMAGENET_PREPROCESSING.interpolation == "bicubic"
    image = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(ValueError, match=r"interpolation 'bilinear' is not implemented.*bicubic"):
        eval_transform(image, interpolation="bilinear")
    with pytest.raises(ValueError, match=r"interpolation 'nearest' is not implemented"):
        decode_and_center_crop(_encoded(image, "PNG"), interpolation="nearest")


def _encoded(image, fmt, **options):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt, **options)
    return buffer.getvalue()


def test_decode_and_center_crop_is_the_transform_of_the_decoded_file():
    image = _photo_like(333, 500, seed=8)
    for data in (_encoded(image, "PNG"), _encoded(image, "JPEG", quality=90)):
        # PIL decodes the file as the original's loader does (JPEG: libjpeg's accurate IDCT).
        with Image.open(io.BytesIO(data)) as decoded:
            pixels = np.asarray(decoded.convert("RGB"))
        got = _grey_levels(decode_and_center_crop(data).numpy())
        want = _grey_levels(eval_transform(pixels).numpy())
        if data.startswith(b"\x89PNG"):  # decoded whole, then the same transform
            np.testing.assert_allclose(got, want, atol=1e-3)
        else:  # only the window decoded: its sample positions round apart in the last bit
            difference = np.abs(got - want)
            assert difference.max() < 1.01 and (difference > 0.5).mean() < 0.005


def test_large_jpegs_are_decoded_at_a_dct_scale_that_keeps_twice_the_crop():
    # Shorter side 939: its window (224 / 235 of it) is just under 4 x 224, decoded in full;
    # at 1300 the window is decoded at 1/2 scale, then resampled from those pixels.
    for short, scaled in ((939, False), (1300, True)):
        data = _encoded(_photo_like(short, short + 200, seed=short), "JPEG", quality=90)
        full = decode_and_center_crop(data, jpeg_dct_scaling=False).numpy()
        fast = decode_and_center_crop(data).numpy()
        if not scaled:
            np.testing.assert_array_equal(fast, full)
            continue
        difference = np.abs(_grey_levels(fast) - _grey_levels(full))
        assert 0.05 < difference.mean() < 1.0, difference.mean()
