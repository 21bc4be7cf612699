"""Loss landscapes: the centre is the model, a quadratic loss gives its analytic surface, an
interrupted grid continues, other settings are refused."""

import numpy as np
import pytest
import tensorflow as tf

import larq_bnext
from larq_bnext.analysis import (
    Landscape,
    SettingsMismatchError,
    grid,
    loss_landscape,
    random_directions,
)
from larq_bnext.models import BinaryConv2D


def _trained_looking_bnext():
    """A small BNext in the sign regime, with BatchNorm statistics that are not the defaults."""
    model = larq_bnext.BNext(
        (8, 16, 16),
        input_shape=(8, 8, 3),
        num_classes=5,
        classifier_activation=None,
        stem_stride=1,
    )
    rng = np.random.default_rng(0)
    for layer in model.submodules:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.3, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
        if isinstance(layer, BinaryConv2D):
            layer.kernel.assign(rng.normal(0, 0.05, layer.kernel.shape))
            layer.temperature.assign(1e-8)
    return model


def test_centre_is_the_models_own_loss_and_top1_and_weights_are_restored():
    model = _trained_looking_bnext()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 5, size=40)
    before = grid.weights_digest(model)
    landscape = loss_landscape(model, (x, y), dims=2, points=3, span=0.5, batch_size=16, verbose=0)
    assert grid.weights_digest(model) == before
    model.compile(
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
    )
    loss, top1 = model.evaluate(x, y, batch_size=16, verbose=0)
    assert landscape.loss.shape == (3, 3) and landscape.complete
    assert landscape.centre()["loss"] == pytest.approx(loss, rel=1e-5)
    assert landscape.centre()["top1"] == pytest.approx(top1, abs=1e-7)
    assert landscape.loss[1, 1] == landscape.centre()["loss"]
    # Off the centre the binary signs flip and the loss moves; at the centre nothing flipped.
    assert landscape.sign_flips[1, 1] == 0.0 and np.all(landscape.sign_flips[0] > 0.05)
    assert not np.allclose(landscape.loss[0], loss)


def _quadratic_problem():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(48, 4)).astype(np.float32)
    targets = rng.normal(size=(48, 3)).astype(np.float32)
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3)])
    model.layers[0].bias.assign([0.1, -0.2, 0.3])
    return model, x, targets


def squared_error(labels, outputs):
    return tf.reduce_sum(tf.square(outputs - labels), axis=-1)


def _analytic(model, x, targets, directions, a, b):
    """mean_n ||x (W + a D1 + b D2) + c - t||^2, expanded: a quadratic in (a, b)."""
    w, c = (np.asarray(v.numpy(), np.float64) for v in model.trainable_variables)
    r = x @ w + c - targets
    p = x @ np.asarray(directions[0][0], np.float64)
    q = x @ np.asarray(directions[1][0], np.float64) if len(directions) > 1 else 0 * p

    def m(u, v):
        return np.mean(np.sum(u * v, axis=-1))

    return (
        m(r, r)
        + 2 * a * m(r, p)
        + 2 * b * m(r, q)
        + a * a * m(p, p)
        + b * b * m(q, q)
        + 2 * a * b * m(p, q)
    )


def test_a_quadratic_loss_gives_its_analytic_plane_and_line():
    model, x, targets = _quadratic_problem()
    directions = random_directions(model, 2, seed=7)
    assert not np.any(directions[0][1]) and not np.any(directions[1][1])  # bias held
    plane = loss_landscape(
        model, (x, targets), points=5, span=2.0, seed=7, loss=squared_error, verbose=0
    )
    a, b = np.meshgrid(plane.x, plane.y)  # rows are the second direction
    np.testing.assert_allclose(
        plane.loss, _analytic(model, x, targets, directions, a, b), rtol=1e-5
    )
    np.testing.assert_allclose(plane.x, [-2, -1, 0, 1, 2])
    # top-1 of these outputs against the targets' arg-max, at the point (x=1, y=-2).
    w, c = (v.numpy() for v in model.trainable_variables)
    moved = x @ (w + 1.0 * directions[0][0] - 2.0 * directions[1][0]) + c
    expected = np.mean(np.argmax(moved, -1) == np.argmax(targets, -1))
    assert plane.top1[0, 3] == pytest.approx(expected)
    assert np.isnan(plane.sign_flips).all()  # no binary convolution
    line = loss_landscape(
        model, (x, targets), dims=1, points=7, span=3.0, seed=7, loss=squared_error, verbose=0
    )
    one = random_directions(model, 1, seed=7)
    np.testing.assert_allclose(line.loss, _analytic(model, x, targets, one, line.x, 0.0), rtol=1e-5)


class _StopGridError(Exception):
    pass


_EVALUATE_POINT = grid._Evaluator.at


def _counting(monkeypatch, stop_after=None):
    """Count the grid points evaluated (and raise after ``stop_after`` of them)."""
    calls = []
    original = _EVALUATE_POINT

    def at(self, coordinates):
        if stop_after is not None and len(calls) == stop_after:
            raise _StopGridError()
        calls.append(tuple(coordinates))
        return original(self, coordinates)

    monkeypatch.setattr(grid._Evaluator, "at", at)
    return calls


def test_an_interrupted_grid_continues_and_other_settings_are_refused(tmp_path, monkeypatch):
    model, x, targets = _quadratic_problem()
    settings = dict(points=5, span=1.0, seed=3, loss=squared_error, verbose=0)
    reference = loss_landscape(model, (x, targets), **settings)
    path = str(tmp_path / "grid.npz")
    before = grid.weights_digest(model)

    _counting(monkeypatch, stop_after=7)  # stops in the middle of the second row
    with pytest.raises(_StopGridError):
        loss_landscape(model, (x, targets), output=path, **settings)
    assert grid.weights_digest(model) == before
    stored = Landscape.load(path)
    np.testing.assert_array_equal(stored.rows_done, [True, False, False, False, False])
    np.testing.assert_array_equal(stored.loss[0], reference.loss[0])
    assert np.isnan(stored.loss[1:]).all() and stored.seconds > 0

    calls = _counting(monkeypatch)
    resumed = loss_landscape(model, (x, targets), output=path, **settings)
    assert len(calls) == 4 * 5 and {c[1] for c in calls} == set(reference.y[1:])
    np.testing.assert_allclose(resumed.loss, reference.loss, rtol=1e-12)
    np.testing.assert_array_equal(Landscape.load(path).loss, resumed.loss)

    calls = _counting(monkeypatch)
    again = loss_landscape(model, (x, targets), output=path, **settings)
    assert calls == [] and again.complete

    with pytest.raises(SettingsMismatchError, match=r"span: 0.5 now, 1.0 in the file"):
        loss_landscape(model, (x, targets), output=path, **{**settings, "span": 0.5})
    with pytest.raises(SettingsMismatchError, match="examples"):
        loss_landscape(model, (x[:-1], targets[:-1]), output=path, **settings)
    model.layers[0].bias.assign([0.0, 0.0, 0.0])
    with pytest.raises(SettingsMismatchError, match="weights_sha256"):
        loss_landscape(model, (x, targets), output=path, **settings)
    calls = _counting(monkeypatch)
    loss_landscape(model, (x, targets), output=path, overwrite=True, **settings)
    assert len(calls) == 25


def test_examples_are_picked_by_the_seed_from_arrays_and_datasets():
    x = np.arange(100, dtype=np.float32)[:, None]
    y = np.arange(100)
    picked = grid.evaluation_batches((x, y), examples=10, seed=4, batch_size=4)
    labels = np.concatenate([b[1] for b in picked])
    assert [len(b[0]) for b in picked] == [4, 4, 2] and len(set(labels)) == 10
    again = np.concatenate([b[1] for b in grid.evaluation_batches((x, y), 10, 4)])
    other = np.concatenate([b[1] for b in grid.evaluation_batches((x, y), 10, 5)])
    np.testing.assert_array_equal(labels, again)
    assert set(labels) != set(other)
    stream = tf.data.Dataset.from_tensor_slices((x, y)).batch(7)
    sampled = np.concatenate([b[1] for b in grid.evaluation_batches(stream, 10, 4)])
    assert len(set(sampled)) == 10 and np.all(np.diff(sampled) > 0)  # kept in stream order
    np.testing.assert_array_equal(
        sampled, np.concatenate([b[1] for b in grid.evaluation_batches(stream, 10, 4)])
    )
    everything = grid.evaluation_batches(stream, None, 0, batch_size=100)
    np.testing.assert_array_equal(everything[0][1], y)


def test_bad_settings_and_probabilities_are_refused():
    model, x, targets = _quadratic_problem()
    with pytest.raises(ValueError, match="points must be odd"):
        loss_landscape(model, (x, targets), points=4, loss=squared_error, verbose=0)
    with pytest.raises(ValueError, match="dims must be"):
        loss_landscape(model, (x, targets), dims=3, loss=squared_error, verbose=0)
    softmax = tf.keras.Sequential(
        [tf.keras.Input((4,)), tf.keras.layers.Dense(3, activation="softmax")]
    )
    with pytest.raises(ValueError, match="probabilities"):
        loss_landscape(softmax, (x, np.zeros(48, int)), points=3, verbose=0)


def test_progress_is_one_line_per_row_off_a_terminal(capsys):
    model, x, targets = _quadratic_problem()
    loss_landscape(model, (x, targets), points=3, loss=squared_error)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("landscape of") and "3x3 grid" in lines[0]
    assert [line.split()[:2] for line in lines[1:4]] == [
        ["row", "1/3"],
        ["row", "2/3"],
        ["row", "3/3"],
    ]
    assert "point-examples/s" in lines[-1] and "9 points x 48 examples" in lines[-1]
