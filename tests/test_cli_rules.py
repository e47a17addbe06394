"""`telewatch rules test`, `rules list` and `alerts` on a real archive."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import CHANNEL_ID, T0

from archiver.cli import cli
from archiver.models import ChannelInfo, Post, Rule
from archiver.rules import RuleLoader
from archiver.store.archive import Archive
from archiver.store.channels import set_cursor, upsert_channel
from archiver.store.ingest import ingest

RULES = """
[[rules]]
name = "evacuation"
query = "(эвакуация OR евакуація) -учения"
notify = [111]
"""


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    path = tmp_path / "a.db"
    archive = await Archive.open(path)
    try:
        await upsert_channel(archive, ChannelInfo(CHANNEL_ID, "vsaldo", "Saldo"), source="telethon")
        posts = [
            Post(CHANNEL_ID, 1, T0, "Объявлена эвакуация"),
            Post(CHANNEL_ID, 2, T0, "Эвакуации не будет, это учения"),
            Post(CHANNEL_ID, 3, T0, "Рынок работает"),
        ]
        await ingest(archive, posts, source="telethon", alerts=False)
        RuleLoader([Rule("evacuation", "эвакуация OR евакуація", notify=(111,))]).install(archive)
        await set_cursor(archive, CHANNEL_ID, backfilled=True)
        await ingest(archive, [Post(CHANNEL_ID, 4, T0, "Евакуація триває")], source="telethon",
                     alerts=True)  # fmt: skip
    finally:
        await archive.close()
    return path


def run(db: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--db", str(db), *args], env={"TELEWATCH_CONFIG": ""})
    return result.exit_code, result.stdout, result.stderr


def test_rules_test_json_has_the_documented_keys(db: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    code, out, err = run(db, "rules", "test", "--rules", str(rules), "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert {tuple(sorted(x)) for x in lines} == {
        ("channel", "channel_id", "date", "message_id", "rule", "snippet")
    }
    assert sorted(x["message_id"] for x in lines) == [1, 4]  # -учения drops post 2


def test_rules_test_human_output_counts(db: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    code, out, _ = run(db, "rules", "test", "--rules", str(rules))
    assert code == 0
    assert "evacuation: 2 post(s)" in out


def test_a_bad_rule_file_names_the_rule_and_position(db: Path, tmp_path: Path) -> None:
    rules = tmp_path / "bad.toml"
    rules.write_text('[[rules]]\nname = "x"\nquery = "(эвакуация"\n', encoding="utf-8")
    code, _, err = run(db, "rules", "test", "--rules", str(rules))
    assert code == 2
    assert "rules[0] (x).query: unbalanced parenthesis '(' at 1" in err
    assert len(err.splitlines()) == 1


def test_rules_test_without_rules_says_what_to_do(db: Path) -> None:
    code, _, err = run(db, "rules", "test")
    assert code == 1
    assert "no rules to test" in err


def test_alerts_json_has_the_documented_keys(db: Path) -> None:
    code, out, err = run(db, "alerts", "--json")
    assert code == 0, err
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert sorted(row) == sorted(
        ["id", "rules", "channel_id", "message_id", "kind", "recipient", "status",
         "created_at", "sent_at"]
    )  # fmt: skip
    assert (row["message_id"], row["kind"], row["recipient"], row["status"]) == (
        4, "new", 111, "pending",
    )  # fmt: skip


def test_alerts_requeue_puts_failed_back(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alerts SET status = 'failed', attempts = 8")
    code, out, _ = run(db, "alerts", "--status", "failed", "--json")
    assert json.loads(out)["status"] == "failed"
    code, out, err = run(db, "alerts", "--requeue", "--status", "pending", "--json")
    assert code == 0, err
    assert "1 failed alert(s) put back to pending" in err
    assert json.loads(out)["status"] == "pending"


def test_rules_list_shows_config_rules(db: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(RULES, encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["--config", str(cfg), "--db", str(db), "rules", "list"], env={"TELEWATCH_CONFIG": ""}
    )
    assert result.exit_code == 0, result.stderr
    assert "evacuation" in result.stdout
