"""Download a file from the first of its sources that gives it: Google Drive files, Nextcloud and
ownCloud shares, plain URLs (:class:`larq_bnext.registry.Source`), one process at a time.

The final error lists every source tried and what each answered. See docs/pretrained.md,
"Sources" and "Downloads".
"""

from __future__ import annotations

import contextlib
import re
import sys
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from larq_bnext.registry import Source
from larq_bnext.weights.http import CHECKPOINT_MAGIC, SourceError, discard, fetch
from larq_bnext.weights.pytorch_reader import CheckpointError

__all__ = ["file_url", "describe", "locked", "download_first"]

_KINDS = {"google-drive": "Google Drive", "share": "Nextcloud/ownCloud share", "url": "URL"}


def file_url(source: Source) -> str:
    """The URL that answers with the file (or, on Google Drive, with its confirmation page).

    Args:
        source: the source.

    Raises:
        ValueError: a Google Drive link without a file id.
    """
    if source.kind == "share":
        return source.url.rstrip("/") + "/download"
    if source.kind == "google-drive":
        parts = urllib.parse.urlsplit(source.url)
        match = re.search(r"/file/d/([^/]+)", parts.path)
        file_id = match.group(1) if match else urllib.parse.parse_qs(parts.query).get("id", [""])[0]
        if not file_id:
            raise ValueError(f"{source.url} is no Google Drive file link (.../file/d/<id>/...).")
        query = urllib.parse.urlencode({"export": "download", "id": file_id})
        return f"{parts.scheme}://{parts.netloc}/uc?{query}"
    return source.url


def describe(source: Source) -> str:
    """``"<url> (Google Drive, published 2023-01-14 in the authors' README, commit 0f7d2e2)"``.

    Args:
        source: the source.
    """
    what = _KINDS[source.kind]
    if source.published:
        what += f", published {source.published} in the authors' README, commit {source.commit}"
    if source.replaced:
        what += f", replaced {source.replaced}"
    return f"{source.url} ({what})"


@contextlib.contextmanager
def locked(dest: Path) -> Iterator[None]:
    """Hold ``<dest>.lock`` (an OS file lock): one process at a time downloads ``dest``.

    Args:
        dest: the file to be written.
    """
    from filelock import FileLock, Timeout

    dest.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(dest) + ".lock")
    try:
        lock.acquire(timeout=0.05)
    except Timeout:
        print(f"Waiting for another process downloading {dest} ...", file=sys.stderr)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def download_first(
    sources: Sequence[Source],
    partial: Path,
    *,
    what: str,
    offline: str,
    check: Callable[[Path], None] | None = None,
    magic: tuple[bytes, ...] = CHECKPOINT_MAGIC,
    timeout: float = 30.0,
    retries: int = 5,
    backoff: float = 1.0,
) -> Source:
    """Download into ``partial`` from the first source that gives a file that passes ``check``.

    Call it inside :func:`locked`. A source fails on an HTTP error, a timeout or dropped
    connection that retries did not overcome, an answer that is not the file (an HTML page,
    recognised from its first bytes), or a file ``check`` refuses (it is then removed).

    Args:
        sources: the sources, in the order to try them.
        partial: where the file is written (its bytes are resumed on the next call when the
            same source is tried again).
        what: the file, for the error message ("the official BNext-T checkpoint").
        offline: the last paragraph of the error message: what to do by hand.
        check: raises :class:`~larq_bnext.weights.pytorch_reader.CheckpointError` for a
            complete file that is not the expected one.
        magic: accepted first bytes of the file.
        timeout: seconds to wait for a connection and for each read.
        retries: further tries of a source after a transient failure without progress.
        backoff: seconds before the first retry, doubled each time.

    Returns:
        The source that gave the file, now complete at ``partial``.

    Raises:
        CheckpointError: every source failed, one of them with a file ``check`` refused.
        OSError: every source failed (the message lists each and its answer); or the disk is
            full (``errno.ENOSPC``).
    """
    failures = []
    refused = False
    for source in sources:
        try:
            url = file_url(source)
            fetch(url, partial, origin=source.url, magic=magic, timeout=timeout,
                  follow_form=source.kind == "google-drive", retries=retries, backoff=backoff,
                  description=what)  # fmt: skip
            if check is not None:
                check(partial)
        except CheckpointError as err:
            discard(partial)
            failures.append((source, f"not a valid file, removed: {err}"))
            refused = True
            continue
        except (SourceError, ValueError) as err:
            failures.append((source, str(err)))
            continue
        return source
    lines = "\n".join(
        f"  {i}. {describe(source)}: {reason}" for i, (source, reason) in enumerate(failures, 1)
    )
    if not failures:
        lines = "  (no source is known)"
    message = f"Could not download {what}. Tried, in order:\n{lines}\n{offline}"
    raise CheckpointError(message) if refused else OSError(message)
