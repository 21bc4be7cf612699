"""Resumable downloads of one URL into a partial file: HTTP Range, retries, timeouts, progress.

:func:`fetch` keeps what it received across interruptions and processes, recognises an answer
that is not the expected file from its first bytes, and follows a "download anyway" confirmation
form (Google Drive's large-file page). See docs/pretrained.md, "Downloads".
"""

from __future__ import annotations

import errno
import http.client
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["SourceError", "fetch", "confirmation_url", "discard"]

#: First bytes of the answer that is the file: a PyTorch checkpoint (``torch.save``'s zip, or
#: a legacy pickle) unless the caller says otherwise.
CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80")
_BLOCK = 1 << 20
_PAGE_LIMIT = 1 << 21  # an HTML page is read up to this size to find its form
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


class SourceError(OSError):
    """One URL failed; ``reason`` says what it answered.

    Args:
        reason: what happened, for the final error message ("HTTP 404 Not Found", ...).
        transient: whether trying again may help (timeouts, dropped connections, 5xx).
    """

    def __init__(self, reason: str, transient: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


class _RangeRefusedError(SourceError):
    """HTTP 416: the server will not resume from the partial file's size."""


def fetch(
    url: str,
    partial: Path,
    *,
    origin: str | None = None,
    magic: tuple[bytes, ...] = CHECKPOINT_MAGIC,
    follow_form: bool = False,
    timeout: float = 30.0,
    retries: int = 5,
    backoff: float = 1.0,
    description: str = "",
) -> int:
    """Download ``url`` into ``partial``, resuming the bytes it already holds; return its size.

    What ``partial`` holds is resumed with ``Range`` when it came from the same ``origin``
    (recorded in ``<partial>.json`` beside it) and restarted where the server answers the whole
    file; bytes of another origin are kept until this one answers with the file. A timeout, a
    dropped connection or a transient HTTP status (5xx, 429, 408) is retried with exponential
    backoff; the count restarts whenever bytes arrived.

    Args:
        url: the URL (``https://``, ``http://`` or ``file://``).
        partial: the file to write; kept when the download fails.
        origin: what identifies the file across tries (the source's link); ``url`` if ``None``.
        magic: accepted first bytes of the file; any other answer fails.
        follow_form: follow a confirmation page's GET form (Google Drive's large files).
        timeout: seconds to wait for a connection and for each read.
        retries: further tries after a transient failure without progress.
        backoff: seconds before the first retry, doubled each time (at most 60 s).
        description: the progress bar's label.

    Raises:
        SourceError: the URL failed; the message says how.
        OSError: writing failed (``errno.ENOSPC``: the disk is full, said by name).
    """
    origin = origin or url
    failures = 0
    while True:
        before = _size(partial)
        try:
            return _attempt(url, partial, origin, magic, follow_form, timeout, description)
        except SourceError as err:
            if not err.transient:
                raise
            failures = 1 if _size(partial) != before else failures + 1  # bytes arrived
            if failures > retries:
                raise
            time.sleep(min(backoff * 2 ** (failures - 1), 60.0))


# --------------------------------------------------------------------------------------------
# One try
# --------------------------------------------------------------------------------------------
def _attempt(url, partial, origin, magic, follow_form, timeout, description) -> int:
    meta = _meta(partial)
    same = meta.get("origin") == origin
    offset, etag = (_size(partial), meta.get("etag")) if same else (0, None)
    ranged = not follow_form  # a confirmation page is asked for whole; only the file by range
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    for _ in range(3):
        try:
            response = _open(opener, url, offset if ranged else 0, etag, timeout)
        except _RangeRefusedError:
            _truncate(partial)
            raise
        with response:
            status = response.status or 200  # file:// answers have no status
            if status == 206:
                start, total = _content_range(response.headers.get("Content-Range", ""))
                if start != offset:
                    _truncate(partial)
                    raise SourceError(f"answered bytes from {start}, not {offset}", True)
                return _stream(response, partial, offset, total, timeout, description)
            head = _read_head(response, timeout)
            if head.startswith(magic):
                # From the start: a first try, or the server ignores Range (or the file changed).
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                etag = response.headers.get("ETag")
                _save_meta(partial, {"origin": origin, "etag": etag, "total": total})
                return _stream(response, partial, 0, total, timeout, description, head)
            if not _looks_html(head, response.headers.get("Content-Type", "")):
                raise SourceError(f"not a checkpoint (its first bytes are {head[:8]!r})")
            page = head + response.read(_PAGE_LIMIT)
            target = confirmation_url(page, response.geturl()) if follow_form else None
            if target is None:
                raise SourceError(f"an HTML page instead of a checkpoint{_title(page)}")
            url, ranged = target, True
    raise SourceError("one confirmation page after another, never the file")


def _open(opener, url, offset, etag, timeout):
    headers = {"User-Agent": "larq_bnext", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if etag and not etag.startswith("W/"):
            headers["If-Range"] = etag
    try:
        return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416:  # the partial file does not fit the file any more
            raise _RangeRefusedError("refused to resume (HTTP 416); starting again", True) from None
        reason = f"HTTP {err.code} {err.reason}"
        raise SourceError(reason, err.code in _TRANSIENT_STATUS) from None
    except urllib.error.URLError as err:
        raise _network_error(err.reason, timeout) from None
    except (OSError, http.client.HTTPException) as err:
        raise _network_error(err, timeout) from None
    except ValueError as err:
        raise SourceError(f"not a URL ({err})") from None


def _network_error(reason, timeout) -> SourceError:
    if isinstance(reason, TimeoutError):
        return SourceError(f"timed out (no answer within {timeout:g} s)", True)
    if isinstance(
        reason, (ConnectionResetError, ConnectionAbortedError, http.client.HTTPException)
    ):
        return SourceError(f"connection dropped ({reason!r})", True)
    return SourceError(f"unreachable ({reason})")  # no such host, connection refused, ...


def _stream(response, partial, offset, total, timeout, description, head=b"") -> int:
    from tqdm.auto import tqdm

    written = offset
    mode = "ab" if offset else "wb"
    read = getattr(response, "read1", response.read)  # what has arrived: kept on a timeout
    with tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
              desc=description or None, file=sys.stderr) as bar:  # fmt: skip
        try:
            with open(partial, mode) as out:
                block = head
                while True:
                    if block:
                        out.write(block)
                        written += len(block)
                        bar.update(len(block))
                    try:
                        block = read(_BLOCK)
                    except TimeoutError:
                        why = f"no data for {timeout:g} s"
                        raise _dropped(written, total, why, "timed out") from None
                    except (OSError, http.client.HTTPException) as err:
                        raise _dropped(written, total, type(err).__name__) from None
                    if not block:
                        break
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise OSError(
                    errno.ENOSPC,
                    f"No space left on device (ENOSPC) while writing {partial} "
                    f"({written} of {total or '?'} bytes). Free some space or set "
                    "$LARQ_BNEXT_HOME to a disk with room; the partial file is kept and the "
                    "next call resumes it.",
                ) from None
            raise
    if total is not None and written != total:
        raise _dropped(written, total, "the connection closed early")
    return written


def _dropped(written, total, why, what="connection dropped") -> SourceError:
    return SourceError(
        f"{what} after {written} of {total or '?'} bytes ({why}; the partial file is kept and "
        "resumed)",
        True,
    )


def _content_range(value: str) -> tuple[int, int | None]:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value)
    if not match:
        raise SourceError(f"answered 206 with an unreadable Content-Range {value!r}")
    total = match.group(2)
    return int(match.group(1)), int(total) if total.isdigit() else None


def _read_head(response, timeout: float, size: int = 64) -> bytes:
    head = b""
    while len(head) < size:
        try:
            block = response.read(size - len(head))
        except TimeoutError:
            raise SourceError(f"timed out before the first bytes ({timeout:g} s)", True) from None
        except (OSError, http.client.HTTPException) as err:
            raise SourceError(
                f"dropped the answer before its first bytes ({err!r})", True
            ) from None
        if not block:
            break
        head += block
    return head


def _looks_html(head: bytes, content_type: str) -> bool:
    return "html" in content_type.lower() or head.lstrip()[:1] == b"<"


# --------------------------------------------------------------------------------------------
# Confirmation pages
# --------------------------------------------------------------------------------------------
class _Page(HTMLParser):
    """The title, GET forms (action and named inputs) and the download links of a page."""

    def __init__(self):
        super().__init__()
        self.title, self.forms, self.links, self._in_title = "", [], [], False

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method", "get").lower() == "get":
            self.forms.append((a.get("action", ""), {}))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1][1][a["name"]] = a.get("value", "")
        elif tag == "a" and a.get("id") == "uc-download-link" and a.get("href"):
            self.links.append(a["href"])
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = self._in_title and tag != "title"

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def _parse(page: bytes) -> _Page:
    parser = _Page()
    parser.feed(page.decode("utf-8", "replace"))
    return parser


def confirmation_url(page: bytes, base: str) -> str | None:
    """Where a "download anyway" page leads: its form with a ``confirm`` field, filled in.

    Google Drive answers a large file with such a page ("can't scan this file for viruses");
    its form (fields ``id``, ``export``, ``confirm``, ``uuid``) leads to the file. Older pages
    had a link ``uc-download-link`` instead.

    Args:
        page: the HTML.
        base: its URL (relative actions and links are resolved against it).

    Returns:
        The URL, or ``None`` where the page has neither form nor link (a quota or login page).
    """
    parsed = _parse(page)
    for action, fields in parsed.forms:
        if "confirm" in fields:
            query = urllib.parse.urlencode(fields)
            return f"{urllib.parse.urljoin(base, action or base).split('?')[0]}?{query}"
    if parsed.links:
        return urllib.parse.urljoin(base, parsed.links[0])
    return None


def _title(page: bytes) -> str:
    title = " ".join(_parse(page).title.split())
    return f' ("{title[:80]}")' if title else ""


# --------------------------------------------------------------------------------------------
# The partial file and what it came from
# --------------------------------------------------------------------------------------------
def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _meta_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


def _meta(partial: Path) -> dict:
    try:
        return json.loads(_meta_path(partial).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _save_meta(partial: Path, meta: dict) -> None:
    _meta_path(partial).write_text(json.dumps(meta), encoding="utf-8")


def _truncate(partial: Path) -> None:
    if partial.exists():
        partial.write_bytes(b"")


def discard(partial: Path) -> None:
    """Remove ``partial`` and its record.

    Args:
        partial: the partial file.
    """
    for path in (partial, _meta_path(partial)):
        path.unlink(missing_ok=True)
