"""Each kind of BNext sub-block and block against the independent PyTorch reference."""

import numpy as np
import pytest
import tensorflow as tf
import torch

from larq_bnext.models import blocks
from tests.torch_reference import (
    ElmAttention,
    Ffn1x1,
    Ffn3x3,
    TorchBlock,
    nchw_to_nhwc,
    randomize_,
)


def _np(t):
    return t.detach().cpu().numpy()


def _copy_sub_block(sub, model, prefix):
    """Copy one reference sub-block's tensors onto the Keras layers named ``{prefix}_*``."""
    names = {layer.name for layer in model.layers}

    def put(part, values):
        model.get_layer(f"{prefix}_{part}").set_weights(values)

    def bn(m):
        return [_np(m.weight), _np(m.bias), _np(m.running_mean), _np(m.running_var)]

    put("move", [_np(sub.move.bias).reshape(-1)])
    put(
        "binary_conv",
        [
            _np(sub.binary_conv.weight).transpose(2, 3, 1, 0),
            _np(sub.binary_conv.temperature).reshape(()),
            _np(sub.binary_activation.temperature).reshape(()),
        ],
    )
    put("norm1", bn(sub.norm1))
    put("activation2", [_np(sub.activation2.weight).reshape(1, 1, -1)])
    if f"{prefix}_activation1" in names:
        put("activation1", [_np(sub.activation1.weight).reshape(1, 1, -1)])
    if f"{prefix}_norm2" in names:
        put("norm2", bn(sub.norm2))
    if sub.info_recoupling:
        put("mix", [_np(sub.scale).reshape(-1)])
        reduce, expand = sub.se.se[1], sub.se.se[3]
        put("se_reduce", [_np(reduce.weight).transpose(2, 3, 1, 0), _np(reduce.bias)])
        put("se_expand", [_np(expand.weight).transpose(2, 3, 1, 0), _np(expand.bias)])


CASES = {
    # name: (reference factory, keras builder, [(reference sub-module, keras prefix)])
    "elm_attention_s1": (
        lambda r: ElmAttention(16, 1, r),
        lambda x, r: blocks.elm_attention(x, 1, r, name="a"),
        lambda m: [(m, "a")],
    ),
    "elm_attention_s2": (
        lambda r: ElmAttention(16, 2, r),
        lambda x, r: blocks.elm_attention(x, 2, r, name="a"),
        lambda m: [(m, "a")],
    ),
    "ffn_3x3_s1": (
        lambda r: Ffn3x3(16, 1, r),
        lambda x, r: blocks.ffn_3x3(x, 1, r, name="a"),
        lambda m: [(m, "a")],
    ),
    "ffn_3x3_s2": (
        lambda r: Ffn3x3(16, 2, r),
        lambda x, r: blocks.ffn_3x3(x, 2, r, name="a"),
        lambda m: [(m, "a")],
    ),
    "ffn_1x1": (
        lambda r: Ffn1x1(16, r),
        lambda x, r: blocks.ffn_1x1(x, r, name="f"),
        lambda m: [(m, "f")],
    ),
    "block_scale_expanding_s2": (
        lambda r: TorchBlock(16, 32, 2, "scale", info_recoupling=r),
        lambda x, r: blocks.bnext_block(x, 32, 2, "scale", info_recoupling=r, name="b"),
        lambda m: [(m.Attention, "b_attention"), (m.FFN_1, "b_ffn_1"), (m.FFN_2, "b_ffn_2")],
    ),
    "block_bias_same_width": (
        lambda r: TorchBlock(16, 16, 1, "bias", info_recoupling=r),
        lambda x, r: blocks.bnext_block(x, 16, 1, "bias", info_recoupling=r, name="b"),
        lambda m: [(m.Attention, "b_attention"), (m.FFN, "b_ffn")],
    ),
}


@pytest.mark.parametrize("recoupling", [True, False], ids=["recoupling", "no_recoupling"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_block_matches_pytorch_reference(case, recoupling, training):
    make_ref, build, pairs = CASES[case]
    torch.manual_seed(0)
    ref = make_ref(recoupling).double()
    images = torch.randn(4, 16, 8, 8, dtype=torch.float64)
    randomize_(ref, seed=3, temperatures="mixed", calibration_images=images)

    tf.keras.backend.set_floatx("float64")
    inputs = tf.keras.Input((8, 8, 16), dtype="float64")
    model = tf.keras.Model(inputs, build(inputs, recoupling))
    for sub, prefix in pairs(ref):
        _copy_sub_block(sub, model, prefix)

    x = torch.randn(4, 16, 8, 8, dtype=torch.float64)
    ref.train(training)
    with torch.no_grad():
        expected = nchw_to_nhwc(ref(x))
    got = model(nchw_to_nhwc(x), training=training).numpy()
    assert got.shape == expected.shape
    assert np.std(expected) > 0.1  # a meaningful, non-degenerate output
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
