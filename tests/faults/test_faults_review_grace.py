"""Break-it review of the hand-over grace (commit 80e9bb3, issue 18), with real Telethon
clients against loopback fault servers: a worker must never connect the session of an
account it no longer holds (another worker may have connected it: AUTH_KEY_DUPLICATED)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from fakes.faultserver import FaultServer
from fakes.telethon_client import settings_for

from archiver.config import AccountSettings
from archiver.runner import _jobs
from archiver.sources.telethon_network import network_kwargs
from archiver.sources.telethon_session import make_client
from archiver.store import leases as L
from archiver.store.archive import Archive
from archiver.units import Units, _Account
from archiver.worker import Change, Worker

from .conftest import aimed_session

HANG_GUARD = 60


async def test_an_account_given_back_during_the_sync_jobs_reconnect_stays_disconnected(
    tmp_path: Path, archive: Archive
) -> None:
    """w1 holds accounts a and b, polled (no live listener), both dropped by Telegram (or
    never reached at start: ``_open_telegram`` goes on with an offline client). Its sync job
    connects them again first (runner._jobs: ``connected``, over a snapshot of
    ``units.polled_clients()``), and a's connect takes a while (a datacenter slow to answer).
    Meanwhile a second worker starts and w1 gives b back (its share is one unit now): b is
    stopped, disconnected, released, free at once for the newcomer. The sync job must not
    then connect b's session in w1: b's client is no longer w1's to use."""
    with FaultServer("stall") as srv_a, FaultServer("stall") as srv_b:
        base = settings_for(tmp_path, "chan_a", "chan_b", timeout_seconds=1.0, connect_attempts=1)
        accounts = (AccountSettings("a", tmp_path / "a.session"),
                    AccountSettings("b", tmp_path / "b.session"))  # fmt: skip
        settings = replace(base, configured_accounts=accounts)
        clients: dict[str, Any] = {}
        for name, srv in (("a", srv_a), ("b", srv_b)):
            aimed_session(tmp_path / f"{name}.session", srv.port)
            c = make_client(str(tmp_path / f"{name}.session"), 1, "0" * 32,
                            **network_kwargs(settings))  # fmt: skip
            c.request_timeout = 1.0  # connect: 2 s at most (DeadlineClient.connect)
            clients[name] = c
        cfg_a, cfg_b = settings.channels
        worker = Worker(archive, settings, "w1")
        worker.held = {L.account_unit("a"), L.account_unit("b")}
        worker.units = {L.account_unit("a"): [cfg_a], L.account_unit("b"): [cfg_b]}
        worker.assigned.update({"chan_a": "a", "chan_b": "b"})

        def fatal(exc: Exception) -> None:
            raise AssertionError(f"fatal: {exc}")

        never: Any = None  # the clients are there already: nothing opens one
        units = Units(
            archive, settings, worker, asyncio.Event(), open_client=never,
            failed=lambda *_: None, catch_up=lambda: None, session_locks=False,
        )  # fmt: skip
        for name, c in clients.items():
            units.accounts[name] = _Account(client=c, ready=True)
        jobs = _jobs(archive, settings, units, False, asyncio.Event(), fatal)
        try:
            sync = asyncio.create_task(jobs["sync"]())
            while srv_a.connections == 0 and not sync.done():  # a's connect is under way
                await asyncio.sleep(0.01)
            # a newcomer: w1's share is one unit now, it gives b back (stopped first)
            await units.apply(Change(extra={L.account_unit("b")}))
            assert not clients["b"].is_connected()
            given_back = srv_b.connections
            await asyncio.wait_for(sync, HANG_GUARD)
            after = srv_b.connections - given_back
        finally:
            for c in clients.values():
                await c.disconnect()
    assert after == 0, f"w1 connected b's session {after} time(s) after giving it back"
