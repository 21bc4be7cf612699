"""BNext-18 against an independent PyTorch reference and figures measured on the original."""

import numpy as np
import pytest
import tensorflow as tf
import torch

import larq_bnext
from larq_bnext.models.layers import BinaryConv2D
from larq_bnext.weights import WeightsMismatchError, load_weights
from larq_bnext.weights.bnext18 import load_bnext18_state_dict
from tests.models.bnext18_reference import TorchBNext18
from tests.torch_reference import binary_convs, calibrate_bn_, randomize_, save_like_original

# sum(p.numel() for p in BNext18(num_classes=n).parameters()) of the ORIGINAL model
# (hpi-xnor/BNext src/birealnet.py), obtained by building it with PyTorch 2.13 (CPU) for
# n = 1000 (ImageNet stem) and n = 10 (CIFAR stem); its state dict has 363 entries.
ORIGINAL_PARAMS = {1000: 12_064_648, 10: 11_549_098}
# The FFN sub-blocks' activation1 PReLUs (2 x (64 + 128 + 256 + 512)) are built by the original
# but never applied; the Keras model leaves them out.
UNUSED_PRELU_PARAMS = 1_920
# 16 binary 3x3 convolutions: 4 x 64*64*9 + 128*64*9 + 3 x 128*128*9 + 256*128*9
# + 3 x 256*256*9 + 512*256*9 + 3 x 512*512*9 (hand computation).
BINARY_CONV_PARAMS = 10_985_472
# Binary MACs at 224x224: the stages run at 56, 28, 14 and 7 pixels (hand computation).
BINARY_MACS_224 = 147_456 * 56**2 + 516_096 * 28**2 + 2_064_384 * 14**2 + 8_257_536 * 7**2

TEMPERATURES = (1.0, 0.3, 2e-5, 3e-6, 1e-9, 0.0)  # clip, clip, clip, sign (< 1e-5), sign, sign


@pytest.fixture(scope="module")
def cifar64():
    """A CIFAR-form BNext-18 (10 classes) in float64, at 16x16 inputs."""
    tf.keras.backend.set_floatx("float64")
    try:
        model = larq_bnext.BNext18(
            input_shape=(16, 16, 3), num_classes=10, classifier_activation=None
        )
    finally:
        tf.keras.backend.set_floatx("float32")
    yield model
    tf.keras.backend.clear_session()


def _random_reference(num_classes: int, size: int, seed: int = 0) -> TorchBNext18:
    torch.manual_seed(seed)
    ref = TorchBNext18(num_classes).double()
    randomize_(ref, seed=seed, temperatures="ones")
    for i, (_, conv) in enumerate(binary_convs(ref)):
        conv.temperature.fill_(float(np.float32(TEMPERATURES[i % len(TEMPERATURES)])))
    images = torch.randn(16, 3, size, size, dtype=torch.float64)
    calibrate_bn_(ref, images)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("binary_conv.weight"):
                # The original clamps latent weights on every forward: the loader must too.
                p.mul_(1.3)
            elif name.endswith(".scale"):
                # FFN scales are clamped on every forward, Attention ones only in training.
                p.uniform_(-0.3, 1.3, generator=gen)
    return ref.eval()


def test_cifar_form_matches_the_reference_in_float64(cifar64, tmp_path):
    ref = _random_reference(10, 16)
    path = tmp_path / "bnext18.pth.tar"
    saved = save_like_original(ref, path)
    # Run the reference on the float32 values the checkpoint holds.
    ref.load_state_dict({k[len("module.") :]: v.double() for k, v in saved["state_dict"].items()})
    report = load_weights(cifar64, str(path), "bnext18")
    assert len(report.converted) == len(cifar64.weights)
    assert report.clamped_scales > 0
    assert sorted({k.split(".")[-1] for k in report.skipped}) == ["num_batches_tracked", "weight"]

    images = torch.randn(
        4, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        expected = ref(images).numpy()
    got = cifar64(images.permute(0, 2, 3, 1).numpy(), training=False).numpy()
    rel = np.linalg.norm(got - expected) / np.linalg.norm(expected)
    assert rel < 1e-12, rel
    assert np.array_equal(got.argmax(1), expected.argmax(1))


def test_threshold_is_1e_5_not_1e_7(cifar64):
    convs = [layer for layer in cifar64.layers if isinstance(layer, BinaryConv2D)]
    assert len(convs) == 16
    layer = convs[0]
    w = np.full(layer.kernel.shape, 0.3)
    layer.kernel.assign(w)
    layer.temperature.assign(3e-6)  # BNext-T/S/M/L would still be in the clip regime here
    np.testing.assert_array_equal(layer.kernel_quantizer(layer.kernel).numpy(), np.ones_like(w))
    layer.temperature.assign(2e-5)
    np.testing.assert_allclose(layer.kernel_quantizer(layer.kernel).numpy(), np.ones_like(w))
    layer.kernel.assign(w * 1e-5)
    np.testing.assert_allclose(layer.kernel_quantizer(layer.kernel).numpy(), w * 0.5)


def test_parameter_counts_match_the_original(cifar64):
    trainable = int(sum(np.prod(v.shape) for v in cifar64.trainable_weights))
    assert trainable == ORIGINAL_PARAMS[10] - UNUSED_PRELU_PARAMS
    binary = sum(
        int(np.prod(layer.kernel.shape))
        for layer in cifar64.layers
        if isinstance(layer, BinaryConv2D)
    )
    assert binary == BINARY_CONV_PARAMS
    # The reference is built with the original's keys and shapes: same count.
    assert sum(p.numel() for p in TorchBNext18(10).parameters()) == ORIGINAL_PARAMS[10]
    assert sum(p.numel() for p in TorchBNext18(1000).parameters()) == ORIGINAL_PARAMS[1000]


def test_imagenet_form_counts_and_macs():
    model = larq_bnext.BNext18(input_shape=(224, 224, 3), classifier_activation=None)
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    assert trainable == ORIGINAL_PARAMS[1000] - UNUSED_PRELU_PARAMS
    assert model.get_layer("stem_conv").kernel.shape == (7, 7, 3, 64)
    assert model.get_layer("stem_maxpool").output_shape == (None, 56, 56, 64)
    macs = 0
    for layer in model.layers:
        if isinstance(layer, BinaryConv2D):
            h, w = layer.output_shape[1:3]
            macs += h * w * int(np.prod(layer.kernel.shape))
    assert macs == BINARY_MACS_224
    assert model.output_shape == (None, 1000)
    tf.keras.backend.clear_session()


def test_imagenet_state_dict_into_cifar_model_is_a_clear_error(cifar64):
    state = {k: v.numpy() for k, v in TorchBNext18(1000).state_dict().items()}
    before = [w.numpy().copy() for w in cifar64.weights[:3]]
    with pytest.raises(WeightsMismatchError, match=r"stem='imagenet'.*\n.*conv1\.weight"):
        load_bnext18_state_dict(cifar64, state)
    for w, b in zip(cifar64.weights[:3], before, strict=True):
        np.testing.assert_array_equal(w.numpy(), b)  # untouched


def test_missing_and_unexpected_keys_are_named(cifar64):
    state = {k: v.numpy() for k, v in TorchBNext18(10).state_dict().items()}
    del state["layer2.1.FFN.se.se.3.bias"]
    state["layer4.0.Attention.scale"] = np.zeros((1, 512, 1, 1))
    with pytest.raises(WeightsMismatchError) as info:
        load_bnext18_state_dict(cifar64, state)
    assert "missing: layer2.1.FFN.se.se.3.bias" in str(info.value)
    assert "unexpected: layer4.0.Attention.scale" in str(info.value)


def test_bnext_checkpoint_is_pointed_to_bnext_builders(cifar64):
    state = {"feature.0.conv1.weight": np.zeros((32, 3, 3, 3))}
    with pytest.raises(WeightsMismatchError, match="BNext-T/S/M/L checkpoint"):
        load_bnext18_state_dict(cifar64, state)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weights": "imagenet"}, "No official ImageNet checkpoint of BNext-18 is published"),
        ({"weights": "/nonexistent.pth"}, "neither None, 'imagenet', an existing file nor"),
        ({"input_shape": (100, 100, 3)}, "multiple of 32"),
        ({"input_shape": (30, 30, 3), "num_classes": 10}, "multiple of 8"),
        ({"stem": "tiny"}, "stem must be"),
        ({"include_top": False, "pooling": "sum"}, "pooling must be"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        larq_bnext.BNext18(**kwargs)


def test_stem_follows_the_original_rule_and_can_be_forced():
    from larq_bnext.models.bnext18 import stem_form

    assert stem_form(None, 1000) == "imagenet"
    assert stem_form(None, 100) == "cifar"
    assert stem_form("imagenet", 10) == "imagenet"


def test_lce_export_keeps_the_7x7_stem_padding_and_the_1e_5_threshold():
    from larq_bnext import deploy
    from larq_bnext.models.quantizers import ProgressiveSign

    inputs = tf.keras.Input((16, 16, 3))
    x = tf.keras.layers.ZeroPadding2D(3, name="stem_pad")(inputs)
    x = tf.keras.layers.Conv2D(8, 7, strides=2, use_bias=False, name="stem_conv")(x)
    x = BinaryConv2D(8, 3, kernel_quantizer=ProgressiveSign(threshold=1e-5), name="bconv")(x)
    model = tf.keras.Model(inputs, x)
    rng = np.random.default_rng(0)
    for w in model.get_layer("stem_conv").weights + [model.get_layer("bconv").kernel]:
        w.assign(rng.standard_normal(w.shape))
    model.get_layer("bconv").temperature.assign(3e-6)  # sign(w) in BNext-18, clip in BNext-T
    assert deploy.unbinarized_layers(model) == {}
    clone = deploy.inference_model(model)
    assert clone.get_layer("stem_pad").padding == ((3, 2), (3, 2))
    images = rng.standard_normal((2, 16, 16, 3)).astype(np.float32)
    expected = model.predict(images, verbose=0)
    flatbuffer = deploy.convert(model)
    assert deploy.op_counts(flatbuffer)[deploy.BINARY_CONV_OP] == 1
    got = np.concatenate([deploy.predict(flatbuffer, images[i : i + 1]) for i in range(2)])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_padded_max_pool_matches_pytorch():
    from larq_bnext.models.bnext18 import PaddedMaxPool2D

    x = np.random.default_rng(0).standard_normal((2, 10, 12, 3)) - 3.0  # all-negative borders
    got = PaddedMaxPool2D(3, 2, 1, dtype="float64")(x).numpy()
    expected = torch.nn.functional.max_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), 3, 2, 1)
    np.testing.assert_array_equal(got, expected.permute(0, 2, 3, 1).numpy())


def test_a_run_reports_bnext18_exactly_binary_below_its_own_threshold(cifar64):
    """Between 1e-7 and 1e-5 a BNext-18 is already binary (sign(w)); a BNext-T/S/M/L is not.

    The check of a training run's ``exactly_binary_weights`` used to compare with 1e-7 for
    every model, calling this BNext-18 not binary.
    """
    from larq_bnext.training.runner import binarization

    convs = [layer for layer in cifar64.layers if isinstance(layer, BinaryConv2D)]
    before = [float(layer.temperature.numpy()) for layer in convs]
    try:
        for layer in convs:
            layer.temperature.assign(3e-6)
        assert binarization(cifar64) == (pytest.approx(3e-6), True)
        w = convs[0].kernel.numpy()
        np.testing.assert_array_equal(convs[0].kernel_quantizer(convs[0].kernel), np.sign(w))
        convs[0].temperature.assign(2e-5)  # one layer still in the clip regime
        assert binarization(cifar64) == (pytest.approx(2e-5), False)
    finally:
        for layer, value in zip(convs, before, strict=True):
            layer.temperature.assign(value)
    narrow = larq_bnext.BNext((8, 16), input_shape=(8, 8, 3), stem_stride=1, num_classes=3)
    for layer in narrow.layers:
        if isinstance(layer, BinaryConv2D):
            layer.temperature.assign(3e-6)
    assert binarization(narrow) == (pytest.approx(3e-6), False)  # 1e-7 is BNext-T/S/M/L's


def test_the_convert_command_takes_a_bnext18_checkpoint(cifar64, tmp_path):
    """python -m larq_bnext.convert detects BNext-18 (and its CIFAR stem) like the sizes."""
    from larq_bnext import convert

    torch.manual_seed(3)
    path = tmp_path / "bnext18.pth.tar"
    save_like_original(TorchBNext18(10), path)
    printed = convert.run("auto", str(path), str(tmp_path / "bnext18.h5"))
    assert "BNext-18 checkpoint: converted" in printed
    assert "get_model('bnext18'" in printed
    direct = load_weights(cifar64, str(path), "bnext18")
    expected = [w.numpy() for w in cifar64.weights]
    converted = load_weights(cifar64, str(tmp_path / "bnext18.h5"), "bnext18")
    assert direct is not None and converted is None  # a PyTorch file, then Keras weights
    for weight, value in zip(cifar64.weights, expected, strict=True):
        np.testing.assert_allclose(weight.numpy(), value, rtol=1e-6, err_msg=weight.name)


def test_every_program_takes_bnext18():
    """evaluate and predict refused BNext-18; they resolve names through the registry now."""
    from larq_bnext import predict
    from larq_bnext.evaluate import evaluate

    scores = evaluate("BNext-18", None, dataset="digits", image_size=8, batch_size=180)
    assert scores["examples"] == 360 and 0.0 <= scores["top1"] <= 1.0
    with pytest.raises(ValueError, match="No official ImageNet checkpoint of BNext-18"):
        predict.build_classifier("bnext18", weights="imagenet")
