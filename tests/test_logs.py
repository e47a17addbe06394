"""Logging: nothing secret reaches a log line (configured secrets, bot tokens, phone numbers,
in the message, its %-args and exception text), and the JSON format is one object per line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from archiver.logs import REDACTED, JsonFormatter, RedactingFilter, setup_logging

API_HASH = "0123456789abcdef0123456789abcdef"
SESSION = "1BVtsOK4Bu0aSessionStringThatIsLong=="
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
OTHER_TOKEN = "987654321:ZZHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw9"  # not configured anywhere


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def capture(
    fmt: logging.Formatter | None = None, secrets: tuple[str, ...] = ()
) -> tuple[logging.Logger, io.StringIO]:
    """A private logger writing through a redacting handler into a buffer."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(fmt or logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    logger = logging.getLogger(f"test.logs.{id(buf)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, buf


@pytest.mark.parametrize(
    ("message", "args"),
    [
        ("api_hash is " + API_HASH, ()),
        ("api_hash is %s", (API_HASH,)),
        ("session %s for %d channels", (SESSION, 3)),
        ("token %(t)s", ({"t": TOKEN},)),
        ("GET https://api.telegram.org/bot%s/getUpdates", (TOKEN,)),
    ],
)
def test_configured_secrets_are_redacted(message: str, args: tuple[object, ...]) -> None:
    log, buf = capture(secrets=(API_HASH, SESSION, TOKEN))
    log.info(message, *args)
    out = buf.getvalue()
    assert REDACTED in out
    for secret in (API_HASH, SESSION, TOKEN):
        assert secret not in out


@pytest.mark.parametrize(
    "line",
    [
        f"token {OTHER_TOKEN} seen",
        f"token={OTHER_TOKEN}",
        f'{{"token": "{OTHER_TOKEN}"}}',
    ],
)
def test_bot_tokens_are_redacted_even_when_not_configured(line: str) -> None:
    log, buf = capture()
    log.warning(line)
    assert OTHER_TOKEN not in buf.getvalue()
    assert "AAH" not in buf.getvalue() and "ZZH" not in buf.getvalue()


def test_a_bot_token_inside_a_bot_api_url_is_redacted() -> None:
    log, buf = capture()
    log.info("HTTP Request: POST https://api.telegram.org/bot%s/getMe", OTHER_TOKEN)
    assert OTHER_TOKEN not in buf.getvalue()


@pytest.mark.parametrize(
    "phone", ["+380 67 123 45 67", "+79161234567", "+7 (916) 123-45-67", "+44 20 7946 0958"]
)
def test_phone_numbers_are_redacted(phone: str) -> None:
    log, buf = capture()
    log.info("login code sent to %s", phone)
    assert buf.getvalue() == f"INFO login code sent to {REDACTED}\n"


@pytest.mark.parametrize(
    "line",
    [
        "channel -1001811111111: 120 new posts, 3 edits",
        "alert 42 sent to chat 123456789",
        "sync done at 2024-05-01 12:00:00 in 1.5 s",
        "https://t.me/vsaldo/1234",
    ],
)
def test_ids_counts_and_dates_are_kept(line: str) -> None:
    log, buf = capture(secrets=(API_HASH,))
    log.info(line)
    assert buf.getvalue() == f"INFO {line}\n"


def test_short_secrets_do_not_redact_everything() -> None:
    log, buf = capture(secrets=("a", "12", ""))
    log.info("a channel with 12 posts")
    assert buf.getvalue() == "INFO a channel with 12 posts\n"


def test_exception_text_is_redacted() -> None:
    log, buf = capture(secrets=(API_HASH,))
    try:
        raise RuntimeError(f"auth failed for {API_HASH}, call +380671234567, bot {OTHER_TOKEN}")
    except RuntimeError:
        log.exception("sync of %s failed", "vsaldo")
    out = buf.getvalue()
    assert "sync of vsaldo failed" in out
    assert "Traceback" in out and "RuntimeError: auth failed for [redacted]" in out
    for secret in (API_HASH, "+380671234567", OTHER_TOKEN):
        assert secret not in out


def test_json_lines_are_valid_and_redacted() -> None:
    log, buf = capture(JsonFormatter(), secrets=(API_HASH,))
    log.info("channel %s: %d new posts", "vsaldo", 5)
    log.warning('quotes " and newlines\nstay inside one line; hash %s', API_HASH)
    try:
        raise ValueError("boom with " + API_HASH)
    except ValueError:
        log.error("failed", exc_info=True)
    out = buf.getvalue().splitlines()
    assert len(out) == 3
    records = [json.loads(line) for line in out]
    assert records[0]["message"] == "channel vsaldo: 5 new posts"
    assert records[0]["level"] == "INFO"
    assert set(records[0]) == {"time", "level", "logger", "message"}
    assert records[0]["time"].endswith("+00:00")
    assert records[1]["message"] == f'quotes " and newlines\nstay inside one line; hash {REDACTED}'
    assert "ValueError: boom with [redacted]" in records[2]["exception"]
    assert API_HASH not in buf.getvalue()


def test_setup_logging_installs_one_redacting_handler(
    restore_root: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("INFO", "json", (API_HASH,))
    setup_logging("INFO", "json", (API_HASH,))  # twice: still one handler
    root = logging.getLogger()
    assert len(root.handlers) == 1
    logging.getLogger("archiver.sync").info("hash %s", API_HASH)
    logging.getLogger("archiver.sync").debug("not shown at INFO")
    logging.getLogger("httpx").info("HTTP Request: GET https://api.telegram.org/bot%s/getMe", TOKEN)
    err = capsys.readouterr().err
    (line,) = err.splitlines()  # httpx stays at WARNING: request URLs carry the token
    assert json.loads(line) == {**json.loads(line), "message": f"hash {REDACTED}"}


def test_setup_logging_text_format(restore_root: None, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("debug", "text", (SESSION,))
    logging.getLogger("archiver.x").debug("session %s", SESSION)
    err = capsys.readouterr().err
    assert err.rstrip().endswith(f"DEBUG archiver.x: session {REDACTED}")
