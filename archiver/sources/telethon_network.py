"""Deadlines and bounded reconnects for Telethon, so that a network fault never spins or hangs.

What Telethon 1.45 does on its own, and why each needs a bound (checked against its source
and against ``tests/fakes/faultserver.py``):

- **Reset after connect.** ``MTProtoSender._reconnect`` (``network/mtprotosender.py``) counts
  only *failed* TCP connects against ``connection_retries``; a connect that succeeds ends the
  retry loop and resends every pending request. A server that accepts and resets at once
  therefore gets a new connection about 400 times a second, for ever, with a warning logged
  each time (``network/connection/connection.py``: "Server closed the connection"), and the
  request that started it never completes. :class:`GuardedConnection` counts connections
  since the last packet actually received, waits a growing, jittered delay before each new
  one, and refuses (``ConnectionError``) past ``[telegram] connect_attempts``; Telethon then
  gives up, disconnects and fails the pending requests, which the sync records per channel.
  A ``connect()`` that telewatch itself asks for later (the live listener's reconnect, the
  next pass of ``run``) starts a new count: the bound is on Telethon's own loop, not on the
  client for ever.
- **No answer.** Nothing in Telethon times out a request that was sent and never answered (a
  stall), nor one whose answer trickles in a byte at a time (``tcpfull.py`` waits for the
  length it read). :class:`DeadlineClient` gives every request a deadline
  (``[telegram] timeout_seconds``), and :func:`open_client` gives connecting and the login
  check one as well.

Waits are real in production and switched off in tests with ``stamina.set_testing(True)``,
the switch of the retry library used by :func:`open_client`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import stamina
from telethon import TelegramClient
from telethon.network.connection.tcpfull import ConnectionTcpFull

from archiver.config import Settings
from archiver.errors import SourceError

log = logging.getLogger(__name__)

WAIT_INITIAL = 0.5  # seconds before the second connection; doubled each time
WAIT_MAX = 30.0
WAIT_JITTER = 1.0  # up to this much added at random, so that many clients do not align


class TelegramUnreachable(SourceError):
    """Telegram could not be reached, or stopped answering, during a pass: every Telethon
    channel of the pass is recorded with this reason, and the other sources go on."""


def backoff(failures: int) -> float:
    """Seconds to wait before connection number ``failures + 1``: exponential, capped,
    with jitter; 0 in tests (``stamina.set_testing``)."""
    if failures <= 0 or stamina.is_testing():
        return 0.0
    base = min(WAIT_MAX, WAIT_INITIAL * 2 ** (failures - 1))
    jitter: float = random.uniform(0, WAIT_JITTER)  # not a secret: spreads retries apart
    return float(min(WAIT_MAX, base + jitter))


class ReconnectBudget:
    """Connections opened since a packet was last received. Shared by every connection of one
    client, so that Telethon's reconnect loop, which starts afresh after each successful
    connect, still has a bound."""

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts
        self.failures = 0  # connections opened since a packet last arrived
        self.total = 0  # connections opened, ever (for logs and tests)

    async def before_connect(self) -> None:
        if self.failures >= self.attempts:
            raise ConnectionError(
                f"Telegram dropped or refused {self.failures} connections in a row"
                " ([telegram] connect_attempts)"
            )
        wait = backoff(self.failures)
        if wait:
            log.info("telegram: connection %d in a row, waiting %.1f s", self.failures + 1, wait)
            await asyncio.sleep(wait)
        self.failures += 1
        self.total += 1

    def received(self) -> None:
        self.failures = 0


class GuardedConnection(ConnectionTcpFull):  # type: ignore[misc]
    """Telethon's default transport with :class:`ReconnectBudget` in front of every connect.
    Telethon takes a connection *class*; :func:`guarded_connection` makes one per budget."""

    budget: ReconnectBudget = ReconnectBudget(4)

    async def connect(self, timeout: Any = None, ssl: Any = None) -> None:  # noqa: ASYNC109 - Telethon's signature
        await self.budget.before_connect()
        await super().connect(timeout=timeout, ssl=ssl)

    async def recv(self) -> Any:
        data = await super().recv()
        self.budget.received()
        return data


def guarded_connection(budget: ReconnectBudget) -> type[GuardedConnection]:
    return type("GuardedConnection", (GuardedConnection,), {"budget": budget})


class DeadlineClient(TelegramClient):  # type: ignore[misc]
    """A TelegramClient whose every request has a deadline (``request_timeout`` seconds):
    ``TimeoutError`` naming the request instead of waiting for ever."""

    request_timeout: float = 30.0

    async def connect(self) -> None:
        """Telethon's connect, with a new count of the reconnect guard (after an outage the
        client may try Telegram again: the guard bounds each attempt, not the client's life)
        and a deadline: Telethon awaits the answer to its first request (``InitConnection``,
        ``telegrambaseclient.py``) with none, so a server that accepts and never answers held
        a reconnect for ever. On the deadline the half-made connection is dropped."""
        budget = getattr(self._connection, "budget", None)
        if isinstance(budget, ReconnectBudget):
            budget.failures = 0
        seconds = 2 * self.request_timeout
        try:
            async with asyncio.timeout(seconds):
                await super().connect()
        except TimeoutError:
            await _drop([self])
            raise TimeoutError(
                f"Telegram did not answer the connection within {seconds:g} s"
            ) from None

    async def __call__(
        self, request: Any, ordered: bool = False, flood_sleep_threshold: Any = None
    ) -> Any:
        try:
            async with asyncio.timeout(self.request_timeout):
                return await super().__call__(request, ordered, flood_sleep_threshold)
        except TimeoutError:
            name = type(request).__name__ if not isinstance(request, list) else "requests"
            raise TimeoutError(
                f"Telegram did not answer {name} within {self.request_timeout:g} s"
            ) from None

    async def _handle_auto_reconnect(self) -> None:
        """Telethon runs this in a task of its own after each reconnect; when the connection
        fails again at once, its exception would go unretrieved (and be printed at exit)."""
        try:
            await super()._handle_auto_reconnect()
        except (OSError, BufferError) as exc:  # TimeoutError is an OSError
            log.info("telegram: reconnected, then lost again (%s)", type(exc).__name__)


def network_kwargs(settings: Settings) -> dict[str, Any]:
    """What ``make_client`` passes to Telethon so the guards above apply: the guarded
    transport, Telethon's own retries bounded by ``connect_attempts`` (the waits are ours),
    and the connect timeout."""
    tg = settings.telegram
    return {
        "connection": guarded_connection(ReconnectBudget(tg.connect_attempts)),
        "connection_retries": tg.connect_attempts,
        "retry_delay": 0,
        "timeout": tg.timeout_seconds,
    }


def is_network_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is the network failing: a refused or
    dropped connection, a deadline, or bytes that are not MTProto (Telethon's
    ``InvalidBufferError`` is a ``BufferError``). A cancel is never one, also when it was
    raised while a network failure was being handled (Telethon's ``_try_connect`` sleeps its
    retry delay inside its ``except IOError``): retried, the cancel would be lost."""
    if not isinstance(exc, Exception):  # CancelledError, KeyboardInterrupt, SystemExit
        return False
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError | BufferError | TelegramUnreachable):  # TimeoutError is one
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def _factory(settings: Settings, made: list[Any]) -> Any:
    """A client factory for ``connect_client`` that applies the guards above and remembers
    the client, so that a failed or timed-out connect can still be disconnected."""
    from archiver.sources.telethon_session import make_client

    def make(session: Any, api_id: int, api_hash: str, *, receive_updates: bool = False,
             catch_up: bool = False) -> Any:  # fmt: skip
        client = make_client(
            session, api_id, api_hash, receive_updates=receive_updates, catch_up=catch_up,
            **network_kwargs(settings),
        )  # fmt: skip
        client.request_timeout = settings.telegram.timeout_seconds
        made.append(client)
        return client

    return make


async def _drop(clients: list[Any]) -> None:
    """Disconnect clients of failed attempts (bounded: Telethon's disconnect can wait on a
    connection that never closes)."""
    for client in clients:
        try:
            async with asyncio.timeout(5):
                await client.disconnect()
        except (TimeoutError, OSError) as exc:
            log.debug("telegram: disconnecting a failed client: %s", type(exc).__name__)
    clients.clear()


def offline_client(settings: Settings, *, receive_updates: bool = False) -> Any:
    """The client :func:`open_client` would give, not connected: ``run`` goes on with it when
    Telegram cannot be reached at start (the web channels and the bot need no Telegram
    client), and connects it at the next pass or in the live listener's reconnect loop."""
    from archiver.sources.telethon_session import unconnected_client

    return unconnected_client(
        settings, receive_updates=receive_updates, factory=_factory(settings, [])
    )


async def open_client(
    settings: Settings, *, receive_updates: bool = False, archive: Any = None
) -> Any:
    """``connect_client`` with a deadline on each try and a bounded retry (stamina: backoff
    with jitter) of the network failures only; a missing or revoked login is raised at once.
    Raises :class:`TelegramUnreachable` with one line naming the cause. ``archive``: whose
    flood ledger the client checks from its first request (see ``connect_client``)."""
    from archiver.sources import telethon as tg_source

    tg = settings.telegram
    deadline = tg.timeout_seconds * 2  # connect, then the login check: one request each
    made: list[Any] = []
    try:
        async for attempt in stamina.retry_context(
            on=is_network_failure,
            attempts=2,
            timeout=None,
            wait_initial=1.0,
            wait_max=WAIT_MAX,
            wait_jitter=WAIT_JITTER,
        ):
            with attempt:
                try:
                    async with asyncio.timeout(deadline):
                        client = await tg_source.connect_client(
                            settings,
                            receive_updates=receive_updates,
                            factory=_factory(settings, made),
                            archive=archive,
                        )
                except BaseException:
                    await _drop(made)
                    raise
                return client
    except TimeoutError:
        raise TelegramUnreachable(
            f"Telegram did not answer within {deadline:g} s (connect and login check);"
            " check the network, or raise [telegram] timeout_seconds"
        ) from None
    except BufferError as exc:  # not MTProto on the wire: a proxy or captive portal in between
        raise TelegramUnreachable(
            "the server at Telegram's address answered with something that is not Telegram"
            f" ({type(exc).__name__}); check the network, a proxy or a firewall in between"
        ) from None
    except SourceError as exc:
        if is_network_failure(exc) and not isinstance(exc, TelegramUnreachable):
            raise TelegramUnreachable(str(exc)) from exc
        raise
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
