"""One :class:`~fakes.telethon_client.FakeTelegram` shared by several telewatch *processes*.

The in-process fake replaces a client's sender with :class:`FakeSender`; a worker started as a
real subprocess (``telewatch run --worker NAME``) cannot reach the test's objects. Here the
test serves its ``FakeTelegram`` on a loopback socket (:func:`serve`), and the worker is
started through this file (``python tests/fakes/telethon_remote.py HOST:PORT -- ARGS...``),
which gives every telewatch client a :class:`RemoteSender`: the sender surface of Telethon's
``MTProtoSender`` (``network/mtprotosender.py``: ``connect``, ``send`` returning a future,
``disconnect``, ``disconnected``, ``auth_key``, updates into the client's queue), carried
over the socket. What crosses it is what crosses Telegram's wire: each request as its TL
bytes (``bytes(request)``, read back with ``BinaryReader.tgread_object``), each result as
its TL bytes, pushed updates as TL bytes; an RPC error as the error Telethon would raise
(pickled, as Telethon's ``RPCError.__reduce__`` allows).

What sharing adds to the in-process fake, and where it comes from:

- **One session in two places.** Telegram answers ``AUTH_KEY_DUPLICATED`` (406) when one
  authorization key is used from two connections in different places at the same time
  (https://core.telegram.org/api/errors#406-not-acceptable; Telethon's own
  ``AuthKeyDuplicatedError`` text: "used under two different IP addresses simultaneously";
  TESTING.md: "the same session used from two places gets AuthKeyDuplicatedError"). A key
  connected from two worker processes at once gets that error on its next request, and the
  server counts it in :attr:`Served.duplicated` (a correct set of workers keeps it empty).
  A killed process's socket is closed by its kernel, so its connection ends at once; on the
  real Telegram the server notices later, which only makes a hand-over *safer* there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import struct
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from telethon.crypto import AuthKey
from telethon.extensions import BinaryReader
from telethon.network.mtprotosender import MTProtoSender

HEADER = struct.Struct(">I")


async def _read(reader: asyncio.StreamReader) -> Any:
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    return pickle.loads(await reader.readexactly(size))


def _frame(obj: Any) -> bytes:
    data = pickle.dumps(obj)
    return HEADER.pack(len(data)) + data


def _tl(data: bytes) -> Any:
    return BinaryReader(data).tgread_object()


# ------------------------------------------------------------------------------- the server
class _Pushed:
    """The server's end of a worker's update queue: ``FakeTelegram._push`` puts an
    ``Updates`` here; it goes to the worker as TL bytes."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def put_nowait(self, updates: Any) -> None:
        if not self.writer.is_closing():
            self.writer.write(_frame(("upd", 0, bytes(updates))))


class _Connection:
    """One worker client's connection, as :meth:`FakeTelegram.answer` sees a sender."""

    def __init__(self, tg: Any, key: bytes | None, place: int, writer: asyncio.StreamWriter):
        self.tg = tg
        self.auth_key = AuthKey(key) if key else None
        self.place = place  # the worker's pid: its "IP address"
        self.updates_queue = _Pushed(writer)
        self.connected = True
        self.subscribed = False
        self.down = False

    @property
    def account(self) -> int | None:
        key = getattr(self.auth_key, "key", None)
        return self.tg.keys.get(key) if key else None


@dataclass
class Served:
    host: str
    port: int
    connections: list[_Connection] = field(default_factory=list)
    duplicated: list[tuple[int | None, int]] = field(default_factory=list)  # (account, place)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def places(self, account: int) -> set[int]:
        """The worker processes connected as ``account`` now."""
        return {c.place for c in self.connections if c.connected and c.account == account}


@contextlib.asynccontextmanager
async def serve(tg: Any, host: str = "127.0.0.1") -> AsyncIterator[Served]:
    """Serve ``tg`` to worker processes on a loopback port, for the ``async with`` block."""
    served = Served(host, 0)

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            op, place, key = await _read(reader)
            assert op == "hello", op
            conn = _Connection(tg, key, place, writer)
            served.connections.append(conn)
            tg.senders.append(conn)  # pushed updates reach it as they reach a FakeSender
            while True:
                op, n, data = await _read(reader)
                request = _tl(data)
                try:
                    _no_duplicate(served, conn, request)
                    result = tg.answer(request, conn)
                    if isinstance(result, list):  # a Vector<T> (users.getUsers)
                        reply: tuple[str, int, Any] = ("okv", n, [bytes(x) for x in result])
                    else:
                        reply = ("ok", n, bytes(result))
                except Exception as exc:  # an RPC error goes back as Telethon would raise it
                    reply = ("err", n, exc)
                writer.write(_frame(reply))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker went away (a clean disconnect or a SIGKILL)
        finally:
            for c in served.connections:
                if c.updates_queue.writer is writer:
                    c.connected = False
                    with contextlib.suppress(ValueError):
                        tg.senders.remove(c)
            writer.close()

    server = await asyncio.start_server(connection, host, 0)
    served.port = server.sockets[0].getsockname()[1]
    try:
        yield served
    finally:
        server.close()
        for c in served.connections:
            c.updates_queue.writer.close()
        await server.wait_closed()


def _no_duplicate(served: Served, conn: _Connection, request: Any) -> None:
    from telethon import errors

    key = getattr(conn.auth_key, "key", None)
    if not key:
        return
    others = {
        c.place
        for c in served.connections
        if c.connected and c is not conn and getattr(c.auth_key, "key", None) == key
    }
    if others - {conn.place}:
        served.duplicated.append((conn.account, conn.place))
        raise errors.AuthKeyDuplicatedError(request=request)


# ------------------------------------------------------------------------- the worker's side
class RemoteSender:
    """Stands in for ``MTProtoSender`` in a worker process, answering from the test's fake."""

    def __init__(self, address: str, client: Any) -> None:
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.client = client
        self.auth_key: Any = client._sender.auth_key  # what TelegramBaseClient gave its sender
        self.updates_queue: asyncio.Queue[Any] = client._updates_queue
        self._updates_queue = self.updates_queue  # for MTProtoSender._store_own_updates
        self.connected = False
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._waiting: dict[int, tuple[Any, asyncio.Future[Any]]] = {}
        self._next = 0
        self._disconnected: asyncio.Future[None] | None = None

    @property
    def disconnected(self) -> asyncio.Future[None]:
        if self._disconnected is None or (self._disconnected.done() and self.connected):
            self._disconnected = asyncio.get_running_loop().create_future()
        return self._disconnected

    def is_connected(self) -> bool:
        return self.connected

    def _transport_connected(self) -> bool:
        return self.connected

    def _keepalive_ping(self, rnd_id: int) -> None:
        pass

    async def connect(self, connection: Any) -> bool:
        if self.connected:
            return False  # MTProtoSender.connect: "Sender already connected"
        if self.auth_key is None or not getattr(self.auth_key, "key", None):
            # the key exchange makes a new key no account has logged in with
            self.auth_key = AuthKey(os.urandom(256))
        reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._writer.write(_frame(("hello", os.getpid(), self.auth_key.key)))
        self.connected = True
        self._reading = asyncio.get_running_loop().create_task(self._read_loop(reader))
        return True

    def send(self, request: Any, ordered: bool = False) -> asyncio.Future[Any]:
        if not self.connected or self._writer is None:  # network/mtprotosender.py:189
            raise ConnectionError("Cannot send requests while disconnected")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._next += 1
        self._waiting[self._next] = (request, fut)
        self._writer.write(_frame(("send", self._next, bytes(request))))
        return fut

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                kind, n, data = await _read(reader)
                if kind == "upd":
                    self.updates_queue.put_nowait(_tl(data))
                    continue
                request, fut = self._waiting.pop(n)
                if fut.done():
                    continue
                if kind == "okv":
                    fut.set_result([_tl(x) for x in data])
                elif kind == "ok":
                    result = _tl(data)
                    MTProtoSender._store_own_updates(self, result)  # type: ignore[arg-type]
                    fut.set_result(result)
                else:
                    data.request = request
                    fut.set_exception(data)
        except (asyncio.IncompleteReadError, ConnectionError):
            self._lost(ConnectionError("the fake Telegram closed the connection"))

    def _lost(self, exc: BaseException) -> None:
        self.connected = False
        for _, fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("Cannot send requests while disconnected"))
        self._waiting.clear()
        fut = self.disconnected
        if not fut.done():
            fut.set_exception(exc)

    async def disconnect(self) -> None:
        self.connected = False
        if self._reading is not None:
            self._reading.cancel()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        fut = self.disconnected
        if not fut.done():
            fut.set_result(None)


def _install(address: str) -> None:
    """Every telewatch client of this process talks to the fake at ``address``."""
    from archiver.sources.telethon_session import Client

    original = Client.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._sender = RemoteSender(address, self)

    Client.__init__ = init  # type: ignore[method-assign]


def main() -> None:
    """``python tests/fakes/telethon_remote.py HOST:PORT -- telewatch ARGS...``"""
    address, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: telethon_remote.py HOST:PORT -- ARGS..."
    _install(address)
    from archiver.cli import main as telewatch

    sys.argv = ["telewatch", *args]
    telewatch()


if __name__ == "__main__":
    main()
