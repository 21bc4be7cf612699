"""The four BNext sizes against the original's published and checkpoint-derived figures."""

import json
from pathlib import Path

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import larq_bnext
from larq_bnext.models import BinaryConv2D
from tests.models.test_serialization import check_round_trip, set_distinct_temperatures

# A copy of shared/reference/official_state_dicts.json: the official state-dict keys and shapes.
OFFICIAL = Path(__file__).resolve().parents[1] / "data" / "official_state_dicts.json"

# Published / measured on the original (shared/bnext-facts.md).
FORWARD_PARAMS = {
    "tiny": 30_853_276,
    "small": 68_581_174,
    "middle": 134_479_894,
    "large": 326_504_912,
}
BINARY_CONVS = {"tiny": 31, "small": 31, "middle": 47, "large": 63}
BINARY_MACS = {"tiny": 4.817e9, "small": 10.838e9, "middle": 20.086e9, "large": 52.151e9}
SIZES = list(FORWARD_PARAMS)
# A narrow BNext with every kind of block (stride 2, channel doubling, ELM-Attention, FFN-3x3):
# the shape and option tests use it, so the full sizes are built only where their figures count.
NARROW = (8, 16, 32, 32, 64)


def narrow(**kwargs):
    return larq_bnext.BNext(NARROW, **kwargs)


def _official_entries(size):
    return json.loads(OFFICIAL.read_text())[size]


def _unused_prelu(key: str, size: str) -> bool:
    """The PReLUs the original builds but never applies."""
    if key == "feature.0.prelu.weight":
        return True
    if ".activation1." not in key:
        return False
    block = int(key.split(".")[1])
    sub = key.split(".")[2]
    # activation1 is applied only by ELM-Attention ("scale" mode: even block index > 1).
    return sub != "Attention" or block == 1 or block % 2 == 1


# BNext-T's tests also run on the second stack (make compat); the other sizes add minutes there
# and no code path.
SIZE_PARAMS = [pytest.param(s, marks=pytest.mark.compat) if s == "tiny" else s for s in SIZES]


@pytest.fixture(scope="module", params=SIZE_PARAMS)
def sized_model(request):
    model = larq_bnext.get_model(request.param, classifier_activation=None)
    yield request.param, model
    del model
    tf.keras.backend.clear_session()


def test_parameter_counts_match_the_original(sized_model):
    size, model = sized_model
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == FORWARD_PARAMS[size]

    entries = _official_entries(size)
    buffers = ("running_mean", "running_var", "num_batches_tracked", "temperature")
    params = {
        k: int(np.prod(shape)) for k, shape, _ in entries["state_dict"] if not k.endswith(buffers)
    }
    assert sum(params.values()) == entries["parameters_total"]
    used = sum(n for k, n in params.items() if not _unused_prelu(k, size))
    assert trainable == used

    # Non-trainable weights: BN moving statistics and the two temperatures per binary conv.
    bn_stats = sum(
        int(np.prod(s))
        for k, s, _ in entries["state_dict"]
        if k.endswith(("running_mean", "running_var"))
    )
    temperatures = sum(1 for k, *_ in entries["state_dict"] if k.endswith("temperature"))
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert non_trainable == bn_stats + temperatures


def test_binary_convolutions_and_macs(sized_model):
    size, model = sized_model
    binary = [layer for layer in model.layers if isinstance(layer, BinaryConv2D)]
    assert len(binary) == BINARY_CONVS[size]
    binary_params = sum(int(np.prod(layer.kernel.shape)) for layer in binary)
    assert binary_params == _official_entries(size)["parameters_binary_conv"]

    profile = lq.models.ModelProfile(model)
    binary_macs = profile.op_count("mac", 1)
    assert binary_macs == pytest.approx(BINARY_MACS[size], rel=1e-3)
    # Every binary convolution has 1-bit inputs and kernels in the Larq summary.
    for layer in binary:
        assert layer.input_quantizer.precision == 1
        assert layer.kernel_quantizer.precision == 1


def test_forward_training_and_inference(sized_model):
    size, model = sized_model
    x = tf.random.uniform((1, 224, 224, 3), -2.0, 2.0, seed=1)
    y_inf = model(x, training=False)
    y_train = model(x, training=True)
    assert y_inf.shape == (1, 1000) and y_train.shape == (1, 1000)
    assert np.isfinite(y_inf.numpy()).all() and np.isfinite(y_train.numpy()).all()
    # Training mode normalises with batch statistics, inference with moving ones.
    assert not np.allclose(y_inf.numpy(), y_train.numpy())


def test_h5_round_trip(sized_model, tmp_path):
    size, model = sized_model
    values = set_distinct_temperatures(model)
    model.save(tmp_path / f"{size}.h5")
    restored = tf.keras.models.load_model(tmp_path / f"{size}.h5")  # no custom_objects needed
    x = tf.random.uniform((1, 224, 224, 3), -1, 1, seed=2)
    # Every weight comes back bit for bit. Outputs and training after a round trip are compared
    # on narrow models (test_serialization.py): an untrained full-size BNext in float32 has
    # logits of order 1e7, where oneDNN's run-to-run rounding flips binary signs, and tracing a
    # training step of it takes minutes on this CPU.
    check_round_trip(model, restored, values, x, train=False, outputs=False)


def test_summary_separates_binary_and_float(sized_model):
    size, model = sized_model
    lines = []
    lq.models.summary(model, print_fn=lines.append)
    text = "\n".join(lines)
    assert "1-bit" in text and "32-bit" in text
    profile = lq.models.ModelProfile(model)
    one_bit_params = sum(
        w.count for lp in profile.layer_profiles for w in lp.weight_profiles if w.bitwidth == 1
    )
    published = {"tiny": 28_253_184, "small": 63_569_664, "middle": 126_238_464,
                 "large": 308_310_016}  # fmt: skip
    assert one_bit_params == published[size]  # binary-conv parameters of the original


@pytest.mark.parametrize(
    "input_shape, stem_stride, expected",
    [((160, 160, 3), 2, (2, 10)), ((32, 32, 3), 1, (2, 10)), ((96, 128, 3), 2, (2, 10))],
)
def test_other_input_sizes(input_shape, stem_stride, expected):
    # BNext-T itself (all five resolution reductions) at sizes other than 224.
    model = larq_bnext.BNextT(
        input_shape=input_shape, stem_stride=stem_stride, num_classes=10, weights=None
    )
    y = model(tf.random.normal((2, *input_shape)), training=False)
    assert y.shape == expected
    np.testing.assert_allclose(y.numpy().sum(axis=-1), 1.0, rtol=1e-5)  # softmax top
    final = model.get_layer("final_prelu").output_shape
    reduction = 32 if stem_stride == 2 else 16
    assert final[1:3] == (input_shape[0] // reduction, input_shape[1] // reduction)


def test_variable_input_size():
    model = narrow(input_shape=(None, None, 3), num_classes=5)
    for side in (16, 24):
        assert model(tf.zeros((1, side, side, 3))).shape == (1, 5)


@pytest.mark.parametrize("pooling, shape", [(None, (2, 2, 2, 64)), ("avg", (2, 64)),
                                            ("max", (2, 64))])  # fmt: skip
def test_feature_extractor_pooling(pooling, shape):
    model = narrow(input_shape=(16, 16, 3), include_top=False, pooling=pooling)
    assert not any(layer.name == "logits" for layer in model.layers)
    x = tf.random.normal((2, 16, 16, 3))
    features = model(x)
    assert features.shape == shape
    if pooling is not None:
        grid = tf.keras.Model(model.input, model.get_layer("final_prelu").output)(x)
        reduce = tf.reduce_mean if pooling == "avg" else tf.reduce_max
        np.testing.assert_allclose(features, reduce(grid, axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_input_tensor_and_ablation_switches():
    inputs = tf.keras.Input((16, 16, 3))
    full = narrow(input_tensor=inputs, num_classes=10)
    assert full.inputs[0] is inputs
    no_elm = narrow(input_shape=(16, 16, 3), num_classes=10, elm_attention=False)
    no_rec = narrow(input_shape=(16, 16, 3), num_classes=10, info_recoupling=False)
    names = lambda m: {layer.name for layer in m.layers}  # noqa: E731
    # ELM-Attention's residual PReLU exists only in "scale" blocks.
    assert "block2_attention_activation1" in names(full)
    assert "block2_attention_activation1" not in names(no_elm)
    assert not any(n.endswith("_mix") for n in names(no_rec))
    # Without recoupling the FFN's norm2 is not applied (nor built); the attention's still is.
    assert "block1_ffn_1_norm2" not in names(no_rec)
    assert "block2_attention_norm2" in names(no_rec)
    for m in (full, no_elm, no_rec):
        assert m(tf.random.normal((1, 16, 16, 3))).shape == (1, 10)


@pytest.mark.compat
def test_custom_width_builder():
    model = larq_bnext.BNext(
        (8, 16, 32, 32, 64), input_shape=(32, 32, 3), stem_stride=1, num_classes=3
    )
    assert sum(isinstance(layer, BinaryConv2D) for layer in model.layers) == 3 + 2 + 3 + 3
    assert model(tf.zeros((1, 32, 32, 3))).shape == (1, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": "huge"}, "Unknown BNext model 'huge'"),
        ({"size": "tiny", "input_shape": (16, 16, 3)}, "at least 32"),
        ({"size": "tiny", "input_shape": (100, 100, 3)}, "try 96"),
        ({"size": "tiny", "input_shape": (8, 8, 3), "stem_stride": 1}, "at least 16"),
        ({"size": "tiny", "input_shape": (224, 224, 1), "weights": "imagenet"}, "3 input channels"),
        ({"size": "tiny", "weights": "imagenet", "num_classes": 10}, "include_top=False"),
        ({"size": "tiny", "weights": "/no/such/file.h5"}, "neither None, 'imagenet'"),
        ({"size": "tiny", "pooling": "sum", "include_top": False}, "pooling must be"),
        ({"size": "tiny", "input_shape": (224, 224)}, "(height, width, channels)"),
    ],
)
def test_bad_input_is_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=None) as info:
        larq_bnext.get_model(**kwargs)
    assert message in str(info.value)


def test_custom_width_cannot_take_imagenet_weights():
    with pytest.raises(ValueError, match="published models .BNext-T, BNext-S, BNext-M, BNext-L"):
        larq_bnext.BNext((8, 16, 32), weights="imagenet")
    with pytest.raises(ValueError, match="equal or double"):
        larq_bnext.BNext((8, 16, 48), input_shape=(32, 32, 3))
