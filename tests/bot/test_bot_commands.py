"""Every command for a member, a stranger and an admin: a real PTB Application polling the
fake Bot API over HTTP, with a real archive behind it."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from botkit import (
    ADMIN,
    CHANNEL_TITLE,
    GROUP,
    MEMBER,
    OTHER_GROUP,
    OTHER_MEMBER,
    STRANGER,
    Harness,
    alert_rows,
    delete_post,
    edit_post,
    fake_api,
    queue_alerts,
    running_bot,
    seed_channel,
)
from botkit import post as make_post
from fakes.botapi import Call

from archiver.rules import RuleLoader
from archiver.store import outbox
from archiver.store.access import get_access
from archiver.store.archive import Archive
from archiver.store.ingest import ingest
from archiver.store.personal_rules import list_rules


async def seed(archive: Archive) -> None:
    """Seven posts about war (for paging), one edited post, one deleted post."""
    await seed_channel(archive)
    archive.matcher = None
    posts = [make_post(i, f"Война, день {i}: сводка & <итоги>") for i in range(1, 8)]
    posts.append(make_post(8, "Мирные переговоры"))
    posts.append(make_post(9, "Удалённая новость"))
    await ingest(archive, posts, source="telethon", alerts=False)
    await edit_post(archive, 8, "Мирные переговоры сорваны")
    await delete_post(archive, 9)


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Harness]:
    db = tmp_path / "c.db"
    async with fake_api() as api:
        archive = await Archive.open(db)
        try:
            await seed(archive)
            async with running_bot(api, archive, db) as h:
                yield h
        finally:
            await archive.close()


def only(calls: list[Call]) -> Call:
    assert len(calls) == 1, [(c.method, c.text[:80]) for c in calls]
    return calls[0]


# ---------------------------------------------------------------------------- strangers

STRANGER_COMMANDS = [
    "/start",
    "/help",
    "/search война",
    "/latest",
    "/latest saltpepper",
    "/channels",
    "/history https://t.me/saltpepper/8",
    "/watch война",
    "/rules",
    "/unwatch 1",
    "/export война",
    "/status",
    f"/allow {STRANGER}",
    f"/deny {MEMBER}",
    "hello?",
]


async def test_a_stranger_gets_one_short_reply_with_their_id(bot: Harness) -> None:
    for i, command in enumerate(STRANGER_COMMANDS):
        stranger = STRANGER + 1000 + i  # a new stranger each time: the cool-down is per user
        reply = only(await bot.send(stranger, command))
        assert str(stranger) in reply.text and "private" in reply.text, command
        for secret in ("Salt", "saltpepper", "Война", "война", "Rule", "Results"):
            assert secret not in reply.text, (command, secret)
        # Anything more within the cool-down gets nothing at all.
        assert await bot.send(stranger, command) == [], command
        assert await bot.send(stranger, "/start") == [], command
    # ... and changed nothing.
    assert await list_rules(bot.archive) == []
    assert await get_access(bot.archive, STRANGER) is None
    assert await get_access(bot.archive, MEMBER) is None


async def test_a_group_that_is_not_allowed_gets_nothing_from_the_archive(bot: Harness) -> None:
    reply = only(await bot.send(ADMIN, "/search война", chat_id=OTHER_GROUP))
    assert str(OTHER_GROUP) in reply.text and "Война" not in reply.text


async def test_a_strangers_button_press_is_refused(bot: Harness) -> None:
    calls = await bot.press(STRANGER, "p:1:5")
    assert [c.method for c in calls] == ["answerCallbackQuery"]
    assert calls[0].params["text"] == "Not allowed."


# ---------------------------------------------------------------------------- members


MEMBER_COMMANDS: list[tuple[str, list[str], list[str]]] = [
    ("/start", ["Hello, Reporter", "/help"], []),
    (
        "/help",
        ["/search QUERY", "мобилизация", '"гуманітарний коридор"', "channel:"],
        ["/status"],
    ),
    ("/latest", ["Latest posts", "Мирные переговоры сорваны", "Удалённая"], []),
    ("/latest @saltpepper", ["of Salt &amp; Pepper &lt;News&gt;", "день 7"], []),
    ("/latest nosuchchannel", ["no archived channel matches 'nosuchchannel'"], []),
    ("/channels", ["Salt &amp; Pepper &lt;News&gt;", "9 posts", "1 deletions"], []),
    (
        "/history https://t.me/saltpepper/8",
        [
            "Version 1",
            "Мирные переговоры\n",
            "Version 2",
            "<u>сорваны</u>",
            "current",
            "<b>Observed</b>",
            "new version 2",
        ],
        ["Deleted"],
    ),
    (
        "/history t.me/saltpepper/9",
        ["Удалённая новость", "Deleted", "confirmed", "Telegram reported the deletion"],
        [],
    ),
    ("/history t.me/saltpepper/99", ["no post 99"], []),
    ("/history saltpepper", ["Usage: <code>/history LINK</code>", "t.me/vsaldo/123"], []),
    ("/search", ["Usage: <code>/search QUERY</code>"], []),
    ("/search война AND (мир", ["⚠️", "'(' at 11", "<code>          ^</code>"], []),
    ("/search channel:nosuch", ["no archived channel matches 'nosuch'"], []),
    ("/export", ["Usage: <code>/export [csv|jsonl] QUERY</code>"], []),
    ("/export нечто", ["Nothing found for <code>нечто</code>"], []),
    ("/watch", ["Usage: <code>/watch [NAME:] QUERY</code>"], []),
    ("/unwatch x", ["Usage: <code>/unwatch ID</code>"], []),
    ("/unwatch 42", ["You have no rule #42 here"], []),
    ("/rules", ["You have no rules here"], []),
    ("/status", ["Only admins can do that."], ["pending"]),
    (f"/allow {STRANGER}", ["Only admins can do that."], []),
    (f"/deny {OTHER_MEMBER}", ["Only admins can do that."], []),
    ("/frobnicate", ["Unknown command: see /help."], []),
]


async def test_member_commands(bot: Harness) -> None:
    for command, expected, absent in MEMBER_COMMANDS:
        replies = await bot.send(MEMBER, command)
        assert replies, command
        text = "\n".join(c.text for c in replies)
        for piece in expected:
            assert piece in text, (command, piece, text)
        for piece in absent:
            assert piece not in text, (command, piece, text)
        assert all(c.params.get("parse_mode") == "HTML" for c in replies), command


async def test_search_pages_with_buttons(bot: Harness) -> None:
    first = only(await bot.send(MEMBER, "/search война"))
    assert "Results 1–5 of 7 for <code>война</code> · page 1/2" in first.text
    assert first.text.count("<b>Война</b>") == 5
    assert "день 7" in first.text and "день 2" not in first.text  # newest first
    assert "2024-05-01 15:07 EEST" in first.text  # the display time zone
    assert "сводка &amp; &lt;итоги&gt;" in first.text  # post text escaped
    assert '<a href="https://t.me/saltpepper/7">' in first.text
    (row,) = first.json("reply_markup")["inline_keyboard"]
    assert [b["text"] for b in row] == ["▶"]
    message = {
        "message_id": first.result["message_id"],
        "date": 0,
        "chat": {"id": MEMBER, "type": "private"},
        "text": "...",
    }
    calls = await bot.press(MEMBER, row[0]["callback_data"], message)
    edit = only([c for c in calls if c.method == "editMessageText"])
    assert "Results 6–7 of 7 for <code>война</code> · page 2/2" in edit.text
    assert "день 2" in edit.text and "день 7" not in edit.text
    (back,) = edit.json("reply_markup")["inline_keyboard"]
    assert [b["text"] for b in back] == ["◀"]
    calls = await bot.press(MEMBER, back[0]["callback_data"], message)
    edit = only([c for c in calls if c.method == "editMessageText"])
    assert "Results 1–5" in edit.text


async def test_a_forgotten_search_button_says_so(bot: Harness) -> None:
    calls = await bot.press(MEMBER, "p:999:5")
    answer = only([c for c in calls if c.method == "answerCallbackQuery"])
    assert "expired" in answer.params["text"]
    assert not [c for c in calls if c.method == "editMessageText"]


async def test_export_csv_tells_the_cap(bot: Harness) -> None:
    doc = only(await bot.send(MEMBER, "/export война"))
    assert doc.method == "sendDocument"
    filename, data = doc.files["document"]
    assert filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert len(rows) == 3  # the cap in these settings
    assert rows[0]["channel"] == "saltpepper" and rows[0]["message_id"] == "7"
    assert rows[0]["text"] == "Война, день 7: сводка & <итоги>"
    assert "Only the newest 3" in doc.params["caption"]


async def test_export_jsonl(bot: Harness) -> None:
    doc = only(await bot.send(MEMBER, "/export jsonl переговоры"))
    filename, data = doc.files["document"]
    assert filename.endswith(".jsonl")
    (line,) = data.decode("utf-8").splitlines()
    record = json.loads(line)
    assert record["message_id"] == 8 and record["edited"] is True
    # The record travels with the export: the first text, every version, the edit times.
    assert record["first_text"] == "Мирные переговоры"
    assert [v["text"] for v in record["versions"]] == [
        "Мирные переговоры",
        "Мирные переговоры сорваны",
    ]
    assert record["version_count"] == 2 and len(record["edit_times"]) == 1
    assert "exports hold at most 3" in doc.params["caption"]


async def test_watch_rules_and_unwatch(bot: Harness) -> None:
    saved = only(await bot.send(MEMBER, '/watch "мирные переговоры" channel:saltpepper'))
    assert "Rule <b>#1</b>" in saved.text and "saved" in saved.text
    (rule,) = await list_rules(bot.archive, owner=MEMBER)
    assert rule.query == '"мирные переговоры" channel:saltpepper' and rule.notify == ()
    listing = only(await bot.send(MEMBER, "/rules"))
    assert "#1" in listing.text and "&quot;" not in listing.text
    (buttons,) = listing.json("reply_markup")["inline_keyboard"]
    assert buttons == [{"text": "🗑 #1", "callback_data": "rd:1"}]
    # Someone else cannot delete it, with the button or the command.
    calls = await bot.press(OTHER_MEMBER, "rd:1")
    assert "No rule #1 of yours" in calls[0].params["text"]
    assert "no rule #1" in only(await bot.send(OTHER_MEMBER, "/unwatch 1")).text
    assert len(await list_rules(bot.archive)) == 1
    # Its owner can.
    calls = await bot.press(MEMBER, "rd:1")
    answer = only([c for c in calls if c.method == "answerCallbackQuery"])
    assert answer.params["text"] == "Rule #1 deleted."
    assert "You have no rules" in only([c for c in calls if c.method == "editMessageText"]).text
    assert await list_rules(bot.archive) == []
    only(await bot.send(MEMBER, "/watch война"))
    assert "Rule #2 deleted." in only(await bot.send(MEMBER, "/unwatch #2")).text


async def test_watch_rejects_a_bad_query_with_its_position(bot: Harness) -> None:
    reply = only(await bot.send(MEMBER, '/watch "unclosed'))
    assert "⚠️" in reply.text and "at" in reply.text
    assert await list_rules(bot.archive) == []


async def test_in_an_allowed_group_members_search_and_watches_alert_the_group(
    bot: Harness,
) -> None:
    found = only(await bot.send(STRANGER, "/search переговоры", chat_id=GROUP))
    assert "<b>переговоры</b>" in found.text
    only(await bot.send(STRANGER, "/watch обстрел", chat_id=GROUP))
    (rule,) = await list_rules(bot.archive)
    assert rule.owner == STRANGER and rule.notify == (GROUP,)


# ---------------------------------------------------------------------------- admins


async def test_admin_status(bot: Harness) -> None:
    await queue_alerts(bot.archive, ["война"], [OTHER_GROUP], first_id=50)
    await outbox.set_recipient_active(bot.archive, OTHER_GROUP, False, "kicked")
    await outbox.mark_failed(bot.archive, (await alert_rows(bot.archive))[0]["id"], "x")
    text = only(await bot.send(ADMIN, "/status")).text
    assert "<b>Alerts</b>: 0 pending, 1 failed, 0 sent" in text
    assert "Salt &amp; Pepper &lt;News&gt;" in text and "last sync ok never" in text
    assert f"<code>{OTHER_GROUP}</code>" in text  # the inactive chat
    assert "/status" in only(await bot.send(ADMIN, "/help")).text


async def test_admin_status_names_the_worker_of_each_channel(bot: Harness) -> None:
    """Several workers (leases): /status says which one follows which channel."""
    from archiver.channels import parse_ref
    from archiver.store import leases
    from archiver.store.followed import follow

    assert "Workers" not in only(await bot.send(ADMIN, "/status")).text  # no leases: as before
    for name in ("kherson_news", "vsaldo"):
        await follow(bot.archive, bot.settings, parse_ref(name), "web", by=ADMIN)
    now = await leases.db_now(bot.archive)
    await leases.acquire(bot.archive, "w<1>", ["web:vsaldo"], 1, 600, now)
    text = "\n".join(m.text for m in await bot.send(ADMIN, "/status"))
    assert "<b>Workers</b>\nw&lt;1&gt; follows: vsaldo\nno worker follows: kherson_news" in text


async def test_admin_status_lists_stopped_workers_with_when_they_were_last_seen(
    bot: Harness,
) -> None:
    """A worker killed without a clean stop: /status names it as stopped, and what is left
    with it (nobody took it over since)."""
    from archiver.channels import parse_ref
    from archiver.store import leases
    from archiver.store.followed import follow

    for name in ("kherson_news", "vsaldo"):
        await follow(bot.archive, bot.settings, parse_ref(name), "web", by=ADMIN)
    past = "2000-01-01 00:00:00.000"
    for worker, unit in (("w<2>", "web:kherson_news"), ("w3", "web:vsaldo")):
        await leases.register(bot.archive, worker, "box", 7, 60, past)
        await leases.acquire(bot.archive, worker, [unit], 1, 60, past)
    now = await leases.db_now(bot.archive)
    await leases.acquire(bot.archive, "w1", ["web:vsaldo"], 1, 600, now)  # w3's, taken over
    text = "\n".join(m.text for m in await bot.send(ADMIN, "/status"))
    assert (
        "w1 follows: vsaldo\nno worker follows: kherson_news\n"
        "w3 stopped, last seen 2000-01-01 02:00 EET\n"  # the display time zone, Europe/Kyiv
        "w&lt;2&gt; stopped, last seen 2000-01-01 02:00 EET; nobody has taken over:"
        " web:kherson_news"
    ) in text


async def test_admin_allows_and_denies(bot: Harness) -> None:
    assert str(STRANGER) in only(await bot.send(STRANGER, "/start")).text
    told, answer = await bot.send(ADMIN, f"/allow {STRANGER}")
    assert told.chat_id == STRANGER and "you may now use this bot" in told.text  # told at once
    assert answer.chat_id == ADMIN and "may now use" in answer.text
    assert "They were told" in answer.text
    assert "Hello" in only(await bot.send(STRANGER, "/start")).text
    assert "can no longer" in only(await bot.send(ADMIN, f"/deny {MEMBER}")).text
    assert str(MEMBER) in only(await bot.send(MEMBER, "/start")).text
    assert await get_access(bot.archive, MEMBER) is False
    assert "admin in the config" in only(await bot.send(ADMIN, f"/deny {ADMIN}")).text
    for bad in ("bob", "9" * 30, "9" * 5000, "-5", "0", str(2**52), "１２３"):
        reply = only(await bot.send(ADMIN, f"/allow {bad}"))
        assert "Usage: <code>/allow USER_ID</code>" in reply.text, bad
    assert await get_access(bot.archive, 0) is None


# ---------------------------------------------------------------------------- alerts in the app


async def test_alerts_go_out_at_once_when_woken(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    async with fake_api() as api:
        archive = await Archive.open(db)
        try:
            await seed_channel(archive)
            # Polling once an hour: only the wake-up can get this alert out in time.
            async with running_bot(api, archive, db, poll_seconds=3600) as h:
                await asyncio.sleep(0.1)  # the sender's first look found nothing
                assert await queue_alerts(archive, ["Новая война"], [MEMBER]) == 1
                h.wake.set()
                (alert,) = await api.wait_for(chat_id=MEMBER, timeout=5)
        finally:
            await archive.close()
    assert html.escape(CHANNEL_TITLE, quote=False) in alert.text
    assert "<b>война</b>" in alert.text and "Rules:</i> war" in alert.text


async def test_a_blocked_chat_gets_its_alerts_when_it_writes_again(bot: Harness) -> None:
    bot.api.fail("sendMessage", 403, chat_id=MEMBER)
    await queue_alerts(bot.archive, ["война 1", "война 2"], [MEMBER], first_id=70)
    bot.wake.set()
    while MEMBER not in await outbox.inactive_recipients(bot.archive):
        await asyncio.sleep(0.02)
    since = len(bot.api.calls)
    await bot.send(MEMBER, "/start")
    alerts = await bot.api.wait_for(chat_id=MEMBER, count=3, since=since)  # /start + 2 alerts
    assert sum("Rules:" in c.text for c in alerts) == 2
    assert await outbox.inactive_recipients(bot.archive) == {}


async def test_watch_then_alert_through_the_rules_engine(bot: Harness) -> None:
    RuleLoader(bot.settings.rules).install(bot.archive)
    only(await bot.send(OTHER_MEMBER, "/watch обстрел"))
    since = len(bot.api.calls)
    stats = await ingest(
        bot.archive, [make_post(80, "Ночной обстрел города")], source="telethon", alerts=True
    )
    assert stats.alerts_queued == 1
    bot.wake.set()
    (alert,) = await bot.api.wait_for(chat_id=OTHER_MEMBER, since=since)
    assert "Ночной <b>обстрел</b> города" in alert.text and "обстрел" in alert.text


async def test_channels_and_status_name_channels_that_cannot_be_followed(bot: Harness) -> None:
    """A configured channel telewatch cannot follow (a mistyped username) is shown with its
    reason in /channels and /status (issue 14), not silently absent."""
    from datetime import UTC, datetime, timedelta

    from archiver.store.following import set_status

    now = datetime.now(UTC)
    await set_status(
        bot.archive, "vsaldo_typo", source="telethon", status="not_found", now=now,
        reason="no channel has this username", retry_at=now + timedelta(days=1),
    )  # fmt: skip
    channels = "\n".join(m.text for m in await bot.send(MEMBER, "/channels"))
    assert "cannot be followed" in channels and "not_found" in channels
    assert "no channel has this username" in channels and "next try" in channels
    status = "\n".join(m.text for m in await bot.send(ADMIN, "/status"))
    assert "vsaldo_typo: not_found" in status


async def test_since_and_until_are_days_in_the_display_time_zone(bot: Harness) -> None:
    """2024-05-01 22:30 UTC is 2024-05-02 01:30 in Kyiv, the display time zone: since:/until:
    name the day the result shows."""
    from dataclasses import replace
    from datetime import UTC, datetime

    night = replace(make_post(20, "Война ночью"), date=datetime(2024, 5, 1, 22, 30, tzinfo=UTC))
    await ingest(bot.archive, [night], source="telethon", alerts=False)
    late = only(await bot.send(MEMBER, "/search война since:2024-05-02"))
    assert "Results 1–1 of 1" in late.text and "ночью" in late.text
    assert "2024-05-02 01:30 EEST" in late.text
    day = only(await bot.send(MEMBER, "/search война until:2024-05-01"))
    assert "of 7 " in day.text and "ночью" not in day.text


@pytest.mark.parametrize("command", ["/search вайна сводка", "вайна сводка"])
async def test_a_search_with_no_results_suggests_the_archives_nearest_words(
    bot: Harness, command: str
) -> None:
    reply = only(await bot.send(MEMBER, command))
    assert "Nothing found for <code>вайна сводка</code>." in reply.text
    assert "вайна → <code>война</code>" in reply.text
    assert "сводка" not in reply.text.split("\n", 1)[1].split("Try:")[0]  # the archive has it
    assert "Try: <code>война сводка</code>" in reply.text
    assert reply.params.get("reply_markup") is None  # no ◀ ▶ for nothing


async def test_a_search_with_no_results_and_nothing_near_says_only_that(bot: Harness) -> None:
    reply = only(await bot.send(MEMBER, "/search война -сводка"))
    assert reply.text == "Nothing found for <code>война -сводка</code>."
