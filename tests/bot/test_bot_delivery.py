"""Alert delivery: exactly once, within the limits, through 429, 5xx, time-outs and 403.

The sender is the real :class:`bot.delivery.Delivery` with a real PTB ``Bot`` talking HTTP to
the fake Bot API; alerts are queued through the real ingest path.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from botkit import (
    CHANNEL,
    GROUP,
    KYIV,
    MEMBER,
    OTHER_MEMBER,
    alert_rows,
    delete_post,
    edit_post,
    fake_api,
    queue_alerts,
    seed_channel,
)
from fakes.botapi import TOKEN, FakeBotApi
from telegram import Bot

from archiver.store import outbox
from archiver.store.archive import Archive
from archiver.store.deletions import confirm_deleted, confirm_present
from bot.alerts import alert_html
from bot.delivery import Delivery, Limits, RateLimiter, RetryPolicy

NO_LIMITS = Limits(overall_per_second=10_000, chat_interval=0.0, group_per_minute=10_000)


# ---------------------------------------------------------------------------- the limiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def acquire(lim: RateLimiter, chat_id: int, clock: FakeClock) -> None:
    """What the scheduler does for one chat: wait until the limits allow, then take it."""
    while (wait := lim.delay(chat_id)) > 0:
        clock.now += wait
    lim.record(chat_id)


async def test_limiter_spaces_messages_to_one_chat_by_a_second() -> None:
    clock = FakeClock()
    lim = RateLimiter(Limits(), clock)
    times = []
    for _ in range(3):
        await acquire(lim, MEMBER, clock)
        times.append(clock.now)
    assert times == pytest.approx([0.0, 1.0, 2.0])


def most_in_a_second(times: list[float]) -> int:
    return max(sum(1 for u in times if t <= u < t + 1.0 - 1e-9) for t in times)


async def test_limiter_keeps_the_overall_rate() -> None:
    clock = FakeClock()
    lim = RateLimiter(Limits(overall_per_second=30), clock)
    times = []
    for chat in range(90):
        await acquire(lim, chat + 1, clock)
        times.append(clock.now)
    assert most_in_a_second(times) == 30  # never more in any second ...
    assert clock.now <= 3.0  # ... and no slower: 90 messages within 3 s


async def test_limiter_keeps_pace_when_the_sender_is_late() -> None:
    """Each send a few ms late must not lower the rate (the schedule is virtual)."""
    clock = FakeClock()
    lim = RateLimiter(Limits(overall_per_second=30), clock)
    times = []
    for chat in range(90):
        await acquire(lim, chat + 1, clock)
        times.append(clock.now)
        clock.now += 0.01  # the send itself takes 10 ms of this worker's time
    assert most_in_a_second(times) <= 30
    assert clock.now <= 3.05


async def test_limiter_allows_20_per_minute_to_a_group() -> None:
    clock = FakeClock()
    lim = RateLimiter(Limits(chat_interval=1.0, group_per_minute=20), clock)
    times = []
    for _ in range(22):
        await acquire(lim, GROUP, clock)
        times.append(clock.now)
    assert times[19] == pytest.approx(19.0)
    assert times[20] == pytest.approx(60.0)  # the 21st waits for the first to leave the minute
    assert times[21] == pytest.approx(61.0)


async def test_limiter_pause_after_a_429() -> None:
    clock = FakeClock()
    lim = RateLimiter(Limits(), clock)
    await acquire(lim, MEMBER, clock)
    lim.pause(MEMBER, 7)
    await acquire(lim, MEMBER, clock)
    assert clock.now == pytest.approx(7.0)
    await acquire(lim, OTHER_MEMBER, clock)  # other chats are not paused
    assert clock.now <= 7.0 + 1 / 30


async def test_the_gate_keeps_the_limits_when_claims_are_slow() -> None:
    """Between taking a slot and the call, the alert is claimed in the archive; a database
    that stalls and then answers a pile of claims at once must not release a burst."""
    clock = FakeClock()
    lim = RateLimiter(Limits(overall_per_second=30), clock)
    reserved = []
    for i in range(120):  # 40 chats, 3 alerts each, slots taken as the scheduler does
        await acquire(lim, i % 40 + 1, clock)
        reserved.append((clock.now, i % 40 + 1))
    clock.now = 0.0
    starts: list[float] = []
    per_chat: dict[int, list[float]] = {}
    done = 0.0  # claims are answered in order by the one database thread
    for k, (at, chat) in enumerate(reserved):
        stall = 0.8 if k % 40 == 0 else 0.0  # now and then the database stalls ...
        done = max(done, at + stall)  # ... and then answers the claims queued behind at once
        clock.now = max(clock.now, done)
        while (wait := lim.gate(chat)) > 0:
            clock.now += wait
        lim.start(chat)
        starts.append(clock.now)
        per_chat.setdefault(chat, []).append(clock.now)
    assert most_in_a_second(starts) <= 30
    assert min(b - a for t in per_chat.values() for a, b in itertools.pairwise(t)) >= 1.0


def test_minimum_time_of_the_limits() -> None:
    limits = Limits()
    assert limits.minimum_seconds([20] * 50) == pytest.approx(999 / 30)
    assert limits.minimum_seconds([5]) == pytest.approx(4.0)
    assert limits.minimum_seconds([21], groups=1) == pytest.approx(60.0)


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base_seconds=2, cap_seconds=10)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [2, 4, 8, 10]
    assert RetryPolicy(base_seconds=0).delay(5) == 0


# ---------------------------------------------------------------------------- delivery


@asynccontextmanager
async def delivering(
    api: FakeBotApi, archive: Archive, *, max_attempts: int = 3, limits: Limits = NO_LIMITS
) -> AsyncIterator[Delivery]:
    bot = Bot(TOKEN, base_url=api.api_base_url)
    async with bot:
        d = Delivery(
            archive,
            bot,
            lambda row: alert_html(row, KYIV, {"war": "война"}),
            poll_seconds=0.05,
            limits=limits,
            retry=RetryPolicy(max_attempts=max_attempts, base_seconds=0),
            send_timeout=0.5,
        )
        d.start()
        try:
            yield d
        finally:
            await d.stop(grace=2)


@pytest.fixture
async def setup(any_archive: Archive) -> AsyncIterator[tuple[FakeBotApi, Archive]]:
    """The fake Bot API and an archive, on SQLite and on PostgreSQL (tests/pg.py)."""
    async with fake_api() as api:
        await seed_channel(any_archive)
        yield api, any_archive


async def _settled(d: Delivery) -> None:
    """Everything due has been tried."""
    await d.dispatch()
    await d.idle()


async def test_each_alert_is_sent_once_as_html_without_preview(
    setup: tuple[FakeBotApi, Archive],
) -> None:
    api, archive = setup
    assert await queue_alerts(archive, ["война 1", "война 2", "война 3"]) == 3
    async with delivering(api, archive) as d:
        calls = await api.wait_for(chat_id=MEMBER, count=3)
        await _settled(d)
        await asyncio.sleep(0.2)  # a few more polls: nothing more may go out
    assert len(api.sent(chat_id=MEMBER)) == 3
    assert [c.params["parse_mode"] for c in calls] == ["HTML"] * 3
    assert all(c.json("link_preview_options") == {"is_disabled": True} for c in calls)
    assert ["</b> 1" in calls[0].text, "</b> 3" in calls[2].text] == [True, True]  # in order
    rows = await alert_rows(archive)
    assert [r["status"] for r in rows] == ["sent"] * 3
    assert [r["tg_message_id"] for r in rows] == [c.result["message_id"] for c in calls]


async def test_notify_wakes_the_sender_between_polls(setup: tuple[FakeBotApi, Archive]) -> None:
    api, archive = setup
    async with delivering(api, archive) as d:
        d.poll_seconds = 3600  # only a wake-up can make it look
        await asyncio.sleep(0.1)
        await queue_alerts(archive, ["война"])
        d.notify()
        await api.wait_for(chat_id=MEMBER, timeout=5)


async def test_429_waits_retry_after_and_sends_once(setup: tuple[FakeBotApi, Archive]) -> None:
    api, archive = setup
    await queue_alerts(archive, ["война"])
    api.fail("sendMessage", 429, retry_after=1)
    async with delivering(api, archive):
        await api.wait_for(chat_id=MEMBER)
    tries = api.attempts()
    assert [c.ok for c in tries] == [False, True]
    assert tries[1].at - tries[0].at >= 0.9
    (row,) = await alert_rows(archive)
    assert row["status"] == "sent" and row["attempts"] == 1  # a flood wait is not a failure


async def test_5xx_and_network_errors_are_retried(setup: tuple[FakeBotApi, Archive]) -> None:
    api, archive = setup
    await queue_alerts(archive, ["война"])
    api.fail("sendMessage", 500)
    api.fail("sendMessage", 502)
    async with delivering(api, archive, max_attempts=5):
        await api.wait_for(chat_id=MEMBER, timeout=10)
    assert [c.ok for c in api.attempts()] == [False, False, True]
    (row,) = await alert_rows(archive)
    assert row["status"] == "sent" and row["attempts"] == 3


async def test_a_timeout_is_not_resent(setup: tuple[FakeBotApi, Archive]) -> None:
    """Telegram delivered it but the answer came after the client gave up: sending it again
    would be a second copy. It is recorded as unknown instead, and the next alert goes on."""
    api, archive = setup
    await queue_alerts(archive, ["война 1", "война 2"])
    api.fail("sendMessage", delay=1.5)
    async with delivering(api, archive) as d:
        await api.wait_for(chat_id=MEMBER, count=2, timeout=10)
        await asyncio.sleep(0.3)  # several polls: nothing more may go out
        await _settled(d)
    texts = [c.text for c in api.sent(chat_id=MEMBER)]
    assert len(texts) == 2 and "война</b> 1" in texts[0] and "война</b> 2" in texts[1]
    first, second = await alert_rows(archive)
    assert first["status"] == "unknown" and "may have delivered" in first["last_error"]
    assert second["status"] == "sent"
    assert (await outbox.counts(archive)).unknown == 1


async def test_a_refused_connection_is_retried(tmp_path: Path) -> None:
    """The server is gone: the request never left, so Telegram certainly did not take it."""
    archive = await Archive.open(tmp_path / "r.db")
    try:
        await seed_channel(archive)
        await queue_alerts(archive, ["война"])
        api = FakeBotApi()
        await api.start()
        bot = Bot(TOKEN, base_url=api.api_base_url)
        retry = RetryPolicy(max_attempts=2, base_seconds=0)
        d = Delivery(archive, bot, lambda row: "x", limits=NO_LIMITS, retry=retry)
        async with bot:  # getMe answered; then nothing listens any more
            await api.close()
            await d.dispatch()
            await d._send_next(MEMBER)  # a failed try: pending again
            (row,) = await alert_rows(archive)
            assert row["status"] == "pending" and row["attempts"] == 1
            await d._send_next(MEMBER)
        (row,) = await alert_rows(archive)
        assert row["status"] == "failed" and "ConnectError" in row["last_error"]
    finally:
        await archive.close()


async def test_403_holds_the_chat_and_others_still_get_theirs(
    setup: tuple[FakeBotApi, Archive],
) -> None:
    api, archive = setup
    await queue_alerts(archive, ["война 1", "война 2"], [MEMBER, OTHER_MEMBER])
    api.fail("sendMessage", 403, chat_id=MEMBER)
    async with delivering(api, archive) as d:
        await api.wait_for(chat_id=OTHER_MEMBER, count=2)
        await _settled(d)
        assert api.sent(chat_id=MEMBER) == []
        assert await outbox.inactive_recipients(archive) == {
            MEMBER: "Forbidden: bot was blocked by the user"
        }
        counts = await outbox.counts(archive)
        assert (counts.pending, counts.held, counts.failed) == (2, 2, 0)
        # The user unblocks the bot and writes to it: the held alerts go out, none lost.
        await outbox.set_recipient_active(archive, MEMBER, True)
        d.notify()
        await api.wait_for(chat_id=MEMBER, count=2)
    assert [r["status"] for r in await alert_rows(archive)] == ["sent"] * 4


async def test_after_max_attempts_an_alert_is_failed(setup: tuple[FakeBotApi, Archive]) -> None:
    api, archive = setup
    await queue_alerts(archive, ["война"])
    api.fail("sendMessage", 500, times=3)
    async with delivering(api, archive, max_attempts=3) as d:
        deadline = asyncio.get_running_loop().time() + 10
        while (await outbox.counts(archive)).failed == 0:
            assert asyncio.get_running_loop().time() < deadline, await alert_rows(archive)
            await asyncio.sleep(0.05)
        await _settled(d)
    (row,) = await alert_rows(archive)
    assert row["status"] == "failed" and row["attempts"] == 3
    assert "500" in row["last_error"] or "Internal" in row["last_error"]
    assert len(api.attempts()) == 3 and api.sent() == []


async def test_edit_and_delete_follow_the_first_alert(setup: tuple[FakeBotApi, Archive]) -> None:
    api, archive = setup
    await queue_alerts(archive, ["Началась война"])
    async with delivering(api, archive) as d:
        (first,) = await api.wait_for(chat_id=MEMBER)
        await edit_post(archive, 1, "Война закончилась")
        await delete_post(archive, 1)
        d.notify()
        calls = await api.wait_for(chat_id=MEMBER, count=3)
    edited, deleted = calls[1], calls[2]
    assert "<s>Началась война</s> <u><b>Война</b> закончилась</u>" in edited.text
    assert "Deleted" in deleted.text and "закончилась" in deleted.text
    target = first.result["message_id"]
    assert deleted.json("reply_parameters")["message_id"] == target
    assert edited.json("reply_parameters")["message_id"] == target


async def test_exactly_once_across_a_restart(setup: tuple[FakeBotApi, Archive]) -> None:
    api, archive = setup
    await queue_alerts(archive, ["война 1", "война 2"])
    async with delivering(api, archive):
        await api.wait_for(chat_id=MEMBER, count=2)
    # While the bot is down: two more alerts, and a flood wait that will interrupt a send.
    await queue_alerts(archive, ["война 3", "война 4"], first_id=3)
    api.fail("sendMessage", 429, retry_after=2)
    async with delivering(api, archive):
        while not [c for c in api.attempts() if not c.ok]:
            await asyncio.sleep(0.02)
    # Stopped in the middle of the flood wait: "война 3" is still pending, not lost, and
    # the wait is kept in the outbox (next_attempt_at) for the next start to respect.
    statuses = [r["status"] for r in await alert_rows(archive)]
    assert statuses == ["sent", "sent", "pending", "pending"]
    async with delivering(api, archive):
        await api.wait_for(chat_id=MEMBER, count=4)
        await asyncio.sleep(0.2)
    texts = [c.text for c in api.sent(chat_id=MEMBER)]
    assert len(texts) == 4
    for i in range(1, 5):
        assert sum(f"война</b> {i}" in t for t in texts) == 1, texts
    assert [r["status"] for r in await alert_rows(archive)] == ["sent"] * 4


async def test_a_stop_lets_the_send_in_flight_be_recorded(
    setup: tuple[FakeBotApi, Archive],
) -> None:
    api, archive = setup
    await queue_alerts(archive, ["война"])
    api.slow("sendMessage", 0.4)  # a success that takes a while
    async with delivering(api, archive):
        while not api.received.get("sendMessage"):
            await asyncio.sleep(0.01)
    # The stop came while the request was in flight: it was allowed to finish and recorded,
    # so a restart will not send it again.
    assert len(api.sent()) == 1
    (row,) = await alert_rows(archive)
    assert row["status"] == "sent"


async def test_every_kind_through_the_record(setup: tuple[FakeBotApi, Archive]) -> None:
    """new, edited, reverted, deleted (with how it was confirmed and the evidence) and
    restored, as the record queues them, each delivered once as a reply to the first."""
    api, archive = setup
    await queue_alerts(archive, ["Началась война"])
    await edit_post(archive, 1, "Началась большая война")
    await edit_post(archive, 1, "Началась война", hours=2)  # back to the first text
    await confirm_deleted(
        archive, CHANNEL, [1], how="web_embed", evidence='the post page said "Post not found"',
        alerts=True,
    )  # fmt: skip
    await confirm_present(archive, CHANNEL, [1], how="recheck", alerts=True)
    kinds = [r["kind"] for r in await alert_rows(archive)]
    assert kinds == ["new", "edited", "reverted", "deleted", "restored"]
    async with delivering(api, archive):
        calls = await api.wait_for(chat_id=MEMBER, count=5)
    new, edited, reverted, deleted, restored = (c.text for c in calls)
    assert "new post" in new
    assert "edited" in edited and "<u>большая</u>" in edited
    assert "edit reverted" in reverted and "<s>большая</s>" in reverted
    assert "the post page said it was not found" in deleted
    assert 'Evidence: the post page said "Post not found"' in deleted
    assert "an earlier deletion alert about it was wrong" in restored
    first = calls[0].result["message_id"]
    assert all(c.json("reply_parameters")["message_id"] == first for c in calls[1:])
