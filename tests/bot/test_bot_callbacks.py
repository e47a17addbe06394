"""Buttons belong to the chat and user that made them (issue 15, item 6), and the buttons under
an alert (issue 16): Full text, History, Mute rule 24 h. Real Application, fake Bot API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from botkit import (
    ADMIN,
    GROUP,
    MEMBER,
    OTHER_MEMBER,
    STRANGER,
    Harness,
    alert_rows,
    fake_api,
    running_bot,
    seed_channel,
)
from botkit import post as make_post
from fakes.botapi import BOT_ID, Call

from archiver.rules import RuleLoader
from archiver.store import outbox
from archiver.store.archive import Archive
from archiver.store.ingest import ingest

LONG = "Вступление. " * 300 + "Ночной обстрел города <Херсон> & области. " + "Итоги дня. " * 300


def message_in(chat_id: int, message_id: int = 1) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "date": 0,
        "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
        "from": {"id": BOT_ID, "is_bot": True, "first_name": "telewatch"},
        "text": "...",
    }


def answer_of(calls: list[Call]) -> str:
    (answer,) = [c for c in calls if c.method == "answerCallbackQuery"]
    return str(answer.params.get("text", ""))


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Harness]:
    db = tmp_path / "cb.db"
    async with fake_api() as api:
        archive = await Archive.open(db)
        try:
            await seed_channel(archive)
            posts = [make_post(i, f"Секретная сводка {i}") for i in range(1, 8)]
            await ingest(archive, posts, source="telethon", alerts=False)
            async with running_bot(api, archive, db) as h:
                RuleLoader(h.settings.rules).install(h.archive)
                yield h
        finally:
            await archive.close()


async def test_a_forged_page_button_shows_nothing_of_another_users_search(bot: Harness) -> None:
    first = (await bot.send(MEMBER, "/search сводка"))[0]
    data = first.json("reply_markup")["inline_keyboard"][0][0]["callback_data"]
    assert data == "p:1:5"
    for user, chat in ((OTHER_MEMBER, OTHER_MEMBER), (ADMIN, ADMIN), (MEMBER, GROUP)):
        for forged in ("p:1:0", data):
            calls = await bot.press(user, forged, message_in(chat))
            assert "someone else's search" in answer_of(calls), (user, chat, forged)
            assert [c.method for c in calls] == ["answerCallbackQuery"]
            assert all("сводка" not in c.text for c in calls)
    # Its owner, in its chat, turns the page.
    calls = await bot.press(MEMBER, data, message_in(MEMBER, first.result["message_id"]))
    (edit,) = [c for c in calls if c.method == "editMessageText"]
    assert "Results 6–7 of 7" in edit.text


async def test_a_denied_user_cannot_use_their_old_buttons(bot: Harness) -> None:
    first = (await bot.send(MEMBER, "/search сводка"))[0]
    await bot.send(MEMBER, "/watch сводка")
    await bot.send(ADMIN, f"/deny {MEMBER}")
    data = first.json("reply_markup")["inline_keyboard"][0][0]["callback_data"]
    for pressed in (data, "rd:1"):
        calls = await bot.press(MEMBER, pressed, message_in(MEMBER))
        assert answer_of(calls) == "Not allowed."
        assert [c.method for c in calls] == ["answerCallbackQuery"]


async def test_rule_buttons_act_only_for_their_owner_in_their_chat(bot: Harness) -> None:
    await bot.send(MEMBER, "/watch обстрел")
    await bot.send(STRANGER, "/watch взрыв", chat_id=GROUP)  # rule 2 alerts the group
    # MEMBER's private rule is not listed in the group, nor deletable from there.
    listing = (await bot.send(MEMBER, "/rules", chat_id=GROUP))[0]
    assert "#1" not in listing.text
    calls = await bot.press(MEMBER, "rd:1", message_in(GROUP))
    assert "No rule #1 of yours here" in answer_of(calls)
    # Another group member cannot delete STRANGER's group rule.
    calls = await bot.press(OTHER_MEMBER, "rd:2", message_in(GROUP))
    assert "No rule #2 of yours here" in answer_of(calls)
    calls = await bot.press(STRANGER, "rd:2", message_in(GROUP))
    assert answer_of(calls) == "Rule #2 deleted."


async def test_unknown_or_malformed_buttons(bot: Harness) -> None:
    for data in ("zz:1", "p:x:y", "af:", "af:99999999999999999999999", "ah:-1", "rd:abc"):
        calls = await bot.press(MEMBER, data, message_in(MEMBER))
        assert [c.method for c in calls] == ["answerCallbackQuery"], data


async def alert_to_member(bot: Harness, text: str, message_id: int) -> Call:
    since = len(bot.api.calls)
    stats = await ingest(bot.archive, [make_post(message_id, text)], source="telethon", alerts=True)
    assert stats.alerts_queued == 1
    bot.wake.set()
    (alert,) = await bot.api.wait_for(chat_id=MEMBER, since=since)
    return alert


async def test_alert_buttons(bot: Harness) -> None:
    alert = await alert_to_member(bot, "Война: " + LONG, 50)
    assert len(alert.text) < 1200  # glanceable, whatever the post's length
    rows = alert.json("reply_markup")["inline_keyboard"]
    labels = [b["text"] for row in rows for b in row]
    assert labels == ["Full text", "History", "Mute rule 24 h"]
    full, hist, mute = (b["callback_data"] for row in rows for b in row)
    (row,) = await alert_rows(bot.archive)
    assert full == f"af:{row['id']}"
    here = message_in(MEMBER, alert.result["message_id"])
    # Someone else, in their own chat: nothing.
    for data in (full, hist, mute):
        calls = await bot.press(OTHER_MEMBER, data, message_in(OTHER_MEMBER))
        assert "not in this chat" in answer_of(calls)
        assert [c.method for c in calls] == ["answerCallbackQuery"]
    # Full text: the whole post, split into valid messages.
    calls = await bot.press(MEMBER, full, here)
    parts = [c for c in calls if c.method == "sendMessage"]
    assert len(parts) >= 2 and all(c.chat_id == MEMBER for c in parts)
    joined = " ".join(c.text for c in parts)  # split at spaces
    assert "&lt;Херсон&gt; &amp; области" in joined and joined.count("Итоги дня.") == 300
    # History: the versions.
    calls = await bot.press(MEMBER, hist, here)
    assert "Version 1" in "".join(c.text for c in calls if c.method == "sendMessage")
    # Mute: the rule's next alert is dropped, with the reason; /unmute ends it.
    calls = await bot.press(MEMBER, mute, here)
    assert "Muted here until" in answer_of(calls) and "war" in answer_of(calls)
    stats = await ingest(bot.archive, [make_post(51, "война")], source="telethon", alerts=True)
    assert stats.alerts_queued == 1
    bot.wake.set()
    for _ in range(200):
        last = (await alert_rows(bot.archive))[-1]
        if last["status"] != "pending":
            break
        await asyncio.sleep(0.02)
    assert last["status"] == "dropped" and last["last_error"].startswith("muted in this chat")
    assert "1 mute(s) ended" in (await bot.send(MEMBER, "/unmute"))[0].text
    assert await outbox.mutes(bot.archive, MEMBER) == {}


async def test_a_page_button_pressed_twice_is_not_an_error(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A double tap sends the same press twice before the first edit shows; Telegram refuses
    the second edit ("message is not modified"): nothing failed, so nothing is logged as an
    error and the press is answered."""
    first = (await bot.send(MEMBER, "/search сводка"))[0]
    data = first.json("reply_markup")["inline_keyboard"][0][0]["callback_data"]
    message = message_in(MEMBER, first.result["message_id"])
    await bot.press(MEMBER, data, message)
    with caplog.at_level(logging.ERROR):
        calls = await bot.press(MEMBER, data, message)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert [c.ok for c in calls if c.method == "answerCallbackQuery"] == [True]
