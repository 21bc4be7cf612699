"""Evaluation preprocessing and prediction decoding, against hand values and a PIL pipeline."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import larq_bnext
from larq_bnext.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
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
