"""Channel management from the chat (issue 16): /follow and /unfollow for admins, kept in
the archive beside the config's channels (the config wins), shown by /channels, and read by
the running archiver's sync pass each time (no restart). Real Application, fake Bot API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from botkit import ADMIN, MEMBER, Harness, fake_api, running_bot, seed_channel
from fakes.botapi import Call

import archiver.sync
from archiver.channels import parse_ref
from archiver.config import ChannelConfig, Settings, StorageSettings
from archiver.errors import TelewatchError
from archiver.runner import _jobs
from archiver.store.archive import Archive
from archiver.store.followed import channel_configs, follow, followed


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Harness]:
    db = tmp_path / "f.db"
    async with fake_api() as api:
        archive = await Archive.open(db)
        try:
            await seed_channel(archive)
            async with running_bot(api, archive, db) as h:
                yield h
        finally:
            await archive.close()


def one(calls: list[Call]) -> Call:
    assert len(calls) == 1, [(c.method, c.text[:80]) for c in calls]
    return calls[0]


async def test_an_admin_follows_and_unfollows_a_channel_from_the_chat(bot: Harness) -> None:
    reply = one(await bot.send(ADMIN, "/follow @Kherson_News web")).text
    assert "Following <b>kherson_news</b> (web)" in reply and "no restart" in reply
    (f,) = await followed(bot.archive, bot.settings)
    assert (str(f.ref), f.source, f.added_by, f.in_config) == ("kherson_news", "web", ADMIN, False)
    assert [c.ref.username for c in await channel_configs(bot.archive, bot.settings)] == [
        "kherson_news"
    ]
    shown = "\n".join(c.text for c in await bot.send(MEMBER, "/channels"))
    assert "Followed from the chat (1)" in shown and "kherson_news · web" in shown
    # without a Telegram login, telethon is neither the default nor possible
    assert "(web)" in one(await bot.send(ADMIN, "/follow https://t.me/rybar")).text
    refused = one(await bot.send(ADMIN, "/follow @rybar telethon")).text
    assert "no Telegram login is configured" in refused
    bad = one(await bot.send(ADMIN, "/follow -1001234567890 web")).text
    assert "needs the channel's public username" in bad
    assert "Usage" in one(await bot.send(ADMIN, "/follow")).text
    assert "No longer following" in one(await bot.send(ADMIN, "/unfollow kherson_news")).text
    assert "was not followed" in one(await bot.send(ADMIN, "/unfollow kherson_news")).text
    assert [str(f.ref) for f in await followed(bot.archive, bot.settings)] == ["rybar"]


async def test_only_admins_follow(bot: Harness) -> None:
    assert "Only admins" in one(await bot.send(MEMBER, "/follow @kherson_news web")).text
    assert "Only admins" in one(await bot.send(MEMBER, "/unfollow @kherson_news")).text
    assert await followed(bot.archive, bot.settings) == []


async def test_the_config_wins(tmp_path: Path) -> None:
    vsaldo = ChannelConfig(parse_ref("vsaldo"), "web")
    settings = Settings(storage=StorageSettings(path=tmp_path / "c.db"), channels=(vsaldo,))
    async with await Archive.open(tmp_path / "c.db") as archive:
        assert not await follow(archive, settings, parse_ref("@VSALDO"), "web", by=ADMIN)
        assert await followed(archive, settings) == []
        # followed first, configured later: kept, marked, and not synced twice
        other = Settings(storage=settings.storage)
        assert await follow(archive, other, parse_ref("vsaldo"), "web", by=ADMIN)
        (f,) = await followed(archive, settings)
        assert f.in_config
        assert await channel_configs(archive, settings) == []
        with pytest.raises(TelewatchError, match="expected web or telethon"):
            await follow(archive, settings, parse_ref("x_news"), "rss", by=ADMIN)


async def test_the_running_sync_pass_reads_the_followed_channels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner's sync job, made once at start, syncs a channel followed afterwards."""
    seen: list[list[str]] = []

    async def fake_sync_all(archive: Any, settings: Any, **kw: Any) -> object:
        seen.append([str(c.ref) for c in kw["channels"]])
        return None

    monkeypatch.setattr(archiver.sync, "sync_all", fake_sync_all)
    vsaldo = ChannelConfig(parse_ref("vsaldo"), "web")
    settings = Settings(storage=StorageSettings(path=tmp_path / "r.db"), channels=(vsaldo,))
    async with await Archive.open(tmp_path / "r.db") as archive:
        jobs = _jobs(archive, settings, None, False, asyncio.Event(), lambda exc: None)
        await jobs["sync"]()
        await follow(archive, settings, parse_ref("kherson_news"), "web", by=ADMIN)
        await jobs["sync"]()
    assert seen == [["vsaldo"], ["vsaldo", "kherson_news"]]


async def test_with_no_channel_configured_the_sync_job_still_runs(tmp_path: Path) -> None:
    settings = Settings(storage=StorageSettings(path=tmp_path / "n.db"))
    async with await Archive.open(tmp_path / "n.db") as archive:
        jobs = _jobs(archive, settings, None, False, asyncio.Event(), lambda exc: None)
    assert "sync" in jobs
