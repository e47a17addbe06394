"""The record as the CLI shows it (issue 13): ``history`` in observed order, ``export`` with
every version and how a deletion was established, and ``coverage`` (id ranges, ids never
seen, the windows nobody watched and why). Real archives in tmp dirs, click's runner."""

from __future__ import annotations

import asyncio
import csv
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import archiver.store.channels as channels_module
from archiver.cli import cli
from archiver.models import ChannelInfo, Post
from archiver.store.archive import Archive
from archiver.store.channels import record_sync, upsert_channel
from archiver.store.coverage import channel_coverage
from archiver.store.deletions import confirm_deleted
from archiver.store.ingest import ingest

CH = -1001811111111
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
A, B = "Объявлена эвакуация из Каменки", "Эвакуация из Каменки отменена"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for var in ("TELEWATCH_CONFIG", "TELEWATCH_API_ID", "TELEWATCH_API_HASH",
                "TELEWATCH_BOT_TOKEN", "TELEWATCH_SESSION"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run(*args: str, db: Path) -> Result:
    return CliRunner().invoke(cli, ["--db", str(db), *args], catch_exceptions=False)


def post(mid: int, text: str, *, edited: int | None = None) -> Post:
    edit = T0 + timedelta(minutes=edited) if edited is not None else None
    return Post(CH, mid, T0 + timedelta(minutes=mid), text, edit_date=edit)


async def _record(path: Path) -> None:
    async with await Archive.open(path) as a:
        await upsert_channel(a, ChannelInfo(CH, "vsaldo", "Сальдо"), source="web")
        # 1: imported with an edit time, then edited on the web (no edit time)
        await ingest(a, [post(1, A, edited=5)], source="export", alerts=False)
        await ingest(a, [post(1, B)], source="web", alerts=False)
        # 2: A -> B -> A on Telethon: two versions, three texts observed
        for p in (post(2, A), post(2, B, edited=10), post(2, A, edited=20)):
            await ingest(a, [p], source="telethon", alerts=False)
        # 3: deleted, confirmed by its own page
        await ingest(a, [post(3, "Удалённое сообщение")], source="web", alerts=False)
        await confirm_deleted(a, CH, [3], how="web_embed", alerts=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "a.db"
    asyncio.run(_record(path))
    return path


# ---------------------------------------------------------------------------- history


def test_history_shows_an_undated_web_edit_after_a_dated_import(db: Path) -> None:
    out = run("history", "vsaldo", "1", db=db).stdout
    lines = [ln for ln in out.splitlines() if ln.startswith("--- version")]
    assert len(lines) == 2
    assert "version 1 (original;" in lines[0] and "via export" in lines[0]
    assert "version 2 (edit time unknown;" in lines[1] and "via web, current)" in lines[1]
    assert out.index(A) < out.index(B)
    data = json.loads(run("history", "vsaldo", "1", "--json", db=db).stdout)
    assert data["current_version"] == 2
    assert [(v["text"], v["edit_date"]) for v in data["versions"]] == [
        (A, "2024-05-01T12:05:00Z"),
        (B, None),
    ]


def test_history_of_a_revert_and_of_a_confirmed_deletion(db: Path) -> None:
    data = json.loads(run("history", "vsaldo", "2", "--json", db=db).stdout)
    assert data["current_version"] == 1
    assert [(e["kind"], e["version"]) for e in data["events"]] == [("edited", 2), ("reverted", 1)]
    out = run("history", "vsaldo", "3", db=db).stdout
    assert "DELETED (confirmed" in out and 'the post page said "Post not found"' in out


# ---------------------------------------------------------------------------- export


def test_export_csv_carries_every_version_s_story(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    result = run("export", "--format", "csv", "--output", str(out), db=db)
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8-sig", newline="") as fh:
        rows = {int(r["message_id"]): r for r in csv.DictReader(fh)}
    one, two, three = rows[1], rows[2], rows[3]
    assert (one["text"], one["first_text"], one["version_count"]) == (B, A, "2")
    assert one["edit_times"] == "unknown"  # the web gives no edit time
    assert (two["text"], two["first_text"], two["version_count"]) == (A, A, "2")
    assert two["edit_times"] == "2024-05-01T12:10:00Z"
    assert (three["state"], three["deleted"], three["deleted_how"]) == ("deleted", "true",
                                                                         "web_embed")  # fmt: skip
    assert three["deletion_evidence"] == 'the post page said "Post not found"'
    assert three["deleted_at"].endswith("Z")
    assert (one["state"], one["deleted_at"], one["deletion_evidence"]) == ("present", "", "")


def test_export_jsonl_has_every_version(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert run("export", "--format", "jsonl", "--output", str(out), db=db).exit_code == 0
    rows = {r["message_id"]: r for r in map(json.loads, out.read_text("utf-8").splitlines())}
    assert [(v["text"], v["source"], v["edit_date"]) for v in rows[1]["versions"]] == [
        (A, "export", "2024-05-01T12:05:00Z"),
        (B, "web", None),
    ]
    assert [v["text"] for v in rows[2]["versions"]] == [A, B]
    assert rows[3]["deleted_how"] == "web_embed" and rows[3]["state"] == "deleted"


# ---------------------------------------------------------------------------- coverage


async def _watched(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks of the channel at these minutes after T0: ok ones 30 min apart (one span), a
    gap of three hours with an error and a flood wait in it, then ok again."""
    plan = [
        (0, "ok", None), (30, "ok", None), (60, "ok", None), (120, "error", "HTTP 502"),
        (180, "flood_wait", "FLOOD_WAIT 3600"), (240, "ok", None), (270, "ok", None),
    ]  # fmt: skip
    async with await Archive.open(path) as a:
        await upsert_channel(a, ChannelInfo(CH, "vsaldo", "Сальдо"), source="web")
        ids = [1, 2, 3, 5, 8, 9, 10]
        await ingest(a, [post(m, f"пост {m}") for m in ids], source="web", alerts=False)
        for minutes, status, error in plan:
            when = T0 + timedelta(minutes=minutes)
            monkeypatch.setattr(channels_module, "utcnow", lambda when=when: when)
            await record_sync(a, CH, status=status, error=error)


async def test_coverage_spans_and_the_windows_nobody_watched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.db"
    await _watched(path, monkeypatch)
    async with await Archive.open(path) as a:
        cov = await channel_coverage(a, CH, now=T0 + timedelta(minutes=300))
    assert cov.ranges == ((1, 3), (5, 5), (8, 10))
    assert (cov.posts, cov.never_seen) == (7, 3)
    assert cov.watched_since == T0
    (window,) = cov.unwatched  # 0-60 one span, 240-270 another: one window between
    assert (window.start, window.end) == (T0 + timedelta(minutes=60), T0 + timedelta(minutes=240))
    assert window.faults == (("error", "HTTP 502", 1), ("flood_wait", "FLOOD_WAIT 3600", 1))


def test_coverage_cli_json_and_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.db"
    asyncio.run(_watched(path, monkeypatch))
    monkeypatch.undo()
    result = run("coverage", "vsaldo", "--json", db=path)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["id_ranges"] == [[1, 3], [5, 5], [8, 10]]
    assert data["ids_never_seen"] == 3
    assert data["watched_since"] == "2024-05-01T12:00:00Z"
    first, last = data["unwatched"]  # the gap in May 2024, and from the last check to now
    assert (first["start"], first["end"]) == ("2024-05-01T13:00:00Z", "2024-05-01T16:00:00Z")
    assert [(f["status"], f["count"]) for f in first["faults"]] == [("error", 1),
                                                                    ("flood_wait", 1)]  # fmt: skip
    assert (last["start"], last["end"]) == ("2024-05-01T16:30:00Z", None)
    text = run("coverage", "vsaldo", db=path).stdout
    assert "message ids archived: 1-3, 5, 8-10" in text
    assert "NOT WATCHED" in text and "HTTP 502" in text


def test_coverage_of_an_unknown_channel_is_one_line_and_non_zero(db: Path) -> None:
    result = run("coverage", "nosuchchannel", db=db)
    assert result.exit_code != 0
    assert result.stderr.strip().count("\n") == 0
    assert "nosuchchannel" in result.stderr and "Traceback" not in result.stderr
