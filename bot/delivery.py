"""The outbox sender: every pending alert reaches its chat exactly once, within Telegram's limits.

How it works:

- A dispatcher reads due alerts from the outbox (:mod:`archiver.store.outbox`) every
  ``poll_seconds`` (an archiver in another process is seen within that time) and at once when
  :meth:`Delivery.notify` is called (the archiver in the same process calls it after ingest).
- Each chat has one worker that sends its alerts in order. Before each send the worker takes a
  slot from :class:`RateLimiter`: about 30 messages/s overall, 1/s per chat, 20/min per group.
- Exactly once: the alert is marked sent, with the Telegram message id, right after the send
  returned, and a stop never interrupts the step between the two. A sent alert is never
  pending again, so a restart sends what is pending and nothing twice. (A send that *times
  out* may still have reached Telegram, which offers no idempotency key: it is retried, so
  that one case is at least once.)
- 429 pauses the chat for ``retry_after`` and retries the same alert; network errors, time-outs
  and 5xx back off exponentially; 403 (the user blocked the bot, or it was removed from the
  group) sets the recipient inactive: its alerts stay pending, held, until the chat talks to
  the bot again. After ``max_attempts`` counted failures an alert is ``failed``; it stays in
  the outbox, shows in ``/status`` and can be requeued.

Why not PTB's ``AIORateLimiter``: it needs the extra ``aiolimiter`` dependency, throttles every
call of the bot (also the replies to commands, which then wait behind a queue of alerts), has
no per-chat 1/s limit for private chats, and retries a 429 inside the call, invisibly to the
outbox. A 60-line limiter here knows the chat of each alert and records every outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from telegram import Bot, LinkPreviewOptions, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import (
    ChatMigrated,
    Forbidden,
    RetryAfter,
    TelegramError,
)
from telegram.warnings import PTBDeprecationWarning

from archiver.store import outbox
from archiver.store.archive import Archive
from archiver.store.outbox import AlertRow

log = logging.getLogger(__name__)

Clock = Callable[[], float]


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
        self._group_sent: dict[int, deque[float]] = {}

    def delay(self, chat_id: int) -> float:
        """Seconds until a message to ``chat_id`` is allowed (0: now)."""
        now = self.clock()
        ready = self._next_chat.get(chat_id, 0.0)
        group = self._group_sent.get(chat_id)
        if group is not None and len(group) >= self.limits.group_per_minute:
            ready = max(ready, group[0] + 60.0)
        # One slot of slack: a send late by less than a slot keeps the schedule.
        ready = max(ready, self._due - 1.0 / self.limits.overall_per_second)
        sent = self._sent
        while sent and sent[0] <= now - 1.0:
            sent.popleft()
        if len(sent) >= self.limits.overall_per_second:
            ready = max(ready, sent[0] + 1.0)
        return max(0.0, ready - now)

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

    def pause(self, chat_id: int, seconds: float) -> None:
        """Send nothing to ``chat_id`` for ``seconds`` (after a 429)."""
        until = self.clock() + seconds
        self._next_chat[chat_id] = max(self._next_chat.get(chat_id, 0.0), until)


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
        poll_seconds: float = 1.0,
        limits: Limits | None = None,
        retry: RetryPolicy | None = None,
        wake: asyncio.Event | None = None,
        batch: int = 1000,
        per_chat: int = 25,
        send_timeout: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.archive = archive
        self.bot = bot
        self.render = render
        self.poll_seconds = poll_seconds
        self.limiter = RateLimiter(limits or Limits(), clock)
        self.retry = retry or RetryPolicy()
        self.wake = wake if wake is not None else asyncio.Event()
        self.batch = batch
        self.per_chat = per_chat
        self.send_timeout = send_timeout
        self.retry_in_place = 5.0  # seconds: longer back-offs go back to the outbox
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
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.sent = 0  # counters for logs and tests
        self.retried = 0
        self.failed = 0

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

    async def stop(self, grace: float = 5.0) -> None:
        """Stop reading and scheduling; let sends in flight finish and be recorded (up to
        ``grace`` seconds), cancel the rest. Unsent alerts stay pending for the next start."""
        self._stop.set()
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
        self._queues.clear()
        self._queued.clear()
        self._busy.clear()
        log.info("delivery stopped: %d sent, %d retried, %d failed", self.sent, self.retried,
                 self.failed)  # fmt: skip

    async def _read_loop(self) -> None:
        log.info("delivery started (poll every %.2fs)", self.poll_seconds)
        while not self._stop.is_set():
            self.wake.clear()
            try:
                await self.dispatch()
            except sqlite3.Error:
                log.exception("delivery: reading the outbox failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.poll_seconds)

    # ------------------------------------------------------------------ reading

    async def dispatch(self) -> int:
        """Queue every due alert not yet queued; returns how many were added."""
        self._epoch += 1
        epoch = self._epoch
        self._reading.add(epoch)
        try:
            rows = await outbox.pending(
                self.archive, self.batch, datetime.now(UTC), per_chat=self.per_chat
            )
            stale = {a for a, e in self._finished.items() if e >= epoch}
        finally:
            self._reading.discard(epoch)
            low = min(self._reading, default=self._epoch + 1)
            self._finished = {a: e for a, e in self._finished.items() if e >= low}
        added = 0
        for row in rows:
            if row.id in self._queued or row.id in stale:
                continue
            self._queued.add(row.id)
            self._queues.setdefault(row.recipient, deque()).append(row)
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
            self._queued.discard(row.id)

    # ------------------------------------------------------------------ scheduling

    def _pick(self) -> tuple[int | None, float | None]:
        """The chat to send to now, or None and how long until one may be ready."""
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

    async def _send_next(self, chat_id: int) -> None:
        """Send the head of a chat's queue and act on the outcome."""
        queue = self._queues.get(chat_id)
        try:
            if not queue:
                return
            row = queue[0]
            try:
                result = await self._attempt(row)
            except RetryAfter as exc:
                seconds = retry_seconds(exc)
                log.warning("alert %d: flood control, chat %d paused %.0fs", row.id,
                            row.recipient, seconds)  # fmt: skip
                self.limiter.pause(chat_id, seconds)
                self.retried += 1
                await outbox.mark_retry(
                    self.archive, row.id, str(exc),
                    datetime.now(UTC) + timedelta(seconds=seconds), count=False,
                )  # fmt: skip
                return  # stays at the head of the queue; goes when the pause is over
            if result is True:
                queue.popleft()
                self._finish(row.id)
                if not queue:
                    self._queues.pop(chat_id, None)
            elif result is False:
                self._drop(chat_id)
            else:  # a short back-off, waited out in place: the chat's order is kept
                queue[0] = replace(row, attempts=row.attempts + 1)
                self.limiter.pause(chat_id, float(result))
        except Exception:  # recording an outcome failed: a later poll redoes it
            log.exception("delivery to chat %d failed unexpectedly", chat_id)
            self._drop(chat_id)
        finally:
            self._busy.discard(chat_id)
            self._kick.set()

    async def _attempt(self, row: AlertRow) -> bool | float:
        """Send and record. True: done (sent, failed, or left for a later poll); False: the
        chat is unreachable; a number: try again in place after that many seconds."""
        reply_to = row.reply_to or self._sent_refs.get((row.post_id, row.recipient))
        try:
            try:
                message_id = await self._send(row, row.recipient, reply_to)
            except ChatMigrated as exc:
                log.warning("chat %d became %d: update the config; alert %d goes to the new id",
                            row.recipient, exc.new_chat_id, row.id)  # fmt: skip
                message_id = await self._send(row, int(exc.new_chat_id), None)
        except RetryAfter:
            raise
        except Forbidden as exc:
            await outbox.set_recipient_active(self.archive, row.recipient, False, str(exc))
            await outbox.mark_retry(
                self.archive, row.id, f"recipient inactive: {exc}", datetime.now(UTC),
                count=False,
            )  # fmt: skip
            log.warning("chat %d blocked the bot or removed it: its alerts are held", row.recipient)
            return False
        except TelegramError as exc:  # network errors, time-outs, 5xx, bad requests
            return await self._failed_try(row, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug (say, in rendering): count it, so it ends as failed
            log.exception("alert %d: unexpected error while sending", row.id)
            return await self._failed_try(row, f"{type(exc).__name__}: {exc}")
        await outbox.mark_sent(self.archive, row.id, message_id)
        self.sent += 1
        self._sent_refs.setdefault((row.post_id, row.recipient), message_id)
        if len(self._sent_refs) > 10_000:
            self._sent_refs.clear()
        log.info("alert %d sent to chat %d (message %d)", row.id, row.recipient, message_id)
        return True

    async def _send(self, row: AlertRow, chat_id: int, reply_to: int | None) -> int:
        text = self.render(row)
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
            **timeouts,  # type: ignore[arg-type]
        )
        return message.message_id

    async def _failed_try(self, row: AlertRow, error: str) -> bool | float:
        """Record a failed try: failed for good after ``max_attempts``, else due again after
        the back-off. A short back-off is waited out in place (the chat's later alerts keep
        their order behind it); a long one leaves the alert to a later poll."""
        attempts = row.attempts + 1
        if attempts >= self.retry.max_attempts:
            await outbox.mark_failed(self.archive, row.id, error)
            self.failed += 1
            log.error("alert %d failed after %d attempts: %s", row.id, attempts, error)
            return True
        delay = self.retry.delay(attempts)
        await outbox.mark_retry(
            self.archive, row.id, error, datetime.now(UTC) + timedelta(seconds=delay)
        )
        self.retried += 1
        log.warning("alert %d: attempt %d failed (%s); next in %.0fs", row.id, attempts, error,
                    delay)  # fmt: skip
        return delay if delay <= self.retry_in_place else True
