"""The runner's wiring, in process: one Telethon client shared by the live listener and the jobs,
the polled channels synced at start, reverse-order teardown, a lost login stops everything."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from archiver import runner
from archiver.channels import parse_ref
from archiver.config import (
    ChannelConfig,
    ScheduleSettings,
    Settings,
    StorageSettings,
    TelegramSettings,
)
from archiver.errors import NotLoggedIn
from archiver.lock import archive_lock, session_lock


class FakeClient:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def disconnect(self) -> None:
        self.events.append("client disconnected")


def settings(tmp_path: Path) -> Settings:
    return Settings(
        storage=StorageSettings(path=tmp_path / "a.db", backup_dir=tmp_path / "b"),
        schedule=ScheduleSettings(heartbeat_seconds=1),
        telegram=TelegramSettings(session=tmp_path / "s.session"),  # locks stay in tmp_path
        channels=(
            ChannelConfig(parse_ref("live_one"), source="telethon", join=True),
            ChannelConfig(parse_ref("polled_one"), source="telethon", join=False),
            ChannelConfig(parse_ref("web_one"), source="web"),
        ),
    )


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replaces the Telethon client and the sync functions with recorders."""
    import archiver.sources.telethon as tg
    import archiver.sync as sync

    log: list[str] = []
    shared = FakeClient(log)

    async def connect_client(
        settings: Settings,
        *,
        receive_updates: bool = False,
        factory: Any = None,
        archive: Any = None,
    ) -> Any:
        log.append(f"connected (updates {receive_updates})")
        return shared

    async def follow_live(archive: Any, settings: Settings, stop: asyncio.Event, *,
                          client: Any = None) -> None:  # fmt: skip
        assert client is shared
        log.append("live started")
        await stop.wait()
        log.append("live stopped")

    async def sync_all(archive: Any, settings: Settings, *, client: Any = None,
                       channels: Any = None) -> list[Any]:  # fmt: skip
        assert client is shared
        log.append("sync " + ",".join(str(c.ref) for c in channels))
        return []

    monkeypatch.setattr(tg, "connect_client", connect_client)
    monkeypatch.setattr(sync, "follow_live", follow_live)
    monkeypatch.setattr(sync, "sync_all", sync_all)
    return log


async def test_parts_start_share_one_client_and_stop_in_reverse(
    tmp_path: Path, events: list[str]
) -> None:
    s = settings(tmp_path)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(s, with_bot=False, stop=stop))
    while not any(e.startswith("sync") for e in events) or "live started" not in events:
        await asyncio.sleep(0.01)
    # while it runs, both locks are held
    with pytest.raises(Exception, match="in use"):
        archive_lock(s).acquire()
    with pytest.raises(Exception, match="in use"):
        session_lock(s).acquire()
    stop.set()
    await asyncio.wait_for(task, 10)
    assert events[0] == "connected (updates True)"
    # the live channel is followed, not polled; the others are synced at start
    assert "sync polled_one,web_one" in events
    assert events.index("live stopped") < events.index("client disconnected")
    with archive_lock(s), session_lock(s):
        pass  # released


async def test_a_lost_login_in_a_job_stops_the_run_with_exit_code_3(
    tmp_path: Path, events: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import archiver.sync as sync

    async def revoked(*args: Any, **kwargs: Any) -> list[Any]:
        raise NotLoggedIn("the Telegram session was revoked; run `telewatch login` again")

    monkeypatch.setattr(sync, "sync_all", revoked)
    with pytest.raises(NotLoggedIn) as info:
        await asyncio.wait_for(runner.run(settings(tmp_path), with_bot=False), 10)
    assert info.value.exit_code == 3
    assert "live stopped" in events and "client disconnected" in events
