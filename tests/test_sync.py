"""archiver.sync: one pass over every channel, dispatched by source, each channel isolated."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fakes.telethon_client import FakeTelegram, Sleeper, connected, settings_for
from pg import archive_both  # noqa: F401  (these tests run on SQLite and PostgreSQL)

from archiver.channels import parse_ref
from archiver.config import Backfill, ChannelConfig
from archiver.errors import NotLoggedIn
from archiver.models import IngestStats
from archiver.sources import telethon as tg_source
from archiver.store.archive import Archive
from archiver.store.channels import get_channel
from archiver.sync import SyncOptions, sync_all

VSALDO = ChannelConfig(parse_ref("vsaldo"), backfill=Backfill("all"))
OTHER = ChannelConfig(parse_ref("other"), backfill=Backfill("all"))
WEB = ChannelConfig(parse_ref("webonly"), source="web", backfill=Backfill("all"))


def opts() -> SyncOptions:
    return SyncOptions(page_wait=0, sleeper=Sleeper())


@pytest.fixture
def tg() -> FakeTelegram:
    t = FakeTelegram()
    t.add_channel()
    t.add_channel(1922222222, "other", "Other")
    t.posts(3, text="секретный текст {}")
    t.posts(2, bare_id=1922222222)
    return t


async def test_one_info_line_per_channel_with_counts_and_no_text(
    archive: Archive, tg: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="archiver.sync")
    settings = settings_for(tmp_path, VSALDO, OTHER)
    results = await sync_all(archive, settings, client=await connected(tg), options=opts())
    assert [(r.channel, r.status, r.new_posts) for r in results] == [
        ("vsaldo", "ok", 3),
        ("other", "ok", 2),
    ]
    lines = [r.getMessage() for r in caplog.records if r.name == "archiver.sync"]
    assert len(lines) == 2
    assert lines[0].startswith("sync vsaldo (telethon): ok, 3 new, 0 edited, 0 deleted")
    assert lines[0].endswith("s")
    assert "секретный" not in caplog.text


async def test_an_unexpected_failure_is_recorded_and_the_next_channel_goes_on(
    archive: Archive,
    tg: FakeTelegram,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_for(tmp_path, VSALDO, OTHER)
    await sync_all(archive, settings, client=await connected(tg), options=opts())
    real = tg_source.sync_telethon_channel

    async def broken(archive: Archive, client: Any, cfg: ChannelConfig, *a: Any, **kw: Any) -> Any:
        if cfg.ref.username == "vsaldo":
            raise RuntimeError("a bug")
        return await real(archive, client, cfg, *a, **kw)

    monkeypatch.setattr(tg_source, "sync_telethon_channel", broken)
    tg.posts(1, bare_id=1922222222)
    results = await sync_all(archive, settings, client=await connected(tg), options=opts())

    assert [r.status for r in results] == ["error", "ok"]
    assert results[0].error == "vsaldo: unexpected RuntimeError"
    assert results[1].new_posts == 1
    row = await get_channel(archive, "vsaldo")
    assert row is not None
    assert (row.last_sync_status, row.last_error) == ("error", "vsaldo: unexpected RuntimeError")


async def test_a_lost_login_fails_every_telethon_channel_and_the_web_ones_go_on(
    archive: Archive, tg: FakeTelegram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archiver.sources import web

    calls: list[str] = []

    async def revoked(archive: Archive, client: Any, cfg: ChannelConfig, *a: Any, **kw: Any) -> Any:
        calls.append(str(cfg.ref))
        raise NotLoggedIn("the Telegram session is no longer valid")

    async def fake_web(archive: Archive, settings: Any, channels: Any, **kw: Any) -> Any:
        return [web.WebSyncResult(username="webonly", channel_id=-1003000000000)]

    monkeypatch.setattr(tg_source, "sync_telethon_channel", revoked)
    monkeypatch.setattr(web, "sync_web_channels", fake_web)
    settings = settings_for(tmp_path, VSALDO, WEB, OTHER)
    results = await sync_all(archive, settings, client=await connected(tg), options=opts())
    assert calls == ["vsaldo"]  # no second request once the login is known to be gone
    assert [(r.channel, r.status) for r in results] == [
        ("vsaldo", "error"),
        ("webonly", "ok"),
        ("other", "error"),
    ]
    assert isinstance(results.login_lost, NotLoggedIn)
    assert results[2].error == "other: the Telegram session is no longer valid"


async def test_web_channels_go_to_the_web_source(
    archive: Archive, tg: FakeTelegram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archiver.sources import web

    seen: list[str] = []

    async def fake_web(archive: Archive, settings: Any, channels: Any, **kw: Any) -> Any:
        cfgs = list(channels)
        seen.extend(str(c.ref) for c in cfgs)
        return [
            web.WebSyncResult(
                username="webonly",
                channel_id=-1003000000000,
                stats=IngestStats(posts_added=4, versions_added=5, high_water=40),
                deleted=1,
                backfilled=True,
            )
        ]

    monkeypatch.setattr(web, "sync_web_channels", fake_web)
    settings = settings_for(tmp_path, WEB, VSALDO)
    results = await sync_all(archive, settings, client=await connected(tg), options=opts())
    assert seen == ["webonly"]
    assert [(r.source, r.status) for r in results] == [("web", "ok"), ("telethon", "ok")]
    w = results[0]
    assert (w.new_posts, w.edits, w.deletions, w.high_water, w.backfilled) == (4, 1, 1, 40, True)


def test_a_web_only_setup_never_imports_telethon(tmp_path: Path) -> None:
    code = (
        "import asyncio, sys\n"
        "import archiver.sync\n"
        "from archiver.sync import sync_all, recheck_all\n"
        "from archiver.config import Settings\n"
        "from archiver.store.archive import Archive\n"
        "async def main():\n"
        f"    a = await Archive.open({str(tmp_path / 'w.db')!r})\n"
        "    assert await sync_all(a, Settings()) == []\n"
        "    assert await recheck_all(a, Settings()) == []\n"
        "    await a.close()\n"
        "asyncio.run(main())\n"
        "print('telethon' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
