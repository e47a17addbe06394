"""Login and sessions: no session, a revoked session, the 0600 session file, session strings."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fakes.telethon_client import FakeTelegram, factory_for, settings_for

from archiver.errors import ConfigError, NotLoggedIn, SourceError
from archiver.sources.telethon import (
    NOT_LOGGED_IN,
    REVOKED,
    LoginPrompts,
    connect_client,
    login,
    session_path,
)
from archiver.sync import sync_all

PHONE = "+380501234567"


def never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("no client may be made (and no network touched)")


async def test_no_session_says_run_login_before_any_network(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "vsaldo")
    with pytest.raises(NotLoggedIn) as err:
        await connect_client(settings, factory=never)
    assert str(err.value) == NOT_LOGGED_IN == "not logged in: run `telewatch login`"
    assert err.value.exit_code != 0
    assert not session_path(settings).exists()


async def test_sync_without_a_session_fails_before_any_network(
    tmp_path: Path, archive: Any
) -> None:
    settings = settings_for(tmp_path, "vsaldo")
    results = await sync_all(archive, settings)  # recorded per channel; other sources go on
    assert isinstance(results.login_lost, NotLoggedIn)
    assert [r.error for r in results] == [f"vsaldo: {NOT_LOGGED_IN}"]
    assert not session_path(settings).exists()


@pytest.mark.parametrize(
    ("change", "key"),
    [({"api_id": None}, "telegram.api_id"), ({"api_hash": None}, "telegram.api_hash")],
)
async def test_missing_api_credentials_name_the_key(
    tmp_path: Path, change: dict[str, Any], key: str
) -> None:
    settings = settings_for(tmp_path, "vsaldo", **change)
    with pytest.raises(ConfigError) as err:
        await connect_client(settings, factory=never)
    assert str(err.value).startswith(f"{key}: missing")
    assert "TELEWATCH_API_" in str(err.value)


async def test_a_revoked_session_says_log_in_again(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "vsaldo")
    session_path(settings).touch()
    tg = FakeTelegram()
    tg.authorized = False
    made: list[Any] = []
    with pytest.raises(NotLoggedIn) as err:
        await connect_client(settings, factory=factory_for(tg, made))
    assert str(err.value) == REVOKED
    assert "telewatch login" in str(err.value)
    assert not made[0].is_connected()


async def test_a_valid_session_connects(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "vsaldo")
    tg = FakeTelegram()
    tg.session_file(session_path(settings))
    client = await connect_client(settings, factory=factory_for(tg))
    try:
        assert client.is_connected()
        assert await client.is_user_authorized()
    finally:
        await client.disconnect()


async def test_a_network_failure_on_connect_is_a_clear_error(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "vsaldo")
    session_path(settings).touch()

    def factory(*args: Any, **kwargs: Any) -> Any:
        client = factory_for(FakeTelegram())(*args, **kwargs)

        async def connect() -> None:
            raise ConnectionError("Connection to Telegram failed 5 time(s)")

        client.connect = connect
        return client

    with pytest.raises(SourceError, match="cannot connect to Telegram"):
        await connect_client(settings, factory=factory)


async def test_an_unreadable_session_string_says_log_in_again(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "vsaldo", session_string="not a session")
    with pytest.raises(NotLoggedIn, match="login --string"):
        await connect_client(settings, factory=never)


def logging_in(tg: FakeTelegram, asked: list[str]) -> Any:
    """A factory whose clients "log in" offline: start() asks the prompts as Telethon does,
    then holds an auth key as after a real login."""
    base = factory_for(tg)

    def make(*args: Any, **kwargs: Any) -> Any:
        client = base(*args, **kwargs)

        async def start(phone: Any, code_callback: Any, password: Any) -> Any:
            asked.extend([phone(), code_callback(), password()])
            await client.connect()  # as start() does: the key exchange makes a new key
            tg.register(client.session.auth_key.key)  # Telegram accepted the code for it
            return client

        client.start = start
        return client

    return make


PROMPTS = LoginPrompts(phone=lambda: PHONE, code=lambda: "12345", password=lambda: "hunter2")


async def test_login_writes_the_session_file_with_mode_0600(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(tmp_path, "vsaldo")
    settings = replace(
        settings, telegram=replace(settings.telegram, session=tmp_path / "private" / "tw")
    )
    asked: list[str] = []
    tg = FakeTelegram()
    old = os.umask(0)  # even with a careless umask
    try:
        out = await login(settings, as_string=False, prompts=PROMPTS, factory=logging_in(tg, asked))
    finally:
        os.umask(old)
    assert out is None
    assert asked == [PHONE, "12345", "hunter2"]
    path = tmp_path / "private" / "tw.session"  # Telethon's name for it
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"SQLite format 3")  # Telethon wrote its session
    for secret in (PHONE, "12345", "hunter2", settings.telegram.api_hash or "?"):
        assert secret not in caplog.text

    # and from now on, commands connect with it
    client = await connect_client(settings, factory=factory_for(tg))
    await client.disconnect()


async def test_login_string_returns_a_session_for_the_environment(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "vsaldo")
    asked: list[str] = []
    tg = FakeTelegram()
    text = await login(settings, as_string=True, prompts=PROMPTS, factory=logging_in(tg, asked))
    assert text
    assert not session_path(settings).exists()  # no file: the string is the session

    env = replace(settings, telegram=replace(settings.telegram, session_string=text))
    made: list[Any] = []
    client = await connect_client(env, factory=factory_for(tg, made))
    try:
        assert client.session.auth_key is not None
        assert client.session.save() == text
    finally:
        await client.disconnect()
