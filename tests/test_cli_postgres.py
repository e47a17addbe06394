"""The ``telewatch`` commands on a PostgreSQL archive (issue 18), through click's test runner
against the real server of tests/pg.py: what works there gives the same answers as on SQLite,
and what does not yet refuses in one line that names it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import MakePost
from test_cli import EXPORT

from archiver.cli import cli
from archiver.store.archive import Archive


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for var in ("TELEWATCH_CONFIG", "TELEWATCH_DATABASE_URL", "TELEWATCH_BOT_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    yield


def run(url: str | None, *args: str, db: Path | None = None) -> Result:
    env = {"TELEWATCH_DATABASE_URL": url} if url else {}
    argv = (["--db", str(db)] if db is not None else []) + list(args)
    return CliRunner().invoke(cli, argv, env=env, catch_exceptions=False)


async def _create(url: str) -> None:
    async with await Archive.open(url):
        pass


def _mask_now(text: str) -> str:
    """Times observed today (the two imports ran a moment apart) as <now>; the posts' own
    dates are from 2024."""
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    return re.sub(rf"{today}[T ][0-9:]+Z?", "<now>", text)


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_import_stats_history_and_health_on_postgresql_match_sqlite(
    pg_url: str, tmp_path: Path
) -> None:
    export = tmp_path / "result.json"
    export.write_text(json.dumps(EXPORT, ensure_ascii=False), encoding="utf-8")
    first = run(pg_url, "import", str(export), "--username", "@VSaldo")
    assert first.exit_code == 0, first.output
    assert "vsaldo: 2 posts added, 2 versions added" in first.stdout
    again = run(pg_url, "import", str(export))  # resumable, idempotent: nothing twice
    assert "0 posts added, 0 versions added" in again.stdout

    db = tmp_path / "same.db"
    assert run(None, "import", str(export), "--username", "@VSaldo", db=db).exit_code == 0
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nname = "evac"\nquery = "эвакуация"\n', encoding="utf-8")
    checks = [
        ("stats", "--json"),
        ("history", "vsaldo", "2", "--json"),
        ("coverage", "vsaldo", "--json"),
        ("alerts",),
        ("rules", "test", "--rules", str(rules), "--json"),
        ("search", "эвакуация", "--json"),
        ("search", "эвакуация OR рынок", "--sort", "relevance", "--json"),
        ("export", "эвакуация", "--format", "csv"),
    ]
    for args in checks:
        on_pg, on_sqlite = run(pg_url, *args), run(None, *args, db=db)
        assert on_pg.exit_code == on_sqlite.exit_code == 0, on_pg.output
        assert _mask_now(on_pg.stdout) == _mask_now(on_sqlite.stdout), args
        assert on_pg.stdout.strip(), args
    stats = _json_lines(run(pg_url, "stats", "--json").stdout)
    assert [(s["channel"], s["posts"]) for s in stats] == [("vsaldo", 1)]  # and 1 service

    health = run(pg_url, "health", "--process", "none")
    assert health.exit_code == 0, health.output


def test_a_bad_url_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql://tw:s3cret@/nowhere?host={tmp_path}&connect_timeout=2"
    result = run(url, "stats")
    assert result.exit_code == 1
    assert "s3cret" not in result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: postgresql://tw:***@/nowhere")
    assert "cannot connect to PostgreSQL" in line


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("backup",), "`telewatch backup` is not yet supported on PostgreSQL"),
        (("restore", "--yes", "x.db"), "`telewatch restore` is not yet supported"),
    ],
)
def test_what_does_not_work_yet_refuses_in_one_line(
    pg_url: str, args: tuple[str, ...], named: str
) -> None:
    asyncio.run(_create(pg_url))
    result = run(pg_url, *args)
    assert result.exit_code != 0
    [line] = result.stderr.splitlines()
    assert named in line and "docs/postgresql.md" in line


def test_the_observation_log_verifies_on_postgresql(pg_url: str, make_post: MakePost) -> None:
    from evidence.test_roots import _with_roots

    asyncio.run(_with_roots(pg_url, make_post))  # type: ignore[arg-type]  # a URL opens too
    ok = run(pg_url, "log", "verify")
    assert (ok.exit_code, ok.stdout) == (0, "log intact: 4 entries, last root 2024-05-02\n")
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE log_roots SET root_hash = %s WHERE day = '2024-05-01'", ("f" * 64,))
    broken = run(pg_url, "log", "verify")
    assert broken.exit_code == 1
    assert broken.stderr == (
        "Error: the observation log is broken at entry 2: the root of 2024-05-01 is not this"
        " entry's entry_hash (docs/evidence.md, Verifying)\n"
    )


def test_an_evidence_bundle_on_postgresql_is_the_one_sqlite_makes(
    pg_url: str, tmp_path: Path
) -> None:
    """The same record on both backends gives the same bundle (times aside, as the two were
    recorded a moment apart), and `evidence verify` accepts the PostgreSQL one offline."""
    from evidence.bundlekit import read_member
    from evidence.test_bundle_archive import populate

    db = tmp_path / "data" / "a.db"
    asyncio.run(populate(db))
    asyncio.run(populate(pg_url))  # type: ignore[arg-type]  # a URL opens too
    made = {}
    for name, url, at in (("sqlite", None, db), ("pg", pg_url, None)):
        out = tmp_path / f"{name}.zip"
        result = run(url, "evidence", "t.me/vsaldo/1", "@vsaldo/2", "--output", str(out), db=at)
        assert result.exit_code == 0, result.output
        checked = run(None, "evidence", "verify", str(out))
        assert checked.exit_code == 0, checked.output
        made[name] = out

    def timeless(member: str, out: Path) -> str:
        text = read_member(out, member).decode()
        text = re.sub(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?(\.\d+)?Z?", "T", text)
        return re.sub(r"[0-9a-f]{64}", "H", text)

    for member in ("report.md", "report.html"):
        assert timeless(member, made["pg"]) == timeless(member, made["sqlite"]), member
    sq, pg = (
        [json.loads(x) for x in read_member(made[n], "log.jsonl").splitlines()]
        for n in ("sqlite", "pg")
    )

    def said(lines: list[dict[str, str]]) -> list[tuple[str | None, str | None]]:
        return [
            (x.get("kind"), json.loads(x["content"]).get("version", {}).get("text"))
            for x in lines
            if "content" in x
        ]

    assert said(pg) == said(sq) and [x for x in said(pg) if x[1]]
    assert read_member(made["pg"], "captures.warc.gz") and len(pg) == len(sq)


def test_maintenance_on_postgresql_prunes_captures_and_the_log_still_verifies(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evidence.test_bundle_archive import populate

    asyncio.run(populate(pg_url))  # type: ignore[arg-type]  # a URL opens too
    import psycopg

    from archiver.store import archive

    with psycopg.connect(pg_url, autocommit=True) as conn:
        [[captures]] = conn.execute("SELECT count(*) FROM captures").fetchall()
    assert captures == 3
    config = tmp_path / "config.toml"
    config.write_text("[evidence]\ncapture_retention_days = 30\n")
    a_year_on = archive.utcnow() + timedelta(days=400)
    with monkeypatch.context() as m:
        m.setattr(archive, "utcnow", lambda: a_year_on)
        done = run(pg_url, "--config", str(config), "maintenance")
    assert done.exit_code == 0, done.output
    assert re.fullmatch(r"maintenance done in \d+\.\d s, 3 capture\(s\) pruned\n", done.stdout)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM captures").fetchall() == [(0,)]
    ok = run(pg_url, "log", "verify")
    assert ok.exit_code == 0, ok.output
