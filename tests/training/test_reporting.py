"""`larq_bnext.reporting`: epoch lines, the curves picture, the per-class table."""

import csv
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import larq_bnext
from larq_bnext.keras2 import set_random_seed
from larq_bnext.training import reporting


def test_format_epoch_prints_the_metrics_that_matter_in_order():
    logs = {"val_top1": 0.5, "loss": 1.23456, "lr": 0.001, "temperature": 0.81, "junk": 7.0}
    line = reporting.format_epoch(2, 30, logs, seconds=12.34)
    assert line == "epoch  3/30  loss 1.2346  val_top1 0.5000  lr 0.001  temperature 0.81  12.3 s"
    assert reporting.format_epoch(0, None, {"curriculum_phase": 2.0}) == (
        "epoch 1  curriculum_phase 2"
    )


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal():
    assert reporting.progress_mode(1, _Terminal()) == (1, False)
    assert reporting.progress_mode(1, io.StringIO()) == (0, True)
    assert reporting.progress_mode(2, io.StringIO()) == (2, False)
    assert reporting.progress_mode(0, _Terminal()) == (0, False)


def test_epoch_logger_writes_one_line_per_epoch_with_fit_logs():
    set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = tf.keras.Sequential([tf.keras.layers.Dense(2, input_shape=(4,))])
    model.compile(
        "adam",
        tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="top1")],
    )
    out = io.StringIO()
    history = model.fit(
        x,
        y,
        epochs=3,
        batch_size=16,
        validation_data=(x, y),
        verbose=0,
        callbacks=[reporting.EpochLogger(3, stream=out)],
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    for epoch, line in enumerate(lines):
        assert line.startswith(f"epoch {epoch + 1}/3  loss ")
        val = float(line.split("val_top1 ")[1].split()[0])
        assert val == pytest.approx(history.history["val_top1"][epoch], abs=5e-5)


def _png(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("L"), np.float64)


def test_plot_history_draws_the_panels_it_has_data_for(tmp_path):
    history = {
        "loss": [2.0, 1.5, 1.2],
        "val_loss": [2.1, 1.7, 1.4],
        "top1": [0.3, 0.5, 0.6],
        "val_top1": [0.25, 0.45, 0.55],
        "lr": [1e-5, 1e-3, 5e-4],
        "temperature": [1.0, 0.1, 0.01],
        "alpha_main": [0.5, 0.6, 0.7],
    }
    path = tmp_path / "sub" / "curves.png"
    panels = reporting.plot_history(history, path, title="run")
    assert panels == ["loss", "top-1", "learning rate", "temperature", "teacher weights"]
    pixels = _png(path)
    assert pixels.shape[1] > pixels.shape[0] > 300 and pixels.std() > 10
    short = reporting.plot_history({"loss": [1.0, 0.5]}, tmp_path / "loss.png")
    assert short == ["loss"]
    with pytest.raises(ValueError, match="no curve to draw"):
        reporting.plot_history({"epoch": [0, 1]}, tmp_path / "none.png")


def test_per_class_table_by_hand(tmp_path):
    labels = [0, 0, 0, 1, 1, 2]
    top = [[0, 1], [1, 0], [1, 2], [1, 0], [1, 2], [0, 1]]
    rows = reporting.per_class_accuracy(labels, top, ["n01440764", "cat", "three", "empty"])
    assert [r["examples"] for r in rows] == [3, 2, 1, 0]
    assert rows[0]["top1"] == pytest.approx(1 / 3) and rows[1]["top1"] == 1.0
    assert rows[2]["top1"] == 0.0 and rows[3]["top1"] is None
    assert rows[0]["most_confused_with"] == "cat" and rows[0]["confused_share"] == pytest.approx(
        2 / 3
    )
    assert rows[2]["most_confused_with"] == "n01440764"
    assert rows[0]["description"].startswith("tench") and rows[1]["description"] == ""
    assert rows[0]["top5"] is None  # only 2 classes predicted per example
    summary = reporting.summarize_per_class(rows, worst=2)
    assert summary["classes_evaluated"] == 3
    assert summary["mean_class_top1"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert summary["worst_classes"] == [("three", 0.0), ("n01440764", pytest.approx(1 / 3))]
    path = reporting.write_per_class_csv(rows, tmp_path / "per_class.csv")
    with open(path) as f:
        read = list(csv.DictReader(f))
    assert [r["class"] for r in read] == ["n01440764", "cat", "three", "empty"]
    assert read[1]["top1"] == "1.000000" and read[3]["top1"] == ""


def test_collect_predictions_agrees_with_the_distiller_scores():
    set_random_seed(1)
    model = larq_bnext.BNext(
        (8, 16), input_shape=(16, 16, 3), num_classes=7, classifier_activation=None
    )
    rng = np.random.default_rng(1)
    images = rng.normal(size=(40, 16, 16, 3)).astype("float32")
    labels = rng.integers(0, 7, size=40)
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    y, top, loss = reporting.collect_predictions(model, ds)
    assert top.shape == (40, 5) and np.array_equal(y, labels)
    distiller = larq_bnext.Distiller(model)
    distiller.compile()
    scores = distiller.evaluate(ds, return_dict=True, verbose=0)
    assert np.mean(top[:, 0] == y) == pytest.approx(scores["top1"], abs=1e-6)
    assert np.mean((top == y[:, None]).any(1)) == pytest.approx(scores["top5"], abs=1e-6)
    assert loss.mean() == pytest.approx(scores["loss"], rel=1e-5)
    logits = model(images, training=False).numpy()
    assert np.array_equal(top[:, 0], logits.argmax(1))
