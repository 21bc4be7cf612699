"""Operation counts: a hand count on a tiny BNext, a count from the architecture's rules for
every registry model, the published OPs and degrees of binarization, and the program."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import larq_bnext
from larq_bnext import registry
from larq_bnext.analysis import published_results
from larq_bnext.opcount import OpCount, count_ops, rounded_binarization
from larq_bnext.ops import count_rows, rows_markdown

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 1000


def test_tiny_bnext_matches_a_hand_count():
    # 16x16 input, stem stride 2: every feature map is 8x8 (64 pixels). Block 1 (8 -> 16
    # channels, stride 1): a binary 3x3 8->8 (FFN-3x3), then two binary 1x1 8->8 (FFN_1, FFN_2),
    # each sub-block with an SE of 8->1->8 on one pixel.
    model = larq_bnext.BNext((8, 16), input_shape=(16, 16, 3), num_classes=10)
    counts = count_ops(model)
    assert counts.bops == 3 * 3 * 8 * 8 * 64 + 2 * (8 * 8 * 64)
    stem, se, classifier = 3 * 3 * 3 * 8 * 64, 3 * (8 * 1 + 1 * 8), 16 * 10
    assert counts.real_macs == stem + se + classifier
    # The temperature buffers of the three binary convolutions are not counted as MACs.
    assert sum(r for name, _, r in counts.layers if "binary_conv" in name) == 0
    assert counts.ops == counts.bops / 64 + counts.real_macs / 8
    assert counts.binarization == pytest.approx(counts.bops / 64 / counts.ops)
    as_float = count_ops(model, int8_bits=False)
    assert as_float.flops == counts.real_macs and as_float.ops == counts.bops / 64 + stem + se + 160


def _bnext_rule_count(info):
    """BOPs and real MACs of a BNext-T/S/M/L at 224x224 from the architecture's rules."""
    channels = info.stage_channels
    side = 112  # stride-2 stem
    bops = 0
    real = 3 * 3 * 3 * channels[0] * side * side + channels[-1] * CLASSES
    for _, c_in, c_out, strides, _ in registry.block_configs(channels):
        side //= strides
        ffns = 1 if c_in == c_out else 2
        bops += (9 + ffns) * c_in * c_in * side * side
        real += (1 + ffns) * 2 * c_in * (c_in // info.architecture.se_ratio)
    return bops, real


def _bnext18_rule_count():
    """BNext-18 at 224x224: 7x7 stem to 112, max pool to 56, four stages of two blocks of
    two binary 3x3 each (the first of stages 2-4 strided, with a 1x1 downsampling)."""
    bops, real, side, c_in = 0, 7 * 7 * 3 * 64 * 112 * 112 + 512 * CLASSES, 56, 64
    for stage, c in enumerate((64, 128, 256, 512)):
        for block in range(2):
            strided = stage > 0 and block == 0
            side //= 2 if strided else 1
            bops += 9 * (c_in * c + c * c) * side * side
            real += 2 * 2 * c * (c // 8)
            real += c_in * c * side * side if strided else 0
            c_in = c
    return bops, real


@pytest.fixture(scope="module")
def registry_rows():
    return count_rows([m.name for m in registry.list_models()])


def test_every_registry_model_matches_the_count_from_its_architecture(registry_rows):
    for label, counts, info in registry_rows:
        expected = _bnext18_rule_count() if info.family == "bnext18" else _bnext_rule_count(info)
        assert (counts.bops, counts.real_macs) == expected, label


def test_rounded_binarization_is_the_readmes_arithmetic():
    # BOPs to 0.01 G, OPs to 0.001 G: 4.82 / 64 / 0.077, not 4.816896 / 64 / 0.0769...
    assert rounded_binarization(4_816_896_000, 76_932_000) == 4.82 / 64 / 0.077
    assert rounded_binarization(52_150_927_360, 0.819e9) == 52.15 / 64 / 0.819
    counts = OpCount(bops=4_816_896_000, real_macs=13_345_000)
    assert counts.rounded_binarization == 4.82 / 64 / 0.077
    assert round(100 * counts.binarization, 2) == 97.83  # the unrounded ratio
    assert OpCount(bops=64, real_macs=8).rounded_binarization != 0.0  # NaN: OPs round to 0
    with pytest.raises(ValueError, match="rounds to 0.0 G"):
        rounded_binarization(64, 400_000)


def test_published_degrees_of_bnext_t_s_m_l_follow_from_the_counts_and_published_ops(
    registry_rows,
):
    # The README's degrees are the counted BOPs, rounded to 0.01 G, over 64 x its OPs.
    for label, counts, info in registry_rows:
        if info.letter in ("T", "S", "M", "L"):
            degree = 100 * rounded_binarization(counts.bops, info.ops * 1e9)
            assert round(degree, 2) == info.binarization, label


def test_published_ops_and_degrees_are_reproduced_for_bnext_t_s_m(registry_rows):
    for label, counts, info in registry_rows:
        if info.letter in ("T", "S", "M"):
            assert round(counts.ops / 1e9, 3) == info.ops, label
            assert round(100 * counts.rounded_binarization, 2) == info.binarization, label


def test_bnext_l_ops_and_bnext_18_degree_differ_from_the_published_as_documented(registry_rows):
    # BNext-L: 0.8198 G OPs round to 0.820 where the README has 0.819 (its degree follows from
    # 0.819, see above). BNext-18: 1.68 / 64 / 0.043 = 61.05 %, the README 61.04 %.
    found = {info.letter: counts for _, counts, info in registry_rows}
    large, b18 = registry.resolve_model("L"), registry.resolve_model("bnext18")
    assert round(found["L"].ops / 1e9, 3) == pytest.approx(large.ops + 0.001)
    assert round(100 * found["L"].rounded_binarization, 2) == 99.37
    assert round(found["18"].ops / 1e9, 3) == 0.043
    assert round(100 * found["18"].rounded_binarization, 2) == pytest.approx(
        b18.binarization + 0.01
    )
    assert round(100 * found["18"].binarization, 2) == pytest.approx(b18.binarization - 0.77)


def test_readme_degrees_of_real_to_binary_and_reactnet_a_follow_from_counted_bops(registry_rows):
    # Real-to-Binary binarizes ResNet-18's 3x3 convolutions, BNext-18's binary convolutions;
    # ReActNet-A binarizes MobileNetV1's, BNext-T's. Their OPs come from the data file.
    bops = {info.letter: counts.bops for _, counts, info in registry_rows}
    rows = {r["model"]: r for r in published_results()}
    r2b, react = rows["Real-to-Binary"], rows["ReActNet-A"]
    assert round(100 * rounded_binarization(bops["18"], r2b["ops"]), 2) == r2b["binarization"]
    assert 100 * bops["T"] / 64 / react["ops"] == pytest.approx(react["binarization"], abs=0.015)
    for name in ("XNOR-Net", "Bi-Real Net-18", "ReActNet-BiR18"):  # these do not follow
        r = rows[name]
        assert abs(100 * rounded_binarization(bops["18"], r["ops"]) - r["binarization"]) > 1


def test_the_documented_table_is_the_current_count(registry_rows):
    page = (ROOT / "docs" / "comparison.md").read_text()
    assert rows_markdown(registry_rows) in page


def test_the_program_counts_a_custom_width():
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    args = ["--models=custom", "--stage_channels=8,16", "--image_size=64", "--float"]
    result = subprocess.run(
        [sys.executable, "-m", "larq_bnext.ops", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # 64x64 -> 32x32 after the stem: 1024 pixels.
    bops = (9 + 2) * 8 * 8 * 1024
    row = re.search(r"\| custom \(8, 16\) \| ([\d.]+) \| ([\d.]+) \|", result.stdout)
    assert row and float(row.group(1)) == round(bops / 1e6, 2)
    assert float(row.group(2)) == round((27 * 8 * 1024 + 48 + 16 * CLASSES) / 1e6, 2)
    assert "real-valued MACs as FLOPs" in result.stdout
