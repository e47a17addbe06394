"""Hostile configurations: nan, inf, negative and absurd numbers, URLs that are not http(s),
numbers that overflow, TOML nested deeper than the parser can follow. Each is refused at
load time with one line naming the file and the key; none reaches a traceback."""

# ruff: noqa: E501  (the table of cases reads best one case a line)
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from archiver.config import load_settings
from archiver.errors import ConfigError

CASES = [
    ("[schedule]\nheartbeat_seconds = -5", "schedule.heartbeat_seconds: expected a positive"),
    ("[schedule]\npass_deadline_seconds = nan", "schedule.pass_deadline_seconds: expected a finite"),
    ("[schedule]\npass_deadline_seconds = inf", "schedule.pass_deadline_seconds: expected a finite"),
    ("[web]\ndelay_seconds = nan", "web.delay_seconds: expected a finite number, got nan"),
    ("[web]\ndelay_seconds = -inf", "web.delay_seconds: expected a finite number, got -inf"),
    ("[web]\ntimeout_seconds = inf", "web.timeout_seconds: expected a finite number, got inf"),
    ("[web]\nmax_retries = -1", "web.max_retries: expected zero or more, got -1"),
    ("[web]\nrecent_pages = 100000000", "web.recent_pages: expected at most 1000"),
    ('[web]\nbase_url = "file:///etc"', "web.base_url: expected an http:// or https:// URL"),
    ('[web]\nbase_url = "http://"', "web.base_url: expected an http:// or https:// URL"),
    ('[web]\nbase_url = "javascript:alert(1)"', "web.base_url: expected an http:// or https://"),
    ('[bot]\napi_base_url = "file:///tmp/x"', "bot.api_base_url: expected an http:// or https://"),
    ("[bot]\nexport_cap = 10000000000", "bot.export_cap: expected at most 10000 (Telegram refuses"),
    ("[bot]\npoll_seconds = nan", "bot.poll_seconds: expected a finite number, got nan"),
    ("[bot]\npoll_seconds = 0.0001", "bot.poll_seconds: expected at least 0.1 (each look reads"),  # review 15: 0.0001 kept a core 30 % busy
    ("[bot]\nmax_attempts = -3", "bot.max_attempts: expected a positive number, got -3"),
    ("[media]\nmax_size_mb = inf", "media.max_size_mb: expected a finite number, got inf"),
    ("[telegram]\nflood_wait_ceiling = 99999999999", "telegram.flood_wait_ceiling: expected at"),
    ("[telegram]\ntimeout_seconds = 0", "telegram.timeout_seconds: expected a positive number"),
    ("[telegram]\nrecent_hours = 10000000", "telegram.recent_hours: expected at most 8760"),
    ("[storage]\nbackup_keep = 0", "storage.backup_keep: expected a positive number, got 0"),
    ("[recheck]\nrecent_days = nan", "recheck.recent_days: expected a finite number, got nan"),
    ("[recheck]\nrecent_days = -1", "recheck.recent_days: expected a positive number, got -1"),
    ("[recheck]\nfull_recheck_days = 100000", "recheck.full_recheck_days: expected a number of days from 0 to 3650"),
    ('[[rules]]\nname = "evac"\nquery = "x"\nfollow_ups = "some"', "rules[0] (evac).follow_ups: expected one of all, alerted, none"),
    (
        '[[channels]]\nusername = "vsaldo"\nbackfill = 99999999999999999',
        "channels[0].backfill: expected at most 2147483647 posts",
    ),
    (
        '[[channels]]\nusername = "vsaldo"\nbackfill = "99999999999999d"',
        "channels[0].backfill: expected an age of at most 36500 days",
    ),
    ('[storage]\npath = ""', "storage.path: expected a path, got an empty string"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), CASES, ids=[m.split(":")[0] for _, m in CASES])
def test_nonsense_is_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert str(err.value).startswith(f"{path}: {message}")
    assert "\n" not in str(err.value)


def test_a_toml_nested_past_the_parser_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("x = " + "[" * 100_000 + "]" * 100_000, encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "archiver", "--config", str(path), "config", "check"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "TELEWATCH_CONFIG": ""},
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"Error: {path}: nested too deeply to read (more than Python's recursion limit);"
        " a telewatch config nests 3 levels at most"
    ]


def test_the_docs_say_an_empty_export_leaves_service_messages_out() -> None:
    """The query language doc and `export --help` said "everything"; service messages were
    always left out. They say so now."""
    from click.testing import CliRunner

    from archiver.cli import cli

    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "query-language.md").read_text(encoding="utf-8")
    assert "except\nservice messages" in doc
    help_text = CliRunner().invoke(cli, ["export", "--help"]).output
    assert "but service messages" in help_text
