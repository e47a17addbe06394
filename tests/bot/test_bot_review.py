"""Review of issue 16 against Telegram's own rules (not our fakes' leniency): message length
counted as Telegram counts it (UTF-16 code units: Bot API, "Formatting options" and every
entity offset), and daily times across Europe/Kyiv's clock changes."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from botkit import (
    ADMIN,
    KYIV,
    MEMBER,
    Harness,
    fake_api,
    queue_alerts,
    running_bot,
    seed_channel,
)
from fakes.botapi import BOT_ID
from fakes.tghtml import parse_html, utf16_len

from archiver.store.archive import Archive
from archiver.store.personal_digests import last_due


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Harness]:
    db = tmp_path / "r.db"
    async with fake_api() as api:
        archive = await Archive.open(db)
        try:
            await seed_channel(archive)
            async with running_bot(api, archive, db) as h:
                yield h
        finally:
            await archive.close()


async def test_a_personal_digest_with_emoji_channel_titles_fits_telegram(bot: Harness) -> None:
    """A channel title of emoji on every line (2 UTF-16 units each): the digest stays within
    4,096 counted as the fake Bot API and the rest of the bot count, in UTF-16 units. (The Bot
    API server, TDLib, checks a bot's text in code points, ``utf8_length``, which is never
    more: this is the strict reading, as everywhere else in the bot.)"""
    await seed_channel(bot.archive, title="🚨" * 100)
    one = await bot.send(MEMBER, "/digest daily 08:30")
    assert len(one) == 1
    await queue_alerts(bot.archive, [f"война {i}" for i in range(1, 7)])
    rules = json.dumps([f"rule{i}" for i in range(12)])
    await bot.archive.write("UPDATE alerts SET rules = ?", (rules,))
    digests = bot.runner.app.bot_data["telewatch"].digests
    due = last_due(time(8, 30), datetime.now(UTC), KYIV) + timedelta(days=1)
    since = len(bot.api.calls)
    assert await digests.run_once(due + timedelta(seconds=5)) == 1
    calls = [c for c in bot.api.calls[since:] if c.method == "sendMessage"]
    assert [c.ok for c in calls] == [True], [c.text[:80] for c in calls]
    assert utf16_len(parse_html(calls[0].text)) <= 4096


@pytest.mark.parametrize(
    ("at", "now"),
    [
        # Spring forward, 2026-03-29: Kyiv's clocks go 03:00 -> 04:00; 03:30 never happens.
        (time(3, 30), datetime(2026, 3, 29, 1, 10, tzinfo=UTC)),  # 04:10 EEST
        (time(3, 0), datetime(2026, 3, 29, 0, 59, tzinfo=UTC)),  # 02:59 EET, the last minute
        # Fall back, 2026-10-25: 04:00 EEST -> 03:00 EET; 03:30 happens twice.
        (time(3, 30), datetime(2026, 10, 25, 0, 40, tzinfo=UTC)),  # 03:40 EEST
        (time(3, 50), datetime(2026, 10, 25, 1, 10, tzinfo=UTC)),  # 03:10 EET (the second)
    ],
)
def test_the_last_due_digest_is_never_in_the_future(at: time, now: datetime) -> None:
    """A digest built "up to its due time" at a moment before that time misses what comes
    between: the next one starts at the due time, so those alerts are in no digest."""
    due = last_due(at, now, KYIV)
    assert due <= now
    assert now - due < timedelta(days=1, hours=1)
    assert due.astimezone(KYIV).time().replace(tzinfo=None) in (
        at,
        (datetime.combine(now.date(), at) + timedelta(hours=1)).time(),
    )


async def test_a_pasted_message_with_nothing_to_search_still_gets_its_answer(
    bot: Harness,
) -> None:
    """Plain text is a search: a journalist pastes a message as long as Telegram allows
    (4,096 characters) with no word in it. The error quotes it back; the reply must still be
    one Telegram takes, or the journalist hears nothing at all. (Dashes: one UTF-16 unit and
    one code point each, so this is too long however Telegram counts.)"""
    text = "— " * 2040  # 4,080 characters
    assert utf16_len(text) == len(text) <= 4096
    since = len(bot.api.calls)
    await bot.send(MEMBER, text)
    calls = [c for c in bot.api.calls[since:] if c.method == "sendMessage"]
    assert [c.ok for c in calls] == [True], [c.text[:60] for c in calls]
    assert "nothing to search for" in calls[0].text


async def test_flood_control_on_a_reply_is_a_warning_not_a_bug(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Telegram answers 429 "retry after N" when a chat gets messages too fast (a long
    History in a busy group). That is Telegram's limit, not a bug: no ERROR with a traceback
    for the admins, and no apology sent into the same flood wait (it would be refused too).
    A wait longer than the resend ceiling (bot.reply_limiter.RETRY_CEILING, 30 s): dropped."""
    bot.api.fail("sendMessage", 429, retry_after=60, chat_id=MEMBER)
    since = len(bot.api.calls)
    with caplog.at_level(logging.WARNING):
        await bot.send(MEMBER, "/start")
    sends = [c for c in bot.api.calls[since:] if c.method == "sendMessage"]
    assert [c.ok for c in sends] == [False]  # the refused reply, and nothing after it
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert any("flood control" in r.getMessage() for r in caplog.records)


async def test_a_refused_button_press_is_answered_in_the_users_language(bot: Harness) -> None:
    """A journalist denied access presses a button of an old alert: the refusal toast is in
    their client's language, like the stranger's reply."""
    await bot.send(ADMIN, f"/deny {MEMBER}")
    since = len(bot.api.calls)
    update_id = bot.api.push_update(
        {
            "callback_query": {
                "id": "77",
                "from": {"id": MEMBER, "is_bot": False, "first_name": "Оля", "language_code": "uk"},
                "chat_instance": "1",
                "data": "af:1",
                "message": {
                    "message_id": 1,
                    "date": 0,
                    "chat": {"id": MEMBER, "type": "private"},
                    "from": {"id": BOT_ID, "is_bot": True, "first_name": "telewatch"},
                    "text": "...",
                },
            }
        }
    )
    await bot.settle(update_id)
    (toast,) = [c for c in bot.api.calls[since:] if c.method == "answerCallbackQuery"]
    assert toast.params["text"] == "Немає доступу."
