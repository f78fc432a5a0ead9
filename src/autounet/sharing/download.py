"""Downloading a model archive over http(s) to a local file, with a progress bar and a size limit."""

from __future__ import annotations

import http.client
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from autounet import __version__
from autounet.errors import CheckpointError

__all__ = ["download", "is_url"]

_CHUNK_BYTES = 1 << 20
_MAX_LENGTH_DIGITS = 20  # a Content-Length of 10**20 bytes is far beyond any model archive


def is_url(text: str) -> bool:
    """Whether ``text`` is an ``http://`` or ``https://`` URL (anything else is treated as a file path)."""
    return urllib.parse.urlsplit(text).scheme.lower() in ("http", "https")


def download(url: str, destination: Path, max_bytes: int, show_progress: bool = True,
             timeout_s: float = 60.0) -> Path:
    """Download ``url`` into ``destination``, which must not exist; a failed download leaves no file behind.

    Args:
        url: An ``http://`` or ``https://`` URL.
        destination: The file to create.
        max_bytes: Refuse responses larger than this (announced or actually received).
        show_progress: Show a byte progress bar on stderr.
        timeout_s: Seconds to wait for the connection and for each read.

    Returns:
        ``destination``.

    Raises:
        CheckpointError: Not an http(s) URL, an HTTP error status, a network failure, a response over
            ``max_bytes`` or shorter than announced. The message starts with the URL.
    """
    if not is_url(url):
        raise CheckpointError(f"{url}: only http:// and https:// URLs can be downloaded")
    # urlopen would open file:// and ftp:// too; the check above keeps a "URL" from reading local files.
    request = urllib.request.Request(url, headers={"User-Agent": f"autounet/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            _copy_response(response, url, destination, max_bytes, show_progress)
    except urllib.error.HTTPError as exc:
        destination.unlink(missing_ok=True)
        raise CheckpointError(f"{url}: download failed: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        destination.unlink(missing_ok=True)
        raise CheckpointError(f"{url}: download failed: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        # Timeouts, resets, malformed responses (http.client raises ValueError subclasses for some).
        destination.unlink(missing_ok=True)
        raise CheckpointError(f"{url}: download failed: {exc.__class__.__name__}: {exc}") from None
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    return destination


def _copy_response(response: http.client.HTTPResponse, url: str, destination: Path, max_bytes: int,
                   show_progress: bool) -> None:
    announced_text = response.headers.get("Content-Length")
    announced = None
    if announced_text is not None:
        text = announced_text.strip()
        # ASCII digits only (str.isdigit admits '²', which int() refuses) and no more than any real length.
        if not (text.isascii() and text.isdigit() and len(text) <= _MAX_LENGTH_DIGITS):
            raise CheckpointError(f"{url}: the server sent a malformed Content-Length {text[:20]!r}")
        announced = int(text)
    if announced is not None and announced > max_bytes:
        raise CheckpointError(f"{url}: the download is {announced} bytes, more than the limit of {max_bytes}")
    received = 0
    with (open(destination, "xb") as sink,
          tqdm(total=announced, unit="B", unit_scale=True, unit_divisor=1024, desc="Downloading", file=sys.stderr,
               disable=not show_progress, mininterval=0.5) as bar):
        while chunk := response.read(_CHUNK_BYTES):
            received += len(chunk)
            if received > max_bytes:
                raise CheckpointError(f"{url}: the download exceeds the limit of {max_bytes} bytes")
            sink.write(chunk)
            bar.update(len(chunk))
    if announced is not None and received != announced:
        raise CheckpointError(f"{url}: download incomplete ({received} of {announced} bytes)")
