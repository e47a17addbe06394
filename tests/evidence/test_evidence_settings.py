"""[evidence] in the config, and the daily roots made by every sync pass (a failing
time-stamp authority never stops it)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import MakePost
from fakes.tsa import serve_tsa

from archiver.config import EvidenceSettings, Settings, load_settings
from archiver.errors import ConfigError
from archiver.evidence import roots as roots_mod
from archiver.evidence.log import verify
from archiver.store.archive import Archive
from archiver.sync import sync_all
from evidence.test_roots import three_days


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, env={})


def test_defaults_and_values(tmp_path: Path) -> None:
    assert load(tmp_path, "").evidence == EvidenceSettings(2_000_000, 0, None)
    got = load(
        tmp_path,
        "[evidence]\nmax_capture_bytes = 5000\ncapture_retention_days = 90\n"
        'tsa_url = "https://tsa.example.org/tsr"\n',
    ).evidence
    assert got == EvidenceSettings(5000, 90, "https://tsa.example.org/tsr")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_capture_bytes = 0", "evidence.max_capture_bytes: expected a positive number, got 0"),
        ("capture_retention_days = -1",
         "evidence.capture_retention_days: expected zero or more, got -1"),
        ('tsa_url = "file:///etc/passwd"',
         "evidence.tsa_url: expected an http:// or https:// URL with a host, got"),
        ("keep = true", "evidence.keep: unknown key"),
    ],
)  # fmt: skip
def test_bad_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, f"[evidence]\n{text}\n")
    assert message in str(err.value)


async def test_every_sync_pass_makes_the_roots_of_finished_days(
    tmp_path: Path, make_post: MakePost
) -> None:
    path = tmp_path / "a.db"
    await three_days(path, make_post)  # entries of May 2024: those days are over
    roots_mod._failing.clear()
    with serve_tsa() as (url, tsa):
        tsa.failures = [500]
        settings = replace(Settings(), evidence=EvidenceSettings(tsa_url=url))
        async with await Archive.open(path) as a:
            await sync_all(a, settings, channels=[])  # the authority fails: the pass goes on
            rows = await a.fetchall("SELECT day, tsa_token FROM log_roots ORDER BY day")
            assert [(r[0], r[1]) for r in rows] == [
                ("2024-05-01", None), ("2024-05-02", None), ("2024-05-04", None),
            ]  # fmt: skip
            await sync_all(a, settings, channels=[])  # it answers now: stamped
            rows = await a.fetchall("SELECT count(*) FROM log_roots WHERE tsa_token IS NULL")
            assert rows[0][0] == 0
            assert await verify(a) is None
