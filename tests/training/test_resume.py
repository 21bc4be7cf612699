"""Exact resume and bad files, in-process: the stateless stream, the best score, skip logs,
float32-only numerics (the TPU path) and the flag checks."""

import dataclasses
import io
import os

import numpy as np
import pytest
import tensorflow as tf
import torch
from PIL import Image

from larq_bnext.augment import AugmentConfig, BNextAugmentation
from larq_bnext.images.decode import decode_rgb
from larq_bnext.keras2 import set_random_seed
from larq_bnext.training import ConfigError, RunConfig, data
from larq_bnext.training.checks import check_replicas
from larq_bnext.training.data.skipped import SkipLog, TooManySkippedImagesError
from larq_bnext.training.method.callbacks import StudentCheckpoint
from larq_bnext.training.method.optimizer import AdamW, bias_correction
from larq_bnext.training.method.schedules import WarmupCosine

CONFIG = AugmentConfig(
    image_size=16,
    crop_scale=(0.3, 1.0),
    randaugment=False,
    mixup_alpha=0.4,
    cutmix_alpha=1.0,
    random_erasing=0.5,
)


def _batches(source, seed, initial_epoch, initial_step, count):
    ds = data.train_dataset(
        source,
        8,
        CONFIG,
        seed=seed,
        repeat=True,
        steps_per_epoch=4,
        initial_epoch=initial_epoch,
        initial_step=initial_step,
    )
    return [(x.numpy(), y.numpy()) for x, y in ds.take(count)]


def test_the_training_stream_restarted_mid_run_repeats_the_uninterrupted_one():
    train, _ = data.load_digits(image_size=16)
    full = _batches(train, 7, 0, 0, 14)  # epochs 0-2 and half of 3 (4 steps each)
    resumed = _batches(train, 7, 1, 3, 7)  # restarted at epoch 1, step 3
    for a, b in zip(full[7:], resumed, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert full[0][1].shape == (8, 10)  # mixup/cutmix: soft labels
    other = _batches(train, 8, 0, 0, 1)  # another seed, another stream
    assert not np.array_equal(other[0][0], full[0][0])
    assert not np.array_equal(full[0][0], full[4][0])  # a new shuffle and crops per epoch


def test_batch_stage_is_a_function_of_its_seed():
    config = AugmentConfig(image_size=16, randaugment=False, cutmix_alpha=1.0, random_erasing=1)
    augmenter = BNextAugmentation(config, 5)
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (6, 16, 16, 3)), tf.float32)
    labels = tf.constant([0, 1, 2, 3, 4, 0])
    a = augmenter(images, labels, tf.constant([1, 2]))
    b = augmenter(images, labels, tf.constant([1, 2]))
    c = augmenter(images, labels, tf.constant([1, 3]))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    np.testing.assert_allclose(a[1].numpy().sum(axis=1), 1.0, rtol=1e-6)


def _scored_fit(model, directory, scores, initial_epoch):
    class Score(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["score"] = scores[epoch]

    checkpoint = StudentCheckpoint(str(directory), monitor="score")
    x, y = np.zeros((4, 3), np.float32), np.zeros((4, 1), np.float32)
    model.fit(
        x,
        y,
        epochs=len(scores),
        initial_epoch=initial_epoch,
        verbose=0,
        callbacks=[Score(), checkpoint],
    )
    return checkpoint


def test_best_weights_survive_a_restart_and_a_worse_epoch(tmp_path):
    model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    first = _scored_fit(model, tmp_path, [0.5, 0.9], 0)
    assert (first.best, first.best_epoch) == (0.9, 1)
    best = (tmp_path / "best.weights.h5").read_bytes()
    model.layers[0].kernel.assign(model.layers[0].kernel + 1.0)  # later, different weights
    resumed = _scored_fit(model, tmp_path, [0.5, 0.9, 0.7], 2)  # a new callback, epoch 2
    assert (resumed.best, resumed.best_epoch) == (0.9, 1)
    assert (tmp_path / "best.weights.h5").read_bytes() == best  # not overwritten by 0.7
    # Killed after epoch 2 wrote its score, its backup lost: epoch 2 is redone, and the
    # best of epochs 0-1 counts (the record of the lost epoch 2 is ignored).
    redone = _scored_fit(model, tmp_path, [0.5, 0.9, 0.95], 2)
    assert (redone.best, redone.best_epoch) == (0.95, 2)
    again = _scored_fit(model, tmp_path, [0.5, 0.9, 0.6], 2)
    assert (again.best, again.best_epoch) == (0.9, 1)
    afresh = _scored_fit(model, tmp_path, [0.2], 0)  # a new run from epoch 0 starts over
    assert (afresh.best, afresh.best_epoch) == (0.2, 0)


def _bad_tree(root):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("a", "b"):
            os.makedirs(root / split / name)
            for i in range(4):
                image = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
                tf.io.write_file(str(root / split / name / f"{i}.jpg"), tf.io.encode_jpeg(image))
    good = (root / "train" / "a" / "0.jpg").read_bytes()
    bad = {}
    for split in ("train", "val"):
        folder = root / split / "b"
        bad[split] = {
            "truncated.jpg": good[: len(good) // 2],  # no end marker: the header check
            "empty.jpg": b"",
            "text.jpg": b"not an image, just text\n" * 4,
            # A JPEG header and end marker around noise: fails to decode (the stage
            # TensorFlow's ignore_errors would drop silently, with --noverify_images).
            "noise.jpg": b"\xff\xd8\xff\xe0" + rng.bytes(300) + b"\xff\xd9",
        }
        for name, content in bad[split].items():
            (folder / name).write_bytes(content)
    folder = root / "train" / "b"
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(buffer, "PNG")
    (folder / "png.jpg").write_bytes(buffer.getvalue())
    cmyk = Image.fromarray(rng.integers(0, 256, (20, 24, 4), dtype=np.uint8), "CMYK")
    cmyk.save(folder / "cmyk.jpg", "JPEG")
    Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8), "L").save(folder / "grey.jpg")
    return root


def _names(paths):
    return sorted(os.path.basename(p) for p in paths)


def test_every_unreadable_image_is_skipped_counted_and_listed(tmp_path):
    root = _bad_tree(tmp_path)
    for verify in (True, False):
        train, val = data.load_folder(str(root), verify=verify)
        train_log = SkipLog("train", train.num_examples + len(train.skipped), 1, train.skipped)
        val_log = SkipLog("eval", val.num_examples + len(val.skipped), 1, val.skipped)
        stream = data.train_dataset(
            train,
            5,
            AugmentConfig(image_size=16, randaugment=False),
            seed=0,
            repeat=True,
            steps_per_epoch=2,
            skip_log=train_log,
        )
        for images, _ in stream.take(4):  # two epochs of full batches despite the bad files
            assert images.shape == (5, 16, 16, 3)
        seen = sum(int(x.shape[0]) for x, _ in data.eval_dataset(val, 3, 16, skip_log=val_log))
        everything = ["empty.jpg", "noise.jpg", "text.jpg", "truncated.jpg"]
        assert _names(train_log.paths) == everything, verify
        assert _names(val_log.paths) == everything and seen == 8
        assert train_log.num_examples == 15 and val_log.num_examples == 12
        if verify:  # the header check finds all four (walking the noise's JPEG markers)
            assert _names(train.skipped) == everything
        else:  # the decoder finds them
            assert train.skipped == []
    # PNG named .jpg, CMYK and greyscale JPEGs decode to RGB and are trained on.
    ok = {"png.jpg", "cmyk.jpg", "grey.jpg"}
    assert ok <= {os.path.basename(p) for p in train.items}
    for name in ok:
        image = decode_rgb(tf.io.read_file(str(root / "train" / "b" / name))).numpy()
        reference = np.asarray(Image.open(root / "train" / "b" / name).convert("RGB"))
        assert image.shape == (20, 24, 3)
        # The pipelines decode as PIL does (libjpeg's accurate IDCT); CMYK to RGB rounds
        # differently by one level (both apply the inversion of Adobe's CMYK JPEGs).
        assert np.abs(image.astype(int) - reference).max() <= (1 if name == "cmyk.jpg" else 0)


def test_skip_limit_stops_with_a_clear_error(tmp_path):
    log = SkipLog("train", 200, max_fraction=0.01)
    log.add(b"/data/train/x/1.jpg")
    log.add("/data/train/x/2.jpg")
    log.check()  # 1 %: allowed
    log.add("/data/train/x/3.jpg")
    with pytest.raises(TooManySkippedImagesError, match=r"3 of the 200 train images.*--max_"):
        log.check()
    log.save(str(tmp_path / "skipped.json"))
    again = SkipLog("train", 200)
    again.load(str(tmp_path / "skipped.json"))
    assert again.paths == log.paths and again.count == 3


def test_float32_only_numerics_match_float64_and_torch():
    """The TPU path: no float64 anywhere, still PyTorch's AdamW and timm's schedule."""
    steps = tf.range(1, 300_000, dtype=tf.int64)
    for beta in (0.9, 0.999):
        exact = 1 - beta ** np.arange(1, 300_000, dtype=np.float64)
        float32 = bias_correction(beta, steps, float64=False).numpy()
        assert np.max(np.abs(float32 - exact) / exact) < 5e-7  # measured 2.3e-7
        naive = 1 - tf.pow(tf.constant(beta, tf.float32), tf.cast(steps, tf.float32)).numpy()
        assert beta == 0.9 or np.max(np.abs(naive - exact) / exact) > 1e-5  # why not naive
    for per_step in (False, True):
        a = WarmupCosine(7, 40, per_step=per_step, float64=False)
        b = WarmupCosine(7, 40, per_step=per_step, float64=True)
        timm = [a.lr_at_epoch(s / 7 if per_step else s // 7) for s in range(7 * 42)]
        got = a(tf.range(7 * 42)).numpy()
        np.testing.assert_allclose(got, timm, rtol=2e-6)  # measured 9.4e-7
        np.testing.assert_allclose(got, b(tf.range(7 * 42)).numpy(), rtol=2e-6)

    # No float64 op in a whole traced step of the float32 optimizer and schedule.
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3)])
    optimizer = AdamW(WarmupCosine(5, 10, per_step=True, float64=False), float64=False)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step(grads):
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))

    grads = [tf.ones_like(v) for v in model.trainable_variables]
    graph = step.get_concrete_function(grads).graph
    doubles = [
        op.name
        for op in graph.get_operations()
        for t in (*op.outputs, *op.inputs)
        if t.dtype == tf.float64
    ]
    assert not doubles, doubles[:5]

    # Three steps against torch.optim.AdamW with float32-only scalars.
    set_random_seed(1)
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3)])
    optimizer = AdamW(0.05, weight_decay=0.2, float64=False)
    params = [torch.tensor(v.numpy(), dtype=torch.float64) for v in model.trainable_variables]
    for p in params:
        p.requires_grad_(True)
    reference = torch.optim.AdamW(params, lr=0.05, weight_decay=0.2)
    rng = np.random.default_rng(2)
    for _ in range(3):
        grads = [rng.normal(size=v.shape) for v in model.trainable_variables]
        optimizer.apply_gradients(
            (tf.constant(g, tf.float32), v)
            for g, v in zip(grads, model.trainable_variables, strict=True)
        )
        for p, g in zip(params, grads, strict=True):
            p.grad = torch.tensor(g)
        reference.step()
    for v, p in zip(model.trainable_variables, params, strict=True):
        np.testing.assert_allclose(v.numpy(), p.detach().numpy(), rtol=1e-5, atol=1e-6)


def _config(tmp_path, **overrides):
    values = dict(
        model="custom",
        stage_channels=["8", "16"],
        epochs=2,
        teacher_epochs=1,
        output_dir=str(tmp_path / "run"),
    )
    values.update(overrides)
    return RunConfig(**values)


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        (dict(model="huge"), "model", r"model=huge is not a BNext model: use bnext_tiny"),
        (dict(stage_channels=["8", "x"]), "stage_channels", r"stage_channels=8,x must be pos"),
        (dict(dataset="folder"), "data_dir", r"dataset=folder needs data_dir"),
        (dict(teachers="efficientnet_b0,resnet9"), "teachers", r"unknown teacher \['resnet9'\]"),
        (dict(batch_size=0), "batch_size", r"batch_size=0 must be a positive number"),
        (dict(backup_freq="hourly"), "backup_freq", r"backup_freq=hourly must be 'epoch' or a"),
        (dict(max_skipped_fraction=2.0), "max_skipped_fraction", r"=2.0 must be in \[0, 1\]"),
        (dict(max_image_pixels=-1), "max_image_pixels", r"max_image_pixels=-1 must be 0 or more"),
        (dict(weights="imagenet"), "weights", r"no ImageNet checkpoint of a custom"),
        (dict(distill_weighting="mean"), "distill_weighting", r"'mean' must be one of per_sam"),
        (dict(crop_ratio=(1.3, 0.75)), "crop_ratio", r"crop_ratio=1.3,0.75 needs two values"),
        (dict(crop_ratio=(0.75,)), "crop_ratio", r"crop_ratio=0.75 needs two values"),
        (dict(strategy="cluster"), "strategy", r"strategy='cluster' must be one of auto, mirr"),
        (dict(model="bnext18", elm_attention=False), "elm_attention", r"BNext-18 has no such"),
        (dict(randaugment_policy="rand-q9"), "randaugment_policy", r"randaugment_policy=rand-q9"),
        (dict(temperature_decay=1.5), "temperature_decay", r"must be in \(0, 1\]"),
    ],
)
def test_bad_settings_name_the_field_and_the_fix(tmp_path, overrides, field, message):
    with pytest.raises(ConfigError, match=message) as info:
        _config(tmp_path, **overrides)
    assert info.value.field == field
    # A variant of a good config is checked as well.
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(_config(tmp_path), **overrides)


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        (dict(dataset="folder", data_dir="/nowhere"), "data_dir", r"data_dir=/nowhere does not"),
        (dict(weights="/nowhere.h5"), "weights", r"weights=/nowhere.h5 is not a file"),
        (dict(output_dir="FILE"), "output_dir", r"output_dir=.*file is a file: pass a folder"),
    ],
)
def test_paths_are_checked_when_the_run_starts_not_when_the_config_is_made(
    tmp_path, overrides, field, message
):
    """A config for another machine can be made here; its paths are checked where it runs."""
    from larq_bnext.training import run
    from larq_bnext.training.checks import check_paths

    (tmp_path / "file").write_text("x")
    if overrides.get("output_dir") == "FILE":
        overrides = dict(output_dir=str(tmp_path / "file"))
    config = _config(tmp_path, **overrides)  # no error: nothing is read
    with pytest.raises(ConfigError, match=message) as info:
        check_paths(config)
    assert info.value.field == field
    with pytest.raises(ConfigError, match=message):
        run(config)  # the first thing a run does


def test_old_init_weights_keyword_still_works_with_a_warning(tmp_path):
    weights = str(tmp_path / "w.weights.h5")
    with pytest.warns(FutureWarning, match=r"init_weights=.*deprecated: use weights="):
        config = _config(tmp_path, init_weights=weights)
    assert config.weights == weights
    assert "init_weights" not in config.to_dict()


def test_output_dir_that_is_not_utf8_and_batches_that_do_not_split(tmp_path):
    config = _config(tmp_path)  # the defaults pass; the folder is made when the run starts
    assert config.stage_channels == (8, 16) and not (tmp_path / "run").exists()
    latin1 = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"r\xe9sultats"))
    with pytest.raises(ConfigError, match=r"output_dir=.*/r\\xe9sultats is not valid UTF-8.*UTF-8"):
        _config(tmp_path, output_dir=latin1)
    check_replicas(64, 8)
    with pytest.raises(ConfigError, match=r"batch_size=30 does not split over the 4 replicas.*28"):
        check_replicas(30, 4)
