"""Admin commands: /status, /allow ID, /deny ID."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from telegram import Update
from telegram.ext import ContextTypes

from archiver.store import outbox
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
    st = Status(
        stats=await channel_stats(svc.archive),
        counts=await outbox.counts(svc.archive),
        now=datetime.now(UTC),
        inactive=await outbox.inactive_recipients(svc.archive),
    )
    await reply(update, status_blocks(st, svc.settings.display.timezone))


def _user_id(update: Update) -> int | None:
    text = arg_text(update)
    try:
        return int(text)
    except ValueError:
        return None


async def allow_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if not await _admin(update, context):
        return
    user_id, admin = _user_id(update), update.effective_user
    if user_id is None or admin is None:
        await reply(update, [usage("allow") + " (strangers see their id when they write)"])
        return
    await services(context).access.allow(user_id, admin.id)
    log.info("admin %d allowed user %d", admin.id, user_id)
    await reply(update, [f"User <code>{user_id}</code> may now use the bot."])


async def deny_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if not await _admin(update, context):
        return
    user_id, admin = _user_id(update), update.effective_user
    if user_id is None or admin is None:
        await reply(update, [usage("deny")])
        return
    if not await services(context).access.deny(user_id, admin.id):
        await reply(
            update,
            [f"User <code>{user_id}</code> is an admin in the config: remove them there."],
        )
        return
    log.info("admin %d denied user %d", admin.id, user_id)
    await reply(update, [f"User <code>{user_id}</code> can no longer use the bot."])
