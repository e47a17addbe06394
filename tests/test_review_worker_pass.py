"""Break-it review of 60b8f2e/46b3155 (sync --worker stopping its pass, beat as an upsert,
run --worker starting its accounts while the lease loop runs): the paths where the pass's
cancellation escapes as a raw CancelledError, or one session is used by two processes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from archiver.channels import parse_ref
from archiver.config import ChannelConfig, Settings, StorageSettings, WorkersSettings
from archiver.errors import TelewatchError
from archiver.store import leases as L
from archiver.store.archive import Archive


async def test_a_let_go_while_the_pass_is_ending_is_one_line_not_a_cancelled_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync --worker w1`'s pass ends while Worker.keep is in the middle of a renewal; the
    renewal then finds that the name was started again elsewhere (or that the leases run
    out: the same path) and calls let_go, which cancels the pass task. The pass task is by
    then in its ``finally``, awaiting the renewal loop: the CancelledError is raised there,
    outside the ``except CancelledError`` that turns it into one line, so worker.stop() and
    the leases' connection's close are skipped and `sync` ends with a raw CancelledError
    (asyncio.run prints its traceback)."""
    from archiver import cli, sync
    from archiver.sync import PassResults

    s = Settings(
        channels=(ChannelConfig(parse_ref("chan0"), source="web"),),
        workers=WorkersSettings(lease_seconds=3),  # a renewal every second
        storage=StorageSettings(path=tmp_path / "a.db"),
    )
    renewing = asyncio.Event()
    real_beat = L.beat
    beats: list[str] = []

    async def beat(archive: Any, name: str, host: str, pid: int, now: str) -> None:
        beats.append(now)
        if len(beats) == 1:  # the start's tick
            return await real_beat(archive, name, host, pid, now)
        renewing.set()  # the pass ends meanwhile and waits for this renewal loop
        for _ in range(50):
            await asyncio.sleep(0)
        raise L.WorkerReplaced("worker w1: another process (pid 2 on box2) now runs under it")

    async def a_pass(*args: Any, **kwargs: Any) -> PassResults:
        await renewing.wait()
        return PassResults()

    monkeypatch.setattr(L, "beat", beat)
    monkeypatch.setattr(sync, "sync_all", a_pass)
    async with await Archive.open(tmp_path / "a.db") as archive:
        try:
            await asyncio.wait_for(
                cli._interruptible(cli._worker_pass(archive, s, "w1"), "sync"), 30
            )
        except TelewatchError:
            pass  # one line: the pass's work was done, the name is another process's now
        except asyncio.CancelledError:
            pytest.fail("the pass's cancellation escaped as a raw CancelledError")
    assert len(beats) == 2


async def test_a_start_whose_waiter_is_cancelled_is_still_stopped_by_stop_all(
    tmp_path: Path,
) -> None:
    """`run --worker w1` is stopped (SIGTERM) while its account starts, say sleeping out a
    flood wait at the login check (runner._until_stopped cancels the start-up): the
    cancel lands in Units.start(wait=True)'s ``asyncio.wait``, whose ``finally`` forgets
    the start task (acc.starting = None) without cancelling it. Then the exit stack's
    units.stop_all() finds no start to cancel and no client to disconnect, and
    worker.stop() releases the account, free at once (NEVER) for another worker, while
    the orphaned start goes on opening the session (it is cancelled only when asyncio.run
    ends, after record_end and the archive's close). It also holds the session's file lock,
    which stop() has already released under it."""
    from archiver.units import Units
    from archiver.worker import Worker

    opening = asyncio.Event()
    opened: list[str] = []  # "cancelled" once the start is cancelled

    async def open_client(settings: Any, live: bool, archive: Any, *, wait: bool) -> Any:
        opening.set()
        try:
            await asyncio.Event().wait()  # the flood wait at the login check
        except asyncio.CancelledError:
            opened.append("cancelled")
            raise

    s = Settings(
        channels=(ChannelConfig(parse_ref("chan"), source="telethon"),),
        workers=WorkersSettings(lease_seconds=30),
    )
    async with await Archive.open(tmp_path / "a.db") as a:
        worker = Worker(a, s, "w1")
        units = Units(
            a, s, worker, asyncio.Event(), open_client=open_client,
            failed=lambda *_: None, catch_up=lambda: None, session_locks=False,
        )  # fmt: skip
        starting = asyncio.ensure_future(units.start(L.account_unit("main"), wait=True))
        await asyncio.wait_for(opening.wait(), 10)
        starting.cancel()  # runner._until_stopped: a signal during start-up
        await asyncio.wait([starting])
        await units.stop_all()  # the exit stack, before worker.stop() releases the unit
        for _ in range(10):
            await asyncio.sleep(0)
        assert opened == ["cancelled"], "the start goes on after its unit was stopped"


async def test_a_cancel_during_telethons_connect_retry_is_not_retried_as_a_network_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Telethon's MTProtoSender._try_connect (network/mtprotosender.py, 1.45) catches a failed
    connect (IOError) and sleeps ``retry_delay`` INSIDE the except block; a cancel landing
    there (a let-go of sync --worker's pass, a stop of the unit's start) is a CancelledError
    whose __context__ is that OSError. is_network_failure follows __context__, so stamina's
    retry in open_client takes the cancel for a network failure, swallows it and connects
    again: the session is connected after the pass or the start was told to stop."""
    from archiver.sources import telethon as tg_source
    from archiver.sources import telethon_network as net

    sleeping = asyncio.Event()
    calls: list[int] = []

    class Client:
        async def disconnect(self) -> None:
            pass

    async def connect_client(settings: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            try:
                raise ConnectionRefusedError("connect refused")
            except OSError:  # as _try_connect: log, then sleep the retry delay
                sleeping.set()
                await asyncio.sleep(3600)
        return Client()  # the next attempt connects

    monkeypatch.setattr(tg_source, "connect_client", connect_client)
    monkeypatch.setattr(net, "WAIT_MAX", 0.01)
    monkeypatch.setattr(net, "WAIT_JITTER", 0.0)
    opening = asyncio.ensure_future(net.open_client(Settings()))
    await asyncio.wait_for(sleeping.wait(), 10)
    opening.cancel()  # the pass is stopped (its leases run out) while Telethon retries
    done, _ = await asyncio.wait([opening], timeout=30)
    assert done and opening.cancelled(), f"connected again after the cancel ({len(calls)} tries)"
