"""A loopback TCP endpoint that fails the way networks fail, for Telethon and for t.me alike.

Timeouts alone do not cover these (shared/TESTING.md, "Network faults"):

- ``reset``: accept, then close with ``SO_LINGER`` 0, so the peer gets a TCP RST
  (``ConnectionResetError``). A datacenter behind a broken middlebox or a dropped NAT entry
  does this; Telethon's ``_reconnect`` (``network/mtprotosender.py``) treats every successful
  TCP connect as a recovery, so against this it reconnected about 400 times a second.
- ``stall``: accept, read whatever comes and never answer (a black-holed route, a proxy that
  hangs). Nothing in Telethon times out a request that got no answer.
- ``trickle``: accept and send one byte every ``trickle_every`` seconds, forever. A read
  timeout never fires (bytes keep coming); for MTProto the first eight bytes announce a
  packet of about 2 GB that never completes (``network/connection/tcpfull.py`` waits for it).
- ``refused``: nothing listens on the port (``ConnectionRefusedError`` at once).

Runs in a thread, so a test may point a subprocess at it too. ``connections`` counts accepted
connections: a client that spins shows up there.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

MODES = ("reset", "stall", "trickle", "refused")


class FaultServer:
    """``with FaultServer("reset") as srv: ... srv.port ...``"""

    def __init__(self, mode: str, *, trickle_every: float = 1.0, trickle_byte: bytes = b"\x7f"):
        if mode not in MODES:
            raise ValueError(f"mode: one of {MODES}")
        self.mode = mode
        self.trickle_every = trickle_every
        self.trickle_byte = trickle_byte
        self.connections = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._clients: list[socket.socket] = []
        if mode == "refused":
            self._sock.close()  # the port was ours a moment ago: nothing listens there now
        else:
            self._sock.listen(64)
            self._sock.settimeout(0.1)
            self._start(self._accept_loop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        t.start()
        self._threads.append(t)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._clients.append(conn)
            if self.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            elif self.mode == "stall":
                self._start(self._drain, conn)
            else:
                self._start(self._trickle, conn)

    def _drain(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        while not self._stop.is_set():
            try:
                if not conn.recv(65536):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def _trickle(self, conn: socket.socket) -> None:
        while not self._stop.wait(self.trickle_every):
            try:
                conn.sendall(self.trickle_byte)
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        if self.mode != "refused":
            self._sock.close()
        with self._lock:
            for conn in self._clients:
                with contextlib.suppress(OSError):
                    conn.close()
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
