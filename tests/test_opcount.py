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
from larq_bnext.opcount import count_ops
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


def test_published_ops_and_degrees_are_reproduced_for_bnext_t_s_m(registry_rows):
    for label, counts, info in registry_rows:
        if info.letter in ("T", "S", "M"):
            assert round(counts.ops / 1e9, 3) == info.ops, label
            assert 100 * counts.binarization == pytest.approx(info.binarization, abs=0.025)


def test_bnext_l_and_bnext_18_differ_from_their_published_degree_as_documented(registry_rows):
    # The published BNext-L figures imply ~33.4 M real-valued MACs, the model has 39.4 M; the
    # published BNext-18 degree implies ~133.7 M, the model has 138.1 M (docs/comparison.md).
    found = {info.letter: counts for _, counts, info in registry_rows}
    large, b18 = registry.resolve_model("L"), registry.resolve_model("bnext18")
    assert round(found["L"].ops / 1e9, 3) == pytest.approx(large.ops + 0.001)
    assert 100 * found["L"].binarization == pytest.approx(large.binarization - 0.09, abs=0.005)
    assert 100 * found["18"].binarization == pytest.approx(b18.binarization - 0.77, abs=0.005)


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
