"""Quiet hours and the personal daily digest (issue 16, everyday controls), through the real
Application against the fake Bot API: held alerts stay pending (never claimed) while the
chat is quiet, then go out as one summary, claimed and recorded together; a personal digest
is sent once when due."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from botkit import (
    KYIV,
    MEMBER,
    OTHER_MEMBER,
    Harness,
    alert_rows,
    fake_api,
    queue_alerts,
    running_bot,
    seed_channel,
)
from fakes.botapi import TOKEN, Call, FakeBotApi
from telegram import Bot

from archiver.errors import TelewatchError
from archiver.store.access import set_access
from archiver.store.archive import Archive, ts
from archiver.store.outbox import AlertRow
from archiver.store.personal_digests import last_due
from archiver.store.quiet import QuietHours, parse_span, set_quiet
from bot.alerts import alert_html, summary_html
from bot.delivery import SUMMARY_MAX, Delivery, Limits, RetryPolicy, summary_units


@pytest.fixture
async def bot(tmp_path: Path, any_archive: Archive) -> AsyncIterator[Harness]:
    db = tmp_path / "q.db"
    async with fake_api() as api:
        archive = any_archive  # SQLite and PostgreSQL (tests/pg.py)
        try:
            await seed_channel(archive)
            async with running_bot(api, archive, db) as h:
                yield h
        finally:
            await archive.close()


def one(calls: list[Call]) -> Call:
    assert len(calls) == 1, [(c.method, c.text[:80]) for c in calls]
    return calls[0]


def delivery(bot: Harness) -> Delivery:
    d = bot.runner.delivery
    assert d is not None
    return d


async def settle(bot: Harness) -> None:
    """Every due alert read and every send that may go now finished."""
    await delivery(bot).dispatch()
    await delivery(bot).idle()


def sent_to(bot: Harness, chat: int, since: int = 0) -> list[Call]:
    return [c for c in bot.api.calls[since:] if c.method == "sendMessage" and c.ok
            and c.params.get("chat_id") in (chat, str(chat))]  # fmt: skip


def quiet(now: datetime, start: int, end: int) -> str:
    """``/quiet`` from ``start`` to ``end`` hours from ``now``, in the display time zone."""
    a, b = (now + timedelta(hours=h) for h in (start, end))
    return f"/quiet {a.astimezone(KYIV):%H:%M}-{b.astimezone(KYIV):%H:%M}"


@pytest.mark.parametrize(
    ("hours", "at", "quiet"),
    [
        ("23:00-07:00", time(23, 0), True),
        ("23:00-07:00", time(2, 30), True),
        ("23:00-07:00", time(6, 59), True),
        ("23:00-07:00", time(7, 0), False),
        ("23:00-07:00", time(22, 59), False),
        ("13:00-14:30", time(14, 0), True),
        ("13:00-14:30", time(14, 30), False),
    ],
)
def test_quiet_hours_span_midnight(hours: str, at: time, quiet: bool) -> None:
    assert parse_span(hours).contains(at) is quiet


@pytest.mark.parametrize("bad", ["23-07", "25:00-07:00", "07:00-07:00", "tonight"])
def test_quiet_hours_that_do_not_parse_name_the_text(bad: str) -> None:
    with pytest.raises(TelewatchError, match=bad[:5]):
        parse_span(bad)


async def test_alerts_during_quiet_hours_are_held_then_sent_as_one_summary(bot: Harness) -> None:
    now = datetime.now(UTC)
    reply = one(await bot.send(MEMBER, quiet(now, -1, 1)))
    assert "Quiet hours" in reply.text and "Europe/Kyiv" in reply.text
    since = len(bot.api.calls)
    assert await queue_alerts(bot.archive, ["война 1", "война 2", "война 3"]) == 3
    await settle(bot)
    assert sent_to(bot, MEMBER, since) == []
    # held: pending, never claimed as sending
    assert [r["status"] for r in await alert_rows(bot.archive)] == ["pending"] * 3

    # The quiet hours are over (they were three to one hours ago, when the alerts came).
    await bot.archive.write("UPDATE alerts SET created_at = ?",
                            (ts(now - timedelta(hours=2)),))  # fmt: skip
    one(await bot.send(MEMBER, quiet(now, -3, -1)))
    since = len(bot.api.calls)
    await queue_alerts(bot.archive, ["война 4"], first_id=4)  # after the quiet hours: at once
    await settle(bot)
    summary, single = sent_to(bot, MEMBER, since)
    assert "3 alert(s) while your quiet hours were on" in summary.text
    for n in (1, 2, 3):
        assert f"война {n}" in summary.text and f"https://t.me/saltpepper/{n}" in summary.text
    assert "saltpepper/4" in single.text and "quiet hours" not in single.text
    rows = await alert_rows(bot.archive)
    assert [r["status"] for r in rows] == ["sent"] * 4
    summary_id = summary.result["message_id"]
    assert [r["tg_message_id"] for r in rows[:3]] == [summary_id] * 3
    # and never again
    await settle(bot)
    assert len(sent_to(bot, MEMBER, since)) == 2


async def queue_held(
    archive: Archive, texts: list[str], recipients: Sequence[int] = (MEMBER,), *, now: datetime
) -> int:
    """Alerts created two hours ago, in the quiet hours that ended an hour ago: dated so as
    they are queued (a delivery poll between queueing them now and backdating them would
    send them at once, as alerts after the quiet hours)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("archiver.store.ingest.utcnow", lambda: now - timedelta(hours=2))
        return await queue_alerts(archive, texts, recipients)


async def test_a_summary_checks_access_like_an_alert(bot: Harness) -> None:
    """Held alerts of a user denied meanwhile are dropped at the summary's claim."""
    now = datetime.now(UTC)
    one(await bot.send(OTHER_MEMBER, quiet(now, -3, -1)))
    await queue_held(bot.archive, ["война 1", "война 2"], [OTHER_MEMBER], now=now)
    await set_access(bot.archive, OTHER_MEMBER, False, by=1001)  # the table only: no drop
    since = len(bot.api.calls)
    await settle(bot)
    assert sent_to(bot, OTHER_MEMBER, since) == []
    assert [r["status"] for r in await alert_rows(bot.archive)] == ["dropped"] * 2


async def test_quiet_off_and_bad_input(bot: Harness) -> None:
    assert "No quiet hours" in one(await bot.send(MEMBER, "/quiet")).text
    assert "There were no quiet hours" in one(await bot.send(MEMBER, "/quiet off")).text
    bad = one(await bot.send(MEMBER, "/quiet 25:00-07:00")).text
    assert "25:00-07:00" in bad and "HH:MM" in bad
    one(await bot.send(MEMBER, "/quiet 23:00-07:00"))
    assert "23:00-07:00" in one(await bot.send(MEMBER, "/quiet")).text
    assert "off" in one(await bot.send(MEMBER, "/quiet off")).text
    assert "No quiet hours" in one(await bot.send(MEMBER, "/quiet")).text


async def test_a_personal_digest_is_sent_once_when_due(bot: Harness) -> None:
    reply = one(await bot.send(MEMBER, "/digest daily 08:30")).text
    assert "08:30" in reply and "Europe/Kyiv" in reply
    assert "08:30" in one(await bot.send(MEMBER, "/digest")).text
    await queue_alerts(bot.archive, ["война 1"])
    await settle(bot)
    digests = bot.runner.app.bot_data["telewatch"].digests
    now = datetime.now(UTC)
    nothing = await digests.run_once(now)  # the 08:30 just past counted as sent when set
    assert nothing == 0
    due = last_due(time(8, 30), now, KYIV) + timedelta(days=1)
    since = len(bot.api.calls)
    assert await digests.run_once(due + timedelta(seconds=5)) == 1
    (digest,) = sent_to(bot, MEMBER, since)
    assert "telewatch daily digest: 1 post(s) matched your rules" in digest.text
    assert "https://t.me/saltpepper/1" in digest.text
    assert await digests.run_once(due + timedelta(minutes=5)) == 0  # never twice
    assert len(sent_to(bot, MEMBER, since)) == 1
    assert "Daily digest off" in one(await bot.send(MEMBER, "/digest off")).text
    assert await digests.run_once(due + timedelta(days=1, seconds=5)) == 0


async def test_no_personal_digest_for_a_denied_user(bot: Harness) -> None:
    one(await bot.send(OTHER_MEMBER, "/digest daily 08:30"))
    await set_access(bot.archive, OTHER_MEMBER, False, by=1001)  # the table only: no drop
    digests = bot.runner.app.bot_data["telewatch"].digests
    due = last_due(time(8, 30), datetime.now(UTC), KYIV) + timedelta(days=1)
    since = len(bot.api.calls)
    assert await digests.run_once(due + timedelta(seconds=5)) == 0
    assert sent_to(bot, OTHER_MEMBER, since) == []


async def test_bad_digest_commands(bot: Harness) -> None:
    assert "Usage" in one(await bot.send(MEMBER, "/digest weekly 08:30")).text
    assert "'8h'" in one(await bot.send(MEMBER, "/digest daily 8h")).text
    assert "no daily digest" in one(await bot.send(MEMBER, "/digest off")).text
    assert "No daily digest" in one(await bot.send(MEMBER, "/digest")).text


def test_quiet_hours_str() -> None:
    assert str(QuietHours(time(23, 0), time(7, 0))) == "23:00-07:00"


# ---------------------------------------------------------------------------- exactly once


@asynccontextmanager
async def quiet_delivery(api: FakeBotApi, archive: Archive) -> AsyncIterator[Delivery]:
    """A Delivery of its own (the sender alone), with a short send time-out."""
    tg = Bot(TOKEN, base_url=api.api_base_url)
    async with tg:
        d = Delivery(
            archive,
            tg,
            lambda row: alert_html(row, KYIV, {"war": "война"}),
            render_summary=lambda row: summary_html(row, KYIV),
            tz=KYIV,
            poll_seconds=0.05,
            limits=Limits(overall_per_second=10_000, chat_interval=0.0, group_per_minute=10_000),
            retry=RetryPolicy(max_attempts=3, base_seconds=0),
            send_timeout=0.5,
        )
        d.start()
        try:
            yield d
        finally:
            await d.stop(grace=2)


async def held_alerts(archive: Archive, n: int) -> None:
    """``n`` alerts to MEMBER created two hours ago, during quiet hours that ended an hour ago."""
    now = datetime.now(UTC)
    await seed_channel(archive)
    await queue_alerts(archive, [f"война {i}" for i in range(1, n + 1)])
    await archive.write("UPDATE alerts SET created_at = ?", (ts(now - timedelta(hours=2)),))
    a, b = ((now + timedelta(hours=h)).astimezone(KYIV) for h in (-3, -1))
    await set_quiet(archive, MEMBER, parse_span(f"{a:%H:%M}-{b:%H:%M}"))


async def test_a_summary_without_an_answer_is_unknown_and_not_resent(tmp_path: Path) -> None:
    async with fake_api() as api, await Archive.open(tmp_path / "u.db") as archive:
        await held_alerts(archive, 3)
        api.fail("sendMessage", delay=1.5)  # delivered, but the answer comes too late
        async with quiet_delivery(api, archive) as d:
            await api.wait_for(chat_id=MEMBER)
            await asyncio.sleep(0.3)  # several polls: nothing more may go out
            await d.dispatch()
            await d.idle()
        assert len(api.sent(chat_id=MEMBER)) == 1
        rows = await alert_rows(archive)
        assert [r["status"] for r in rows] == ["unknown"] * 3
        assert all("may have delivered" in r["last_error"] for r in rows)


async def test_a_summary_refused_by_telegram_is_retried_then_sent_once(tmp_path: Path) -> None:
    async with fake_api() as api, await Archive.open(tmp_path / "r.db") as archive:
        await held_alerts(archive, 2)
        api.fail("sendMessage", 502)
        async with quiet_delivery(api, archive) as d:
            (summary,) = await api.wait_for(chat_id=MEMBER)
            await d.dispatch()
            await d.idle()
        assert [c.ok for c in api.attempts()] == [False, True]
        assert "2 alert(s) while your quiet hours were on" in summary.text
        rows = await alert_rows(archive)
        assert [(r["status"], r["attempts"]) for r in rows] == [("sent", 2)] * 2
        assert {r["tg_message_id"] for r in rows} == {summary.result["message_id"]}


def test_summary_units_group_held_alerts_where_the_first_was(tmp_path: Path) -> None:
    now = datetime(2024, 5, 2, 9, 0, tzinfo=UTC)  # 12:00 in Kyiv
    hours = parse_span("01:00-07:00")
    base = AlertRow(
        id=0, post_id=0, recipient=MEMBER, kind="new", rules=("war",), rule_queries=(),
        attempts=0, created_at=now, channel_id=1, channel_username=None, channel_title="c",
        message_id=1, post_date=now, link="https://t.me/c/1/1", text="t", old_text=None,
        deleted_at=None, media_kind=None, reply_to=None,
    )  # fmt: skip
    night = now - timedelta(hours=7)  # 05:00 in Kyiv: quiet
    rows = [replace(base, id=1, created_at=now - timedelta(hours=10))]  # 02:00: quiet
    rows += [replace(base, id=i, created_at=night) for i in range(2, 26)]
    rows += [replace(base, id=26)]  # now: not quiet
    units = summary_units(rows, hours, now, KYIV)
    assert units is not None
    assert [(u.id, u.kind, len(u.held)) for u in units] == [
        (1, "summary", SUMMARY_MAX),
        (21, "summary", 25 - SUMMARY_MAX),
        (26, "new", 0),
    ]
    assert summary_units(rows, hours, now - timedelta(hours=6), KYIV) is None  # 06:00: quiet
    assert summary_units(rows, hours, now - timedelta(hours=5), KYIV) is not None  # 07:00
    assert summary_units(rows, None, now, KYIV) == rows


async def test_a_summary_has_each_held_alerts_buttons(bot: Harness) -> None:
    """Each line of a summary has its row of buttons (Full text, History, Mute 24 h) acting
    on that alert, as under a single alert; 25 held alerts (a summary of 20, then one of 5)
    stay within Telegram's 100 buttons and 64 bytes of callback data (the fake refuses more)."""
    now = datetime.now(UTC)
    one(await bot.send(MEMBER, quiet(now, -3, -1)))
    texts = [f"война {n}" for n in range(1, 26)]
    await queue_held(bot.archive, texts, now=now)
    since = len(bot.api.calls)
    await settle(bot)
    first, second = sent_to(bot, MEMBER, since)
    rows = await alert_rows(bot.archive)
    assert [r["status"] for r in rows] == ["sent"] * 25
    for summary, held in ((first, rows[:20]), (second, rows[20:])):
        keyboard = summary.json("reply_markup")["inline_keyboard"]
        assert len(keyboard) == len(held)
        for i, (buttons, alert) in enumerate(zip(keyboard, held, strict=True), 1):
            assert [b["callback_data"] for b in buttons] == [
                f"af:{alert['id']}", f"ah:{alert['id']}", f"am:{alert['id']}"
            ]  # fmt: skip
            assert buttons[0]["text"] == f"{i}: Full text"
            assert f"\n{i}. " in summary.text
    # The buttons of line 3 act on alert 3, in the chat the summary went to.
    chat = {"message_id": first.result["message_id"], "date": 0,
            "chat": {"id": MEMBER, "type": "private"}, "text": "…"}  # fmt: skip
    third = first.json("reply_markup")["inline_keyboard"][2]
    calls = await bot.press(MEMBER, third[0]["callback_data"], chat)
    full = [c for c in calls if c.method == "sendMessage"]
    assert "война 3" in full[-1].text and "война 4" not in full[-1].text
    calls = await bot.press(MEMBER, third[2]["callback_data"], chat)
    (answer,) = [c for c in calls if c.method == "answerCallbackQuery"]
    assert "war" in answer.params["text"] and answer.params.get("show_alert") in (True, "true")


def test_a_summary_keyboard_fits_telegrams_limits() -> None:
    from fakes.botapi import BUTTONS_LIMIT, CALLBACK_DATA_LIMIT

    from bot.alerts import summary_buttons

    assert SUMMARY_MAX * 3 <= BUTTONS_LIMIT
    big = 10**18 - 1  # the largest alert id the button handlers accept (18 digits)
    when = datetime(2026, 12, 1, tzinfo=UTC)
    alert = AlertRow(id=big, post_id=1, recipient=MEMBER, kind="new", rules=("war",),
                     rule_queries=(), attempts=0, created_at=when, channel_id=1,
                     channel_username=None, channel_title="c", message_id=1, post_date=when,
                     link="https://t.me/c/1/1", text="война", old_text=None, deleted_at=None,
                     media_kind=None, reply_to=None)  # fmt: skip
    summary = replace(alert, kind="summary", held=(alert,) * SUMMARY_MAX)
    rows = summary_buttons(summary).inline_keyboard
    data = [b.callback_data for row in rows for b in row]
    assert len(data) == SUMMARY_MAX * 3
    assert max(len(str(d).encode()) for d in data) <= CALLBACK_DATA_LIMIT
