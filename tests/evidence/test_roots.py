"""Daily roots of the observation log (archiver/evidence/roots.py), stamped by a local RFC 3161
authority (tests/fakes/tsa.py, a test CA made at test time); `telewatch log verify` from the
command line; capture retention."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import CHANNEL_ID, MakePost
from fakes.tsa import serve_tsa
from rfc3161_client import VerifierBuilder, decode_timestamp_response

from archiver.cli import cli
from archiver.evidence import roots as roots_mod
from archiver.evidence.capture import http_response
from archiver.evidence.log import make_root, root_covering, verify
from archiver.evidence.retention import prune_captures
from archiver.evidence.roots import close_days, make_roots
from archiver.evidence.tsa import TsaClient, imprint
from archiver.store.archive import Archive
from archiver.store.ingest import ingest

DAY1 = date(2024, 5, 1)


async def three_days(path: Path, make_post: MakePost) -> None:
    """Entries on 1 May (2), 2 May (1) and 4 May (1), nothing on 3 May."""
    async with await Archive.open(path) as a:
        await a.write(
            "INSERT INTO channels (id, username, source, created_at) VALUES (?, 'vsaldo', 'web',"
            " '2024-05-01 00:00:00')",
            (CHANNEL_ID,),
        )
        for n, at in ((1, "2024-05-01 10:00:00"), (2, "2024-05-01 23:59:59"),
                      (3, "2024-05-02 00:00:00"), (4, "2024-05-04 08:00:00")):  # fmt: skip
            await ingest(a, [make_post(n, f"post {n}")], source="web", alerts=False)
            await a.write("UPDATE observations SET at = ? WHERE seq = ?", (at, n))
        # the content says when it was observed too: keep the two in step for this test
        from archiver.evidence import chain

        prev = chain.GENESIS
        for seq, at, content, cap, cid, mid in await a.fetchall(
            "SELECT seq, at, content, capture_sha, channel_id, message_id FROM observations"
            " ORDER BY seq"
        ):
            data = json.loads(content)
            data["at"] = at
            text = chain.canonical(data)
            sha = chain.sha256_hex(text)
            h = chain.entry_hash(seq, chain.post_key(cid, mid), sha, cap, prev)
            await a.write(
                "UPDATE observations SET content = ?, content_sha = ?, prev_hash = ?,"
                " entry_hash = ? WHERE seq = ?",
                (text.decode(), sha, prev, h, seq),
            )
            prev = h


async def test_a_root_per_finished_day_with_entries(tmp_path: Path, make_post: MakePost) -> None:
    path = tmp_path / "a.db"
    await three_days(path, make_post)
    async with await Archive.open(path) as a:
        made = await make_roots(a, now=datetime(2024, 5, 4, 12, tzinfo=UTC), tsa=None)
        assert [(r.day, r.seq) for r in made] == [("2024-05-01", 2), ("2024-05-02", 3)]
        hashes = {r[0]: r[1] for r in await a.fetchall("SELECT seq, entry_hash FROM observations")}
        assert all(r.root_hash == hashes[r.seq] for r in made)
        assert made[0].tsa_token is None and made[0].tsa_url is None
        # 4 May is not over: no root yet; entry 4 is covered by none
        assert await root_covering(a, 4) is None
        assert (await root_covering(a, 1)).day == "2024-05-01"  # type: ignore[union-attr]
        assert (await root_covering(a, 3)).day == "2024-05-02"  # type: ignore[union-attr]
        # once made, a root stays; the next day closes later
        made = await make_roots(a, now=datetime(2024, 5, 5, 0, 1, tzinfo=UTC), tsa=None)
        assert [(r.day, r.seq) for r in made] == [("2024-05-04", 4)]
        assert await make_root(a, date(2024, 5, 3), tsa=None) is not None  # as of 2 May's end
        assert await make_root(a, date(2024, 4, 30), tsa=None) is None  # before the log
        assert await verify(a) is None


async def test_a_root_is_stamped_and_the_token_verifies_against_it(
    tmp_path: Path, make_post: MakePost
) -> None:
    path = tmp_path / "a.db"
    await three_days(path, make_post)
    with serve_tsa() as (url, tsa):
        async with await Archive.open(path) as a:
            root = await make_root(a, DAY1, tsa=TsaClient(url))
            assert root is not None and root.tsa_url == url and root.tsa_token is not None
            stored = await root_covering(a, 1)
            assert stored is not None and stored.tsa_token == root.tsa_token
            assert await verify(a) is None
    resp = decode_timestamp_response(root.tsa_token)
    verifier = VerifierBuilder().add_root_certificate(tsa.ca).build()
    assert verifier.verify(resp, imprint(root.root_hash))  # the test CA's signature, this root
    assert resp.tst_info.message_imprint.message == imprint(root.root_hash)


async def test_a_failing_authority_is_logged_once_and_retried_next_pass(
    tmp_path: Path, make_post: MakePost, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "a.db"
    await three_days(path, make_post)
    roots_mod._failing.clear()
    now = datetime(2024, 5, 4, 12, tzinfo=UTC)
    with serve_tsa() as (url, tsa):
        tsa.failures = [503, 503]  # one try a pass: the first root's; the rest wait
        async with await Archive.open(path) as a:
            with caplog.at_level(logging.WARNING, logger="archiver.evidence.roots"):
                first = await close_days(a, url, now=now)
                second = await close_days(a, url, now=now)
            assert [r.day for r in first] == ["2024-05-01", "2024-05-02"]  # made, unstamped
            assert second == []
            assert tsa.requests == 2
            warned = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warned) == 1 and "HTTP 503" in warned[0].getMessage()
            assert (await a.fetchone("SELECT count(*) FROM log_roots WHERE tsa_token IS NULL"))[
                0
            ] == 2
            await close_days(a, url, now=now)  # the authority answers again
            assert (await a.fetchone("SELECT count(*) FROM log_roots WHERE tsa_token IS NULL"))[
                0
            ] == 0
            assert await verify(a) is None


def run(*argv: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(argv), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def tamper(path: Path, sql: str, *params: object) -> None:
    con = sqlite3.connect(path)
    con.execute(sql, params)
    con.commit()
    con.close()


async def _with_roots(path: Path, make_post: MakePost) -> None:
    await three_days(path, make_post)
    async with await Archive.open(path) as a:
        await make_roots(a, now=datetime(2024, 5, 4, 12, tzinfo=UTC), tsa=None)


def test_log_verify_from_the_command_line(tmp_path: Path, make_post: MakePost) -> None:
    path = tmp_path / "a.db"
    asyncio.run(_with_roots(path, make_post))
    assert run("--db", str(path), "log", "verify") == (
        0, "log intact: 4 entries, last root 2024-05-02\n", ""
    )  # fmt: skip
    code, out, _ = run("--db", str(path), "log", "verify", "--json")
    assert code == 0 and json.loads(out) == {
        "intact": True, "entries": 4, "last_root": "2024-05-02", "captures_pruned": 0,
    }  # fmt: skip
    tamper(path, "UPDATE log_roots SET root_hash = ? WHERE day = '2024-05-01'", "f" * 64)
    code, out, err = run("--db", str(path), "log", "verify")
    assert code == 1 and out == ""
    assert err == (
        "Error: the observation log is broken at entry 2: the root of 2024-05-01 is not this"
        " entry's entry_hash (docs/evidence.md, Verifying)\n"
    )
    code, out, _ = run("--db", str(path), "log", "verify", "--json")
    assert code == 1 and json.loads(out)["broken_seq"] == 2


async def test_a_stamped_root_with_another_token_is_named(
    tmp_path: Path, make_post: MakePost
) -> None:
    path = tmp_path / "a.db"
    await three_days(path, make_post)
    with serve_tsa() as (url, _):
        async with await Archive.open(path) as a:
            await make_root(a, DAY1, tsa=TsaClient(url))
            other = await TsaClient(url).stamp("e" * 64)
    tamper(path, "UPDATE log_roots SET tsa_token = ?", other)
    async with await Archive.open(path) as a:
        assert str(await verify(a)) == (
            "entry 2: the timestamp of 2024-05-01's root: it stamps another hash than this root"
        )


async def test_captures_past_retention_are_pruned_and_the_log_still_verifies(
    archive: Archive, make_post: MakePost
) -> None:
    await archive.write(
        "INSERT INTO channels (id, username, source, created_at) VALUES (?, 'vsaldo', 'web',"
        " '2024-05-01 00:00:00')",
        (CHANNEL_ID,),
    )

    def page(n: int) -> object:
        return http_response(
            url=f"https://t.me/s/vsaldo?n={n}", fetched_at="2024-05-01 00:00:00",
            http_version="HTTP/1.1", status=200, reason="OK", headers=[], body=b"page %d" % n,
        )  # fmt: skip

    await ingest(archive, [make_post(1, "a")], source="web", alerts=False, capture=page(1))  # type: ignore[arg-type]
    await ingest(archive, [make_post(2, "b")], source="web", alerts=False, capture=page(2))  # type: ignore[arg-type]
    now = datetime.now(UTC)
    old = (now - timedelta(days=40)).strftime("%Y-%m-%d %H:%M:%S")
    await archive.write("UPDATE captures SET first_at = ?", (old,))
    await archive.write("UPDATE observations SET at = ? WHERE seq = 1", (old,))
    assert await prune_captures(archive, 0, now=now) == 0  # 0: kept for ever
    assert await prune_captures(archive, 30, now=now) == 1  # entry 2 (today) keeps its page
    left = await archive.fetchall("SELECT sha256 FROM captures")
    kept = await archive.fetchone("SELECT capture_sha FROM observations WHERE seq = 2")
    assert [r[0] for r in left] == [kept[0]]
    broken = await verify(archive)
    # entry 1's at column was moved for the test: that (not the pruned capture) is named
    assert broken is not None and broken.seq == 1 and "its at column" in broken.reason
