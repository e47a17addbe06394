"""``FakeTme`` (tests/fakes/tme.py) served over real HTTP on 127.0.0.1, in a thread, for tests
that run telewatch as a process or through its own HTTP client unchanged."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from fakes.tme import FakeTme


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTme

    def do_GET(self) -> None:
        host = self.headers.get("Host", "127.0.0.1")
        request = httpx.Request("GET", f"http://{host}{self.path}", headers=dict(self.headers))
        response = self.fake.handle(request)
        body = response.content
        self.send_response(response.status_code)
        for key, value in response.headers.items():
            if key.lower() not in ("content-length", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_tme(fake: FakeTme) -> Iterator[str]:
    """Serve ``fake``; yields its base URL (``http://127.0.0.1:<port>``)."""
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
