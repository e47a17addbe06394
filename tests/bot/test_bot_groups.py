"""A group chat in ``allowed_chats``, end to end (issue 16): commands addressed to the bot
(``/search@bot``, as Telegram sends them in groups) and only those (privacy mode: the bot is
not meant to read the group's conversation, and answers nothing it was not asked), alerts to
the group with their buttons usable by any member there, mutes and quiet hours of the group.
Real Application, fake Bot API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botkit import (
    GROUP,
    KYIV,
    MEMBER,
    OTHER_MEMBER,
    STRANGER,
    Harness,
    alert_rows,
    fake_api,
    queue_alerts,
    running_bot,
    seed_channel,
)
from botkit import post as make_post
from fakes.botapi import BOT_ID, BOT_USERNAME, Call

from archiver.store.archive import Archive
from archiver.store.ingest import ingest


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Harness]:
    db = tmp_path / "g.db"
    async with fake_api() as api:
        archive = await Archive.open(db)
        try:
            await seed_channel(archive)
            await ingest(archive, [make_post(1, "Мирные переговоры")], source="telethon",
                         alerts=False)  # fmt: skip
            async with running_bot(api, archive, db) as h:
                yield h
        finally:
            await archive.close()


def in_group(message_id: int) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "date": 0,
        "chat": {"id": GROUP, "type": "supergroup", "title": "Newsroom"},
        "from": {"id": BOT_ID, "is_bot": True, "first_name": "telewatch"},
        "text": "...",
    }


def answer(calls: list[Call]) -> str:
    (a,) = [c for c in calls if c.method == "answerCallbackQuery"]
    return str(a.params.get("text", ""))


async def test_commands_addressed_to_the_bot_and_nothing_else(bot: Harness) -> None:
    (found,) = await bot.send(STRANGER, f"/search@{BOT_USERNAME} переговоры", chat_id=GROUP)
    assert "<b>переговоры</b>" in found.text and found.params["chat_id"] in (GROUP, str(GROUP))
    # another bot's command, the group's talk and unknown commands: no answer at all
    assert await bot.send(STRANGER, "/search@other_bot переговоры", chat_id=GROUP) == []
    assert await bot.send(STRANGER, "переговоры", chat_id=GROUP) == []
    assert await bot.send(STRANGER, "/nosuchcommand", chat_id=GROUP) == []
    # while in a private chat, plain text is a search
    assert "<b>переговоры</b>" in (await bot.send(MEMBER, "переговоры"))[0].text


async def test_alerts_to_the_group_and_their_buttons_for_any_member(bot: Harness) -> None:
    (rule,) = await bot.send(STRANGER, f"/watch@{BOT_USERNAME} война", chat_id=GROUP)
    assert "saved" in rule.text
    since = len(bot.api.calls)
    assert await queue_alerts(bot.archive, ["Война: сводка дня"], [GROUP, MEMBER], first_id=10)
    (alert,) = await bot.api.wait_for(chat_id=GROUP, since=since)
    rows = {r["recipient"]: r for r in await alert_rows(bot.archive)}
    group_alert = rows[GROUP]["id"]
    keyboard = alert.json("reply_markup")["inline_keyboard"]
    data = [b["callback_data"] for row in keyboard for b in row]
    assert data == [f"af:{group_alert}", f"ah:{group_alert}", f"am:{group_alert}"]
    message = in_group(alert.result["message_id"])
    # Full text, pressed by another member in the group: sent to the group
    calls = await bot.press(OTHER_MEMBER, f"af:{group_alert}", message)
    (full,) = [c for c in calls if c.method == "sendMessage" and "сводка" in c.text
               and c.params["chat_id"] in (GROUP, str(GROUP))
               and not c.params.get("reply_markup")]  # fmt: skip
    assert "Война: сводка дня" in full.text
    # the group's alert's button is refused outside the group
    calls = await bot.press(MEMBER, f"af:{group_alert}")
    assert not [c for c in calls if c.method == "sendMessage" and "сводка дня" in c.text
                and not c.params.get("reply_markup")]  # fmt: skip
    assert answer(calls)
    # Mute, pressed in the group: the group's next alert of the rule is dropped, not MEMBER's
    calls = await bot.press(STRANGER, f"am:{group_alert}", message)
    assert "muted" in answer(calls).lower()
    since = len(bot.api.calls)
    await queue_alerts(bot.archive, ["Война: вечер"], [GROUP, MEMBER], first_id=11)
    await bot.api.wait_for(chat_id=MEMBER, since=since)
    delivery = bot.runner.delivery
    assert delivery is not None
    await delivery.dispatch()
    await delivery.idle()
    later = [r for r in await alert_rows(bot.archive) if r["post_id"] != rows[GROUP]["post_id"]]
    by_chat = {r["recipient"]: r for r in later}
    assert by_chat[GROUP]["status"] == "dropped"
    assert by_chat[GROUP]["last_error"].startswith("muted in this chat")
    assert by_chat[MEMBER]["status"] == "sent"


async def test_quiet_hours_of_a_group_hold_the_groups_alerts(bot: Harness) -> None:
    now = datetime.now(UTC)
    a, b = ((now + timedelta(hours=h)).astimezone(KYIV) for h in (-1, 1))
    await bot.send(STRANGER, f"/quiet@{BOT_USERNAME} {a:%H:%M}-{b:%H:%M}", chat_id=GROUP)
    await queue_alerts(bot.archive, ["Война"], [GROUP, MEMBER], first_id=20)
    await bot.api.wait_for(chat_id=MEMBER)
    delivery = bot.runner.delivery
    assert delivery is not None
    await delivery.dispatch()
    await delivery.idle()
    status = {r["recipient"]: r["status"] for r in await alert_rows(bot.archive)}
    assert status == {GROUP: "pending", MEMBER: "sent"}


async def test_a_denied_member_of_an_allowed_group_gets_nothing_and_no_misleading_reply(
    bot: Harness,
) -> None:
    """A user an admin denied, talking in an allowed group: nothing from the archive, and the
    group is not told "this bot does not work in this chat" (it does, for everyone else) each
    time that user replies to an alert or says anything the bot reads."""
    from botkit import ADMIN

    await bot.send(ADMIN, f"/deny {OTHER_MEMBER}")
    # a command addressed to the bot: their user id, as in a private chat
    (told,) = await bot.send(OTHER_MEMBER, f"/search@{BOT_USERNAME} переговоры", chat_id=GROUP)
    assert f"<code>{OTHER_MEMBER}</code>" in told.text
    assert "does not work in this chat" not in told.text and "переговоры" not in told.text
    # what else they say there (a reply to an alert, another bot's command): no answer
    for text in ("переговоры", "согласен", "/search@other_bot переговоры"):
        assert await bot.send(OTHER_MEMBER, text, chat_id=GROUP) == [], text
    # a button of an alert to the group, pressed by them: refused, nothing sent
    (saved,) = await bot.send(STRANGER, f"/watch@{BOT_USERNAME} война", chat_id=GROUP)
    assert "saved" in saved.text
    since = len(bot.api.calls)
    assert await queue_alerts(bot.archive, ["Война: сводка дня"], [GROUP], first_id=10)
    (alert,) = await bot.api.wait_for(chat_id=GROUP, since=since)
    (row,) = [r for r in await alert_rows(bot.archive) if r["recipient"] == GROUP]
    for data in (f"af:{row['id']}", f"ah:{row['id']}", f"am:{row['id']}"):
        calls = await bot.press(OTHER_MEMBER, data, in_group(alert.result["message_id"]))
        assert [c.method for c in calls] == ["answerCallbackQuery"], data
        assert answer(calls) == "Not allowed."
    # the others in the group are served as before
    (found,) = await bot.send(STRANGER, f"/search@{BOT_USERNAME} переговоры", chat_id=GROUP)
    assert "<b>переговоры</b>" in found.text


async def test_an_answer_arrives_when_the_command_was_deleted_meanwhile(bot: Harness) -> None:
    """In a group the bot's answer quotes the command. Newsrooms often delete commands from
    the group (by hand or with a cleaner bot) and an export takes seconds: Telegram then
    refuses a reply to the missing message unless the call allows sending without it."""
    since = len(bot.api.calls)
    update_id = bot.api.push_message(
        STRANGER, f"/search@{BOT_USERNAME} переговоры", chat_id=GROUP, deleted=True
    )
    await bot.settle(update_id)
    sends = [c for c in bot.api.calls[since:] if c.method == "sendMessage"]
    assert [c.ok for c in sends] == [True], [c.result for c in sends]
    assert "<b>переговоры</b>" in sends[0].text
