"""`telewatch sync` end to end, as cron runs it: a real process, real HTTP to a fake t.me on
127.0.0.1, a real archive. The no-login path from first pass to alerts, edits and deletions."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fakes.tme import T0, FakePost, FakeTme
from fakes.tme_http import serve_tme


@pytest.fixture
def tme() -> Iterator[tuple[FakeTme, str]]:
    fake = FakeTme()
    with serve_tme(fake) as base:
        yield fake, base


def telewatch(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "TELEWATCH_CONFIG": ""}
    return subprocess.run(
        [sys.executable, "-m", "archiver", "--config", str(tmp_path / "config.toml"),
         "--db", str(tmp_path / "a.db"), *args],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip


def write_config(tmp_path: Path, base_url: str) -> None:
    (tmp_path / "config.toml").write_text(
        f"""
[web]
base_url = "{base_url}"
delay_seconds = 0

[[channels]]
username = "testograd"
source = "web"
backfill = "all"

[[rules]]
name = "evacuation"
query = "эвакуация OR евакуація"
notify = [111]
""",
        encoding="utf-8",
    )


def query(tmp_path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(tmp_path / "a.db") as db:
        return list(db.execute(sql))


def test_web_sync_from_first_pass_to_alerts_edits_and_deletions(
    tmp_path: Path, tme: tuple[FakeTme, str]
) -> None:
    fake, base = tme
    write_config(tmp_path, base)
    ch = fake.channel("testograd", page_size=5)
    ch.add_texts(range(1, 13), "Новости {id}: эвакуация не планируется")

    first = telewatch(tmp_path, "sync")
    assert first.returncode == 0, first.stderr
    assert "testograd: ok, 12 new" in first.stdout
    # The first pass is the backfill: archived, searchable, and no alerts.
    assert query(tmp_path, "SELECT count(*) FROM posts") == [(12,)]
    assert query(tmp_path, "SELECT count(*) FROM alerts") == [(0,)]

    ch.add(FakePost(13, "Оголошено евакуацію з Лугового", T0 + timedelta(hours=13)))
    ch.add(FakePost(12, "Новости 12: эвакуация начнётся завтра", T0 + timedelta(hours=12)))
    del ch.posts[11]
    second = telewatch(tmp_path, "sync")
    assert second.returncode == 0, second.stderr

    # Missing from the listing is not a deletion until the post's own page confirms it: here
    # the fake's embed page says "Post not found".
    assert query(
        tmp_path, "SELECT message_id, deleted_how FROM posts WHERE deleted_at IS NOT NULL"
    ) == [(11, "web_embed")]
    versions = query(
        tmp_path,
        "SELECT v.text FROM versions v JOIN posts p ON p.id = v.post_id"
        " WHERE p.message_id = 12 ORDER BY v.seen_at, v.rowid",
    )
    assert [v[0] for v in versions] == [
        "Новости 12: эвакуация не планируется",
        "Новости 12: эвакуация начнётся завтра",
    ]
    alerts = query(
        tmp_path,
        "SELECT p.message_id, a.kind, a.recipient FROM alerts a JOIN posts p ON p.id = a.post_id"
        " ORDER BY p.message_id, a.kind",
    )
    # A new matching post alerts; the edit and the confirmed deletion of posts that matched
    # in the backfill alert too (follow-ups; the rule's kinds include edited and deleted).
    assert (13, "new", 111) in alerts
    assert (12, "edited", 111) in alerts
    assert (11, "deleted", 111) in alerts
    assert all(r[2] == 111 for r in alerts)

    again = telewatch(tmp_path, "sync")
    assert again.returncode == 0, again.stderr
    assert query(tmp_path, "SELECT count(*) FROM alerts") == [(len(alerts),)]

    found = telewatch(tmp_path, "search", "евакуація", "--json")
    assert found.returncode == 0, found.stderr
    assert '"message_id": 13' in found.stdout


def test_a_channel_without_a_preview_fails_alone_with_a_clear_line(
    tmp_path: Path, tme: tuple[FakeTme, str]
) -> None:
    fake, base = tme
    write_config(tmp_path, base)
    (tmp_path / "config.toml").write_text(
        (tmp_path / "config.toml").read_text(encoding="utf-8")
        + '\n[[channels]]\nusername = "goodchannel"\nsource = "web"\nbackfill = "all"\n',
        encoding="utf-8",
    )
    fake.channel("testograd", preview=False)
    good = fake.channel("goodchannel", bare_id=1822222222)
    good.add_texts(range(1, 4))

    result = telewatch(tmp_path, "sync")
    assert result.returncode == 4  # partial: one channel archived, one failed
    assert "testograd: error" in result.stdout
    assert "goodchannel: ok, 3 new" in result.stdout
    assert "Traceback" not in result.stderr
    assert query(tmp_path, "SELECT count(*) FROM posts") == [(3,)]
    stats = telewatch(tmp_path, "stats")
    assert stats.returncode == 0, stats.stderr
    assert "testograd (web): nothing archived yet" in stats.stdout
    assert "goodchannel" in stats.stdout


def test_a_channel_that_cannot_be_read_fails_the_pass_a_flood_wait_does_not() -> None:
    """A mistyped username (status not_found) makes `sync` exit "partial"; a flood wait is a
    pause the ledger keeps, not a failure."""
    from archiver.cli import _sync_summary
    from archiver.sources.result import ChannelSyncResult

    results = [
        ChannelSyncResult("good", "telethon", status="ok"),
        ChannelSyncResult("typo", "telethon", status="not_found", error="no such username"),
        ChannelSyncResult("busy", "telethon", status="flood_wait"),
        ChannelSyncResult("full", "telethon", status="too_many_channels"),  # polled: read
        ChannelSyncResult("gone", "web", status="error", error="HTTP 404"),
    ]
    assert _sync_summary(results) == 2
