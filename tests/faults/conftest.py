"""Fixtures of the fault-injection suite: a real Telethon session aimed at a loopback fault
endpoint, a fake t.me over HTTP, and retries whose waits are switched off."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
import stamina
from fakes.tme import FakeTme
from fakes.tme_http import serve_tme


@pytest.fixture(autouse=True)
def no_retry_waits() -> Iterator[None]:
    """stamina's test switch: no backoff waits (telewatch's reconnect guard honours it too);
    the attempts telewatch asks for are kept (capped at 10)."""
    with stamina.set_testing(True, attempts=10, cap=True):
        yield


def aimed_session(path: Path, port: int) -> None:
    """A Telethon session file that is logged in as far as the file says (an auth key) and
    whose datacenter is 127.0.0.1:``port``. Telethon connects to the session's address when
    it has one (``telegrambaseclient.py``, ``connect``)."""
    import os

    from telethon.crypto import AuthKey
    from telethon.sessions import SQLiteSession

    s = SQLiteSession(str(path))
    s.set_dc(2, "127.0.0.1", port)
    s.auth_key = AuthKey(os.urandom(256))
    s.save()
    s.close()


@pytest.fixture(autouse=True)
def collect_telethon_futures() -> Iterator[None]:
    """Telethon fails the futures of its own pings with the connection's error and never
    awaits them; collect them here, where asyncio's "never retrieved" report is harmless,
    rather than during a later compile (CPython 3.11 then fails with "AST constructor
    recursion depth mismatch")."""
    yield
    gc.collect()


@pytest.fixture
def tme() -> Iterator[tuple[FakeTme, str]]:
    fake = FakeTme()
    with serve_tme(fake) as base:
        yield fake, base
