"""Network faults between telewatch and Telegram: a real ``TelegramClient`` (telewatch's own
class, Telethon's real sender and reconnect loop) against a loopback endpoint that resets,
stalls, trickles or refuses (tests/fakes/faultserver.py). No pass may spin or hang: each ends
with every Telethon channel recorded with the reason, and the web channels archived."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from fakes.faultserver import FaultServer
from fakes.telethon_client import settings_for
from fakes.tme import FakeTme

from archiver.channels import parse_ref
from archiver.config import Backfill, ChannelConfig, ScheduleSettings, WebSettings
from archiver.store.archive import Archive
from archiver.store.channels import get_channel
from archiver.sync import recheck_all, sync_all

from .conftest import aimed_session

TG_A = ChannelConfig(parse_ref("vsaldo"), backfill=Backfill("all"))
TG_B = ChannelConfig(parse_ref("other"), backfill=Backfill("all"))
WEB = ChannelConfig(parse_ref("testograd"), source="web", backfill=Backfill("all"))
HANG_GUARD = 60  # seconds: only to turn a hang into a failure; the pass ends far sooner


def fault_settings(tmp_path: Path, port: int, base_url: str, **telegram: object) -> object:
    tg: dict[str, object] = {"timeout_seconds": 0.2, "connect_attempts": 3, **telegram}
    s = settings_for(tmp_path, TG_A, WEB, TG_B, **tg)
    aimed_session(tmp_path / "tw.session", port)
    return replace(s, web=WebSettings(base_url=base_url, delay_seconds=0))


@pytest.mark.parametrize("mode", ["reset", "stall", "trickle", "refused"])
async def test_a_network_fault_fails_the_telethon_channels_and_the_web_ones_are_archived(
    mode: str, archive: Archive, tmp_path: Path, tme: tuple[FakeTme, str]
) -> None:
    fake, base = tme
    fake.channel("testograd").add_texts(range(1, 4))
    with FaultServer(mode, trickle_every=0.05) as srv:
        settings = fault_settings(tmp_path, srv.port, base)
        results = await asyncio.wait_for(sync_all(archive, settings), HANG_GUARD)
        connections = srv.connections
    assert [(r.channel, r.status) for r in results] == [
        ("vsaldo", "error"),
        ("testograd", "ok"),
        ("other", "error"),
    ]
    assert results[1].new_posts == 3
    assert results.login_lost is None
    for r in (results[0], results[2]):
        assert r.error is not None and "Telegram" in r.error
    # Bounded: connect_attempts per client, two tries of the whole connect (not thousands).
    assert connections <= 2 * 3
    row = await get_channel(archive, "testograd")
    assert row is not None and row.last_sync_status == "ok"


async def test_a_reset_does_not_flood_the_log(
    archive: Archive, tmp_path: Path, tme: tuple[FakeTme, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, base = tme
    caplog.set_level("WARNING", logger="telethon")
    with FaultServer("reset") as srv:
        settings = fault_settings(tmp_path, srv.port, base)
        await asyncio.wait_for(sync_all(archive, settings, channels=[TG_A]), HANG_GUARD)
    closed = [r for r in caplog.records if r.getMessage().startswith("Server closed the conn")]
    assert len(closed) <= 2 * 3


async def test_recheck_against_a_stall_ends_with_the_reason(
    archive: Archive, tmp_path: Path
) -> None:
    with FaultServer("stall") as srv:
        settings = fault_settings(tmp_path, srv.port, "https://t.me")
        results = await asyncio.wait_for(recheck_all(archive, settings), HANG_GUARD)
    assert [r.status for r in results] == ["error", "error"]
    assert "did not answer within 0.4 s" in (results[0].error or "")


async def test_the_pass_deadline_ends_a_pass_and_says_so(
    archive: Archive, tmp_path: Path, tme: tuple[FakeTme, str]
) -> None:
    fake, base = tme
    fake.channel("testograd").add_texts(range(1, 3))
    with FaultServer("stall") as srv:
        settings = fault_settings(tmp_path, srv.port, base, timeout_seconds=30)
        settings = replace(settings, schedule=ScheduleSettings(pass_deadline_seconds=0.5))
        results = await asyncio.wait_for(sync_all(archive, settings), HANG_GUARD)
    assert results.deadline
    assert [(r.channel, r.status) for r in results] == [
        ("vsaldo", "error"),
        ("testograd", "ok"),
        ("other", "error"),
    ]
    assert "pass_deadline_seconds = 0.5" in (results[0].error or "")
