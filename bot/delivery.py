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
from collections.abc import Awaitable, Callable
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
    """Slots for sending: one worker per chat asks for a slot before each message."""

    def __init__(self, limits: Limits, clock: Clock = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._next_global = 0.0
        self._next_chat: dict[int, float] = {}
        self._group_sent: dict[int, deque[float]] = {}

    def chat_delay(self, chat_id: int) -> float:
        """Seconds until ``chat_id`` may get its next message (0 if it may now)."""
        now = self.clock()
        ready = self._next_chat.get(chat_id, 0.0)
        sent = self._group_sent.get(chat_id)
        if chat_id < 0 and sent is not None and len(sent) >= self.limits.group_per_minute:
            ready = max(ready, sent[0] + 60.0)
        return max(0.0, ready - now)

    def take_global(self) -> float:
        """Reserve the next overall slot; seconds to wait for it."""
        now = self.clock()
        slot = max(now, self._next_global)
        self._next_global = slot + 1.0 / self.limits.overall_per_second
        return slot - now

    def record(self, chat_id: int) -> None:
        now = self.clock()
        self._next_chat[chat_id] = max(
            self._next_chat.get(chat_id, 0.0), now + self.limits.chat_interval
        )
        if chat_id < 0:
            sent = self._group_sent.setdefault(chat_id, deque())
            sent.append(now)
            while len(sent) > self.limits.group_per_minute:
                sent.popleft()
        if len(self._next_chat) > 10_000:
            self._next_chat = {c: t for c, t in self._next_chat.items() if t > now}

    def pause(self, chat_id: int, seconds: float) -> None:
        """Send nothing to ``chat_id`` for ``seconds`` (after a 429)."""
        until = self.clock() + seconds
        self._next_chat[chat_id] = max(self._next_chat.get(chat_id, 0.0), until)

    async def acquire(self, chat_id: int, sleep: Callable[[float], Awaitable[None]]) -> None:
        while (wait := self.chat_delay(chat_id)) > 0:
            await sleep(wait)
        wait = self.take_global()
        if wait > 0:
            await sleep(wait)
        self.record(chat_id)


def retry_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class _Stopping(Exception):
    pass


class Delivery:
    """Owns the dispatcher task and the per-chat workers. ``start()``, ``notify()``, ``stop()``."""

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
        batch: int = 500,
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
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._queued: set[int] = set()
        # A read of the outbox that began before an alert was finished here may still show
        # it pending: such reads are ignored for it (alert id -> epoch when it finished).
        self._epoch = 0
        self._finished: dict[int, int] = {}
        self._reading: set[int] = set()  # epochs of the reads in progress
        self._sending: set[asyncio.Task[None]] = set()
        self._sent_refs: dict[tuple[int, int], int] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0  # counters for logs and tests
        self.retried = 0
        self.failed = 0

    # ------------------------------------------------------------------ lifecycle

    def notify(self) -> None:
        """New alerts were committed: look at once instead of at the next poll."""
        self.wake.set()

    def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name="telewatch-delivery")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop dispatching; let sends in flight finish and be recorded (up to ``grace``
        seconds), cancel the rest. Unsent alerts stay pending for the next start."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        workers = list(self._workers.values())
        for task in workers:
            if task not in self._sending:
                task.cancel()
        if workers:
            _, late = await asyncio.wait(workers, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        self._workers.clear()
        self._queues.clear()
        self._queued.clear()
        log.info("delivery stopped: %d sent, %d retried, %d failed", self.sent, self.retried,
                 self.failed)  # fmt: skip

    async def _run(self) -> None:
        log.info("delivery started (poll every %.2fs)", self.poll_seconds)
        while not self._stop.is_set():
            self.wake.clear()
            try:
                await self.dispatch()
            except sqlite3.Error:
                log.exception("delivery: reading the outbox failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.poll_seconds)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but raise :class:`_Stopping` as soon as a stop begins."""
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return
        raise _Stopping

    # ------------------------------------------------------------------ dispatch

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
            if row.recipient not in self._workers:
                self._workers[row.recipient] = asyncio.create_task(
                    self._worker(row.recipient), name=f"telewatch-delivery-{row.recipient}"
                )
        if added:
            log.debug("delivery: %d alert(s) queued", added)
        return added

    async def idle(self) -> None:
        """Wait until no worker is running (for tests and benchmarks)."""
        while self._workers:
            await asyncio.gather(*list(self._workers.values()), return_exceptions=True)

    async def _worker(self, chat_id: int) -> None:
        queue = self._queues[chat_id]
        me = asyncio.current_task()
        try:
            while queue and not self._stop.is_set():
                row = queue[0]
                try:
                    keep_going = await self._deliver(row, me)
                except _Stopping:
                    return
                queue.popleft()
                self._finish(row.id)
                if not keep_going:
                    for held in queue:
                        self._queued.discard(held.id)
                    queue.clear()
        finally:
            for row in queue:
                self._queued.discard(row.id)
            self._queues.pop(chat_id, None)
            self._workers.pop(chat_id, None)

    def _finish(self, alert_id: int) -> None:
        self._queued.discard(alert_id)
        if self._reading:
            self._finished[alert_id] = self._epoch

    async def _deliver(self, row: AlertRow, me: asyncio.Task[None] | None) -> bool:
        """Send one alert and record the outcome. False: stop sending to this chat."""
        while True:
            await self.limiter.acquire(row.recipient, self._sleep)
            if self._stop.is_set():
                raise _Stopping
            if me is not None:
                self._sending.add(me)
            try:
                result = await self._attempt(row)
            except RetryAfter as exc:
                seconds = retry_seconds(exc)
                log.warning("alert %d: flood control, chat %d paused %.0fs", row.id,
                            row.recipient, seconds)  # fmt: skip
                self.limiter.pause(row.recipient, seconds)
                await outbox.mark_retry(
                    self.archive, row.id, str(exc),
                    datetime.now(UTC) + timedelta(seconds=seconds), count=False,
                )  # fmt: skip
                self.retried += 1
                continue
            finally:
                if me is not None:
                    self._sending.discard(me)
            if isinstance(result, bool):
                return result
            row = replace(row, attempts=row.attempts + 1)
            await self._sleep(result)  # a short back-off: retry here, keeping the chat's order

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
