"""Replies to commands under Telegram's limits, with the alerts: one budget, replies first,
a short flood wait waited out (bot/reply_limiter.py).

A real PTB Application over HTTP against the fake Bot API, under the real limits (1 message a
second per chat, 30 a second overall). Times are those of :class:`TransitClock`, which the
rate limiter and the fake share: it follows the monotonic clock but stands still while a
call the limiter let start has not reached the fake, so the fake stamps each call with the
very moment the limiter released it, and while the test holds it. Spacing seen by the fake is
then exactly the limiter's; no assertion depends on how fast this machine is.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from botkit import (
    FAST,
    GROUP,
    MEMBER,
    OTHER_MEMBER,
    Harness,
    fake_api,
    post,
    queue_alerts,
    running_bot,
    seed_channel,
)
from fakes.botapi import Call, FakeBotApi

from archiver.store.archive import Archive
from archiver.store.ingest import ingest
from bot.delivery import PACED, Limits, RateLimiter
from bot.reply_limiter import ReplyLimiter, limited

MESSAGE_CALLS = ("sendMessage", "sendDocument", "editMessageText")
OTHERS = tuple(range(20_001, 20_051))  # 50 private chats with alerts waiting


class TransitClock:
    """See the module docstring. ``hold()``/``release()``: time stands still in between,
    and goes on from there (no jump) after."""

    def __init__(self, api: FakeBotApi) -> None:
        self.api = api
        self.limiter: RateLimiter | None = None
        self.now = 0.0
        self._base = time.monotonic()
        self._held_since: float | None = None

    def in_transit(self) -> bool:
        if self.limiter is None:
            return False
        arrived = sum(self.api.received.get(m, 0) for m in MESSAGE_CALLS)
        return self.limiter.started > arrived

    def __call__(self) -> float:
        if self._held_since is None and not self.in_transit():
            self.now = max(self.now, time.monotonic() - self._base)
        return self.now

    def hold(self) -> None:
        self()
        self._held_since = time.monotonic()

    def release(self) -> None:
        assert self._held_since is not None
        self._base += time.monotonic() - self._held_since
        self._held_since = None


@pytest.fixture
async def limits_bot(tmp_path: Path) -> AsyncIterator[tuple[Harness, TransitClock]]:
    db = tmp_path / "l.db"
    async with fake_api() as api:
        clock = TransitClock(api)
        api.clock = clock
        archive = await Archive.open(db)
        try:
            await seed_channel(archive)
            archive.matcher = None
            posts = [post(100 + i, f"Война, день {i}") for i in range(3)]
            await ingest(archive, posts, source="telethon", alerts=False)
            options = replace(FAST, limits=Limits(), clock=clock)
            users = frozenset({MEMBER, OTHER_MEMBER, *OTHERS})
            async with running_bot(api, archive, db, options=options, allowed_users=users) as h:
                assert h.runner.delivery is not None
                clock.limiter = h.runner.delivery.limiter  # shared with the replies
                yield h, clock
        finally:
            await archive.close()


async def until(what: Callable[[], bool], timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not what():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


def sends(api: FakeBotApi, since: int, chat_id: int | None = None) -> list[Call]:
    return [
        c
        for c in api.calls[since:]
        if c.method == "sendMessage" and c.ok and (chat_id is None or c.chat_id == chat_id)
    ]


def is_reply(call: Call) -> bool:
    return call.text.startswith("Hello")  # /start's answer; alerts quote the post


async def test_a_search_reply_refused_with_retry_after_1_arrives_after_the_wait(
    limits_bot: tuple[Harness, TransitClock],
) -> None:
    """Telegram refuses the /search answer once with "retry after 1": the journalist gets
    it a second later, not silence."""
    bot, _clock = limits_bot
    bot.api.fail("sendMessage", 429, retry_after=1, chat_id=MEMBER)
    since = len(bot.api.calls)
    await bot.send(MEMBER, "/search война")
    tries = [c for c in bot.api.calls[since:] if c.method == "sendMessage"]
    assert [c.ok for c in tries] == [False, True]
    assert tries[1].text == tries[0].text and "день" in tries[1].text
    assert tries[1].at - tries[0].at >= 1.0  # not before Telegram's retry_after


async def test_a_reply_refused_twice_is_dropped_with_one_warning(
    limits_bot: tuple[Harness, TransitClock], caplog: pytest.LogCaptureFixture
) -> None:
    """Sent again once, not more: refused a second time, the reply is dropped with the
    WARNING line, and the chat stays paused for what Telegram asked the second time."""
    bot, clock = limits_bot
    assert clock.limiter is not None
    bot.api.fail("sendMessage", 429, retry_after=1, chat_id=MEMBER)
    bot.api.fail("sendMessage", 429, retry_after=20, chat_id=MEMBER)  # short enough, but twice
    since = len(bot.api.attempts())
    with caplog.at_level(logging.WARNING):
        await bot.send(MEMBER, "/start")
    tries = bot.api.attempts()[since:]
    assert [c.ok for c in tries] == [False, False]
    assert tries[1].at - tries[0].at >= 1.0
    assert clock.limiter.paused_for(MEMBER) > 10  # the second wait holds the alerts too
    (line,) = [r.getMessage() for r in caplog.records if "flood control" in r.getMessage()]
    assert line.startswith(f"flood control: a reply to chat {MEMBER} was refused")


async def test_a_flood_wait_on_a_reply_holds_the_alerts_to_that_chat(
    limits_bot: tuple[Harness, TransitClock],
) -> None:
    """Telegram's 429 on a reply is about the chat: its alerts wait it out as well, and the
    reply, sent again, still goes before them."""
    bot, _clock = limits_bot
    bot.api.fail("sendMessage", 429, retry_after=2, chat_id=MEMBER)
    since, since_tries = len(bot.api.calls), len(bot.api.attempts())
    update = bot.api.push_message(MEMBER, "/start")
    await until(lambda: bool(bot.api.attempts()[since_tries:]))
    refused = bot.api.attempts()[since_tries]
    assert not refused.ok
    await queue_alerts(bot.archive, ["война 1"])
    bot.wake.set()
    await bot.settle(update)
    got = await bot.api.wait_for(chat_id=MEMBER, count=2, since=since)
    assert [is_reply(c) for c in got] == [True, False]
    assert got[0].at - refused.at >= 2.0
    assert got[1].at - got[0].at >= 1.0


async def test_a_stop_does_not_wait_out_a_replys_flood_wait(
    limits_bot: tuple[Harness, TransitClock], caplog: pytest.LogCaptureFixture
) -> None:
    """A reply waits 25 s to be sent again when the bot is told to stop: the stop does not
    wait for it; the reply is dropped with the one WARNING line (chat id, no text)."""
    bot, clock = limits_bot
    assert clock.limiter is not None
    lim = clock.limiter
    bot.api.fail("sendMessage", 429, retry_after=25, chat_id=MEMBER)
    since = len(bot.api.attempts())
    bot.api.push_message(MEMBER, "/start")
    await until(lambda: lim.replies_waiting > 0)  # waiting to send it again
    assert [c.ok for c in bot.api.attempts()[since:]] == [False]
    with caplog.at_level(logging.WARNING):
        bot.stop.set()
        await asyncio.wait_for(bot.task, 5)  # within the stop's grace, not 25 s
    assert [c.ok for c in bot.api.attempts()[since:]] == [False]
    lines = [r.getMessage() for r in caplog.records if "flood control" in r.getMessage()]
    (line,) = lines  # one line, the chat id and the wait left, no text
    assert line.startswith(f"flood control: a reply to chat {MEMBER} was refused (retry after ")


async def test_replies_and_alerts_to_one_chat_keep_a_second_apart(
    limits_bot: tuple[Harness, TransitClock],
) -> None:
    """Three alerts for a journalist go out a second apart; they send /start meanwhile. The
    answer takes the chat's next slot, ahead of the two alerts still queued, and the chat
    never gets two messages within a second, as the fake Bot API sees them."""
    bot, clock = limits_bot
    lim = clock.limiter
    assert lim is not None
    since = len(bot.api.calls)
    clock.hold()  # time stands still: after the first alert the others must wait
    await queue_alerts(bot.archive, ["война 1", "война 2", "война 3"])
    bot.wake.set()
    await bot.api.wait_for(chat_id=MEMBER, since=since)
    update = bot.api.push_message(MEMBER, "/start")
    await bot.api.wait_fetched(update)
    await until(lambda: lim.replies_waiting > 0 or any(map(is_reply, sends(bot.api, since))))
    clock.release()
    await bot.settle(update)
    got = await bot.api.wait_for(chat_id=MEMBER, count=4, since=since)
    assert [is_reply(c) for c in got] == [False, True, False, False]
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert min(gaps) >= Limits().chat_interval, gaps
    assert lim.started == len(bot.api.attempts())  # one slot a message: none taken twice


async def test_a_reply_goes_ahead_of_a_backlog_of_alerts_within_the_overall_budget(
    limits_bot: tuple[Harness, TransitClock],
) -> None:
    """50 alerts for 50 other chats are waiting for the overall budget (30 a second) when a
    journalist sends /start: the answer goes at once, ahead of the backlog, and counts in
    the budget: no second holds more than 30 messages, alerts and reply together."""
    bot, clock = limits_bot
    overall = int(Limits().overall_per_second)
    since = len(bot.api.calls)
    clock.hold()  # the backlog cannot drain while time stands still
    assert await queue_alerts(bot.archive, ["война"], OTHERS) == len(OTHERS)
    bot.wake.set()
    await bot.api.wait_for(since=since)
    held_at = clock()
    await bot.send(MEMBER, "/start")  # answered while time still stands still
    (reply,) = [c for c in sends(bot.api, since) if is_reply(c)]
    assert reply.at == held_at  # no wait at all
    assert len([c for c in sends(bot.api, since) if not is_reply(c)]) < len(OTHERS) // 2
    clock.release()
    await bot.api.wait_for(count=len(OTHERS) + 1, since=since, timeout=20)
    times = sorted(c.at for c in sends(bot.api, since))
    crowded = [(t, u) for t, u in zip(times, times[overall:], strict=False) if u - t < 1.0]
    assert crowded == [], f"more than {overall} messages within a second: {crowded[:3]}"
    assert clock.limiter is not None and clock.limiter.started == len(bot.api.attempts())


# ---------------------------------------------------------------- the limiter on its own clock


class SteppedClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SteppedReplies(ReplyLimiter):
    """Sleeps move the clock instead of taking time."""

    def __init__(self, limiter: RateLimiter, clock: SteppedClock, **kw: float) -> None:
        super().__init__(limiter, **kw)
        self.stepped = clock

    async def _sleep(self, seconds: float) -> None:
        self.stepped.now += seconds


async def test_a_reply_waits_at_most_max_wait_in_a_group_whose_minute_is_used_up() -> None:
    """Alerts used a group's 20 messages of the minute: a reply there would wait up to a
    minute for the limits; it waits ``max_wait`` and goes, and counts."""
    clock = SteppedClock()
    lim = RateLimiter(Limits(), clock)
    for _ in range(20):  # one a second, as the scheduler takes them
        while (wait := lim.delay(GROUP)) > 0:
            clock.now += wait
        lim.record(GROUP)
        lim.start(GROUP)
    assert clock.now == pytest.approx(19.0) and lim.delay(GROUP) > 40
    replies = SteppedReplies(lim, clock, max_wait=3.0)
    sent: list[float] = []

    async def call() -> bool:
        sent.append(clock.now)
        return True

    assert await replies.process_request(call, (), {}, "sendMessage", {"chat_id": GROUP}, None)
    assert sent == [pytest.approx(22.0)]
    assert lim.started == 21 and lim.replies_waiting == 0


async def test_calls_that_are_not_messages_or_already_paced_take_no_slot() -> None:
    """Button answers, menus and getMe are not messages to a chat; alerts and digests took
    their slot before the call (PACED): none of them waits or takes one here."""
    clock = SteppedClock()
    lim = RateLimiter(Limits(), clock)
    replies = SteppedReplies(lim, clock)

    async def call() -> bool:
        return True

    for endpoint, data, args in [
        ("answerCallbackQuery", {"callback_query_id": "1"}, None),
        ("setMyCommands", {"commands": "[]"}, None),
        ("sendChatAction", {"chat_id": MEMBER, "action": "typing"}, None),
        ("sendMessage", {"chat_id": MEMBER, "text": "alert"}, PACED),
        ("sendMessage", {"chat_id": MEMBER, "text": "alert"}, PACED),
    ]:
        assert await replies.process_request(call, (), {}, endpoint, data, args)
    assert lim.started == 0 and clock.now == 0.0
    assert limited("editMessageText", {"chat_id": str(MEMBER)}) == MEMBER
    assert limited("sendDocument", {"chat_id": GROUP}) == GROUP
