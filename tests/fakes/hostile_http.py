"""A hostile HTTP server on 127.0.0.1 (a t.me mirror or a proxy that lies), one raw socket per
request, in a thread, so that httpx's real connection and decoding code runs.

Modes (each answers every request the same way):

- ``gzip-bomb``: a small body that inflates to ``inflated`` bytes, gzipped ``layers`` times
  (``Content-Encoding: gzip`` or ``gzip, gzip``; twice, 64 MB is about 200 bytes). httpx
  decodes a chain of codings (``httpx/_models.py``, ``_get_content_decoder``: one decoder
  per coding in the header, ``MultiDecoder``), and each
  decoder inflates a whole raw chunk at once (``httpx/_decoders.py``, ``GZipDecoder.decode``:
  ``decompressor.decompress(data)`` with no output limit): a body of a few hundred bytes is
  hundreds of MB in memory before a reader sees the first decoded chunk.
- ``bad-gzip``: ``Content-Encoding: gzip`` on bytes that are not gzip (a broken proxy).
- ``gzip-page``: ``page`` gzipped once, as t.me itself answers a client that accepts gzip.

``requests`` counts the requests answered.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
from types import TracebackType

MODES = ("gzip-bomb", "bad-gzip", "gzip-page")


def gzip_bomb(inflated: int, layers: int = 2) -> bytes:
    """``inflated`` zero bytes, gzipped ``layers`` times."""
    body = b"\0" * inflated
    for _ in range(layers):
        body = gzip.compress(body, 9)
    return body


class HostileHttp:
    """``with HostileHttp("gzip-bomb", inflated=64 << 20) as srv: ... srv.url ...``"""

    def __init__(
        self, mode: str, *, inflated: int = 64 << 20, layers: int = 2, page: bytes = b""
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: one of {MODES}")
        self.mode = mode
        self.requests = 0
        if mode == "gzip-bomb":
            self.body = gzip_bomb(inflated, layers)
            self.encoding = ", ".join(["gzip"] * layers)
        elif mode == "gzip-page":
            self.body, self.encoding = gzip.compress(page), "gzip"
        else:
            self.body, self.encoding = b"this is not gzip at all" * 10, "gzip"
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.settimeout(2)
                request = b""
                while b"\r\n\r\n" not in request:
                    data = conn.recv(4096)
                    if not data:
                        break
                    request += data
                self.requests += 1
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                    f"Content-Encoding: {self.encoding}\r\nContent-Length: {len(self.body)}\r\n"
                    "Connection: close\r\n\r\n"
                )
                conn.sendall(head.encode() + self.body)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=2)

    def __enter__(self) -> HostileHttp:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
