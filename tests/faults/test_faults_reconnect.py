"""After a network fault, ``telewatch run`` finds Telegram again (review of issue 15).

What main did (each test below failed on it):

- The reconnect guard (``ReconnectBudget``) counted connections "since a packet was last
  received" and never started a new count: after one outage, every later ``connect()`` of the
  same client was refused before touching the network. The live listener's reconnect loop
  then retried for ever without one connection: live following was dead until a restart.
- ``run`` without live channels connected its one client at start and never again: once
  Telethon gave up reconnecting, every scheduled pass failed with "Cannot send requests while
  disconnected", for ever.
- ``run`` with Telegram unreachable at start exited 1 (a restart loop under Docker), so its
  web channels were never archived and the bot never ran.

(A flood wait on the login check taken for a revoked session, found by the same review, was
fixed on main meanwhile: tests/sources/test_telethon_ledger.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fakes.faultserver import FaultServer
from fakes.telethon_client import settings_for
from fakes.tme import FakeTme
from telethon.sessions import SQLiteSession

from archiver.runner import _jobs
from archiver.sources.telethon_network import network_kwargs
from archiver.sources.telethon_session import make_client
from archiver.store.archive import Archive

from .conftest import aimed_session
from .test_faults_process import env, write_config

HANG_GUARD = 60


def guarded_client(tmp_path: Path, port: int) -> Any:
    """telewatch's own client (the reconnect guard, the deadlines) on a session aimed at
    127.0.0.1:``port``, not connected."""
    settings = settings_for(tmp_path, "vsaldo", timeout_seconds=0.3, connect_attempts=2)
    aimed_session(tmp_path / "tw.session", port)
    client = make_client(str(tmp_path / "tw.session"), 1, "0" * 32, **network_kwargs(settings))
    client.request_timeout = 0.3
    return client


async def test_a_reconnect_reaches_telegram_again_after_an_outage(tmp_path: Path) -> None:
    with FaultServer("reset") as outage:
        client = guarded_client(tmp_path, outage.port)
        with pytest.raises(OSError):
            await asyncio.wait_for(client.connect(), HANG_GUARD)
    try:
        with FaultServer("stall") as back:  # something answers TCP at Telegram's address again
            session: SQLiteSession = client.session
            session.set_dc(2, "127.0.0.1", back.port)
            with contextlib.suppress(OSError):  # it may fail later on: it must be tried
                await asyncio.wait_for(client.connect(), HANG_GUARD)
            tried = back.connections
    finally:
        await client.disconnect()
    assert tried >= 1, "the client refused to connect without trying the network"


async def test_a_run_without_live_channels_connects_again_before_a_pass(
    tmp_path: Path, archive: Archive
) -> None:
    with FaultServer("stall") as srv:
        client = guarded_client(tmp_path, srv.port)  # dropped (never connected, or given up)
        settings = settings_for(tmp_path, "vsaldo", timeout_seconds=0.3, connect_attempts=2)

        def fatal(exc: Exception) -> None:
            raise AssertionError(f"fatal: {exc}")

        jobs = _jobs(archive, settings, client, False, asyncio.Event(), fatal)
        try:
            await asyncio.wait_for(jobs["sync"](), HANG_GUARD)
        finally:
            await client.disconnect()
        tried = srv.connections
    assert tried >= 1, "the pass ran on a disconnected client without connecting it"


def archived(db: Path, username: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            row = conn.execute(
                "SELECT count(*) FROM posts JOIN channels ON channels.id = posts.channel_id"
                " WHERE channels.username = ?",
                (username,),
            ).fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0])


def test_run_goes_on_without_telegram_and_archives_the_web_channels(
    tmp_path: Path, tme: tuple[FakeTme, str]
) -> None:
    fake, base = tme
    fake.channel("testograd").add_texts(range(1, 4))
    with FaultServer("reset") as srv:
        config = write_config(tmp_path, srv.port, base, timeout=0.5)
        text = config.read_text(encoding="utf-8").replace('sync = ""\n', "")  # sync at start
        config.write_text(text, encoding="utf-8")
        proc = subprocess.Popen(
            [sys.executable, "-m", "archiver", "--config", str(config), "run", "--no-bot"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + HANG_GUARD
            while archived(tmp_path / "a.db", "testograd") < 3:
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            running = proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=HANG_GUARD)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert running, f"run ended with Telegram unreachable (exit {proc.returncode}): {stderr[-500:]}"
    assert archived(tmp_path / "a.db", "testograd") == 3
    assert proc.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr
