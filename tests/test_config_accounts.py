"""[[accounts]] in the config (issue 18): names, sessions, limits, pins, secrets; and
`telewatch login --account NAME`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from archiver.cli import cli
from archiver.config import (
    JOIN_LIMIT,
    PREMIUM_JOIN_LIMIT,
    Settings,
    account_settings,
    load_settings,
    summary,
)
from archiver.errors import ConfigError

HASH = "0123456789abcdef0123456789abcdef"
BASE = f'[telegram]\napi_id = 1\napi_hash = "{HASH}"\n'


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(BASE + text, encoding="utf-8")
    return load_settings(path, env=env or {})


TWO = '[[accounts]]\nname = "desk1"\n[[accounts]]\nname = "desk-2"\npremium = true\n'

ERRORS = [
    ('[[accounts]]\nname = "desk1"\n[[accounts]]\nname = "desk2"\n[[accounts]]\nname = "desk1"',
     "accounts[2].name: 'desk1' is used twice (accounts[0] has it); give each account its own"
     " name"),
    ('[[accounts]]\nname = "Desk 1"', "accounts[0].name: expected 1 to 32 of a-z, 0-9, _ and -"
     " (it names the session file and the environment variable), got 'Desk 1'"),
    ("[[accounts]]\nsession = 'x.session'", "accounts[0].name: missing: every account needs a"
     ' name, like name = "desk1"'),
    ('[[accounts]]\nname = "desk1"\njoin_limit = 0',
     "accounts[0].join_limit: expected a positive number, got 0"),
    ('[[accounts]]\nname = "desk1"\nphone = "+380..."',
     "accounts[0].phone: unknown key (see config.example.toml for the known keys)"),
    ('[[accounts]]\nname = "desk1"\napi_id = "abc"',
     "accounts[0].api_id: expected an integer, got a value of the wrong kind (not shown: it may"
     " be a secret)"),
    ('[[accounts]]\nname = "a"\nsession = "s.session"\n[[accounts]]\nname = "b"\n'
     'session = "s.session"', "accounts[1].session: s.session is the session of accounts[0] too;"
     " one session per account (Telegram refuses one session used twice at once:"
     " AUTH_KEY_DUPLICATED)"),
    ('[[accounts]]\nname = "desk1"\n[[channels]]\nusername = "vsaldo"\naccount = "desk9"',
     "channels[0].account: no account named 'desk9' (accounts: desk1); add it as [[accounts]] or"
     " fix the name"),
    ('[[channels]]\nusername = "vsaldo"\nsource = "web"\naccount = "main"',
     "channels[0].account: only a Telethon channel is followed by an account (source is web)"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), ERRORS, ids=[m.split(":")[0] for _, m in ERRORS])
def test_bad_accounts_are_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert str(err.value) == f"{tmp_path / 'config.toml'}: {message}"
    assert err.value.exit_code == 2


def test_without_accounts_there_is_one_implicit_main_made_of_telegram(tmp_path: Path) -> None:
    s = load(tmp_path, '[[channels]]\nusername = "vsaldo"\naccount = "main"\n',
             env={"TELEWATCH_SESSION": "str"})  # fmt: skip
    [main] = s.accounts
    assert (main.name, main.implicit, main.session_string) == ("main", True, "str")
    assert main.session == s.telegram.session and main.join_limit == JOIN_LIMIT
    assert account_settings(s, "main") is s  # nothing changes for the one account


def test_accounts_defaults_env_session_strings_and_credentials(tmp_path: Path) -> None:
    s = load(tmp_path, TWO + 'api_id = 99\napi_hash = "feedfeedfeedfeedfeedfeedfeedfeed"\n',
             env={"TELEWATCH_SESSION_DESK_2": "secret-string"})  # fmt: skip
    d1, d2 = s.accounts
    assert d1.session == Path("data/desk1.session") and d1.join_limit == JOIN_LIMIT
    assert d2.join_limit == PREMIUM_JOIN_LIMIT and d2.session_string == "secret-string"
    one = account_settings(s, "desk1").telegram
    assert (one.api_id, one.api_hash, one.session, one.session_string) == (
        1, HASH, Path("data/desk1.session"), None,
    )  # fmt: skip
    two = account_settings(s, "desk-2")
    assert (two.telegram.api_id, two.telegram.session_string) == (99, "secret-string")
    assert two.for_account == "desk-2"
    # secrets: redacted from logs, never in repr or `config check`
    assert "secret-string" in s.secrets and "feedfeedfeedfeedfeedfeedfeedfeed" in s.secrets
    shown = repr(s) + "\n".join(summary(s))
    assert "secret-string" not in shown and "feedfeed" not in shown
    assert (
        "  desk-2: session string from TELEWATCH_SESSION_DESK_2, join limit 1000, own"
        " api_id/api_hash"
    ) in summary(s)


def test_accounts_must_be_tables(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("accounts = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert str(err.value) == f"{path}: accounts: expected a list of [[accounts]] tables"


def test_a_join_limit_may_be_set_and_a_pin_is_kept(tmp_path: Path) -> None:
    s = load(tmp_path, TWO + 'join_limit = 20\n[[channels]]\nusername = "vsaldo"\n'
             'account = "desk-2"\n')  # fmt: skip
    assert s.accounts[1].join_limit == 20
    assert s.channels[0].account == "desk-2"


def _pins(account: str, n: int) -> str:
    return "".join(
        f'[[channels]]\nusername = "pinned{i:04d}"\naccount = "{account}"\n' for i in range(n)
    )


PIN_ERRORS = [
    (TWO + "join_limit = 2\n" + _pins("desk-2", 3),
     "channels: 3 channels are pinned to account 'desk-2', more than its join_limit of 2;"
     " unpin some, raise its join_limit, or add an [[accounts]] account for them"),
    (TWO + _pins("desk1", JOIN_LIMIT + 1),
     "channels: 501 channels are pinned to account 'desk1', more than its join_limit of 500;"
     " unpin some, raise its join_limit (premium = true if it has Telegram Premium), or add an"
     " [[accounts]] account for them"),
    (TWO + _pins("desk-2", PREMIUM_JOIN_LIMIT + 1),  # premium: 1000
     "channels: 1001 channels are pinned to account 'desk-2', more than its join_limit of 1000;"
     " unpin some, raise its join_limit, or add an [[accounts]] account for them"),
    (_pins("main", JOIN_LIMIT + 1),  # no [[accounts]]: the one account main, 500
     "channels: 501 channels are pinned to account 'main', more than its join_limit of 500;"
     " unpin some, or add [[accounts]] accounts and pin them there"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), PIN_ERRORS, ids=["set", "default", "premium", "main"])
def test_more_pins_than_the_join_limit_are_refused_in_one_line(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert str(err.value) == f"{tmp_path / 'config.toml'}: {message}"
    assert err.value.exit_code == 2


def test_pins_up_to_the_join_limit_are_kept(tmp_path: Path) -> None:
    s = load(tmp_path, TWO + "join_limit = 2\n" + _pins("desk-2", 2) + _pins("desk1", 0))
    assert [c.account for c in s.channels] == ["desk-2", "desk-2"]
    # premium doubles the default: 501 pins fit
    s = load(tmp_path, TWO + _pins("desk-2", JOIN_LIMIT + 1))
    assert len(s.channels) == JOIN_LIMIT + 1


def test_too_many_pins_stop_stats_in_one_line_and_change_nothing(tmp_path: Path) -> None:
    import asyncio
    from datetime import UTC, datetime

    from archiver.models import ChannelInfo, Post
    from archiver.store.archive import Archive
    from archiver.store.channels import upsert_channel
    from archiver.store.ingest import ingest

    db = tmp_path / "a.db"

    async def fill() -> None:
        async with await Archive.open(db) as a:
            await upsert_channel(a, ChannelInfo(id=-1001, username="pinned0000"), source="telethon")
            await ingest(a, [Post(-1001, 1, datetime(2024, 5, 1, tzinfo=UTC), "Евакуація")],
                         source="telethon", alerts=False)  # fmt: skip

    asyncio.run(fill())
    before = db.read_bytes()
    config = tmp_path / "config.toml"
    config.write_text(BASE + TWO + "join_limit = 1\n" + _pins("desk-2", 2), encoding="utf-8")
    for command in (["stats"], ["sync"], ["run", "--worker", "w1"], ["health"]):
        result = CliRunner().invoke(cli, ["--config", str(config), "--db", str(db), *command])
        assert result.exit_code == 2, result.output
        assert result.stderr.splitlines() == [
            f"Error: {config}: channels: 2 channels are pinned to account 'desk-2', more than"
            " its join_limit of 1; unpin some, raise its join_limit, or add an [[accounts]]"
            " account for them"
        ]
    assert db.read_bytes() == before  # nothing opened, nothing changed


# ---------------------------------------------------------------------------- login


@pytest.fixture
def fake_login(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    from functools import partial

    from fakes.telethon_client import FakeTelegram
    from sources.test_telethon_session import PROMPTS, logging_in

    import archiver.sources.telethon as tg

    asked: list[str] = []
    monkeypatch.setattr(
        tg, "login", partial(tg.login, prompts=PROMPTS, factory=logging_in(FakeTelegram(), asked))
    )
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text(BASE + TWO, encoding="utf-8")
    return asked


def test_login_account_writes_that_accounts_session_0600(
    tmp_path: Path, fake_login: list[str]
) -> None:
    result = CliRunner().invoke(cli, ["--config", "config.toml", "login", "--account", "desk-2"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "data" / "desk-2.session"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not (tmp_path / "data" / "desk1.session").exists()
    assert "session saved to data/desk-2.session" in result.output
    assert len(fake_login) == 3


def test_login_without_account_among_several_lists_them_in_one_line(
    tmp_path: Path, fake_login: list[str]
) -> None:
    result = CliRunner().invoke(cli, ["--config", "config.toml", "login"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "Error: login: the config has 2 accounts (desk1, desk-2); say which with"
        " `telewatch login --account NAME`"
    )
    assert fake_login == []  # nothing asked


def test_login_with_an_unknown_account_names_the_known_ones(
    tmp_path: Path, fake_login: list[str]
) -> None:
    result = CliRunner().invoke(cli, ["--config", "config.toml", "login", "--account", "desk3"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "Error: no account named 'desk3' in the config (accounts: desk1, desk-2)"
    )
