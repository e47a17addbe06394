"""Evidence bundles from real archives (issue 19): posts archived through the real ingest and
deletion paths, which write the observation log and its captures (archiver.evidence.log), a
daily root, then `telewatch evidence` and `telewatch evidence verify` end to end through the
CLI: round trip, tampering named with exit 1 and no traceback, one-line errors for bad input."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from archiver.cli import cli
from archiver.evidence.bundle_check import verify_bundle
from archiver.evidence.capture import http_response
from archiver.evidence.roots import make_day_root
from archiver.models import ChannelInfo, Post
from archiver.store.archive import Archive, utcnow
from archiver.store.channels import upsert_channel
from archiver.store.coverage import note_watched
from archiver.store.deletions import confirm_deleted, mark_missing
from archiver.store.ingest import ingest
from evidence.bundlekit import flip, read_member, rewrite

CH = -1001811111111
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def page(url: str, body: bytes) -> object:
    return http_response(
        url=url, fetched_at="2024-05-02 10:00:00", http_version="HTTP/1.1", status=200,
        reason="OK", headers=[("Content-Type", "text/html; charset=utf-8")], body=body,
    )  # fmt: skip


async def populate(path: Path | str, posts: int = 3) -> None:
    """Post 1: seen by Telethon (its message object captured), edited, seen on a web page,
    missing from a listing, confirmed deleted by its embed page; posts 2..n seen once."""
    async with await Archive.open(path) as a:
        await upsert_channel(a, ChannelInfo(CH, "vsaldo", "Сальдо"), source="telethon")
        await note_watched(a, CH, utcnow() - timedelta(hours=1))
        raw = '{"_": "Message", "id": 1, "message": "Евакуація о 18:00"}'
        await ingest(
            a,
            [Post(CH, 1, T0, "Евакуація о 18:00", raw=raw)]
            + [Post(CH, i, T0 + timedelta(minutes=i), f"Пост {i} евакуація") for i in
               range(2, posts + 1)],
            source="telethon", alerts=False,
        )  # fmt: skip
        await ingest(
            a, [Post(CH, 1, T0, "Евакуація о 19:00", edit_date=T0 + timedelta(hours=1))],
            source="telethon", alerts=False,
        )  # fmt: skip
        await mark_missing(
            a, CH, [1], source="web",
            capture=page("https://t.me/s/vsaldo", b"<html>no post 1 here</html>"),  # type: ignore[arg-type]
        )  # fmt: skip
        await confirm_deleted(
            a, CH, [1], how="web_embed", alerts=False,
            capture=page("https://t.me/vsaldo/1?embed=1&mode=tme",  # type: ignore[arg-type]
                         b'<div class="tgme_widget_message_error">Post not found</div>'),
        )  # fmt: skip
        await note_watched(a, CH, utcnow())
        await make_day_root(a, utcnow().date(), tsa=None)


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


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "a.db"
    asyncio.run(populate(path))
    return path


def run(*args: str, db: Path | None = None) -> Result:
    argv = (["--db", str(db)] if db is not None else []) + list(args)
    return CliRunner().invoke(cli, argv, catch_exceptions=False)


def test_round_trip_through_the_cli(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.zip"
    made = run("evidence", "t.me/vsaldo/1", "@vsaldo/2", "--output", str(out), db=db)
    assert made.exit_code == 0, made.output
    assert f"{out}: 2 post(s), 5 log entries (chained to the root of" in made.output
    checked = run("evidence", "verify", str(out))
    assert checked.exit_code == 0, checked.output
    assert checked.output.startswith("bundle verified: 2 post(s), 5 entries, log entries 1-")
    md = read_member(out, "report.md").decode()
    assert "Евакуація о 18:00" in md and "Евакуація о 19:00" in md
    assert "Евакуація о [-18:00 -]{+19:00+}" in md
    assert "Deleted: confirmed at" in md and "(web\\_embed)" in md
    assert "Not shown in a listing" not in md  # the confirmed deletion is the claim now
    assert "missing" not in md.split("## https://t.me/vsaldo/2")[1]
    today = utcnow().date()
    assert f"no window without watching between {today - timedelta(days=7)} and {today} " in md
    lines = [json.loads(x) for x in read_member(out, "log.jsonl").splitlines()]
    assert {x["kind"] for x in lines if "content" in x} == {"seen", "edited", "missing", "deleted"}
    with zipfile.ZipFile(out) as zf:
        assert zf.getinfo("captures.warc.gz").compress_type == zipfile.ZIP_STORED


def test_a_query_bundle_and_its_limit(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.zip"
    made = run("evidence", "--query", "евакуація", "--output", str(out), db=db)
    assert made.exit_code == 0, made.output
    manifest = json.loads(read_member(out, "manifest.json"))
    assert len(manifest["posts"]) == 3
    assert manifest["request"]["query"] == "евакуація"
    assert verify_bundle(out).ok
    refused = run(
        "evidence", "--query", "евакуація", "--max-posts", "2", "--output", str(tmp_path / "x.zip"),
        db=db,
    )  # fmt: skip
    assert refused.exit_code == 2
    assert refused.output.strip().splitlines() == [
        "Error: the query finds more than 2 posts, the limit of one bundle (--max-posts): narrow"
        " it (--since, --until, channel:) or make several bundles"
    ]
    assert not (tmp_path / "x.zip").exists()


def test_tampering_exits_1_with_one_line_per_problem(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.zip"
    assert run("evidence", "t.me/vsaldo/1", "--output", str(out), db=db).exit_code == 0
    bad = rewrite(
        out, tmp_path / "bad.zip", "report.md", lambda d: flip(d, "о 19".encode(), "о 17".encode()),
        forge=True,
    )  # fmt: skip
    checked = run("evidence", "verify", str(bad))
    assert checked.exit_code == 1
    assert "Traceback" not in checked.output
    assert checked.output.splitlines() == [
        next(p for p in verify_bundle(bad).problems if p.startswith("report.md line"))
    ]
    assert "https://t.me/vsaldo/1" in checked.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["t.me/vsaldo/99"], "Error: t.me/vsaldo/99: no such post in the archive"),
        (["t.me/vsaldo"], "Error: 't.me/vsaldo' names a channel, not a post"),
        (["nobody/5"], "Error: no archived channel matches 'nobody'"),
        (["t.me/vsaldo/1", "--query", "x"], "Error: give post links, or --query, but not both"),
        (["--since", "2024-05-01", "t.me/vsaldo/1"], "Error: --since and --until go with --query"),
        (["--query", "евакуація AND ("], "Error: query"),
    ],
)
def test_bad_input_is_one_line(db: Path, tmp_path: Path, args: list[str], says: str) -> None:
    result = run("evidence", *args, "--output", str(tmp_path / "x.zip"), db=db)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert says in result.output
    assert len(result.output.strip().splitlines()) <= 3  # click's usage line may come first
    assert not (tmp_path / "x.zip").exists()


def test_verify_needs_no_archive_nor_config(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.zip"
    assert run("evidence", "t.me/vsaldo/1", "--output", str(out), db=db).exit_code == 0
    os.remove(db)
    (tmp_path / "config.toml").write_text("this is [not toml", encoding="utf-8")
    assert run("evidence", "verify", str(out)).exit_code == 0
    missing = run("evidence", "verify", str(tmp_path / "nope.zip"))
    assert missing.exit_code == 1
    assert missing.output.strip() == f"{tmp_path / 'nope.zip'}: no such file"
