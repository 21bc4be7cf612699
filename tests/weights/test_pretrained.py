"""Official checkpoints in Keras: layout, float64 parity with PyTorch, errors, download/cache.

The yardstick is ``tests/torch_reference.py``, an independent PyTorch BNext whose state dicts
have the official keys and shapes (checked here against the published layout). Its randomized
weights are saved exactly as the original training script saves them; the Keras models load
those files with :mod:`larq_bnext.weights`, and both compute in float64.
"""

import dataclasses
import gc
import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import torch
from absl import flags as absl_flags

import larq_bnext
from larq_bnext import convert, registry, weights
from larq_bnext.weights import WeightsMismatchError, download, loading
from larq_bnext.weights.pytorch_reader import CheckpointError
from tests.torch_reference import (
    STAGE_CHANNELS,
    TEMPERATURE_THRESHOLD,
    TorchBNext,
    binary_convs,
    nchw_to_nhwc,
    randomize_,
    save_like_original,
)

LAYOUT = json.loads((Path(__file__).parents[1] / "data" / "official_state_dicts.json").read_text())
#: A narrow architecture with every kind of sub-block: FFN-3x3 + FFN_1/FFN_2 (block 1),
#: stride-2 ELM-Attention + FFN_1/FFN_2 (block 2), FFN-3x3 + FFN (block 3).
NARROW = (8, 16, 32, 32)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """PyTorch's thread pool contends with TensorFlow's on small CPUs; one thread is faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def float64():
    previous = tf.keras.backend.floatx()
    tf.keras.backend.set_floatx("float64")
    yield
    tf.keras.backend.set_floatx(previous)


@pytest.fixture
def zero_initial_kernels(monkeypatch):
    """Build binary kernels with zeros instead of N(0, 0.001) draws.

    The strict loader then overwrites every weight (parity would fail otherwise); for BNext-L
    this skips 308M float64 normal draws, about half of the model's build time.
    """
    zeros = tf.keras.initializers.Zeros
    monkeypatch.setattr(tf.keras.initializers, "RandomNormal", lambda *a, **k: zeros())


def _narrow(monkeypatch) -> None:
    """Make the registry's "tiny" the narrow test architecture."""
    info = registry.resolve_model("tiny")
    monkeypatch.setitem(registry.MODELS, "tiny", dataclasses.replace(info, stage_channels=NARROW))


def _serve(monkeypatch, url: str, size: str = "tiny") -> None:
    """Make the registry's one source of the official checkpoint of ``size`` ``url``."""
    info = registry.resolve_model(size)
    sources = (registry.Source(url),)
    monkeypatch.setitem(registry.MODELS, info.name, dataclasses.replace(info, sources=sources))


def _reference(channels, seed=0, hw=32, num_classes=1000, **kwargs):
    """A float32 reference with randomized weights and BN statistics taken from data."""
    torch.manual_seed(seed)
    model = TorchBNext(list(channels), num_classes=num_classes, **kwargs)
    images = torch.randn(8, 3, hw, hw)
    return randomize_(model, seed=seed, temperatures="mixed", calibration_images=images)


def _logits_both(ref, keras_model, hw, batch, seed=1):
    """Float64 logits of the reference (NCHW) and the Keras model (NHWC) on the same images."""
    x = torch.randn(batch, 3, hw, hw, generator=torch.Generator().manual_seed(seed))
    x = x.double()
    with torch.no_grad():
        want = ref.double().eval()(x).numpy()
    got = keras_model(nchw_to_nhwc(x), training=False).numpy()
    return got, want


def _assert_parity(got, want):
    assert got.dtype == np.float64
    assert np.all(np.isfinite(want)) and np.all(np.isfinite(got))
    assert want.std() > 0.1, "degenerate logits prove nothing"
    assert np.ptp(want, axis=0).max() > 1e-3, "all images give the same logits"
    rel = np.linalg.norm(got - want) / np.linalg.norm(want)
    assert rel < 1e-6, rel
    np.testing.assert_array_equal(got.argmax(axis=1), want.argmax(axis=1))
    return rel


def _official_arrays(path):
    """The checkpoint's state dict as float arrays, keys without module."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    return {k[len("module.") :]: v.numpy() for k, v in ckpt.items()}


# ----------------------------------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", ["tiny", "small", "middle", "large"])
def test_official_layout_is_what_the_converter_expects(size):
    published = [(k, tuple(s)) for k, s, _ in LAYOUT[size]["state_dict"]]
    spec = weights.official_state_dict_spec(registry.resolve_model(size).stage_channels)
    assert list(spec.items()) == published
    shapes = dict(published)
    assert weights.detect_size(shapes) == size
    # Without the bookkeeping entries, and without the classifier, still recognised.
    core = {k: s for k, s in shapes.items() if "num_batches_tracked" not in k}
    assert weights.detect_size(core) == size
    assert weights.detect_size({k: s for k, s in core.items() if "fc." not in k}) == size
    damaged = dict(core)
    damaged.pop("feature.3.FFN.se.se.1.bias")
    assert weights.detect_size(damaged) is None


# ----------------------------------------------------------------------------------------------
# Numerical parity, float64, all four sizes
# ----------------------------------------------------------------------------------------------
PARITY = {"tiny": (64, 4), "small": (32, 4), "middle": (32, 3), "large": (32, 2)}


@pytest.mark.parametrize("size", list(PARITY))
def test_float64_parity_with_pytorch(size, tmp_path, float64, zero_initial_kernels):
    hw, batch = PARITY[size]
    ref = _reference(STAGE_CHANNELS[size], seed=10 + len(size), hw=hw)
    state = ref.state_dict()
    assert [(k, list(v.shape), str(v.dtype)[6:]) for k, v in state.items()] == [
        tuple(e) for e in LAYOUT[size]["state_dict"]
    ]
    temperatures = {name: float(c.temperature) for name, c in binary_convs(ref)}
    assert min(temperatures.values()) < TEMPERATURE_THRESHOLD <= max(temperatures.values())
    path = tmp_path / f"bnext_{size}.pth.tar"
    save_like_original(ref, path, epoch=511, with_optimizer_state=size == "tiny")
    del state

    x = torch.randn(batch, 3, hw, hw, generator=torch.Generator().manual_seed(1)).double()
    with torch.no_grad():
        want = ref.double().eval()(x).numpy()
    del ref
    gc.collect()

    model = larq_bnext.get_model(
        size, input_shape=(hw, hw, 3), classifier_activation=None, weights=str(path)
    )
    got = model(nchw_to_nhwc(x), training=False).numpy()
    rel = _assert_parity(got, want)
    print(f"{size}: relative L2 {rel:.2e}, top-1 {list(got.argmax(1))} == {list(want.argmax(1))}")

    for name, value in temperatures.items():
        _, i, module, _ = name.split(".")
        layer = model.get_layer(f"block{i}_{module.lower()}_binary_conv")
        assert layer.temperature.numpy() == np.float32(value), name
    del model
    path.unlink()
    gc.collect()


def test_recoupling_scales_follow_the_original_in_eval(tmp_path, float64):
    """Out-of-range scales: FFN-1x1 ones are clamped (the original does so in every forward),
    ELM-Attention/FFN-3x3 ones are used as stored (the original clamps them only in training)."""
    ref = _reference(NARROW, seed=5, num_classes=10)
    gen = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for module in ref.modules():
            if isinstance(getattr(module, "scale", None), torch.nn.Parameter):
                module.scale.copy_(torch.rand(module.scale.shape, generator=gen) * 1.6 - 0.3)
    attention_scale = ref.feature[2].Attention.scale.detach().numpy().ravel().copy()
    ffn_scale = ref.feature[3].FFN.scale.detach().numpy().ravel().copy()
    assert (attention_scale < 0).any() and (ffn_scale > 1).any()
    path = tmp_path / "ckpt.pth.tar"
    save_like_original(ref, path)

    model = larq_bnext.BNext(
        NARROW, input_shape=(32, 32, 3), num_classes=10, classifier_activation=None
    )
    report = weights.load_official_checkpoint(model, path)
    assert report.clamped_scales > 0
    np.testing.assert_array_equal(
        model.get_layer("block2_attention_mix").scale.numpy(), attention_scale
    )
    np.testing.assert_array_equal(
        model.get_layer("block3_ffn_mix").scale.numpy(), np.clip(ffn_scale, 0, 1)
    )
    got, want = _logits_both(ref, model, 32, 4)
    _assert_parity(got, want)


def test_exact_zeros_in_sign_layers_and_activations_match_the_reference(tmp_path, float64):
    """sign(0) = 0, as torch.sign: exact-zero weights and activations binarize as the original.

    Before, Larq's sign(0) = +1 made such checkpoints differ from the original (a warning).
    """
    ref = _reference(NARROW, seed=6, num_classes=10)
    rng = np.random.default_rng(6)
    expected = {}
    with torch.no_grad():
        for name, conv in binary_convs(ref):
            conv.temperature.fill_(1e-9)  # sign regime everywhere: zeros are never clipped
            flat = conv.weight.view(-1)
            idx = rng.choice(flat.numel(), size=max(1, flat.numel() // 10), replace=False)
            flat[torch.from_numpy(idx)] = 0.0
            expected[name + ".weight"] = len(idx)
        ref.feature[1].FFN_1.binary_conv.temperature.fill_(1.0)  # clip(w / T): 0 stays 0
        expected.pop("feature.1.FFN_1.binary_conv.weight")
        # Stem channel 0 is exactly 0 after its convolution, so its BatchNorm output is beta;
        # block 1's first move subtracts beta: its binary activation sees exact zeros.
        stem = ref.feature[0]
        stem.conv1.weight[0] = 0.0
        stem.bn1.running_mean[0] = 0.0
        ref.feature[1].Attention.move.bias[0, 0] = -stem.bn1.bias[0]
    path = tmp_path / "zeros.pth.tar"
    save_like_original(ref, path)
    model = larq_bnext.BNext(
        NARROW, input_shape=(32, 32, 3), num_classes=10, classifier_activation=None
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no more "exactly 0" warning
        report = weights.load_official_checkpoint(model, path)
    assert report.zero_sign_weights == expected
    assert f"{sum(expected.values())} sign-regime binary weights are exactly 0" in report.summary()

    got, want = _logits_both(ref, model, 32, 4)
    moved = tf.keras.Model(model.input, model.get_layer("block1_attention_move").output)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)).double()
    assert np.all(moved(nchw_to_nhwc(x)).numpy()[..., 0] == 0)  # the zeros reach the sign
    rel = _assert_parity(got, want)
    assert rel < 1e-12, rel


@pytest.mark.parametrize(
    "elm_attention,info_recoupling", [(False, True), (True, False)], ids=["no_elm", "no_recoupling"]
)
def test_ablation_checkpoints_convert_exactly(tmp_path, float64, elm_attention, info_recoupling):
    """The paper's ablations: FFN_3x3 naming, unused norm2 without recoupling."""
    kwargs = {"elm_attention": elm_attention, "info_recoupling": info_recoupling}
    ref = _reference(NARROW, seed=7, num_classes=10, **kwargs)
    path = tmp_path / "ablation.pth.tar"
    save_like_original(ref, path)
    model = larq_bnext.BNext(
        NARROW, input_shape=(32, 32, 3), num_classes=10, classifier_activation=None, **kwargs
    )
    report = weights.load_official_checkpoint(model, path)
    assert report.checkpoint_size is None
    got, want = _logits_both(ref, model, 32, 4)
    _assert_parity(got, want)


def test_every_value_lands_in_the_right_keras_weight(tmp_path):
    """Float32 path, bare state dict without 'module.': each Keras weight equals its tensor."""
    ref = _reference(NARROW, seed=2, num_classes=10)
    path = tmp_path / "bare.pt"
    torch.save(ref.state_dict(), path)
    arrays = {k: v.numpy() for k, v in ref.state_dict().items()}
    model = larq_bnext.BNext(NARROW, input_shape=(32, 32, 3), num_classes=10, weights=str(path))

    def w(layer, name):
        variable = next(v for v in model.get_layer(layer).weights if f"/{name}:" in v.name)
        return variable.numpy()

    conv = arrays["feature.2.Attention.binary_conv.weight"]
    np.testing.assert_array_equal(
        w("block2_attention_binary_conv", "kernel"), conv.transpose(2, 3, 1, 0)
    )
    assert w("block2_attention_binary_conv", "kernel")[1, 0, 3, 5] == conv[5, 3, 1, 0]
    assert (
        w("block2_attention_binary_conv", "temperature")
        == arrays["feature.2.Attention.binary_conv.temperature"].item()
    )
    assert (
        w("block2_attention_binary_conv", "input_temperature")
        == arrays["feature.2.Attention.binary_activation.temperature"].item()
    )
    np.testing.assert_array_equal(
        w("block1_ffn_2_move", "bias"), arrays["feature.1.FFN_2.move.bias"].ravel()
    )
    np.testing.assert_array_equal(
        w("block2_attention_activation1", "alpha"),
        arrays["feature.2.Attention.activation1.weight"].reshape(1, 1, -1),
    )
    for keras, torch_name in [
        ("gamma", "weight"),
        ("beta", "bias"),
        ("moving_mean", "running_mean"),
        ("moving_variance", "running_var"),
    ]:
        np.testing.assert_array_equal(
            w("block3_ffn_norm2", keras), arrays[f"feature.3.FFN.norm2.{torch_name}"]
        )
    np.testing.assert_array_equal(
        w("block1_attention_se_reduce", "kernel"),
        arrays["feature.1.Attention.se.se.1.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        w("block1_attention_se_expand", "bias"), arrays["feature.1.Attention.se.se.3.bias"]
    )
    np.testing.assert_array_equal(
        w("stem_conv", "kernel"), arrays["feature.0.conv1.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(w("logits", "kernel"), arrays["fc.weight"].T)
    np.testing.assert_array_equal(w("final_prelu", "alpha").ravel(), arrays["prelu.weight"])


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def narrow_state():
    ref = _reference(NARROW, seed=4, num_classes=10)
    return {k: v.clone() for k, v in ref.state_dict().items()}


def _narrow_model(num_classes=10, **kwargs):
    return larq_bnext.BNext(NARROW, input_shape=(32, 32, 3), num_classes=num_classes, **kwargs)


def _weights_of(model):
    return [v.numpy().copy() for v in model.weights]


def _save(state, path):
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in state.items()}}, path)
    return str(path)


def test_missing_tensor_names_key_and_shape(tmp_path, narrow_state):
    state = dict(narrow_state)
    del state["feature.2.Attention.norm1.running_var"]
    model = _narrow_model()
    before = _weights_of(model)
    with pytest.raises(WeightsMismatchError) as info:
        weights.load_weights(model, _save(state, tmp_path / "m.pth.tar"))
    message = str(info.value)
    assert "missing: feature.2.Attention.norm1.running_var (expected shape (16,)" in message
    assert "block2_attention_norm1/moving_variance" in message
    for a, b in zip(before, _weights_of(model), strict=True):  # nothing was half-loaded
        np.testing.assert_array_equal(a, b)


def test_wrong_shape_names_key_and_both_shapes(tmp_path, narrow_state):
    state = dict(narrow_state)
    state["feature.3.FFN.binary_conv.weight"] = torch.zeros(32, 32, 3, 3)
    with pytest.raises(WeightsMismatchError) as info:
        _narrow_model(weights=_save(state, tmp_path / "s.pth.tar"))
    assert (
        "wrong shape: feature.3.FFN.binary_conv.weight is (32, 32, 3, 3), expected (32, 32, 1, 1)"
        in str(info.value)
    )


def test_unexpected_tensor_is_an_error_but_unused_prelus_are_not(tmp_path, narrow_state):
    state = dict(narrow_state)
    state["feature.2.Attention.extra.weight"] = torch.zeros(3)
    with pytest.raises(WeightsMismatchError, match=r"unexpected: feature.2.Attention.extra.weight"):
        _narrow_model(weights=_save(state, tmp_path / "u.pth.tar"))

    model = _narrow_model()
    report = weights.load_official_checkpoint(model, _save(narrow_state, tmp_path / "ok.pt"))
    skipped = set(report.skipped)
    assert "feature.0.prelu.weight" in skipped
    assert "feature.1.Attention.activation1.weight" in skipped  # FFN-3x3: built, unused
    assert "feature.2.Attention.activation1.weight" not in skipped  # ELM-Attention uses it
    assert "feature.3.FFN.activation1.weight" in skipped
    assert "feature.2.FFN_2.norm1.num_batches_tracked" in skipped
    assert len(report.converted) == sum(len(layer.weights) for layer in model.layers)
    assert set(report.converted) | skipped == set(narrow_state)

    # Without the never-applied tensors, loading still works (they are optional).
    trimmed = {k: v for k, v in narrow_state.items() if k not in skipped}
    weights.load_official_checkpoint(_narrow_model(), _save(trimmed, tmp_path / "t.pt"))


def _fake_official(size, path, num_classes=1000):
    """A checkpoint with the official keys and shapes of ``size``, each tensor a broadcast
    scalar (one float of storage), so that even BNext-L costs nothing to write."""
    spec = weights.official_state_dict_spec(
        registry.resolve_model(size).stage_channels, num_classes
    )
    state = {
        "module." + k: (torch.zeros((), dtype=torch.int64) if not s else torch.zeros(1).expand(s))
        for k, s in spec.items()
    }
    torch.save({"epoch": 511, "state_dict": state}, path)
    return str(path)


def test_checkpoint_of_another_size_says_which(tmp_path, monkeypatch):
    large = _fake_official("large", tmp_path / "large.pth.tar")
    with pytest.raises(WeightsMismatchError, match=r"official BNext-L"):
        _narrow_model(num_classes=1000, weights=large)

    # The sized builders name the model's size and the builder to use instead.
    monkeypatch.setitem(
        registry.MODELS,
        "tiny",
        dataclasses.replace(registry.resolve_model("tiny"), stage_channels=NARROW),
    )
    with pytest.raises(WeightsMismatchError) as info:
        larq_bnext.BNextT(input_shape=(32, 32, 3), weights=large)
    message = str(info.value)
    assert "BNext-L (large) weights, but the model is BNext-T (tiny)" in message
    assert "larq_bnext.BNextL" in message


def test_truncated_or_foreign_files_are_clear_errors(tmp_path, narrow_state):
    good = Path(_save(narrow_state, tmp_path / "good.pth.tar"))
    truncated = tmp_path / "truncated.pth.tar"
    truncated.write_bytes(good.read_bytes()[:-5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        _narrow_model(weights=str(truncated))

    text = tmp_path / "weights.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="neither a PyTorch checkpoint"):
        weights.load_weights(_narrow_model(), str(text))


def test_keras_weight_files_are_accepted_and_checked(tmp_path, narrow_state):
    source = _narrow_model(weights=_save(narrow_state, tmp_path / "c.pth.tar"))
    h5 = tmp_path / "narrow.h5"
    source.save_weights(str(h5))
    again = _narrow_model(weights=str(h5))
    for a, b in zip(_weights_of(source), _weights_of(again), strict=True):
        np.testing.assert_array_equal(a, b)
    # A file for another width is refused, naming the layer and the shapes.
    wide = larq_bnext.BNext((16, 32, 64, 64), input_shape=(32, 32, 3), num_classes=10)
    with pytest.raises(WeightsMismatchError, match="stem_conv"):
        weights.load_weights(wide, str(h5))


# ----------------------------------------------------------------------------------------------
# weights="imagenet": download, validate, convert once, cache, reuse; offline
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def narrow_tiny(monkeypatch, tmp_path):
    """Make "tiny" the narrow architecture and the cache a temporary directory."""
    monkeypatch.setitem(
        registry.MODELS,
        "tiny",
        dataclasses.replace(registry.resolve_model("tiny"), stage_channels=NARROW),
    )
    home = tmp_path / "home"
    monkeypatch.setenv("LARQ_BNEXT_HOME", str(home))
    ref = _reference(NARROW, seed=8)
    source = tmp_path / "served" / "checkpoint.pth.tar"
    source.parent.mkdir()
    save_like_original(ref, source)
    return ref, source, home


def test_imagenet_downloads_converts_once_and_reuses(narrow_tiny, monkeypatch):
    ref, source, home = narrow_tiny
    _serve(monkeypatch, source.as_uri())
    calls = {"download": 0, "convert": 0}
    download_fn, convert_fn = download.download_first, loading.load_official_checkpoint

    def counting_download(*args, **kwargs):
        calls["download"] += 1
        return download_fn(*args, **kwargs)

    def counting_convert(*args, **kwargs):
        calls["convert"] += 1
        return convert_fn(*args, **kwargs)

    monkeypatch.setattr(download, "download_first", counting_download)
    monkeypatch.setattr(loading, "load_official_checkpoint", counting_convert)

    first = larq_bnext.BNextT(weights="imagenet", input_shape=(32, 32, 3))
    assert calls == {"download": 1, "convert": 1}
    ckpt = home / "bnext_tiny_official.pth.tar"
    cached = home / "bnext_tiny_imagenet.h5"
    assert ckpt.read_bytes() == source.read_bytes()
    assert cached.exists()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert (home / "bnext_tiny_official.pth.tar.sha256").read_text().split()[0] == digest
    assert sorted(p.name for p in home.iterdir()) == [
        "bnext_tiny_imagenet.h5",
        "bnext_tiny_official.pth.tar",
        "bnext_tiny_official.pth.tar.lock",  # the download lock: an empty file that stays
        "bnext_tiny_official.pth.tar.sha256",
    ]

    # Later calls load the cached Keras weights: no download, no conversion.
    second = larq_bnext.BNextT(weights="imagenet", input_shape=(32, 32, 3))
    headless = larq_bnext.BNextT(weights="imagenet", include_top=False, input_shape=(32, 32, 3))
    assert calls == {"download": 1, "convert": 1}
    for a, b in zip(_weights_of(first), _weights_of(second), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        headless.get_layer("block2_attention_binary_conv").kernel.numpy(),
        ref.feature[2].Attention.binary_conv.weight.detach().numpy().transpose(2, 3, 1, 0),
    )
    # The converted model computes what the reference computes (float32 here: loose check).
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = torch.softmax(ref.eval()(images), dim=1).numpy()
    got = second(nchw_to_nhwc(images), training=False).numpy()
    np.testing.assert_allclose(got, want, atol=0.05)


def test_imagenet_without_top_converts_into_a_full_model_once(narrow_tiny, monkeypatch):
    _, source, home = narrow_tiny
    _serve(monkeypatch, source.as_uri())
    headless = larq_bnext.BNextT(weights="imagenet", include_top=False, input_shape=(32, 32, 3))
    assert (home / "bnext_tiny_imagenet.h5").exists()
    full = larq_bnext.BNextT(weights="imagenet", input_shape=(32, 32, 3))
    np.testing.assert_array_equal(
        headless.get_layer("final_prelu").alpha.numpy(), full.get_layer("final_prelu").alpha.numpy()
    )


def test_corrupt_download_is_removed_and_reported(narrow_tiny, monkeypatch, tmp_path):
    _, source, home = narrow_tiny
    broken = tmp_path / "served" / "broken.pth.tar"
    broken.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    _serve(monkeypatch, broken.as_uri())
    with pytest.raises(CheckpointError) as info:
        larq_bnext.BNextT(weights="imagenet", input_shape=(32, 32, 3))
    message = str(info.value)
    assert f"{broken.as_uri()} (URL): not a valid file, removed: " in message
    assert _unlocked(home) == []  # no partial file, no cache, nothing loaded

    # A complete file of the wrong size is refused the same way.
    other = Path(_fake_official("large", tmp_path / "served" / "large.pth.tar"))
    _serve(monkeypatch, other.as_uri())
    with pytest.raises(CheckpointError, match="official BNext-L checkpoint; expected BNext-T"):
        download.download_checkpoint("tiny")
    assert _unlocked(home) == []


def _unlocked(home: Path) -> list[Path]:
    """The files of ``home`` but download locks."""
    return [p for p in home.iterdir() if p.suffix != ".lock"]


def test_a_known_checksum_is_checked_on_download(narrow_tiny, monkeypatch):
    _, source, home = narrow_tiny
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    info = registry.resolve_model("tiny")
    sources = (registry.Source(source.as_uri()),)
    wrong = dataclasses.replace(info, sources=sources, sha256="0" * 64)
    monkeypatch.setitem(registry.MODELS, "tiny", wrong)
    with pytest.raises(CheckpointError) as error:
        download.download_checkpoint("tiny")
    assert f"removed: it has SHA-256 {digest}, not the published {'0' * 64}" in str(error.value)
    assert _unlocked(home) == []
    right = dataclasses.replace(wrong, sha256=digest.upper())
    monkeypatch.setitem(registry.MODELS, "tiny", right)
    path = download.download_checkpoint("tiny")
    assert path.read_bytes() == source.read_bytes()


def test_offline_error_names_sources_and_path(narrow_tiny, monkeypatch):
    _, source, home = narrow_tiny
    unreachable = "http://127.0.0.1:9/s/jKjwDk35vVRPQN0/download"
    _serve(monkeypatch, unreachable)
    with pytest.raises(OSError) as info:
        larq_bnext.BNextT(weights="imagenet", input_shape=(32, 32, 3))
    message = str(info.value)
    destination = home / "bnext_tiny_official.pth.tar"
    assert f"  1. {unreachable} (URL): unreachable (" in message
    assert f"put the file at {destination}" in message
    assert not destination.exists()

    # Following the message's advice works without network.
    destination.write_bytes(source.read_bytes())
    model = larq_bnext.BNextT(weights="imagenet", input_shape=(32, 32, 3))
    assert model.get_layer("logits").kernel.shape == (32, 1000)
    assert (home / "bnext_tiny_imagenet.h5").exists()
    assert (home / "bnext_tiny_official.pth.tar.sha256").exists()


def test_imagenet_refuses_ablation_models(narrow_tiny):
    with pytest.raises(WeightsMismatchError, match="elm_attention=True"):
        larq_bnext.BNextT(weights="imagenet", elm_attention=False, input_shape=(32, 32, 3))


def test_default_cache_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("LARQ_BNEXT_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert download.cache_dir() == tmp_path / ".keras" / "models" / "larq_bnext"
    monkeypatch.setenv("LARQ_BNEXT_HOME", str(tmp_path / "x"))
    assert download.checkpoint_path("L") == tmp_path / "x" / "bnext_large_official.pth.tar"
    large = "https://drive.google.com/file/d/1XGKcX2Zl_fIU9wPBDjTTxstOBfwQH8xc/view"
    assert registry.resolve_model("large").url == large


# ----------------------------------------------------------------------------------------------
# Command line, and no torch at run time
# ----------------------------------------------------------------------------------------------
def test_convert_command_line(narrow_tiny, tmp_path, capsys):
    ref, source, _ = narrow_tiny
    output = tmp_path / "out" / "bnext_tiny_imagenet.h5"
    argv = ["convert", "--model=auto", f"--weights={source}", f"--output={output}"]
    flag_values = convert.define_flags(absl_flags.FlagValues())
    convert.main(flag_values(argv), flag_values)
    # The former spellings still work, with a warning.
    old = convert.define_flags(absl_flags.FlagValues())
    with pytest.warns(FutureWarning, match="--checkpoint is deprecated: use --weights"):
        old(["convert", "--size=T", f"--checkpoint={source}", f"--output={output}"])
    assert (old.model, old.weights, old.output) == ("T", str(source), str(output))
    printed = capsys.readouterr().out
    assert "BNext-T checkpoint: converted" in printed
    assert str(output) in printed
    assert hashlib.sha256(source.read_bytes()).hexdigest() in printed
    model = larq_bnext.BNextT(input_shape=(32, 32, 3), weights=str(output))
    np.testing.assert_array_equal(
        model.get_layer("logits").kernel.numpy(), ref.fc.weight.detach().numpy().T
    )
    with pytest.raises(ValueError, match="must end in '.h5'"):
        convert.run("tiny", str(source), str(tmp_path / "x.weights.h5"))


def test_loading_needs_no_torch(tmp_path, narrow_state):
    """A full conversion in a process where torch cannot be imported."""
    path = _save(narrow_state, tmp_path / "c.pth.tar")
    expected = narrow_state["feature.2.Attention.binary_conv.weight"].numpy()
    np.save(tmp_path / "expected.npy", expected.transpose(2, 3, 1, 0))
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, larq_bnext\n"
        f"m = larq_bnext.BNext({NARROW}, input_shape=(32, 32, 3), num_classes=10,"
        f" weights={path!r})\n"
        "k = m.get_layer('block2_attention_binary_conv').kernel.numpy()\n"
        f"np.testing.assert_array_equal(k, np.load({str(tmp_path / 'expected.npy')!r}))\n"
        "assert sys.modules['torch'] is None\n"
        "print('ok')\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=os.getcwd()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
