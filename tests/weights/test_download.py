"""Downloads against a local HTTP server that plays each host: Google Drive's confirmation page,
Nextcloud/ownCloud shares, login pages, 404s, dropped connections, servers that ignore Range or
stall, two downloads at once, a full disk, and ``weights=URL``.

The server binds 127.0.0.1 on a free port; nothing here reaches the internet. The files served
are genuine ``torch.save`` checkpoints with the official keys and shapes of BNext-T.
"""

import dataclasses
import errno
import hashlib
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import larq_bnext
from larq_bnext import registry, weights
from larq_bnext.registry import Source
from larq_bnext.weights import download
from larq_bnext.weights.http import confirmation_url
from larq_bnext.weights.pytorch_reader import CheckpointError
from tests.weights.test_pretrained import NARROW, _fake_official, _weights_of

#: Short backoff; a timeout that a loaded machine's local server meets. STALL: for stalled hosts.
FAST = {"timeout": 10.0, "backoff": 0.01}
STALL = {"timeout": 0.5, "backoff": 0.01}

#: Google Drive's answer to a large file (its shape in 2024: a form to drive.usercontent).
DRIVE_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>
<body><div class="uc-main"><p class="uc-warning-subcaption">Google Drive can't scan this file for
viruses.</p><form id="download-form" action="{action}" method="get">
<input type="submit" id="uc-download-link" class="jfk-button" value="Download anyway"/>
<input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="{uuid}">
</form></div></body></html>"""
QUOTA_PAGE = "<html><head><title>Google Drive - Quota exceeded</title></head><body>Too many users"
LOGIN_PAGE = "<!DOCTYPE html>\n<html><head><title>Nextcloud</title></head><body><form>Log in"


class Host(ThreadingHTTPServer):
    """The local server: ``routes`` maps a path to a behaviour; ``log`` records each request."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, body: bytes):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.body, self.routes, self.log = body, {}, []
        self.stop, self.gate = threading.Event(), threading.Event()

    def handle_error(self, request, client_address):
        """A client hanging up mid-answer (after a timeout, a full disk) is part of the play."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def requests(self, path: str) -> list[dict]:
        return [r for r in self.log if r["path"] == path]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        path, _, query = self.path.partition("?")
        record = {"path": path, "query": urllib.parse.parse_qs(query),
                  "range": self.headers.get("Range")}  # fmt: skip
        self.server.log.append(record)
        behaviour = self.server.routes.get(path, "404")
        getattr(self, "serve_" + behaviour.replace("-", "_"))(record)

    def _page(self, html: str, status=200):
        data = html.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def serve_404(self, record):
        self._page("<html><title>Not found</title></html>", 404)

    def serve_login(self, record):
        self._page(LOGIN_PAGE)

    def serve_quota(self, record):
        self._page(QUOTA_PAGE)

    def serve_drive_page(self, record):
        action = self.server.url("/download")
        self._page(DRIVE_PAGE.format(action=action, id=record["query"]["id"][0], uuid="u-42"))

    def serve_file(self, record, ranges=True, drop_at=None, pause=0.0, gate_at=None):
        body = self.server.body
        match = re.fullmatch(r"bytes=(\d+)-", record["range"] or "")
        start = int(match.group(1)) if match and ranges else 0
        record["status"] = 206 if start else 200
        self.send_response(record["status"])
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("ETag", '"v1"')
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        end = len(body) if drop_at is None else drop_at
        for i in range(start, end, 16384):
            self.wfile.write(body[i : min(i + 16384, end)])
            time.sleep(pause)
            if gate_at is not None and i >= gate_at:
                self.wfile.flush()
                self.server.gate.wait(30)
        record["sent"] = end - start

    def serve_no_range(self, record):
        self.serve_file(record, ranges=False)

    def serve_drop_once(self, record):
        """The first answer stops at 60 % and closes the connection; later ones are whole."""
        first = len(self.server.requests(record["path"])) == 1
        self.serve_file(record, drop_at=len(self.server.body) * 6 // 10 if first else None)
        self.close_connection = True

    def serve_gated(self, record):
        """Stops at 60 % until the test opens the gate."""
        self.serve_file(record, gate_at=len(self.server.body) * 6 // 10)

    def serve_slow(self, record):
        self.serve_file(record, pause=0.02)

    def serve_silent(self, record):
        """Accepts the connection, reads the request, never answers."""
        self.server.stop.wait(10)

    def serve_stall(self, record):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body[:100])
        self.wfile.flush()
        self.server.stop.wait(10)


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A local server of a genuine BNext-T checkpoint, and the cache in a temporary directory."""
    body = Path(_fake_official("tiny", tmp_path / "official.pth.tar")).read_bytes()
    monkeypatch.setenv("LARQ_BNEXT_HOME", str(tmp_path / "home"))
    server = Host(body)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.stop.set()
    server.gate.set()
    server.shutdown()
    server.server_close()


def _home_files(tmp_path) -> list[str]:
    """The cache's files, but for the download lock (an empty file that stays)."""
    return sorted(p.name for p in (tmp_path / "home").iterdir() if p.suffix != ".lock")


def test_google_drive_confirmation_page_then_the_file(host, tmp_path):
    host.routes.update({"/uc": "drive-page", "/download": "file"})
    drive = Source(host.url("/file/d/1CJ0XOEhoHuNe/view"), "google-drive", "2023-01-14", "0f7d2e2")
    path = download.download_checkpoint("tiny", sources=[drive], **FAST)
    assert path == tmp_path / "home" / "bnext_tiny_official.pth.tar"
    assert path.read_bytes() == host.body
    page, file = host.log
    assert page["path"] == "/uc" and page["query"] == {
        "export": ["download"],
        "id": ["1CJ0XOEhoHuNe"],
    }
    assert file["path"] == "/download"
    assert file["query"] == {
        "id": ["1CJ0XOEhoHuNe"], "export": ["download"], "confirm": ["t"], "uuid": ["u-42"]
    }  # fmt: skip
    digest = hashlib.sha256(host.body).hexdigest()
    assert (path.parent / (path.name + ".sha256")).read_text().split()[0] == digest
    assert _home_files(tmp_path) == [path.name, path.name + ".sha256"]


def test_google_drive_resumes_through_a_fresh_confirmation_page(host):
    host.routes.update({"/uc": "drive-page", "/download": "drop-once"})
    drive = Source(host.url("/file/d/ID/view"), "google-drive")
    assert download.download_checkpoint("tiny", sources=[drive], **FAST).read_bytes() == host.body
    kept = len(host.body) * 6 // 10
    # The page is asked for whole each time; only the form's URL is asked for by range.
    assert [(r["path"], r["range"]) for r in host.log] == [
        ("/uc", None), ("/download", None), ("/uc", None), ("/download", f"bytes={kept}-")
    ]  # fmt: skip


def test_confirmation_url_reads_the_form_and_the_older_link():
    page = DRIVE_PAGE.format(
        action="https://drive.usercontent.google.com/download", id="X", uuid="U"
    )
    assert confirmation_url(page.encode(), "https://drive.google.com/uc?id=X") == (
        "https://drive.usercontent.google.com/download?id=X&export=download&confirm=t&uuid=U"
    )
    older = b'<html><a id="uc-download-link" href="/uc?export=download&amp;confirm=Ab1&amp;id=X">'
    assert confirmation_url(older, "https://drive.google.com/uc?id=X") == (
        "https://drive.google.com/uc?export=download&confirm=Ab1&id=X"
    )
    assert confirmation_url(QUOTA_PAGE.encode(), "https://drive.google.com/uc") is None


def test_share_download(host):
    host.routes["/s/SZ6sYnyKEptMqRs/download"] = "file"
    share = Source(host.url("/s/SZ6sYnyKEptMqRs"), "share")
    assert download.download_checkpoint("tiny", sources=[share]).read_bytes() == host.body


def test_every_source_failing_is_listed_with_its_answer_then_the_next_one_works(host, tmp_path):
    host.routes.update(
        {"/uc": "quota", "/s/login/download": "login", "/stall": "stall", "/silent": "silent"}
    )
    failing = [
        Source(host.url("/file/d/ID/view"), "google-drive", "2023-01-14", "0f7d2e2"),
        Source(host.url("/s/login"), "share", "2023-01-08", "2ed8e41", replaced="2023-01-14"),
        Source(host.url("/s/gone"), "share", "2022-12-01", "7189a4a", replaced="2022-12-07"),
        Source(host.url("/stall")),
        Source(host.url("/silent")),
        Source("http://127.0.0.1:9/refused"),
    ]
    started = time.monotonic()
    with pytest.raises(OSError) as info:
        download.download_checkpoint("tiny", sources=failing, retries=1, **STALL)
    assert time.monotonic() - started < 8
    message = str(info.value)
    print(message)
    dest = tmp_path / "home" / "bnext_tiny_official.pth.tar"
    expected = [
        "Could not download the official BNext-T checkpoint. Tried, in order:",
        f"  1. {failing[0].url} (Google Drive, published 2023-01-14 in the authors' README, commit "
        '0f7d2e2): an HTML page instead of a checkpoint ("Google Drive - Quota exceeded")',
        f"  2. {failing[1].url} (Nextcloud/ownCloud share, published 2023-01-08 in the authors' "
        "README, commit 2ed8e41, replaced 2023-01-14): an HTML page instead of a checkpoint "
        '("Nextcloud")',
        f"  3. {failing[2].url} (Nextcloud/ownCloud share, published 2022-12-01 in the authors' "
        "README, commit 7189a4a, replaced 2022-12-07): HTTP 404 Not Found",
        f"  4. {failing[3].url} (URL): timed out after 100 of {len(host.body)} bytes "
        "(no data for 0.5 s; the partial file is kept and resumed)",
        f"  5. {failing[4].url} (URL): timed out (no answer within 0.5 s)",
    ]
    assert message.splitlines()[:6] == expected
    assert message.splitlines()[6].startswith(
        "  6. http://127.0.0.1:9/refused (URL): unreachable ("
    )
    assert f"put the file at {dest}" in message and "$LARQ_BNEXT_HOME" in message
    # One retry each. (Not counted on /silent: a loaded machine may let the client's 0.5 s run
    # out before the server's thread has read the request; /stall answers, so it has read it.)
    assert len(host.requests("/stall")) == 2
    assert not dest.exists()

    # The failing hosts (but the stalled ones) and a working share: the download falls through.
    host.routes["/s/works/download"] = "file"
    sources = [*failing[:3], failing[5], Source(host.url("/s/works"), "share")]
    path = download.download_checkpoint("tiny", sources=sources, retries=0, **FAST)
    assert path.read_bytes() == host.body
    assert _home_files(tmp_path) == [dest.name, dest.name + ".sha256"]


def test_a_dropped_connection_is_resumed_with_range_across_calls(host, tmp_path):
    host.routes["/s/x/download"] = "drop-once"
    share = [Source(host.url("/s/x"), "share")]
    gone = Source(host.url("/s/gone"), "share")  # a 404 tried next leaves the bytes alone
    with pytest.raises(OSError, match=r"connection dropped after (\d+) of (\d+) bytes") as info:
        download.download_checkpoint("tiny", sources=[*share, gone], retries=0, **FAST)
    print(info.value)
    assert f"  2. {gone.url} (Nextcloud/ownCloud share): HTTP 404 Not Found" in str(info.value)
    kept = int(re.search(r"after (\d+) of", str(info.value)).group(1))
    assert kept == len(host.body) * 6 // 10
    partial = tmp_path / "home" / "bnext_tiny_official.pth.tar.part"
    assert partial.read_bytes() == host.body[:kept]  # kept for the next call (or process)

    path = download.download_checkpoint("tiny", sources=share, **FAST)
    assert path.read_bytes() == host.body
    first, second = host.requests("/s/x/download")
    assert first["range"] is None and second["range"] == f"bytes={kept}-"
    assert second["status"] == 206 and second["sent"] == len(host.body) - kept
    assert not partial.exists()

    # Within one call, the retry resumes too.
    path.unlink()
    host.routes["/s/y/download"] = "drop-once"
    again = download.download_checkpoint(
        "tiny", sources=[Source(host.url("/s/y"), "share")], **FAST
    )
    assert again.read_bytes() == host.body
    assert [r["range"] for r in host.requests("/s/y/download")] == [None, f"bytes={kept}-"]


def test_a_server_that_ignores_range_is_downloaded_again_from_the_start(host, tmp_path):
    host.routes["/s/x/download"] = "drop-once"
    share = [Source(host.url("/s/x"), "share")]
    with pytest.raises(OSError, match="connection dropped"):
        download.download_checkpoint("tiny", sources=share, retries=0, **FAST)
    host.routes["/s/x/download"] = "no-range"
    path = download.download_checkpoint("tiny", sources=share, **FAST)
    assert path.read_bytes() == host.body
    second = host.requests("/s/x/download")[1]
    assert second["range"] is not None and second["status"] == 200
    assert second["sent"] == len(host.body)


def test_two_downloads_of_one_file_at_once(host, tmp_path):
    host.routes["/s/x/download"] = "slow"
    share = [Source(host.url("/s/x"), "share")]
    results, errors = [], []

    def run():
        try:
            results.append(download.download_checkpoint("tiny", sources=share, **FAST))
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert results[0].read_bytes() == host.body
    assert len(host.requests("/s/x/download")) == 1  # the second waited, then used the file
    assert _home_files(tmp_path) == [results[0].name, results[0].name + ".sha256"]


#: A process that downloads with only the download modules imported (no TensorFlow: fast).
CHILD = """
import sys, types
for name in ("larq_bnext", "larq_bnext.weights"):
    module = types.ModuleType(name)
    module.__path__ = [sys.argv[1] + "/" + name.replace(".", "/")]
    sys.modules[name] = module
from larq_bnext.registry import Source
from larq_bnext.weights import download
print(download.download_checkpoint("tiny", sources=[Source(sys.argv[2], "share")], timeout=10))
"""


def test_two_processes_downloading_one_file(host, tmp_path):
    host.routes["/s/x/download"] = "gated"
    root = str(Path(larq_bnext.__file__).parents[1])
    logs = [tmp_path / f"stderr{i}.txt" for i in range(2)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, root, host.url("/s/x")],
            stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
        )
        for log in logs
    ]  # fmt: skip
    # The download cannot finish before the gate opens: the other process must come to wait.
    deadline = time.monotonic() + 60
    while not any("Waiting for another process" in log.read_text() for log in logs):
        assert time.monotonic() < deadline, [log.read_text()[-2000:] for log in logs]
        time.sleep(0.05)
    host.gate.set()
    printed = [child.communicate(timeout=60)[0].strip() for child in children]
    assert [child.returncode for child in children] == [0, 0], [log.read_text() for log in logs]
    dest = tmp_path / "home" / "bnext_tiny_official.pth.tar"
    assert printed == [str(dest), str(dest)]
    assert dest.read_bytes() == host.body
    assert len(host.requests("/s/x/download")) == 1
    assert _home_files(tmp_path) == [dest.name, dest.name + ".sha256"]


def test_a_full_disk_says_so_and_keeps_nothing_half_written(host, tmp_path):
    host.routes["/s/x/download"] = "file"
    home = tmp_path / "home"
    home.mkdir()
    (home / "bnext_tiny_official.pth.tar.part").symlink_to("/dev/full")  # writes: ENOSPC
    with pytest.raises(OSError) as info:
        download.download_checkpoint("tiny", sources=[Source(host.url("/s/x"), "share")], **FAST)
    print(info.value)
    assert info.value.errno == errno.ENOSPC
    assert "No space left on device (ENOSPC) while writing" in str(info.value)
    assert "$LARQ_BNEXT_HOME" in str(info.value)
    assert not (home / "bnext_tiny_official.pth.tar").exists()


def test_a_valid_file_of_another_model_is_refused_and_the_next_source_tried(host, tmp_path):
    host.body = Path(_fake_official("small", tmp_path / "small.pth.tar")).read_bytes()
    host.routes["/s/small/download"] = "file"
    with pytest.raises(CheckpointError) as info:
        download.download_checkpoint("tiny", sources=[Source(host.url("/s/small"), "share")])
    print(info.value)
    assert "not a valid file, removed:" in str(info.value)
    assert "official BNext-S checkpoint; expected BNext-T" in str(info.value)
    assert _home_files(tmp_path) == []


def test_weights_url_downloads_once_and_refuses_html(host, tmp_path):
    model = larq_bnext.BNext(NARROW, input_shape=(32, 32, 3), num_classes=10)
    model.save_weights(str(tmp_path / "mirror.h5"))
    host.body = (tmp_path / "mirror.h5").read_bytes()
    host.routes.update({"/lab/bnext_narrow.h5": "file", "/lab/login": "login"})
    url = host.url("/lab/bnext_narrow.h5")
    again = larq_bnext.BNext(NARROW, input_shape=(32, 32, 3), num_classes=10, weights=url)
    for a, b in zip(_weights_of(model), _weights_of(again), strict=True):
        np.testing.assert_array_equal(a, b)
    weights.load_weights(again, url)  # read from the cache: no second request
    assert len(host.requests("/lab/bnext_narrow.h5")) == 1
    assert len(list((tmp_path / "home" / "urls").glob("*-bnext_narrow.h5"))) == 1
    with pytest.raises(OSError, match="an HTML page instead of a checkpoint") as info:
        weights.load_weights(again, host.url("/lab/login"))
    print(info.value)


def test_the_registry_sources_are_tried_in_order(host, monkeypatch):
    """weights="imagenet" reads the registry's sources; a lab points them at its own host."""
    info = registry.resolve_model("tiny")
    host.routes["/s/mirror/download"] = "file"
    mirror = (Source(host.url("/s/gone"), "share"), Source(host.url("/s/mirror"), "share"))
    monkeypatch.setitem(registry.MODELS, "tiny", dataclasses.replace(info, sources=mirror))
    assert download.download_checkpoint("tiny").read_bytes() == host.body
    assert [r["path"] for r in host.log] == ["/s/gone/download", "/s/mirror/download"]
