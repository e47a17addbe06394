"""Replies to commands within Telegram's limits, ahead of the alerts, and sent again after a
short flood wait.

PTB hands every Bot API call of the handlers (replies, /search results, exports, button
edits) to the Application's rate limiter (``ApplicationBuilder().rate_limiter``):
``ExtBot._do_post`` calls :meth:`ReplyLimiter.process_request` with the endpoint, the
parameters and the ``rate_limit_args`` of the call (``getUpdates`` never comes here; PTB 22.8,
``telegram/ext/_extbot.py``). :class:`ReplyLimiter` shares delivery's
:class:`bot.delivery.RateLimiter`, so alerts, digests and replies together keep to one
budget: 1 message a second per chat, 20 a minute per group, about 30 a second overall.

- A message call to a chat (``send*``, ``edit*``, ``copy*``, ``forward*`` with a
  ``chat_id``) waits for the next slot its chat and the overall budget allow, ahead of any
  alert: while it waits no alert takes that chat's next slot nor the last free place of the
  second, and it does not wait for the alerts' schedule (:meth:`RateLimiter.reply_delay`).
  So a reply never queues behind a backlog of alerts; it waits at most about a second.
  That wait is bounded by ``max_wait`` (3 s): a group whose minute budget the alerts used up
  would hold a reply for up to a minute; past ``max_wait`` it goes anyway (Telegram
  tolerates short bursts) and counts against the budget like any message.
- Other calls (``answerCallbackQuery``, ``setMyCommands``, ``getMe``...) are not messages to
  a chat: they go at once. Calls marked :data:`bot.delivery.PACED` (alerts and digests, which
  took their slot already) go straight through.
- A 429 (``RetryAfter``) pauses the chat for everything, alerts too. A reply refused with a
  ``retry_after`` up to ``retry_ceiling`` (30 s) is sent again once, after the wait (again
  ahead of the alerts); a longer one, or a second refusal, reaches the Application's error
  handler (:func:`bot.handlers.common.on_error`), which logs one WARNING with the chat id
  and drops the reply. A reply to a chat already paused longer than ``retry_ceiling`` is
  refused here the same way, without a call Telegram would refuse.
- At a stop (:meth:`close`) nothing waits any longer: a reply waiting for its slot goes, one
  waiting out a flood wait is dropped (the WARNING line), so the bot stops within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter
from telegram.warnings import PTBDeprecationWarning

from bot.delivery import PACED, RateLimiter, retry_seconds

log = logging.getLogger(__name__)

Result = bool | dict[str, Any] | list[dict[str, Any]]
MAX_WAIT = 3.0  # seconds a reply waits for its slot at most
RETRY_CEILING = 30.0  # a reply refused with a longer retry_after is dropped, not resent
_MESSAGE_CALLS = ("send", "edit", "copy", "forward")  # sendChatAction aside


def limited(endpoint: str, data: dict[str, Any]) -> int | None:
    """The chat a call sends or edits a message in (it counts against the limits), or None."""
    chat = data.get("chat_id")
    if chat is None or endpoint == "sendChatAction" or not endpoint.startswith(_MESSAGE_CALLS):
        return None
    try:
        return int(chat)
    except (TypeError, ValueError):  # an @channelusername: no limit of ours applies
        return None


class ReplyLimiter(BaseRateLimiter[str]):
    """The Application's rate limiter: replies share ``limiter`` with the alerts."""

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        max_wait: float = MAX_WAIT,
        retry_ceiling: float = RETRY_CEILING,
    ) -> None:
        self.limiter = limiter
        self.max_wait = max_wait
        self.retry_ceiling = retry_ceiling
        self.resent = 0  # replies sent again after a flood wait (tests, logs)
        self._closing = asyncio.Event()

    async def initialize(self) -> None:
        self._closing.clear()

    async def shutdown(self) -> None:
        self.close()

    def close(self) -> None:
        """A stop began: no reply waits any longer (see the module docstring)."""
        self._closing.set()

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Result]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: str | None,
    ) -> Result:
        chat = None if rate_limit_args == PACED else limited(endpoint, data)
        if chat is None:
            return await callback(*args, **kwargs)
        await self._slot(chat)
        try:
            return await callback(*args, **kwargs)
        except RetryAfter as exc:
            seconds = self._refused(chat, exc)
            if seconds > self.retry_ceiling or self._closing.is_set():
                raise  # on_error logs it: one WARNING with the chat id
            log.info("flood control: a reply to chat %d is sent again in %.0fs", chat, seconds)
        await self._slot(chat)
        self.resent += 1
        try:
            return await callback(*args, **kwargs)
        except RetryAfter as exc:  # refused again: to on_error, like a long wait
            self._refused(chat, exc)
            raise

    def _refused(self, chat: int, exc: RetryAfter) -> float:
        """Telegram said wait: the chat is paused for everything, alerts too."""
        seconds = retry_seconds(exc)
        self.limiter.pause(chat, seconds)
        return seconds

    async def _slot(self, chat: int) -> None:
        """Wait until a message to ``chat`` may go (ahead of the alerts), and take the slot."""
        lim = self.limiter
        lim.reply_waiting(chat, True)
        try:
            deadline: float | None = None
            while True:
                paused = lim.paused_for(chat)
                if paused > 0:
                    if paused > self.retry_ceiling or self._closing.is_set():
                        raise _refusal(paused)
                    await self._sleep(paused)
                    continue
                wait = lim.reply_delay(chat)
                if wait <= 0 or self._closing.is_set():
                    break
                now = lim.clock()
                if deadline is None:
                    deadline = now + self.max_wait
                if now >= deadline:
                    log.debug("a reply to chat %d goes after %.1fs (limits still full)", chat,
                              self.max_wait)  # fmt: skip
                    break
                await self._sleep(min(wait, deadline - now))
            lim.record(chat)
            lim.start(chat)
        finally:
            lim.reply_waiting(chat, False)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)


def _refusal(seconds: float) -> RetryAfter:
    """The RetryAfter Telegram would answer a call to a chat paused for ``seconds`` more."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        return RetryAfter(timedelta(seconds=round(seconds)))
