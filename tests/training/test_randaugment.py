"""timm's RandAugment: every op against PIL as timm runs it, and the policy's statistics.

The references below are written from timm 0.6.11's definitions (``auto_augment.py``): each
op is PIL's computation on a uint8 image, at the arguments timm's magnitude mappings give.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps
from sklearn.datasets import load_sample_image

from larq_bnext.augment import randaugment as ra
from larq_bnext.augment import randaugment_ops as ops
from larq_bnext.augment.layers import OP_LAYERS

FILL = (124, 116, 104)


@pytest.fixture(scope="module")
def photos():
    """Two real photographs (scikit-learn's samples) at 96x128, as uint8."""
    out = []
    for image in (load_sample_image("china.jpg"), load_sample_image("flower.jpg")):
        out.append(np.asarray(Image.fromarray(image).resize((128, 96), Image.BICUBIC)))
    return np.stack(out)


def _pil(photos, fn):
    return np.stack([np.asarray(fn(Image.fromarray(p))) for p in photos]).astype(np.float32)


def _ours(name, photos, magnitude, sign, interpolation="bilinear"):
    """timm's op ``name`` by its keras-cv layer (larq_bnext.augment.layers), at a given draw."""
    layer, increasing = OP_LAYERS[name]
    layer = layer(increasing=increasing, interpolation=interpolation)
    batch = len(photos)
    draw = {"magnitude": tf.fill([batch], float(magnitude)), "sign": tf.fill([batch], float(sign))}
    out = layer.augment_images(tf.constant(photos, tf.float32), draw)
    policy = ra.RandAugmentPolicy(interpolation=interpolation)  # the function under the layer
    images = tf.constant(photos, tf.float32)
    same = ra.apply_op(name, images, [magnitude] * batch, [sign] * batch, policy)
    np.testing.assert_array_equal(out.numpy(), same.numpy())
    return out.numpy()


# timm's magnitude -> argument mappings and PIL calls, written from its definitions.
def _enhance_inc(m, s):
    return max(0.1, 1.0 + s * (m / 10.0) * 0.9)


def _posterize(img, bits):
    # Pillow 9.3's ImageOps.posterize (the original's pin); Pillow 11+ refuses bits=0 (black).
    if bits >= 1:
        assert (
            ImageOps.posterize(img, bits).tobytes()
            == img.point([i & ~(2 ** (8 - bits) - 1) for i in range(256)] * 3).tobytes()
        )
    return img.point([i & ~(2 ** (8 - bits) - 1) for i in range(256)] * 3)


def _solarize_add(img, add):
    lut = [min(255, i + add) if i < 128 else i for i in range(256)]
    return img.point(lut * 3)


POINT_OPS = {
    "AutoContrast": lambda img, m, s: ImageOps.autocontrast(img),
    "Equalize": lambda img, m, s: ImageOps.equalize(img),
    "Invert": lambda img, m, s: ImageOps.invert(img),
    "PosterizeIncreasing": lambda img, m, s: _posterize(img, 4 - int((m / 10.0) * 4)),
    "Posterize": lambda img, m, s: _posterize(img, int((m / 10.0) * 4)),
    "SolarizeIncreasing": lambda img, m, s: ImageOps.solarize(img, 256 - int((m / 10.0) * 256)),
    "Solarize": lambda img, m, s: ImageOps.solarize(img, int((m / 10.0) * 256)),
    "SolarizeAdd": lambda img, m, s: _solarize_add(img, int((m / 10.0) * 110)),
    "ColorIncreasing": lambda img, m, s: ImageEnhance.Color(img).enhance(_enhance_inc(m, s)),
    "Color": lambda img, m, s: ImageEnhance.Color(img).enhance((m / 10.0) * 1.8 + 0.1),
    "ContrastIncreasing": lambda img, m, s: ImageEnhance.Contrast(img).enhance(_enhance_inc(m, s)),
    "BrightnessIncreasing": lambda img, m, s: ImageEnhance.Brightness(img).enhance(
        _enhance_inc(m, s)
    ),
    "Brightness": lambda img, m, s: ImageEnhance.Brightness(img).enhance((m / 10.0) * 1.8 + 0.1),
}


@pytest.mark.parametrize("name", sorted(POINT_OPS))
def test_point_ops_match_pil_exactly(photos, name):
    for magnitude, sign in ((0.0, 1), (3.3, -1), (7.0, 1), (7.0, -1), (10.0, 1)):
        expected = _pil(photos, lambda img, m=magnitude, s=sign: POINT_OPS[name](img, m, s))
        got = _ours(name, photos, magnitude, sign)
        np.testing.assert_array_equal(got, expected, err_msg=f"{name} m={magnitude} s={sign}")


def test_sharpness_matches_pil(photos):
    for magnitude, sign in ((0.0, 1), (5.0, -1), (7.0, 1), (10.0, 1)):
        factor = _enhance_inc(magnitude, sign)
        expected = _pil(photos, lambda img, f=factor: ImageEnhance.Sharpness(img).enhance(f))
        got = _ours("SharpnessIncreasing", photos, magnitude, sign)
        diff = np.abs(got - expected)
        # PIL's SMOOTH filter rounds in fixed point: a rare off-by-one at most.
        assert diff.max() <= 1 and (diff == 0).mean() > 0.995, (magnitude, diff.mean())


def _pil_geometric(name, img, m, s, resample):
    kwargs = dict(resample=resample, fillcolor=FILL)
    shear = s * (m / 10.0) * 0.3
    shift = s * (m / 10.0) * 0.45
    affine = {
        "ShearX": (1, shear, 0, 0, 1, 0),
        "ShearY": (1, 0, 0, shear, 1, 0),
        "TranslateXRel": (1, 0, shift * img.size[0], 0, 1, 0),
        "TranslateYRel": (1, 0, 0, 0, 1, shift * img.size[1]),
    }
    if name == "Rotate":
        return img.rotate(s * (m / 10.0) * 30.0, **kwargs)
    return img.transform(img.size, Image.AFFINE, affine[name], **kwargs)


GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


@pytest.mark.compat
@pytest.mark.parametrize("name", GEOMETRIC)
def test_geometric_ops_match_pil(photos, name):
    for magnitude, sign in ((3.0, 1), (7.0, -1), (10.0, 1)):
        # Nearest: the same sampling positions as PIL, pixel for pixel but for ties.
        got = _ours(name, photos, magnitude, sign, "nearest")
        expected = _pil(
            photos, lambda i, m=magnitude, s=sign: _pil_geometric(name, i, m, s, Image.NEAREST)
        )
        assert (got == expected).all(axis=-1).mean() > 0.99, (name, magnitude)
        # Bilinear: PIL's kernel; the edges of the content differ (PIL clamps, TF blends with
        # the fill), and float rounding, rarely.
        got = _ours(name, photos, magnitude, sign, "bilinear")
        expected = _pil(
            photos, lambda i, m=magnitude, s=sign: _pil_geometric(name, i, m, s, Image.BILINEAR)
        )
        diff = np.abs(got - expected)
        assert (diff == 0).mean() > 0.8 and diff.mean() < 0.4, (name, magnitude)
        # Bicubic (the original's kernel): the resampling difference, a few grey levels.
        bicubic = _pil(
            photos, lambda i, m=magnitude, s=sign: _pil_geometric(name, i, m, s, Image.BICUBIC)
        )
        assert np.abs(got - bicubic).mean() < 3.0, (name, magnitude)
        # The fill colour covers what the transform uncovers (translations fill whole columns).
        if name == "TranslateXRel" and magnitude == 10.0:
            np.testing.assert_array_equal(
                got[:, :, -40:], np.broadcast_to(FILL, got[:, :, -40:].shape)
            )


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("name", GEOMETRIC)
def test_affine_ops_give_the_same_pixels_with_and_without_tensorflow_addons(
    photos, name, interpolation, monkeypatch
):
    # Runs where TensorFlow Addons is installed (the default stack); elsewhere (Python 3.12)
    # only TensorFlow's op exists, and test_geometric_ops_match_pil checks that one against PIL.
    pytest.importorskip("tensorflow_addons")
    from larq_bnext.images import transform

    results = {}
    for addons in (True, False):
        monkeypatch.setattr(
            ops,
            "projective_transform",
            lambda *args, addons=addons, **kwargs: transform.projective_transform(
                *args, addons=addons, **kwargs
            ),
        )
        results[addons] = np.stack(
            [_ours(name, photos, m, s, interpolation) for m, s in ((3.0, 1), (10.0, -1))]
        )
    assert np.abs(results[True] - results[False]).max() == 0, (name, interpolation)
    # Not a comparison of two unchanged images: the op moved pixels and filled some.
    assert (results[True] != photos[None].astype(np.float32)).mean() > 0.1
    assert (results[True] == np.float32(FILL)).all(axis=-1).any()


def test_level_to_arg_follows_timm():
    for m in (0.0, 2.5, 7.0, 10.0):
        assert float(ra.level_to_arg("Rotate", m, -1)) == pytest.approx(-(m / 10) * 30)
        assert float(ra.level_to_arg("PosterizeIncreasing", m, 1)) == 4 - int((m / 10) * 4)
        assert float(ra.level_to_arg("SolarizeIncreasing", m, 1)) == 256 - int((m / 10) * 256)
        assert float(ra.level_to_arg("SolarizeAdd", m, 1)) == min(128, int((m / 10) * 110))
        assert float(ra.level_to_arg("ColorIncreasing", m, -1)) == pytest.approx(
            max(0.1, 1 - (m / 10) * 0.9)
        )
        assert float(ra.level_to_arg("ShearY", m, -1)) == pytest.approx(-(m / 10) * 0.3)
        assert float(ra.level_to_arg("TranslateXRel", m, 1)) == pytest.approx((m / 10) * 0.45)
    assert ra.level_to_arg("Equalize", 5.0, 1) is None


def test_policy_string_is_timms():
    policy = ra.parse_policy("rand-m7-mstd0.5-inc1")
    assert policy == ra.BNEXT_POLICY
    assert policy.ops == ra.INCREASING_OPS and len(policy.ops) == 15
    assert (policy.num_layers, policy.prob, policy.magnitude, policy.magnitude_std) == (
        2,
        0.5,
        7,
        0.5,
    )
    assert policy.magnitude_max == 10 and policy.translate_pct == 0.45 and policy.fill == FILL
    plain = ra.parse_policy("rand-m9-n3-mstd101-p0.7")
    assert plain.ops == ra.OPS and plain.num_layers == 3 and plain.prob == 0.7
    assert math.isinf(plain.magnitude_std)
    with pytest.raises(ValueError, match="Unknown section"):
        ra.parse_policy("rand-m7-x3")
    with pytest.raises(ValueError, match="rand-"):
        ra.parse_policy("augmix-m7")
    with pytest.raises(ValueError, match="bicubic"):
        ra.RandAugmentPolicy(interpolation="bicubic")


def test_draws_follow_timms_distribution():
    draws = {k: v.numpy() for k, v in ra.sample_ops(20000, [7, 11]).items()}
    assert draws["op"].shape == (2, 20000)
    counts = np.bincount(draws["op"].ravel(), minlength=15)
    assert counts.shape == (15,)
    # Uniform over 15, with replacement: both layers independent (same op ~ 1/15 of images).
    expected = draws["op"].size / 15
    assert np.abs(counts - expected).max() < 5 * math.sqrt(expected)
    same = (draws["op"][0] == draws["op"][1]).mean()
    assert abs(same - 1 / 15) < 0.01
    assert abs(draws["apply"].mean() - 0.5) < 0.01
    assert abs(draws["sign"].mean()) < 0.02 and set(np.unique(draws["sign"])) == {-1.0, 1.0}
    magnitude = draws["magnitude"]
    assert abs(magnitude.mean() - 7.0) < 0.01 and abs(magnitude.std() - 0.5) < 0.01
    assert magnitude.min() >= 0 and magnitude.max() <= 10
    clipped = ra.sample_ops(5000, [1, 2], ra.parse_policy("rand-m10-mstd2-inc1"))["magnitude"]
    assert float(tf.reduce_max(clipped)) == 10.0 and float(tf.reduce_mean(clipped)) < 10 - 0.5


def test_rand_augment_is_a_pure_function_of_the_seed(photos):
    images = tf.constant(np.concatenate([photos] * 4), tf.float32)
    first = ra.rand_augment(images, [5, 6]).numpy()
    np.testing.assert_array_equal(first, ra.rand_augment(images, [5, 6]).numpy())
    other = ra.rand_augment(images, [5, 7]).numpy()
    assert not np.array_equal(first, other)
    assert first.min() >= 0 and first.max() <= 255 and (first == np.round(first)).all()
    # Each image equals its ops applied in turn (the draws replayed one op at a time).
    draws = ra.sample_ops(len(images), [5, 6])
    for i in range(len(images)):
        image = images[i : i + 1]
        for layer in range(2):
            if draws["apply"][layer, i]:
                name = ra.BNEXT_POLICY.ops[int(draws["op"][layer, i])]
                magnitude = draws["magnitude"][layer, i : i + 1]
                sign = draws["sign"][layer, i : i + 1]
                image = ra.apply_op(name, image, magnitude, sign)
        np.testing.assert_array_equal(first[i], image[0].numpy())


@pytest.mark.compat
def test_rand_augment_in_tf_data_equals_eager(photos):
    images = tf.constant(photos[:, :40, :40], tf.float32)
    seeds = tf.constant([[1, 2], [3, 4], [5, 6]], tf.int64)
    ds = tf.data.Dataset.from_tensor_slices(seeds).map(lambda s: ra.rand_augment(images, s))
    for seed, graph in zip(seeds, ds, strict=True):
        np.testing.assert_array_equal(graph.numpy(), ra.rand_augment(images, seed).numpy())


def test_ops_take_per_image_arguments(photos):
    images = tf.constant(photos, tf.float32)
    out = ops.solarize(images, [256, 0]).numpy()
    np.testing.assert_array_equal(out[0], photos[0])
    np.testing.assert_array_equal(out[1], 255 - photos[1].astype(np.float32))
    out = ops.rotate(images, [0.0, 180.0], interpolation="nearest").numpy()
    np.testing.assert_array_equal(out[0], photos[0])
    np.testing.assert_array_equal(out[1], photos[1][::-1, ::-1])
