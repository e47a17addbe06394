"""Admin commands: /status, /allow ID, /deny ID."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from archiver.store import outbox
from archiver.store.access import valid_user_id
from archiver.store.following import channel_statuses
from archiver.store.search import channel_stats
from bot.access import Role
from bot.handlers.common import arg_text, reply, role_of, usage
from bot.messages import Status, status_blocks
from bot.services import services

log = logging.getLogger(__name__)


async def _admin(update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
    if await role_of(update, context) is Role.ADMIN:
        return True
    await reply(update, ["Only admins can do that."])
    return False


async def status_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if not await _admin(update, context):
        return
    svc = services(context)
    delivery = svc.delivery
    st = Status(
        stats=await channel_stats(svc.archive),
        counts=await outbox.counts(svc.archive),
        now=datetime.now(UTC),
        inactive=await outbox.inactive_recipients(svc.archive),
        paused_since=delivery.paused_since if delivery is not None else None,
        paused_reason=delivery.paused_reason if delivery is not None else None,
        problems=await channel_statuses(svc.archive, problems_only=True),
    )
    await reply(update, status_blocks(st, svc.settings.display.timezone))


def _user_id(update: Update) -> int | None:
    """The one user id after the command, or None (not a number, or not a possible id)."""
    text = arg_text(update)
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        return None
    value = int(text)
    return value if valid_user_id(value) else None


async def allow_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if not await _admin(update, context):
        return
    user_id, admin = _user_id(update), update.effective_user
    if user_id is None or admin is None:
        await reply(update, [usage("allow") + " (strangers see their id when they write)"])
        return
    change = await services(context).access.allow(user_id, admin.id)
    log.info("admin %d allowed user %d (%d rule(s) resumed)", admin.id, user_id,
             change.rules_resumed)  # fmt: skip
    told = await _tell(context, user_id)
    text = f"User <code>{user_id}</code> may now use the bot."
    if change.rules_resumed:
        text += f" {change.rules_resumed} of their rule(s) are active again."
    text += " They were told." if told else " They will see it when they write to the bot."
    await reply(update, [text])


async def _tell(context: ContextTypes.DEFAULT_TYPE, user_id: int) -> bool:
    """Tell a newly allowed user (possible only once they have written to the bot)."""
    try:
        await context.bot.send_message(
            user_id,
            "An admin has let you in: you may now use this bot. Start with /help, or send "
            "any words to search the archive.",
        )
    except TelegramError as exc:
        log.info("could not tell user %d they were allowed (%s)", user_id, type(exc).__name__)
        return False
    return True


async def deny_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if not await _admin(update, context):
        return
    user_id, admin = _user_id(update), update.effective_user
    if user_id is None or admin is None:
        await reply(update, [usage("deny")])
        return
    change = await services(context).access.deny(user_id, admin.id)
    if change is None:
        await reply(
            update,
            [f"User <code>{user_id}</code> is an admin in the config: remove them there."],
        )
        return
    log.info("admin %d denied user %d: %d rule(s) paused, %d alert(s) dropped", admin.id,
             user_id, change.rules_paused, change.alerts_dropped)  # fmt: skip
    text = f"User <code>{user_id}</code> can no longer use the bot nor receive alerts."
    if change.rules_paused or change.alerts_dropped:
        text += (
            f" {change.rules_paused} of their rule(s) paused (<code>/allow {user_id}</code>"
            f" resumes them), {change.alerts_dropped} waiting alert(s) dropped."
        )
    await reply(update, [text])
