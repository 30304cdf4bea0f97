"""Download one file over HTTP(S), safely: progress bar, resume, size and SHA-256 checks.

Only the standard library (``urllib``) is used, so this works on Colab and on a bare machine.

How a download goes
-------------------
1. Bytes are written to ``<dest>.part`` next to the destination, never to ``dest`` itself.
2. If a ``.part`` file is already there (an earlier download was cut), the request asks the server
   for the rest with an HTTP ``Range: bytes=<size>-`` header. A server that answers ``206 Partial
   Content`` is resumed; one that ignores the range (``200``) is downloaded again from the start.
3. If the connection breaks in the middle, the download resumes the same way, up to ``retries``
   times.
4. When the body is complete, its size (``expected_size``, else the server's ``Content-Length``)
   and its SHA-256 (``sha256``) are checked. Only then is ``.part`` renamed to ``dest`` (a rename
   is atomic), so ``dest`` is either absent or complete and verified. A file that fails a check is
   deleted and a :class:`DownloadError` says what was expected and what came.

Form fields (``form=``) are sent as a POST body (this is how CRCNS takes its login). They are never
written to disk, printed, or put into an error message, so passwords stay secret.
"""

from __future__ import annotations

import http.client
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import tqdm.auto

from ..storage import sha256_file

CHUNK_SIZE = 1 << 20  # 1 MiB


class DownloadError(RuntimeError):
    """A download failed or gave a file that does not pass its checks; the message says what to
    do."""


class ChecksumError(DownloadError):
    """The downloaded file's SHA-256 is not the expected one (the file was deleted)."""


def download(
    url: str,
    dest,
    *,
    expected_size: int | None = None,
    sha256: str | None = None,
    form: dict | None = None,
    reject_html: bool = False,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 60.0,
    description: str | None = None,
) -> Path:
    """Download ``url`` to the file ``dest`` (resumable, verified, atomic). Returns ``dest`` as a
    Path.

    Parameters
    ----------
    url : str
        ``http://`` or ``https://`` address of the file.
    dest : path
        Where the file goes. Its folder is created. An existing ``dest`` is replaced only once the
        new download is complete and verified.
    expected_size : int, optional
        Size in bytes the file must have.
    sha256 : str, optional
        Hex SHA-256 the file must have (64 hex digits, case ignored).
    form : dict, optional
        Form fields sent as an ``application/x-www-form-urlencoded`` POST body (e.g. a login).
        Never stored or shown.
    reject_html : bool
        If True, a web page (``Content-Type: text/html``) in place of the file is an error; servers
        that want a login often answer with their login page and status 200.
    progress : bool
        Show a ``tqdm`` progress bar.
    retries : int
        How many times a broken connection is resumed before giving up.
    timeout : float
        Seconds to wait for the server on connect and on each read.
    description : str, optional
        Label of the progress bar (default: the file name).

    Raises
    ------
    DownloadError
        Server unreachable, HTTP error (e.g. 404), connection broken more than ``retries`` times,
        a web page instead of the file, or a size/SHA-256 mismatch. The message names the URL and
        the destination path.
    """
    dest = Path(dest).expanduser()
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"url must start with http:// or https://, got {url!r}")
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    body = urllib.parse.urlencode(form).encode() if form else None

    attempts = 0
    while True:
        try:
            total = _fetch_into(
                url, part, body, reject_html, progress, timeout, description or dest.name, dest
            )
            break
        except (http.client.IncompleteRead, ConnectionError, socket.timeout, TimeoutError) as err:
            attempts += 1
            if attempts > retries:
                raise DownloadError(
                    f"the connection to {url} broke {attempts} times ({type(err).__name__}); "
                    f"{part.stat().st_size if part.exists() else 0} bytes are kept in {part}. "
                    "Run the same command again later to resume."
                ) from None

    size = part.stat().st_size
    want = expected_size if expected_size is not None else total
    if want is not None and size != want:
        part.unlink()
        raise DownloadError(
            f"downloaded {size} bytes from {url} but expected {want} bytes; the partial "
            "file was deleted "
            f"(destination {dest}). Try again; if it keeps happening the file on the "
            "server has changed."
        )
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256:
            part.unlink()
            raise ChecksumError(
                f"SHA-256 mismatch for {url}: expected {sha256}, got {got}. The file was "
                "deleted and not "
                f"saved to {dest}. The download was corrupted or the file on the server changed; "
                "try again, and if it persists check the expected hash."
            )
    os.replace(part, dest)
    return dest


def _fetch_into(url, part: Path, body, reject_html, progress, timeout, label, dest) -> int | None:
    """One HTTP request appending to ``part`` (resuming it if it exists). Returns the full size if
    known."""
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    request.add_header("User-Agent", "etecrm_lib")
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:
            # "Range not satisfiable": the partial file is already complete, or longer than the
            # file.
            total = _total_from_content_range(err.headers.get("Content-Range"))
            if total == start:
                return total
            part.unlink()
            return _fetch_into(url, part, body, reject_html, progress, timeout, label, dest)
        raise DownloadError(
            f"the server answered HTTP {err.code} ({err.reason}) for {url}; nothing was "
            f"saved to {dest}. "
            + (
                "Check the address (the file may have moved)."
                if err.code == 404
                else "Try again later."
            )
        ) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(
            f"could not reach {url} ({reason}); nothing was saved to {dest}. Check your internet "
            "connection (on Colab: Runtime > Restart) or try again later."
        ) from None

    with response:
        if reject_html and response.headers.get_content_type() == "text/html":
            raise DownloadError(
                f"{url} sent a web page instead of the file (nothing was saved to {dest}): "
                "usually a wrong "
                "username/password, or a file name that does not exist on the server."
            )
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None else None
        if start and response.status == 206:
            total = _total_from_content_range(response.headers.get("Content-Range"))
            mode = "ab"
        else:  # a fresh download, or a server that ignored the Range header
            start, mode = 0, "wb"
            total = length
        with (
            open(part, mode) as f,
            tqdm.auto.tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label,
                disable=not progress,
            ) as bar,
        ):
            while True:
                chunk = response.read(CHUNK_SIZE)
                if not chunk:
                    break
                f.write(chunk)
                bar.update(len(chunk))
        if total is not None and part.stat().st_size < total:
            # urllib returns b"" instead of raising when the server closes early: report a broken
            # link
            raise http.client.IncompleteRead(b"", total - part.stat().st_size)
    return total


def _total_from_content_range(value) -> int | None:
    """The full size from a ``Content-Range: bytes a-b/total`` header (None if absent or ``*``)."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None
