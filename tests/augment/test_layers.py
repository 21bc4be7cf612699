"""The keras-cv layers of larq_bnext.augment: each the function it wraps, seeded, serialisable,
in tf.data and in a model, on any value range; the stage the composition of the functions."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from sklearn.datasets import load_sample_image

from larq_bnext.augment import (
    AugmentConfig,
    BNextAugmentation,
    MixUpCutMix,
    RandAugment,
    RandomErasing,
    RandomResizedCrop,
    Rotate,
    bnext_augmentation,
    mix,
    randaugment,
)
from larq_bnext.augment.crop import random_resized_crop
from larq_bnext.augment.layers import OP_LAYERS
from larq_bnext.preprocessing import preprocess_input


@pytest.fixture(scope="module")
def photos():
    out = [load_sample_image(name) for name in ("china.jpg", "flower.jpg")]
    out = [np.asarray(Image.fromarray(p).resize((48, 40), Image.BICUBIC)) for p in out]
    return tf.constant(np.concatenate([out, out[::-1]]), tf.float32)  # 4 images


def _layers():
    return {layer.timm_name: layer for layer, _ in OP_LAYERS.values()}


@pytest.mark.parametrize("name", sorted(_layers()))
def test_op_layers_are_seeded_serialisable_and_run_in_tf_data_and_models(photos, name):
    layer = _layers()[name](seed=5)
    out = layer(photos, seed=[1, 2]).numpy()
    np.testing.assert_array_equal(out, layer(photos, seed=[1, 2]).numpy())
    assert out.shape == photos.shape and out.min() >= 0 and out.max() <= 255
    np.testing.assert_array_equal(out, np.round(out))
    # get_config / from_config round trip: the same layer.
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    np.testing.assert_array_equal(clone(photos, seed=[1, 2]).numpy(), out)
    # In tf.data.map (a graph) as eagerly.
    ds = tf.data.Dataset.from_tensors(photos).map(lambda x: layer(x, seed=[1, 2]))
    np.testing.assert_array_equal(next(iter(ds)).numpy(), out)
    # value_range: images on [0, 1] give the same pixels, on [0, 1].
    unit = type(layer)(value_range=(0, 1))(photos / 255.0, seed=[1, 2]).numpy()
    np.testing.assert_allclose(unit * 255.0, out, atol=2e-4)
    # A layer given a seed repeats its sequence of draws; a model runs it while training.
    a, b = type(layer)(seed=9), type(layer)(seed=9)
    for _ in range(2):
        np.testing.assert_array_equal(a(photos).numpy(), b(photos).numpy())
    inputs = tf.keras.Input((40, 48, 3))
    model = tf.keras.Model(inputs, type(layer)(seed=9)(inputs))
    np.testing.assert_array_equal(model(photos, training=False).numpy(), photos.numpy())
    assert model(photos, training=True).shape == photos.shape


def test_op_layer_draws_timms_magnitudes_and_signs(photos):
    # A fixed magnitude (std 0): every image rotates by +-21 degrees, the sign at random.
    images = tf.tile(photos[:1], [16, 1, 1, 1])
    out = Rotate(magnitude=7, magnitude_std=0)(images, seed=[3, 4]).numpy()
    left = randaugment.apply_op("Rotate", images[:1], [7.0], [1.0]).numpy()[0]
    right = randaugment.apply_op("Rotate", images[:1], [7.0], [-1.0]).numpy()[0]
    signs = [1 if np.array_equal(o, left) else -1 if np.array_equal(o, right) else 0 for o in out]
    assert 0 not in signs and 3 <= signs.count(1) <= 13
    draws = Rotate(magnitude=7, magnitude_std=0.5).draw(20000, tf.constant([1, 2], tf.int64))
    magnitude = draws["magnitude"].numpy()
    assert abs(magnitude.mean() - 7) < 0.02 and abs(magnitude.std() - 0.5) < 0.02


def test_rand_augment_layer_is_timms_policy_function(photos):
    layer = RandAugment(seed=1)
    expected = randaugment.rand_augment(photos, [5, 6], randaugment.BNEXT_POLICY).numpy()
    np.testing.assert_array_equal(layer(photos, seed=[5, 6]).numpy(), expected)
    other = RandAugment.from_config(layer.get_config())
    np.testing.assert_array_equal(other(photos, seed=[5, 6]).numpy(), expected)
    assert len(layer.op_layers) == 15
    unit = RandAugment(value_range=(0, 1))(photos / 255.0, seed=[5, 6]).numpy()
    np.testing.assert_allclose(unit * 255.0, expected, atol=2e-4)
    ds = tf.data.Dataset.from_tensors(photos).map(lambda x: layer(x, seed=[5, 6]))
    np.testing.assert_array_equal(next(iter(ds)).numpy(), expected)


def test_crop_layer_is_the_per_image_crop(photos):
    layer = RandomResizedCrop(24)
    seeds = tf.random.experimental.stateless_split(tf.constant([1, 2], tf.int64), 4)
    config = AugmentConfig(image_size=24, randaugment=False)
    expected = [random_resized_crop(photos[i], config, seeds[i]).numpy() for i in range(4)]
    np.testing.assert_array_equal(layer(photos, seed=[1, 2]).numpy(), np.stack(expected))
    ragged = tf.ragged.stack([photos[0], photos[1, :20, :30]])
    out = layer(ragged, seed=[1, 2]).numpy()
    np.testing.assert_array_equal(out[0], expected[0])
    assert out.shape == (2, 24, 24, 3)
    clone = RandomResizedCrop.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_stage_is_the_composition_of_the_functions(photos):
    config = AugmentConfig(image_size=40, mixup_alpha=0.8, cutmix_alpha=1.0, random_erasing=0.5)
    stage = BNextAugmentation(config, num_classes=5, flip=True)
    labels = tf.constant([0, 1, 2, 3])
    out, soft = stage(photos, labels, seed=tf.constant([4, 2]))
    # The same draws by hand, from the seed's four parts.
    flip, ra, mix_seed, erase = tf.unstack(
        tf.random.experimental.stateless_split(tf.constant([4, 2], tf.int64), 4)
    )
    x = tf.image.stateless_random_flip_left_right(photos, flip)
    x = preprocess_input(randaugment.rand_augment(x, ra))
    choice, mix_seed = tf.unstack(tf.random.experimental.stateless_split(mix_seed))
    y = tf.one_hot(labels, 5)
    if tf.random.stateless_uniform([], choice) < 0.5:
        x, y = mix.cutmix(x, y, 1.0, mix_seed)
    else:
        x, y = mix.mixup(x, y, 0.8, mix_seed)
    x = mix.random_erasing(x, 0.5, erase)
    np.testing.assert_array_equal(out.numpy(), x.numpy())
    np.testing.assert_array_equal(soft.numpy(), y.numpy())
    # keras-cv's dict form gives the same; the config round-trips.
    as_dict = stage({"images": photos, "labels": labels}, seed=tf.constant([4, 2]))
    np.testing.assert_array_equal(as_dict["images"].numpy(), x.numpy())
    clone = BNextAugmentation.from_config(stage.get_config())
    assert clone.config == config and clone.get_config() == stage.get_config()


def test_whole_stage_for_keras_users(photos):
    augment = bnext_augmentation(image_size=32, seed=3)
    ragged = tf.ragged.stack([photos[0], photos[1, :30, :20]])
    out = augment(ragged, seed=[1, 2]).numpy()
    assert out.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(out, augment(ragged, seed=[1, 2]).numpy())
    again = bnext_augmentation(image_size=32, seed=3)
    np.testing.assert_array_equal(augment(photos).numpy(), again(photos).numpy())
    ds = tf.data.Dataset.from_tensors(photos).map(lambda x: augment(x, seed=[1, 2]))
    np.testing.assert_array_equal(next(iter(ds)).numpy(), augment(photos, seed=[1, 2]).numpy())


def test_mix_layers_check_their_inputs():
    with pytest.raises(ValueError, match="labels"):
        MixUpCutMix(mixup_alpha=0.2)(tf.zeros([2, 4, 4, 3]))
    with pytest.raises(ValueError, match="one of them > 0"):
        MixUpCutMix()
    with pytest.raises(ValueError, match="probability"):
        RandomErasing(1.5)
    with pytest.raises(ValueError, match="num_classes"):
        BNextAugmentation(AugmentConfig(cutmix_alpha=1.0))
    with pytest.raises(TypeError, match="seed is integers"):
        Rotate()(tf.zeros([1, 4, 4, 3]), seed=[0.5, 1.0])
