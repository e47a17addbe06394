"""`telewatch health`: fresh, stale and missing heartbeats and channel syncs."""

from __future__ import annotations

import asyncio
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import MakeChannel
from pg import archive_both  # noqa: F401  (these tests run on SQLite and PostgreSQL)

from archiver.channels import parse_ref
from archiver.cli import cli
from archiver.config import ChannelConfig, ScheduleSettings, Settings
from archiver.errors import NotLoggedIn
from archiver.health import check_health, heartbeat_limit, record_end, record_start
from archiver.store.archive import Archive, utcnow
from archiver.store.channels import record_sync

WEB_ID = -1001811111111  # conftest's default channel: vsaldo


def with_channels(*names: str, stale_minutes: int = 90) -> Settings:
    return Settings(
        channels=tuple(ChannelConfig(parse_ref(n), source="web") for n in names),
        schedule=ScheduleSettings(heartbeat_seconds=30, stale_after_minutes=stale_minutes),
    )


async def test_fresh_heartbeat_and_channels_are_healthy(
    archive: Archive, make_channel: MakeChannel
) -> None:
    await make_channel()
    await record_sync(archive, WEB_ID, status="ok")
    await archive.heartbeat("run", os.getpid())
    report = await check_health(archive, with_channels("vsaldo"))
    assert report.healthy, report.problems
    assert [line.split(":")[0] for line in report.ok_lines] == ["process run", "channel vsaldo"]


async def test_missing_heartbeat(archive: Archive) -> None:
    report = await check_health(archive, Settings())
    assert not report.healthy
    assert report.problems == ("process run: no heartbeat yet; is `telewatch run` running?",)


async def test_stale_heartbeat(archive: Archive) -> None:
    await archive.heartbeat("run", 4242)
    limit = heartbeat_limit(Settings())
    assert limit == timedelta(seconds=90)
    now = utcnow()
    fresh = await check_health(archive, Settings(), now=now + limit - timedelta(seconds=1))
    assert fresh.healthy
    stale = await check_health(archive, Settings(), now=now + timedelta(minutes=10))
    assert not stale.healthy
    [problem] = stale.problems
    assert problem.startswith("process run: last heartbeat 10 min ago (pid 4242)")


async def test_other_process_or_none(archive: Archive) -> None:
    await archive.heartbeat("bot", 1)
    assert (await check_health(archive, Settings(), process="bot")).healthy
    assert not (await check_health(archive, Settings(), process="run")).healthy
    assert (await check_health(archive, Settings(), process=None)).healthy  # cron mode


async def test_stale_and_never_synced_channels(archive: Archive, make_channel: MakeChannel) -> None:
    await make_channel()
    await record_sync(archive, WEB_ID, status="ok")
    await record_sync(archive, WEB_ID, status="error", error="vsaldo: t.me answered 502")
    await archive.heartbeat("run", 1)
    settings = with_channels("vsaldo", "kherson_rada", stale_minutes=30)
    now = utcnow() + timedelta(minutes=45)
    await archive.heartbeat("run", 1)
    report = await check_health(archive, settings, process=None, now=now)
    assert report.problems == (
        "channel vsaldo: last successful sync 45 min ago, older than 30 min; "
        "last attempt: error (vsaldo: t.me answered 502)",
        "channel kherson_rada: never synced",
    )


async def test_flood_wait_is_named(archive: Archive, make_channel: MakeChannel) -> None:
    await make_channel()
    await record_sync(archive, WEB_ID, status="ok")
    until = utcnow() + timedelta(hours=5)
    await record_sync(archive, WEB_ID, status="flood_wait", flood_wait_until=until)
    report = await check_health(
        archive, with_channels("vsaldo"), process=None, now=utcnow() + timedelta(hours=2)
    )
    [problem] = report.problems
    assert f"flood wait until {until:%Y-%m-%d %H:%M} UTC" in problem


async def test_first_sync_in_progress_counts_as_fresh_for_a_while(
    archive: Archive, make_channel: MakeChannel
) -> None:
    await make_channel()  # seen, not yet synced successfully, not backfilled
    settings = with_channels("vsaldo", stale_minutes=60)
    soon = await check_health(archive, settings, process=None, now=utcnow())
    assert soon.healthy
    assert soon.ok_lines == ("channel vsaldo: first sync in progress",)
    later = await check_health(
        archive, settings, process=None, now=utcnow() + timedelta(minutes=61)
    )
    assert later.problems == ("channel vsaldo: no successful sync, older than 60 min",)


def ages(lines: tuple[str, ...]) -> tuple[str, ...]:
    """The lines with "<n> s ago" as "N s ago" (how long a test step takes is no result)."""
    return tuple(re.sub(r"\b\d+ s ago", "N s ago", line) for line in lines)


async def test_a_clean_stop_is_reported_not_a_fresh_heartbeat(archive: Archive) -> None:
    await record_start(archive, "run", 4242, None)
    assert (await check_health(archive, Settings())).healthy
    await record_end(
        archive.path, "run", 4242, None, url=archive.url
    )  # SIGTERM: `run` stopped cleanly
    report = await check_health(archive, Settings())
    assert ages(report.problems) == (
        "process run: stopped cleanly N s ago (pid 4242); start it again: `telewatch run`",
    )
    await archive.heartbeat("run", 5151)  # started again
    report = await check_health(archive, Settings())
    assert ages(report.ok_lines) == ("process run: heartbeat N s ago",)


async def test_a_fatal_error_is_reported_with_its_message(archive: Archive) -> None:
    await record_start(archive, "run", 4242, None)
    error = NotLoggedIn("not logged in to Telegram: run `telewatch login`")
    await record_end(archive.path, "run", 4242, error, url=archive.url)
    [problem] = ages((await check_health(archive, Settings())).problems)
    assert problem == (
        "process run: stopped by an error N s ago (pid 4242): "
        "not logged in to Telegram: run `telewatch login`"
    )


async def test_an_unexpected_error_is_recorded_by_its_type_only(archive: Archive) -> None:
    # its text could hold a secret (a token in a URL): health shows the type and the log
    await record_end(
        archive.path, "run", 4242, RuntimeError("https://x/bot123:SECRET/getMe"), url=archive.url
    )
    [problem] = (await check_health(archive, Settings())).problems
    assert problem.endswith(": RuntimeError; see the log")
    assert "SECRET" not in problem


async def test_a_failure_before_the_first_heartbeat_is_recorded(archive: Archive) -> None:
    await record_end(archive.path, "bot", 99, NotLoggedIn("x"), url=archive.url)
    [problem] = (await check_health(archive, Settings(), process="bot")).problems
    assert problem.startswith("process bot: stopped by an error")


async def test_what_is_off_is_said_while_running_and_cleared_on_a_new_start(
    archive: Archive,
) -> None:
    await record_start(archive, "run", 1, "bot off: no bot token")
    await archive.heartbeat("run", 1)  # the loop's beats keep the note
    report = await check_health(archive, Settings())
    assert report.healthy
    assert ages(report.ok_lines) == ("process run: heartbeat N s ago; bot off: no bot token",)
    await record_end(archive.path, "run", 1, None, url=archive.url)
    await record_start(archive, "run", 2, None)  # restarted with a token
    report = await check_health(archive, Settings())
    assert ages(report.ok_lines) == ("process run: heartbeat N s ago",)


async def test_a_note_after_a_failure_is_cleared_by_the_next_heartbeat(archive: Archive) -> None:
    await record_end(archive.path, "bot", 1, NotLoggedIn("boom"), url=archive.url)
    await archive.heartbeat("bot", 2)  # `telewatch bot` started again
    report = await check_health(archive, Settings(), process="bot")
    assert ages(report.ok_lines) == ("process bot: heartbeat N s ago",)


async def test_record_end_leaves_a_missing_archive_alone(tmp_path: Path) -> None:
    await record_end(tmp_path / "none.db", "run", 1, None)
    assert not (tmp_path / "none.db").exists()


async def _prepare(path: Path, heartbeat: bool) -> None:
    async with await Archive.open(path) as a:
        if heartbeat:
            await a.heartbeat("run", 7)


@pytest.mark.parametrize(
    ("heartbeat", "code", "says"),
    [(True, 0, "healthy"), (False, 1, "PROBLEM: process run: no heartbeat yet")],
)
def test_cli_exit_codes(tmp_path: Path, heartbeat: bool, code: int, says: str) -> None:
    db = tmp_path / "t.db"
    asyncio.run(_prepare(db, heartbeat))
    result = CliRunner().invoke(cli, ["--db", str(db), "health"])
    assert result.exit_code == code, result.output
    assert says in result.output
    none = CliRunner().invoke(cli, ["--db", str(db), "health", "--process", "none"])
    assert none.exit_code == 0, none.output


def test_cli_no_archive_is_unhealthy(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "none.db"), "health"])
    assert result.exit_code == 1
    assert "no archive here yet" in result.output
