"""`stats`, `health` and the bot's /status with [[accounts]] (issue 18): which account follows
each Telethon channel, and a channel no account has room for, named with what to do."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakes.telethon_client import SELF_ID, FakeTelegram, Sleeper, attach

from archiver.cli import cli
from archiver.config import load_settings
from archiver.health import check_health
from archiver.sources import telethon_session
from archiver.store.archive import Archive
from archiver.store.outbox import OutboxCounts
from archiver.store.search import channel_stats
from archiver.sync import SyncOptions, sync_all

DESK2 = 555000222
BARE = {"alpha": 1811111101, "bravo": 1811111102, "charlie": 1811111103}


@pytest.fixture
def synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config with two accounts of one channel each (join_limit 1), three channels, synced
    once with the fake Telegram: charlie has no account."""
    t = FakeTelegram()
    t.add_account(DESK2)
    for name, bare in BARE.items():
        t.add_channel(bare, name, name.title())
        t.posts(2, bare_id=bare, text=name + " {}")
    real = telethon_session.make_client
    monkeypatch.setattr(telethon_session, "make_client", lambda *a, **kw: attach(real(*a, **kw), t))
    t.session_file(tmp_path / "desk1.session", SELF_ID)
    t.session_file(tmp_path / "desk2.session", DESK2)
    chans = "".join(
        f'[[channels]]\nusername = "{n}"\nbackfill = "all"\njoin = false\n' for n in BARE
    )
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\npath = "{tmp_path / "a.db"}"\n'
        '[telegram]\napi_id = 1\napi_hash = "0123456789abcdef0123456789abcdef"\n'
        f'[[accounts]]\nname = "desk1"\nsession = "{tmp_path / "desk1.session"}"\njoin_limit = 1\n'
        f'[[accounts]]\nname = "desk2"\nsession = "{tmp_path / "desk2.session"}"\njoin_limit = 1\n'
        + chans,
        encoding="utf-8",
    )
    return config


async def sync_once(config: Path) -> Any:
    s = load_settings(config, env={})
    opts = SyncOptions(page_wait=0, sleeper=Sleeper(), now=lambda: datetime.now(UTC))
    async with await Archive.open(s.storage.path) as archive:
        return await sync_all(archive, s, options=opts)


def test_stats_shows_each_channels_account_and_the_one_without(synced: Path) -> None:
    results = asyncio.run(sync_once(synced))
    assert [r.status for r in results] == ["ok", "ok", "no_account"]
    text = CliRunner().invoke(cli, ["--config", str(synced), "stats"])
    assert text.exit_code == 0, text.output
    out = text.output.splitlines()
    assert "accounts (Telethon channels):" in out
    assert "  desk1 (1 of 1): alpha" in out
    assert "  desk2 (1 of 1): bravo" in out
    [none] = [line for line in out if line.startswith("  no account:")]
    assert none.startswith("  no account: charlie: no account has room for it")
    assert "add an [[accounts]] account or raise a join_limit" in none

    raw = CliRunner().invoke(cli, ["--config", str(synced), "stats", "--json"])
    rows = [json.loads(line) for line in raw.output.splitlines() if line.strip()]
    by_channel = {r["channel"]: r for r in rows if "channel" in r}
    assert by_channel["alpha"]["account"] == "desk1"
    assert by_channel["bravo"]["account"] == "desk2"
    assert by_channel["charlie"]["account"] is None
    loads = {r["account"]: r for r in rows if "account" in r and "join_limit" in r}
    assert loads["desk1"]["channels"] == ["alpha"] and loads["desk1"]["join_limit"] == 1
    [unassigned] = [r for r in rows if "no_room" in r]
    assert unassigned["no_room"] == ["charlie"]


async def test_health_names_the_channel_no_account_has_room_for(synced: Path) -> None:
    await sync_once(synced)
    s = load_settings(synced, env={})
    async with await Archive.open(s.storage.path) as archive:
        report = await check_health(archive, s, process=None)
    [line] = [p for p in report.problems if "charlie" in p]
    assert line.startswith("channel charlie: never synced: no_account: no account has room")
    assert "raise a join_limit" in line
    assert not [p for p in report.problems if "alpha" in p or "bravo" in p]


async def test_status_shows_each_channels_account(synced: Path) -> None:
    from bot.handlers.admin import _with_accounts
    from bot.messages import Status, status_blocks

    await sync_once(synced)
    s = load_settings(synced, env={})
    async with await Archive.open(s.storage.path) as archive:
        counts = OutboxCounts(0, 0, 0, 0, None, 0)
        st = Status(await channel_stats(archive), counts, datetime.now(UTC), {})
        st = await _with_accounts(st, archive, s)
    text = "\n".join(status_blocks(st, s.display.timezone))
    lines = text.splitlines()
    assert any(line.startswith("Alpha") and "account desk1" in line for line in lines), text
    assert any(line.startswith("Bravo") and "account desk2" in line for line in lines), text
    assert "<b>No account</b> has room for: charlie (add an account or raise a join_limit)" in text
    # without [[accounts]] the lines are as before
    plain = "\n".join(status_blocks(replace(st, accounts=None, no_account=()), s.display.timezone))
    assert "account desk" not in plain and "No account" not in plain
