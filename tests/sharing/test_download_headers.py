"""A server's malformed Content-Length is one error line naming the URL, and nothing is left behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autounet.errors import CheckpointError
from autounet.sharing.download import download


@contextmanager
def _serving(content_length: str) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            self.send_response(200)
            self.send_header("Content-Length", content_length)
            self.end_headers()
            self.wfile.write(b"0123456789")

        def log_message(self, *args: object) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/model.zip"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("content_length", ["\u00b2", "9" * 5000, "-5", "1e3"])
def test_a_malformed_content_length_is_one_line(tmp_path: Path, content_length: str) -> None:
    destination = tmp_path / "model.zip"
    with _serving(content_length) as url, pytest.raises(CheckpointError) as info:
        download(url, destination, max_bytes=1 << 20, show_progress=False)
    message = str(info.value)
    assert message.startswith(url) and "malformed Content-Length" in message and "\n" not in message
    assert len(message) < 200 and not destination.exists()


def test_a_well_formed_content_length_downloads(tmp_path: Path) -> None:
    destination = tmp_path / "model.zip"
    with _serving("10") as url:
        download(url, destination, max_bytes=1 << 20, show_progress=False)
    assert destination.read_bytes() == b"0123456789"
