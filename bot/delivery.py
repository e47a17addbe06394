"""The outbox sender: every pending alert reaches its chat at most once, within Telegram's limits.

How it works:

- A dispatcher reads due alerts from the outbox (:mod:`archiver.store.outbox`) at once when
  :meth:`Delivery.notify` is called (the archiver in the same process calls it after ingest)
  or its ``watcher`` sees alerts queued by another process (:mod:`archiver.store.wakeup`:
  LISTEN/NOTIFY on PostgreSQL, ``PRAGMA data_version`` on SQLite), and every
  ``poll_seconds`` whatever happens (the fallback for a missed wake-up, and for alerts that
  fall due later).
- Each chat has one worker that sends its alerts in order. Before each send the worker takes a
  slot from :class:`RateLimiter`: about 30 messages/s overall, 1/s per chat, 20/min per group.
  The same limiter paces the personal digests and the replies to commands
  (:mod:`bot.reply_limiter`, the Application's rate limiter): one budget for everything the
  bot sends. A reply waiting for a slot goes first: no alert takes its chat's next slot or
  the last free place of the second meanwhile (:meth:`RateLimiter.reply_waiting`). The
  alerts' own calls carry ``rate_limit_args=PACED`` so that limiter lets them through: their
  slot is taken here, once.
- Access is checked at send time: :func:`archiver.store.outbox.claim` reads the recipient's
  entry of the ``access`` table and asks the current config (``refusal``) in the same
  transaction that records the alert as ``sending``. A recipient that may no longer receive
  alerts (denied, or removed from ``allowed_users``/``allowed_chats``) gets nothing: the alert
  is ``dropped`` with the reason. So is an alert whose rules are all muted in its chat.
- Exactly once where Telegram allows it, never twice: the alert is recorded ``sending`` before
  the call and ``sent`` (with the Telegram message id) after it. It is sent again only when
  Telegram certainly did not accept it: an error answer (429, 5xx, 400), or a connection that
  was never made. When the answer never came (a read time-out, a connection dropped mid-call)
  the message may have been delivered, and the Bot API has no idempotency key to ask: the
  alert becomes ``unknown`` (counted in ``/status``, listed by ``telewatch alerts``), not
  resent. An alert a previous run left in ``sending`` (it died mid-call) becomes ``unknown``
  at start for the same reason.
- When an outcome cannot be written (the disk is full, or another process holds the
  archive's write lock beyond the busy timeout) delivery pauses: one ERROR line, a marker
  file beside the archive that ``telewatch health`` reports, and no new send until every
  outcome held in memory is written (tried again every ``poll_seconds``). A send whose
  outcome could not be recorded is never repeated: the alert stays ``sending`` in the
  archive, which no reader takes for pending.
- Quiet hours (``/quiet``, :mod:`archiver.store.quiet`): while a chat is quiet its alerts
  are not read into a queue at all: they stay ``pending``, never claimed. After, those
  created during the quiet hours go out as one summary message (:func:`summary_units`, up
  to :data:`SUMMARY_MAX` alerts a message), claimed together
  (:func:`archiver.store.outbox.claim_held`, with the same access and mute checks) and
  recorded together (:func:`archiver.store.outbox.record_many`): the same three steps, so a
  summary is sent at most once and never twice, like any alert.
- 429 pauses the chat for ``retry_after`` (replies to it wait too) and retries the same
  alert; 5xx and refused connections back off exponentially (replies are not held by it);
  403 (the user blocked the bot, or it was removed from the group) sets the recipient
  inactive: its alerts stay pending, held, until the chat talks to the bot again. After
  ``max_attempts`` counted failures an alert is ``failed``; it stays in the outbox, shows in
  ``/status`` and can be requeued.

Why not PTB's ``AIORateLimiter``: it needs the extra ``aiolimiter`` dependency, throttles every
call of the bot first come first served (the replies to commands would wait behind a queue of
alerts), has no per-chat 1/s limit for private chats, and retries a 429 inside the call,
invisibly to the outbox. The limiter here knows the chat of each alert and records every
outcome; PTB's hook for a rate limiter (``BaseRateLimiter``) is used only to bring the
handlers' calls under it, with priority (:mod:`bot.reply_limiter`); the alerts' calls pass
that hook untouched, and their 429s still come back here to be recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sqlite3
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import httpx
from telegram import Bot, InlineKeyboardMarkup, LinkPreviewOptions, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import (
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import ExtBot
from telegram.warnings import PTBDeprecationWarning

from archiver.store import outbox
from archiver.store.archive import Archive, ts, utcnow
from archiver.store.outbox import AlertRow, Claim, Refusal
from archiver.store.quiet import QuietHours, quiet_hours
from archiver.store.wakeup import Watcher

log = logging.getLogger(__name__)

Clock = Callable[[], float]
# ``rate_limit_args`` of a call that took its slot from :class:`RateLimiter` already (alerts,
# digests): bot.reply_limiter.ReplyLimiter passes it straight through.
PACED = "telewatch:paced"
SUMMARY_MAX = 20  # held alerts in one summary message (each a line: it stays far below 4,096)


def summary_units(
    rows: Sequence[AlertRow], hours: QuietHours | None, now: datetime, tz: tzinfo
) -> list[AlertRow] | None:
    """What of one chat's due ``rows`` (oldest first) to queue, given its quiet hours: None
    while it is quiet (nothing: the alerts stay pending); else the alerts, those created
    during quiet hours grouped into summaries (rows whose ``held`` are the alerts) placed
    where the first of them was."""
    if hours is None:
        return list(rows)
    if hours.quiet_at(now, tz):
        return None
    held = [r for r in rows if hours.quiet_at(r.created_at, tz)]
    if not held:
        return list(rows)
    chunks = [held[i : i + SUMMARY_MAX] for i in range(0, len(held), SUMMARY_MAX)]
    summaries = {c[0].id: replace(c[0], kind="summary", held=tuple(c)) for c in chunks}
    held_ids = {r.id for r in held}
    return [summaries.get(r.id, r) for r in rows if r.id not in held_ids or r.id in summaries]


@dataclass(frozen=True, slots=True)
class Limits:
    """Telegram's documented limits for bots."""

    overall_per_second: float = 30.0
    chat_interval: float = 1.0  # seconds between two messages to one chat
    group_per_minute: int = 20  # messages to one group (negative chat id) per minute

    def minimum_seconds(self, per_chat: list[int], groups: int = 0) -> float:
        """The least time these limits allow for sending ``per_chat[i]`` messages to chat i
        (the first ``groups`` of them groups), all starting at once."""
        total = sum(per_chat)
        overall = (total - 1) / self.overall_per_second if total else 0.0
        worst = 0.0
        for i, n in enumerate(per_chat):
            if n <= 0:
                continue
            t = (n - 1) * self.chat_interval
            if i < groups and n > self.group_per_minute:
                t = max(t, ((n - 1) // self.group_per_minute) * 60.0)
            worst = max(worst, t)
        return max(overall, worst)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 2.0
    cap_seconds: float = 900.0

    def delay(self, attempts: int) -> float:
        """Back-off before the next try after ``attempts`` failed tries (1, 2, ...)."""
        if self.base_seconds <= 0:
            return 0.0
        return float(min(self.cap_seconds, self.base_seconds * 2 ** max(attempts - 1, 0)))


class RateLimiter:
    """When each chat's worker may send its next message.

    Overall: paced at ``overall_per_second`` on a virtual schedule (a sender a few ms late
    does not fall behind for good), and never more than ``overall_per_second`` in any second
    of the moments messages actually went out, so a stalled event loop cannot release a
    burst. Per chat: ``chat_interval`` apart. Per group: at most ``group_per_minute`` in any
    minute.
    """

    def __init__(self, limits: Limits, clock: Clock = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._sent: deque[float] = deque()  # send times within the last second, overall
        self._due = 0.0  # the virtual time of the next overall slot
        self._next_chat: dict[int, float] = {}
        self._paused: dict[int, float] = {}  # chat -> until when Telegram asked to wait (429)
        self._backoff: dict[int, float] = {}  # chat -> until when its alerts back off (5xx)
        self._group_sent: dict[int, deque[float]] = {}
        # Replies waiting for a slot (bot.reply_limiter): alerts let them go first.
        self._replies: dict[int, int] = {}  # chat -> replies waiting
        self._replies_waiting = 0
        self.started = 0  # calls started (start()), for tests and benches
        # The moments calls really started (see gate()): the last second, per chat, per group.
        self._started: deque[float] = deque()
        self._chat_started: dict[int, float] = {}
        self._group_started: dict[int, deque[float]] = {}

    def delay(self, chat_id: int) -> float:
        """Seconds until a message to ``chat_id`` is allowed (0: now)."""
        now = self.clock()
        limits = self.limits
        ready = self._next_chat.get(chat_id, 0.0)
        if self._paused:  # mostly empty, like the two below
            ready = max(ready, self._paused.get(chat_id, 0.0))
        if self._backoff:
            ready = max(ready, self._backoff.get(chat_id, 0.0))
        if self._replies and chat_id in self._replies:  # a reply to it goes first, then this
            ready = max(ready, now) + limits.chat_interval
        group = self._group_sent.get(chat_id)
        if group is not None and len(group) >= limits.group_per_minute:
            ready = max(ready, group[0] + 60.0)
        # One slot of slack: a send late by less than a slot keeps the schedule.
        ready = max(ready, self._due - 1.0 / limits.overall_per_second)
        sent = self._sent
        while sent and sent[0] + 1.0 <= now:
            sent.popleft()
        # The replies waiting get the next free places of the last second before any alert.
        taken = len(sent) + self._replies_waiting
        if taken >= limits.overall_per_second:
            first = int(taken - limits.overall_per_second)  # the one that must leave first
            if first < len(sent):
                ready = max(ready, sent[first] + 1.0)
            else:  # more replies waiting than a second holds: look again in a slot
                ready = max(ready, now + 1.0 / limits.overall_per_second)
        return max(0.0, ready - now)

    def reply_delay(self, chat_id: int) -> float:
        """Seconds until a reply to ``chat_id`` may go (0: now), ahead of the alerts: its chat's
        interval and its group's minute, against both the slots taken and the calls started,
        and no more than ``overall_per_second`` in the last second; not the alerts' schedule
        (a 429 pause is :meth:`paused_for`)."""
        now = self.clock()
        ready = self._next_chat.get(chat_id, 0.0)
        last = self._chat_started.get(chat_id)
        if last is not None:
            ready = max(ready, last + self.limits.chat_interval)
        for groups in (self._group_sent, self._group_started):
            group = groups.get(chat_id)
            if group is not None and len(group) >= self.limits.group_per_minute:
                ready = max(ready, group[0] + 60.0)
        for moments in (self._sent, self._started):
            while moments and moments[0] + 1.0 <= now:
                moments.popleft()
            if len(moments) >= self.limits.overall_per_second:
                ready = max(ready, moments[0] + 1.0)
        return max(0.0, ready - now)

    def paused_for(self, chat_id: int) -> float:
        """Seconds left of the wait Telegram asked for ``chat_id`` (a 429; 0: none)."""
        until = self._paused.get(chat_id)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._paused[chat_id]
            return 0.0
        return left

    @property
    def replies_waiting(self) -> int:
        """Replies waiting for a slot now."""
        return self._replies_waiting

    def reply_waiting(self, chat_id: int, waiting: bool) -> None:
        """A reply to ``chat_id`` starts (True) or stops (False) waiting for a slot: meanwhile
        no alert takes that chat's next slot, nor the last free place of the second."""
        count = self._replies.get(chat_id, 0) + (1 if waiting else -1)
        if count > 0:
            self._replies[chat_id] = count
        else:
            self._replies.pop(chat_id, None)
        self._replies_waiting = sum(self._replies.values())

    def record(self, chat_id: int) -> None:
        """A message to ``chat_id`` goes out now."""
        now = self.clock()
        self._sent.append(now)
        self._due = max(self._due, now) + 1.0 / self.limits.overall_per_second
        self._next_chat[chat_id] = max(
            self._next_chat.get(chat_id, 0.0), now + self.limits.chat_interval
        )
        if chat_id < 0:
            group = self._group_sent.setdefault(chat_id, deque())
            group.append(now)
            while len(group) > self.limits.group_per_minute:
                group.popleft()
        if len(self._next_chat) > 10_000:
            self._next_chat = {c: t for c, t in self._next_chat.items() if t > now}

    def gate(self, chat_id: int) -> float:
        """Seconds until a call to ``chat_id`` may really start (0: now). The scheduler takes
        a slot with :meth:`record`; between that and the call the alert is claimed in the
        archive, which can take a variable time: checked again here, against the moments
        calls really started, a slow database cannot make sends bunch up."""
        now = self.clock()
        started = self._started
        while started and started[0] + 1.0 <= now:
            started.popleft()
        wait = started[0] + 1.0 - now if len(started) >= self.limits.overall_per_second else 0.0
        last = self._chat_started.get(chat_id)
        if last is not None:
            wait = max(wait, last + self.limits.chat_interval - now)
        group = self._group_started.get(chat_id)
        if group is not None and len(group) >= self.limits.group_per_minute:
            wait = max(wait, group[0] + 60.0 - now)
        return max(0.0, wait)

    def start(self, chat_id: int) -> None:
        """A call to ``chat_id`` starts now (right after :meth:`gate` said 0)."""
        now = self.clock()
        self.started += 1
        self._started.append(now)
        self._chat_started[chat_id] = now
        if chat_id < 0:
            group = self._group_started.setdefault(chat_id, deque())
            group.append(now)
            while len(group) > self.limits.group_per_minute:
                group.popleft()
        if len(self._chat_started) > 10_000:
            cutoff = now - max(self.limits.chat_interval, 60.0)
            self._chat_started = {c: t for c, t in self._chat_started.items() if t > cutoff}

    def pause(self, chat_id: int, seconds: float) -> None:
        """Send nothing to ``chat_id`` for ``seconds`` (after a 429): alerts and replies."""
        self._paused = _until(self._paused, chat_id, self.clock(), seconds)

    def backoff(self, chat_id: int, seconds: float) -> None:
        """Send no alert to ``chat_id`` for ``seconds`` (a short back-off after a 5xx);
        replies are not held by it."""
        self._backoff = _until(self._backoff, chat_id, self.clock(), seconds)


def _until(waits: dict[int, float], chat_id: int, now: float, seconds: float) -> dict[int, float]:
    """``waits`` with ``chat_id`` held until ``now + seconds`` (and the past ones forgotten
    when there are many)."""
    waits[chat_id] = max(waits.get(chat_id, 0.0), now + seconds)
    if len(waits) > 10_000:
        return {c: t for c, t in waits.items() if t > now}
    return waits


def paced(bot: Bot) -> dict[str, Any]:
    """The keyword that marks a call as paced already, for a bot with a rate limiter (PTB's
    ``ExtBot`` refuses ``rate_limit_args`` without one)."""
    if isinstance(bot, ExtBot) and bot.rate_limiter is not None:
        return {"rate_limit_args": PACED}
    return {}


def retry_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class Delivery:
    """Owns the outbox reader and the send scheduler: ``start()``, ``notify()``, ``stop()``.

    The reader queues due alerts per chat. The scheduler, one task, picks the next chat to
    send to whenever the limits allow one more message: among chats with nothing in flight
    whose own limits allow it, the one with the most alerts waiting (then the oldest alert),
    which gets a mixed queue out in close to the least time the limits allow. Each send runs
    as its own task; a chat has at most one in flight, so its alerts keep their order.
    """

    def __init__(
        self,
        archive: Archive,
        bot: Bot,
        render: Callable[[AlertRow], str],
        *,
        buttons: Callable[[AlertRow], InlineKeyboardMarkup | None] | None = None,
        render_summary: Callable[[AlertRow], str] | None = None,
        tz: tzinfo = UTC,
        refusal: Refusal | None = None,
        poll_seconds: float = 1.0,
        limits: Limits | None = None,
        retry: RetryPolicy | None = None,
        wake: asyncio.Event | None = None,
        watcher: Watcher | None = None,
        batch: int = 1000,
        per_chat: int = 25,
        send_timeout: float | None = None,
        clock: Clock = time.monotonic,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.archive = archive
        self.bot = bot
        self.render = render
        self.buttons = buttons
        self.render_summary = render_summary or _plain_summary
        self.tz = tz  # quiet hours are times of day here (the display time zone)
        self.refusal = refusal  # None: every chat may receive alerts (tests of the sender)
        self.poll_seconds = poll_seconds
        self.clock = clock
        # shared with the replies to commands (bot.reply_limiter) when given
        self.limiter = limiter or RateLimiter(limits or Limits(), clock)
        self.retry = retry or RetryPolicy()
        self.wake = wake if wake is not None else asyncio.Event()
        self.watcher = watcher  # wakes it when another process queues alerts
        self.batch = batch
        self.per_chat = per_chat
        self.send_timeout = send_timeout
        self.retry_in_place = 5.0  # seconds: longer back-offs go back to the outbox
        self.marker = outbox.marker_path(archive.path)
        self._queues: dict[int, deque[AlertRow]] = {}
        self._queued: set[int] = set()
        self._busy: set[int] = set()  # chats with a send in flight
        self._sends: set[asyncio.Task[None]] = set()
        self._kick = asyncio.Event()  # the scheduler should look again
        # A read of the outbox that began before an alert was finished here may still show
        # it pending: such reads are ignored for it (alert id -> epoch when it finished).
        self._epoch = 0
        self._finished: dict[int, int] = {}
        self._reading: set[int] = set()  # epochs of the reads in progress
        self._sent_refs: dict[tuple[int, int], int] = {}
        # The archive cannot be written: outcomes waiting to be recorded, in order.
        self._unrecorded: deque[tuple[AlertRow, Outcome]] = deque()
        self.paused_since: datetime | None = None
        self.paused_reason: str | None = None
        self._next_probe = 0.0
        self._settled = False  # alerts a previous run left in flight were settled
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.sent = 0  # counters for logs and tests
        self.retried = 0
        self.failed = 0
        self.dropped = 0
        self.unknown = 0

    # ------------------------------------------------------------------ lifecycle

    def notify(self) -> None:
        """New alerts were committed: look at once instead of at the next poll."""
        self.wake.set()

    def start(self) -> None:
        if not self._tasks:
            self._stop.clear()
            self._tasks = [
                asyncio.create_task(self._read_loop(), name="telewatch-outbox-reader"),
                asyncio.create_task(self._schedule_loop(), name="telewatch-send-scheduler"),
            ]
            if self.watcher is not None:
                self.watcher.start(self.wake)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop reading and scheduling; let sends in flight finish and be recorded (up to
        ``grace`` seconds), cancel the rest. Unsent alerts stay pending for the next start."""
        self._stop.set()
        if self.watcher is not None:
            await self.watcher.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        sends = list(self._sends)
        if sends:
            _, late = await asyncio.wait(sends, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*sends, return_exceptions=True)
        if self._unrecorded:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._record_held(), grace)
        if self._unrecorded:
            self._leave_marker()
            log.warning("delivery stopped with %d outcome(s) not recorded (alerts %s); the next "
                        "start records them from %s", len(self._unrecorded),
                        ", ".join(str(r.id) for r, _ in self._unrecorded), self.marker)  # fmt: skip
        self._queues.clear()
        self._queued.clear()
        self._busy.clear()
        log.info("delivery stopped: %d sent, %d retried, %d failed, %d dropped, %d unknown",
                 self.sent, self.retried, self.failed, self.dropped, self.unknown)  # fmt: skip

    async def _read_loop(self) -> None:
        log.info("delivery started (poll every %.2fs)", self.poll_seconds)
        while not self._stop.is_set():
            self.wake.clear()
            try:
                if not self._settled:
                    await self._settle_in_flight()
                if self._unrecorded:
                    await self._record_held()
            except sqlite3.Error as exc:
                self._write_failed(exc)
            if self._settled:  # nothing is claimed before the last run's sends are settled
                try:
                    await self.dispatch()
                except sqlite3.Error as exc:
                    log.warning("delivery: reading the outbox failed (%s); trying again", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.poll_seconds)

    async def _settle_in_flight(self) -> None:
        """Alerts a previous run left in ``sending``: recorded from its marker, or unknown."""
        marker = outbox.read_marker(self.marker)
        sent = marker.sent if marker is not None else {}
        retry = marker.not_sent if marker is not None else ()
        for alert_id in retry:
            await outbox.mark_retry(self.archive, alert_id, "recorded after a restart",
                                    datetime.now(UTC), count=False)  # fmt: skip
        recorded, unknown = await outbox.settle_in_flight(self.archive, sent)
        if recorded or unknown:
            log.warning("%d alert(s) sent by the previous run recorded; %d left in flight by it "
                        "marked unknown (not resent: Telegram may have delivered them)",
                        recorded, unknown)  # fmt: skip
        self._settled = True
        outbox.clear_marker(self.marker)  # the last run's: its outcomes are written now
        self._write_ok()

    # ------------------------------------------------------------------ reading

    async def dispatch(self) -> int:
        """Queue every due alert not yet queued; returns how many were added."""
        self._epoch += 1
        epoch = self._epoch
        self._reading.add(epoch)
        try:
            now = datetime.now(UTC)
            rows = await outbox.pending(self.archive, self.batch, now, per_chat=self.per_chat)
            hours = await quiet_hours(self.archive)
            stale = {a for a, e in self._finished.items() if e >= epoch}
        finally:
            self._reading.discard(epoch)
            low = min(self._reading, default=self._epoch + 1)
            self._finished = {a: e for a, e in self._finished.items() if e >= low}
        added = 0
        by_chat: dict[int, list[AlertRow]] = {}
        for row in rows:
            if row.id in self._queued or row.id in stale:
                continue
            by_chat.setdefault(row.recipient, []).append(row)
        for chat_id, chat_rows in by_chat.items():
            units = summary_units(chat_rows, hours.get(chat_id), now, self.tz)
            for unit in units or ():  # None: quiet now, the alerts stay pending
                self._queued.update(r.id for r in unit.held or (unit,))
                self._queues.setdefault(chat_id, deque()).append(unit)
                added += 1
        if added:
            log.debug("delivery: %d alert(s) queued", added)
            self._kick.set()
        return added

    def _finish(self, alert_id: int) -> None:
        self._queued.discard(alert_id)
        if self._reading:
            self._finished[alert_id] = self._epoch

    def _drop(self, chat_id: int) -> None:
        """Forget a chat's queue (its alerts stay pending in the outbox)."""
        for row in self._queues.pop(chat_id, ()):
            for r in row.held or (row,):
                self._queued.discard(r.id)

    def _done(self, chat_id: int, row: AlertRow) -> None:
        """The head of a chat's queue is finished here."""
        queue = self._queues.get(chat_id)
        if queue and queue[0].id == row.id:
            queue.popleft()
            if not queue:
                self._queues.pop(chat_id, None)
        for r in row.held or (row,):
            self._finish(r.id)

    # ------------------------------------------------------------------ writes that fail

    @property
    def paused(self) -> bool:
        """Delivery is paused: the archive could not be written."""
        return self.paused_since is not None

    def _write_failed(self, exc: BaseException) -> None:
        """An outbox write failed: pause (once: one ERROR line and the marker), and allow one
        try of the next claim per poll period, which tells when writing works again."""
        self._next_probe = self.clock() + max(self.poll_seconds, 0.05)
        if self.paused_since is None:
            self.paused_since = datetime.now(UTC)
            self.paused_reason = str(exc) or type(exc).__name__
            log.error(
                "delivery paused: the archive %s cannot be written (%s); no alert is sent until "
                "it can: free disk space, or end the process holding its write lock",
                self.archive.path, self.paused_reason,
            )  # fmt: skip
            self._leave_marker()
        else:
            log.debug("delivery still paused (%s)", exc)

    def _write_ok(self) -> None:
        """An outbox write succeeded: resume, once every held outcome is recorded."""
        if self.paused_since is None or self._unrecorded:
            return
        seconds = (datetime.now(UTC) - self.paused_since).total_seconds()
        self.paused_since = self.paused_reason = None
        outbox.clear_marker(self.marker)
        log.warning("delivery resumed: the archive can be written again (paused %.0fs)", seconds)
        self._kick.set()

    def _leave_marker(self) -> None:
        sent = {
            a.id: o.message_id
            for r, o in self._unrecorded
            if o.kind == "sent" and o.message_id
            for a in r.held or (r,)
        }
        not_sent = tuple(
            a.id
            for r, o in self._unrecorded
            if o.kind in ("retry", "flood", "inactive")
            for a in r.held or (r,)
        )
        since = ts(self.paused_since or utcnow()) or ""
        reason = self.paused_reason or "the archive could not be written"
        outbox.write_marker(self.marker, outbox.Marker(since, reason, sent, not_sent))

    async def _record_held(self) -> None:
        """Write the outcomes held while the archive could not be written, in order."""
        while self._unrecorded:
            row, outcome = self._unrecorded[0]
            try:
                await self._record(row, outcome)
            except sqlite3.Error as exc:
                self._write_failed(exc)
                return
            self._unrecorded.popleft()
            log.info("alert %d: outcome %s recorded late", row.id, outcome.kind)
        self._write_ok()

    # ------------------------------------------------------------------ scheduling

    def _pick(self) -> tuple[int | None, float | None]:
        """The chat to send to now, or None and how long until one may be ready."""
        if self.paused_since is not None:
            # Paused: nothing while outcomes wait to be recorded; else one try at a time,
            # once a poll period, to see whether the archive can be written again.
            if self._unrecorded or self._busy or self._stop.is_set():
                return None, self.poll_seconds
            wait = self._next_probe - self.clock()
            if wait > 0:
                return None, wait
        best: tuple[int, int] | None = None
        chosen: int | None = None
        soonest: float | None = None
        for chat_id, queue in self._queues.items():
            if not queue or chat_id in self._busy:
                continue
            wait = self.limiter.delay(chat_id)
            if wait > 0:
                soonest = wait if soonest is None else min(soonest, wait)
                continue
            key = (len(queue), -queue[0].id)
            if best is None or key > best:
                best, chosen = key, chat_id
        return chosen, soonest

    async def _schedule_loop(self) -> None:
        while not self._stop.is_set():
            self._kick.clear()
            chat_id, wait = self._pick()
            if chat_id is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), wait)
                continue
            self.limiter.record(chat_id)  # no await since _pick: nobody else took the moment
            self._busy.add(chat_id)
            if self.paused_since is not None:
                self._next_probe = self.clock() + max(self.poll_seconds, 0.05)
            task = asyncio.create_task(self._send_next(chat_id), name=f"telewatch-send-{chat_id}")
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def idle(self) -> None:
        """Wait until nothing is in flight and nothing queued may go now (tests, benches)."""
        while True:
            if self._sends:
                await asyncio.gather(*list(self._sends), return_exceptions=True)
                continue
            chat_id, _ = self._pick()
            if chat_id is None:
                return
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ one send

    async def _send_next(self, chat_id: int) -> None:
        """Claim the head of a chat's queue, send it, record the outcome, act on it."""
        try:
            queue = self._queues.get(chat_id)
            if not queue:
                return
            row = queue[0]
            if row.held:
                claimed = await self._claim_summary(chat_id, row)
                if claimed is None:
                    return
                row, message = claimed, self._render(claimed)
                verdict: Claim | None = Claim.SEND
                reason = None
            else:
                claiming = asyncio.ensure_future(outbox.claim(self.archive, row, self.refusal))
                message = self._render(row)  # while the claim is written (on the hot path)
                try:
                    verdict, reason = await claiming
                except sqlite3.Error as exc:  # nothing was sent: the alert stays pending
                    self._write_failed(exc)
                    return
                self._write_ok()
            if verdict is not Claim.SEND:
                if verdict is Claim.DROPPED:
                    self.dropped += 1
                    log.info("alert %d to chat %d dropped: %s", row.id, row.recipient, reason)
                self._done(chat_id, row)
                return
            for _ in itertools.count():  # a few rounds at most: each waits what the gate says
                wait = self.limiter.gate(chat_id)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            self.limiter.start(chat_id)  # no await since the gate said 0
            outcome = await self._deliver(row, message)
            try:
                await self._record(row, outcome)
            except sqlite3.Error as exc:
                # Sent or not, it is ``sending`` in the archive: no reader takes it for
                # pending, so nothing is sent twice. The outcome waits here to be written.
                self._unrecorded.append((row, outcome))
                self._write_failed(exc)
                self._leave_marker()
                self._done(chat_id, row)
                if outcome.kind == "inactive":
                    self._drop(chat_id)
                return
            self._write_ok()
            self._act(chat_id, row, outcome)
        except Exception:  # a bug: log it; the alert is left to a later poll (or start)
            log.exception("delivery to chat %d failed unexpectedly", chat_id)
            self._drop(chat_id)
        finally:
            self._busy.discard(chat_id)
            self._kick.set()

    async def _claim_summary(self, chat_id: int, row: AlertRow) -> AlertRow | None:
        """Claim the alerts of a summary together; the summary of those to send, or None
        (nothing to send: the unit is finished, or the archive could not be written)."""
        try:
            send, dropped = await outbox.claim_held(self.archive, row.held, self.refusal)
        except sqlite3.Error as exc:  # the transaction rolled back: all stay pending
            self._write_failed(exc)
            return None
        self._write_ok()
        for alert, reason in dropped:
            self.dropped += 1
            log.info("alert %d to chat %d dropped: %s", alert.id, alert.recipient, reason)
        if not send:
            self._done(chat_id, row)
            return None
        sending = {a.id for a in send}
        for alert in row.held:  # dropped, or no longer pending: finished here
            if alert.id not in sending:
                self._finish(alert.id)
        unit = replace(send[0], kind="summary", held=tuple(send),
                       attempts=max(a.attempts for a in send))  # fmt: skip
        queue = self._queues.get(chat_id)
        if queue and queue[0].id == row.id:
            queue.popleft()
            queue.appendleft(unit)  # _done and _act find it at the head
        return unit

    def _act(self, chat_id: int, row: AlertRow, outcome: Outcome) -> None:
        """What a recorded outcome means for the chat's queue."""
        if outcome.kind == "flood":
            self.limiter.pause(chat_id, outcome.delay)  # stays at the head of the queue
        elif outcome.kind == "inactive":
            self._drop(chat_id)
        elif outcome.kind == "retry" and outcome.delay <= self.retry_in_place:
            # a short back-off, waited out in place: the chat's order is kept
            queue = self._queues.get(chat_id)
            if queue and queue[0].id == row.id:
                queue[0] = replace(row, attempts=row.attempts + 1)
            self.limiter.backoff(chat_id, outcome.delay)
        else:  # sent, failed, unknown, or a long back-off (a later poll takes it again)
            self._done(chat_id, row)

    def _render(self, row: AlertRow) -> tuple[str, InlineKeyboardMarkup | None] | Exception:
        try:
            text = self.render_summary(row) if row.held else self.render(row)
            return text, self.buttons(row) if self.buttons is not None else None
        except Exception as exc:  # a bug in rendering: _deliver counts it as a failed try
            log.exception("alert %d: could not be rendered", row.id)
            return exc

    async def _deliver(
        self, row: AlertRow, message: tuple[str, InlineKeyboardMarkup | None] | Exception
    ) -> Outcome:
        """The sendMessage call, and what came of it (nothing is written here)."""
        reply_to = None
        if not row.held:  # a summary is a message of its own
            reply_to = row.reply_to or self._sent_refs.get((row.post_id, row.recipient))
        if isinstance(message, Exception):  # nothing was sent
            return self._failure(row, f"{type(message).__name__}: {message}")
        text, markup = message
        try:
            try:
                message_id = await self._send(text, markup, row.recipient, reply_to)
            except ChatMigrated as exc:
                log.warning("chat %d became %d: update the config; alert %d goes to the new id",
                            row.recipient, exc.new_chat_id, row.id)  # fmt: skip
                message_id = await self._send(text, markup, int(exc.new_chat_id), None)
        except RetryAfter as exc:
            seconds = retry_seconds(exc)
            log.warning("alert %d: flood control, chat %d paused %.0fs", row.id,
                        row.recipient, seconds)  # fmt: skip
            self.retried += 1
            return Outcome("flood", error=str(exc), delay=seconds)
        except Forbidden as exc:
            log.warning("chat %d blocked the bot or removed it: its alerts are held", row.recipient)
            return Outcome("inactive", error=str(exc))
        except TelegramError as exc:
            error = f"{type(exc).__name__}: {exc}"
            if not_accepted(exc):
                return self._failure(row, error)
            return self._uncertain(row, error)
        except Exception as exc:  # anything else mid-call: it may have gone out
            log.exception("alert %d: unexpected error while sending", row.id)
            return self._uncertain(row, f"{type(exc).__name__}: {exc}")
        return Outcome("sent", message_id=message_id)

    async def _send(
        self, text: str, markup: InlineKeyboardMarkup | None, chat_id: int, reply_to: int | None
    ) -> int:
        timeouts: dict[str, float] = {}
        if self.send_timeout is not None:
            timeouts = dict.fromkeys(
                ("read_timeout", "write_timeout", "connect_timeout"), self.send_timeout
            )
        message = await self.bot.send_message(
            chat_id,
            text,
            parse_mode=ParseMode.HTML,
            link_preview_options=LinkPreviewOptions(is_disabled=True),
            reply_parameters=(
                ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
            ),
            reply_markup=markup,
            **timeouts,  # type: ignore[arg-type]
            **paced(self.bot),  # its slot is taken: the bot's rate limiter lets it through
        )
        return message.message_id

    def _failure(self, row: AlertRow, error: str) -> Outcome:
        """Telegram did not take it: failed for good after ``max_attempts``, else a retry
        after the back-off."""
        attempts = row.attempts + 1
        if attempts >= self.retry.max_attempts:
            return Outcome("failed", error=error)
        self.retried += 1
        delay = self.retry.delay(attempts)
        log.warning("alert %d: attempt %d failed (%s); next in %.0fs", row.id, attempts, error,
                    delay)  # fmt: skip
        return Outcome("retry", error=error, delay=delay)

    def _uncertain(self, row: AlertRow, error: str) -> Outcome:
        log.warning("alert %d: no answer from Telegram (%s); it may have been delivered, so it "
                    "is not resent (status unknown)", row.id, error)  # fmt: skip
        return Outcome("unknown", error=f"{error}; Telegram may have delivered it: not resent")

    async def _record(self, row: AlertRow, outcome: Outcome) -> None:
        """Write an outcome (raises sqlite3.Error when the archive cannot be written)."""
        now = datetime.now(UTC)
        kind = outcome.kind
        if row.held:
            await self._record_summary(row, outcome, now)
            return
        if kind == "sent":
            await outbox.mark_sent(self.archive, row.id, outcome.message_id)
            self.sent += 1
            self._sent_refs.setdefault((row.post_id, row.recipient), outcome.message_id)
            if len(self._sent_refs) > 10_000:
                self._sent_refs.clear()
            log.info("alert %d sent to chat %d (message %d)", row.id, row.recipient,
                     outcome.message_id)  # fmt: skip
        elif kind == "flood":
            due = now + timedelta(seconds=outcome.delay)
            await outbox.mark_retry(self.archive, row.id, outcome.error, due, count=False)
        elif kind == "inactive":
            await outbox.set_recipient_active(self.archive, row.recipient, False, outcome.error)
            await outbox.mark_retry(self.archive, row.id, f"recipient inactive: {outcome.error}",
                                    now, count=False)  # fmt: skip
        elif kind == "retry":
            await outbox.mark_retry(self.archive, row.id, outcome.error,
                                    now + timedelta(seconds=outcome.delay))  # fmt: skip
        elif kind == "failed":
            await outbox.mark_failed(self.archive, row.id, outcome.error)
            self.failed += 1
            log.error("alert %d failed after %d attempts: %s", row.id, row.attempts + 1,
                      outcome.error)  # fmt: skip
        else:
            await outbox.mark_unknown(self.archive, row.id, outcome.error)
            self.unknown += 1

    async def _record_summary(self, row: AlertRow, outcome: Outcome, now: datetime) -> None:
        """A summary's outcome, written for all its alerts in one transaction."""
        ids = [a.id for a in row.held]
        kind = outcome.kind
        if kind == "sent":
            await outbox.record_many(self.archive, ids, "sent", message_id=outcome.message_id)
            self.sent += len(ids)
            log.info("summary of %d held alert(s) sent to chat %d (message %d)", len(ids),
                     row.recipient, outcome.message_id)  # fmt: skip
        elif kind in ("flood", "inactive", "retry"):
            if kind == "inactive":
                await outbox.set_recipient_active(self.archive, row.recipient, False,
                                                  outcome.error)  # fmt: skip
            due = now + timedelta(seconds=outcome.delay)
            await outbox.record_many(self.archive, ids, "pending", error=outcome.error, due=due,
                                     count=kind == "retry")  # fmt: skip
        else:
            await outbox.record_many(self.archive, ids, kind, error=outcome.error)
            if kind == "failed":
                self.failed += len(ids)
            else:
                self.unknown += len(ids)


def _plain_summary(row: AlertRow) -> str:
    """A summary without the bot's formatting (tests of the sender)."""
    return f"{len(row.held)} alert(s) held during quiet hours: " + " ".join(
        a.link for a in row.held
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one sendMessage call came to. ``kind``: sent | flood (429) | inactive (403) |
    retry | failed | unknown (no answer: it may have been delivered)."""

    kind: str
    message_id: int = 0
    error: str = ""
    delay: float = 0.0


# httpx errors raised before a byte of the request left: Telegram cannot have accepted it.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def not_accepted(exc: TelegramError) -> bool:
    """Whether Telegram certainly did not accept the call that raised ``exc``.

    PTB raises :class:`TimedOut` from ``httpx.TimeoutException`` and :class:`NetworkError`
    from any other ``httpx.HTTPError`` (both with the httpx error as ``__cause__``), and a
    :class:`NetworkError` without an httpx cause for an error status the server answered
    (``telegram/request/_httpxrequest.py`` and ``_baserequest.py``, PTB 22.8). An answer
    with an error status, or a connection never made, means not sent; a time-out waiting
    for the answer, or a connection lost mid-call, means it may have been.
    """
    cause = exc.__cause__
    if isinstance(exc, TimedOut | NetworkError):
        if isinstance(cause, httpx.HTTPError):
            return isinstance(cause, _NOT_SENT)
        if isinstance(exc, TimedOut):
            return False
        return cause is None or isinstance(cause, TelegramError)  # an answer with an error
    return True  # BadRequest, Conflict, InvalidToken ...: Telegram answered with an error
