"""Printable names, header sizes against PIL's, the pixel limit and the file checks."""

import io
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from larq_bnext.images import files
from tests.images import matrix


def test_display_path_escapes_what_cannot_be_printed_and_keeps_the_rest():
    assert files.display_path(b"caf\xe9 2.jpg") == "caf\\xe9 2.jpg"
    # The same name as os.listdir gives it (the byte as a surrogate escape).
    assert files.display_path(os.fsdecode(b"caf\xe9 2.jpg")) == "caf\\xe9 2.jpg"
    assert files.display_path("café/日本.png") == "café/日本.png"
    assert files.display_path("new\nline\t.png") == "new\\nline\\t.png"
    assert files.display_path(pathlib.Path("/data/a b.jpg")) == "/data/a b.jpg"
    for name in (b"caf\xe9.jpg", b"new\nline.png", "café.png".encode(), b"\xff\xfe"):
        shown = files.display_path(name)
        assert shown == matrix.shown(name) and shown.isprintable()
        assert files.display_path(shown) == shown  # applied twice: unchanged
        shown.encode("utf-8")  # no surrogate left: prints and writes anywhere


def test_the_default_limit_is_pils():
    assert files.MAX_IMAGE_PIXELS == Image.MAX_IMAGE_PIXELS == 89_478_485
    assert files.pixel_limit(None) is None and files.pixel_limit(0) is None
    assert files.pixel_limit(10) == 10
    with pytest.raises(ValueError, match="positive"):
        files.pixel_limit(-1)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return matrix.write(tmp_path_factory.mktemp("matrix"))


def test_header_sizes_are_pils(written):
    for case in matrix.CASES:
        if case.outcome == matrix.TOO_LARGE:
            continue
        path = written[case.name]
        if not os.path.isfile(path):
            continue  # opening the pipe would wait for a writer
        try:
            with Image.open(path) as image:
                expected = image.size
        except (OSError, ValueError):
            continue  # no image for PIL either: the checks below
        header = files.read_header(path)
        assert (header.width, header.height) == expected, case.name
    # A JPEG whose frame header lies beyond the first 64 KiB (a large ICC profile).
    path = os.path.join(os.path.dirname(written[b"rgb.jpg"]), b"icc.jpg")
    Image.new("RGB", (31, 17)).save(path, icc_profile=bytes(150_000))
    assert files.read_header(path) == files.ImageHeader("JPEG", 31, 17)
    claimed = files.read_header(written[b"header_65000x65000.jpg"])
    assert (claimed.format, claimed.width, claimed.height) == ("JPEG", 65000, 65000)


def test_the_limit_is_inclusive_and_its_message_says_what_to_do(written):
    header = files.read_header(written[b"rgb.jpg"])  # 56 x 40
    files.check_pixels(header, "x.jpg", 56 * 40)
    files.check_pixels(header, "x.jpg", None)
    with pytest.raises(files.ImageTooLargeError) as error:
        files.check_pixels(header, b"caf\xe9.jpg", 56 * 40 - 1)
    message = str(error.value)
    assert message.startswith("caf\\xe9.jpg: 56 x 40 pixels (2,240) is more than the limit")
    assert "2,239" in message and "--max_image_pixels" in message and "max_image_pixels=" in message


def test_the_check_names_the_file_and_the_fix(written):
    for case in matrix.CASES:
        path = written[case.name]
        reason = files.unreadable_reason(path)
        if case.outcome == matrix.OK or not case.scan_catches:
            assert reason is None, (case.name, reason)
        else:
            assert reason.startswith(matrix.shown(path)), reason
            for words in case.message:
                assert words in reason, (words, reason)
    with pytest.raises(FileNotFoundError, match="no such file"):
        files.check_image_file(b"/nonexistent/\xff.jpg")
    assert "0 or None: no limit" in files.unreadable_reason(written[b"rgb.jpg"], 100)


def test_a_gif_without_its_trailer_is_truncated(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, "GIF")
    (tmp_path / "cut.gif").write_bytes(buffer.getvalue()[:-1])
    (tmp_path / "whole.gif").write_bytes(buffer.getvalue())
    assert "truncated GIF" in files.unreadable_reason(tmp_path / "cut.gif")
    assert files.unreadable_reason(tmp_path / "whole.gif") is None
