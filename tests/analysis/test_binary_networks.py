"""The published-results file, the comparison figure and table, and the binary features."""

import csv
from importlib import resources

import numpy as np
import pytest
import tensorflow as tf
from matplotlib.image import imread

import larq_bnext
from larq_bnext import registry
from larq_bnext.analysis import (
    binary_features,
    features_markdown,
    plot_binary_features,
    plot_top1_vs_ops,
    published_results,
    sample_image,
)
from larq_bnext.features import draw
from larq_bnext.opcount import OpCount


def test_every_published_row_names_its_source_and_its_ops_add_up():
    rows = published_results()
    assert {r["model"] for r in rows} >= {"XNOR-Net", "Bi-Real Net-18", "ReActNet-A", "BNext"}
    for r in rows:
        assert r["source"].strip() and r["paper"].strip(), r["model"]
        assert r["top1"] is None or 40 < r["top1"] < 80
        if None not in (r["bops"], r["flops"], r["ops"]):
            # OPs = BOPs / 64 + FLOPs, to the rounding of the published figures.
            assert r["ops"] == pytest.approx(r["bops"] / 64 + r["flops"], rel=0.015), r["model"]


def test_every_published_figure_is_quoted_in_its_source():
    # Nothing written from memory: each top-1, BOPs, FLOPs and OPs is named in the source text.
    text = resources.files("larq_bnext").joinpath("resources/binary_networks.csv").read_text()
    for row in csv.DictReader(text.splitlines()):
        for key in ("top1", "bops", "flops", "ops"):
            if row[key]:
                assert row[key].split("e")[0] in row["source"], (row["model"], key)
        assert "not verified" not in row["source"], row["model"]


def test_features_table_lists_published_degrees_and_the_counted_one():
    # 75.264 M binary OPs + 1.668 M FLOPs: 97.83 %; rounded, 4.82 / 64 / 0.077 = 97.81 %.
    counts = OpCount(bops=4_816_896_000, real_macs=13_345_000)
    table = features_markdown([("BNext-T", counts, registry.resolve_model("T"))])
    assert "| ReActNet-A | Yes | Yes |  |  | Yes | 86.50 % |  |  |" in table
    assert "| BNext-T | Yes | Yes | Yes | Yes | Yes | 97.81 % | 97.83 % | 97.81 % |" in table
    tiny = features_markdown([("tiny", OpCount(bops=64 * 97, real_macs=8 * 3), None)])
    assert tiny.endswith("| 97.00 % |  |")  # OPs round to 0 G: no rounded degree
    assert "AdamBNN" not in table  # no published degree


def test_the_figure_is_written(tmp_path):
    counts = OpCount(bops=64 * 97_000_000, real_macs=8 * 3_000_000)
    path = plot_top1_vs_ops(tmp_path / "f.png", [("BNext-T", counts, registry.resolve_model("T"))])
    assert imread(path).shape[:2] == (500, 900)


def test_binary_features_are_the_signs_the_binary_convolution_sees():
    model = larq_bnext.BNext((8, 16), input_shape=(16, 16, 3), num_classes=10)
    images = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    conv = model.get_layer("block1_ffn_2_binary_conv")
    expected = np.sign(tf.keras.Model(model.inputs, conv.input)(images).numpy())
    by_name = binary_features(model, images, "block1_ffn_2_binary_conv")
    np.testing.assert_array_equal(by_name, expected)
    np.testing.assert_array_equal(binary_features(model, images, -1), expected)
    assert binary_features(model, images).shape == (2, 8, 8, 8)
    with pytest.raises(ValueError, match="not a BinaryConv2D"):
        binary_features(model, images, "stem_conv")
    with pytest.raises(ValueError, match="has 3 binary convolutions"):
        binary_features(model, images, 3)


def test_sample_photograph_and_feature_figure(tmp_path):
    image = sample_image(48)
    assert image.shape == (48, 48, 3) and 0 <= image.min() and image.max() <= 255
    assert image.std() > 10  # a photograph, not a flat image
    maps = np.sign(np.random.default_rng(0).normal(size=(8, 8, 5)))
    path = plot_binary_features(tmp_path / "maps.png", maps, "random", channels=5, columns=4)
    assert imread(path).shape[2] == 4


def test_the_program_draws_a_registry_model_at_any_size(tmp_path):
    path = draw("T", str(tmp_path / "t.png"), image_size=64, layer=2, channels=4)
    assert imread(path).ndim == 3
