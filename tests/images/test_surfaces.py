"""Every file of the matrix through every public surface, with a bound on the memory it costs.

The matrix (:mod:`tests.images.matrix`): sizes 1x1, 1 x 20000 and 20000 x 1, headers that
claim 100000 x 100000 and 65000 x 65000 pixels; PIL modes L, LA, P, RGB, RGBA, CMYK, 1, I;16,
F; JPEG, PNG, GIF, BMP, TIFF, WebP, PPM/PGM; names with a space, non-ASCII letters, bytes that
are not UTF-8 and a newline; empty, truncated, damaged and non-image files, a directory, a
broken link and a pipe named like images. Each surface runs in a child process of its own
(``tests/images/_surface_worker.py``, or the training command itself) under an address-space
limit; the growth of the child's peak resident memory per case (or per call) is bounded. The
evaluation transform of the former code needed 13 GB for the 1 x 20000 strip.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

from tests.images import matrix

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A child that would need more fails inside this limit instead of taking the machine's memory.
ADDRESS_SPACE = 8 << 30
# Measured: at most 4 MiB per case (the growth of the peak after a warm-up), 60 MiB for a
# whole evaluation, 730 MiB for the training command on this project's 2-core machine and
# 2823 MiB for it on a CI machine with more cores (TensorFlow's thread pools and their memory
# grow with the core count). The training bound stays far below the 13 GB that the former
# evaluation transform needed for the strip alone.
CASE_MIB = 100
CALL_MIB = 300
TRAIN_MIB = 4096


def _run(argv, cwd):
    """Run ``python argv...``; returns (exit status, stdout, stderr, peak resident MiB)."""
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    with (
        open(os.path.join(cwd, b"stdout"), "w+b") as out,
        open(os.path.join(cwd, b"stderr"), "w+b") as err,
    ):
        child = subprocess.Popen(
            [sys.executable, *argv], cwd=REPO, env=env, stdout=out, stderr=err, preexec_fn=limit
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (
            child.returncode,
            out.read().decode("utf-8", "backslashreplace"),
            err.read().decode("utf-8", "backslashreplace"),
            usage.ru_maxrss / 1024,
        )


def _surface(name: str, tmp_path) -> dict:
    root = os.fsencode(tmp_path)
    out = os.path.join(root, b"result.json")
    status, _, stderr, _ = _run(["-m", "tests.images._surface_worker", name, root, out], root)
    assert status == 0, stderr[-3000:]
    with open(out) as handle:
        return json.load(handle)


def _shown_path(folder: str, name: bytes) -> str:
    return os.path.join(folder, matrix.shown(name))


def _assert_message(message: str, case: matrix.Case, path: str):
    assert path in message, (path, message)
    for words in case.message:
        assert words in message, (words, message)
    if case.outcome == matrix.TOO_LARGE:
        side = case.name.split(b"_")[1].split(b".")[0].decode().replace("x", " x ")
        assert side in message and "89,478,485" in message, message


def test_predict_classifies_or_names_each_file_and_its_fix(tmp_path):
    results = _surface("predict", tmp_path)
    folder = os.path.join(str(tmp_path), "files")
    assert len(results) == len(matrix.CASES)
    for case in matrix.CASES:
        result = results[matrix.shown(case.name)]
        path = _shown_path(folder, case.name)
        assert result["name"] == path
        if case.outcome == matrix.OK:
            assert result["error"] is None and result["classes"] == 3, result
        else:
            assert result["classes"] == 0
            _assert_message(result["error"], case, path)
        assert result["rss_mib"] < CASE_MIB, (case.name, result)


def test_eval_transform_of_any_size_costs_what_one_crop_costs(tmp_path):
    results = _surface("eval_transform", tmp_path)
    for name in ("1x1", "1x20000", "20000x1", "2x200000", "grey 5000x3", "float64", "uint16"):
        result = results[name]
        assert result["shape"] == [224, 224, 3] and result["finite"], (name, result)
        # Inside a graph: the same, up to a value on .5 moved by one grey level.
        assert result["graph_max_grey_levels"] < 1.01 and result["graph_changed"] < 0.01
    assert "3 channels" in results["4 channels"]["error"]
    assert "one image" in results["a batch"]["error"]
    for name, result in results.items():
        assert result["rss_mib"] < CASE_MIB, (name, result)


def _expected_folder(split_dir: str):
    """(listed images, skipped at the scan, skipped when decoded) of the tree's split."""
    listed, at_scan, decoding = [], [], []
    for case in matrix.CASES:
        if not case.in_folders:
            continue
        path = _shown_path(os.path.join(split_dir, "a"), case.name)
        if case.outcome != matrix.OK and case.scan_catches:
            at_scan.append(path)
        else:
            listed.append(path)
            if case.outcome != matrix.OK:
                decoding.append(path)
    listed.append(os.path.join(split_dir, "a", "folder.jpg", "inside.png"))  # walked into
    listed += [os.path.join(split_dir, "cl\\xe4ss", f"{i}.jpg") for i in range(4)]
    return listed, at_scan, decoding


def test_load_folder_lists_every_image_and_names_every_skipped_file(tmp_path):
    result = _surface("load_folder", tmp_path)
    train = os.path.join(str(tmp_path), "tr\\xe9e", "train")
    listed, at_scan, _ = _expected_folder(train)
    assert sorted(result["items"]) == sorted(p.replace("\\n", "\n") for p in listed)
    assert result["labels"].count(1) == 4 and result["class_names"] == ["a", "cl\\xe4ss"]
    assert sorted(result["skipped"]) == sorted(at_scan)
    log = "\n".join(result["log"])
    for case in matrix.CASES:
        path = _shown_path(os.path.join(train, "a"), case.name)
        if path in at_scan:
            line = next(line for line in log.splitlines() if line.strip().startswith(path))
            _assert_message(line, case, path)
    assert result["rss_mib"] < CASE_MIB


def test_evaluate_scores_the_readable_images_and_lists_the_others(tmp_path):
    result = _surface("evaluate", tmp_path)
    val = os.path.join(str(tmp_path), "tr\\xe9e", "val")
    listed, at_scan, decoding = _expected_folder(val)
    assert result["examples"] == len(listed) - len(decoding)
    assert result["skipped"] == sorted(at_scan + decoding)
    scores = json.loads(result["json"])
    assert scores["skipped_files"] == result["skipped"]
    assert "cl\\xe4ss" in result["table"].splitlines()[2]
    assert result["rss_mib"] < CALL_MIB


def test_train_on_a_folder_trains_on_every_readable_file(tmp_path):
    from tests.images._surface_worker import _tree

    root = os.fsencode(tmp_path)
    tree = _tree(root)
    out = os.path.join(root, b"run")
    status, stdout, stderr, peak = _run(
        [
            "-m",
            "larq_bnext.train",
            "--dataset=folder",
            b"--data_dir=" + tree,
            "--model=custom",
            "--stage_channels=8,16",
            "--image_size=32",
            "--epochs=1",
            "--batch_size=2",
            "--teachers=none",
            "--randaugment=false",
            "--max_skipped_fraction=1",
            b"--output_dir=" + out,
        ],
        root,
    )
    assert status == 0, stderr[-3000:]
    assert "binary student, labels only" in stdout
    train_listed, train_scan, train_decoding = _expected_folder(
        os.path.join(str(tmp_path), "tr\\xe9e", "train")
    )
    val_listed, val_scan, val_decoding = _expected_folder(
        os.path.join(str(tmp_path), "tr\\xe9e", "val")
    )
    with open(os.path.join(out, b"metrics.json")) as handle:
        metrics = json.load(handle)
    assert metrics["train_examples"] == len(train_listed)
    assert metrics["eval_examples"] == len(val_listed)
    skipped = sorted(train_scan + train_decoding + val_scan + val_decoding)
    assert metrics["skipped_files"] == skipped
    with open(os.path.join(out, b"flags.txt"), "rb") as handle:  # the path's own bytes
        assert b"\n--data_dir=" + tree + b"\n" in handle.read()
    with open(os.path.join(out, b"skipped_images.json")) as handle:
        logged = json.load(handle)
    assert logged["train"]["paths"] == sorted(train_scan + train_decoding)
    assert logged["eval"]["paths"] == sorted(val_scan + val_decoding)
    for path in train_scan + val_scan:  # the scan logs each with why
        assert path in stderr
    assert peak < TRAIN_MIB
