"""Admin commands: /status, /allow ID, /deny ID, /follow, /unfollow."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from archiver.channels import parse_ref
from archiver.config import Settings
from archiver.store import outbox
from archiver.store.access import valid_user_id
from archiver.store.archive import Archive
from archiver.store.followed import follow, telethon_configured, unfollow
from archiver.store.following import channel_statuses
from archiver.store.search import channel_stats
from archiver.worker import following, stopped_workers
from bot.access import Role
from bot.format import esc
from bot.handlers.common import arg_text, reply, role_of, translator_for, usage
from bot.i18n import translator
from bot.messages import Status, status_blocks, workers_block
from bot.services import services

log = logging.getLogger(__name__)


async def _admin(update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
    if await role_of(update, context) is Role.ADMIN:
        return True
    _ = await translator_for(update, context)
    await reply(update, [_("Only admins can do that.")])
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
    if svc.settings.configured_accounts:
        st = await _with_accounts(st, svc.archive, svc.settings)
    _ = await translator_for(update, context)
    blocks = status_blocks(st, svc.settings.display.timezone, _)
    if (rows := await following(svc.archive, svc.settings)) is not None:
        stopped = await stopped_workers(svc.archive, svc.settings)
        blocks.append(workers_block(rows, _, stopped, svc.settings.display.timezone))
    await reply(update, blocks)


async def _with_accounts(st: Status, archive: Archive, settings: Settings) -> Status:
    """``/status`` with ``[[accounts]]``: which account follows each Telethon channel, and
    the channels none has room for."""
    from dataclasses import replace

    from archiver.sources.telethon_accounts import accounts_report

    report = await accounts_report(archive, settings)
    accounts = {}
    for s in st.stats:
        if s.source == "telethon" and (name := report.account_for(s.channel_id, s.channel)):
            accounts[s.channel_id] = name
    return replace(st, accounts=accounts, no_account=report.no_room)


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
    _ = await translator_for(update, context)
    user_id, admin = _user_id(update), update.effective_user
    if user_id is None or admin is None:
        hint = _("(strangers see their id when they write)")
        await reply(update, [usage("allow", _) + " " + hint])
        return
    change = await services(context).access.allow(user_id, admin.id)
    log.info("admin %d allowed user %d (%d rule(s) resumed)", admin.id, user_id,
             change.rules_resumed)  # fmt: skip
    told = await _tell(context, user_id)
    text = _("User <code>{user}</code> may now use the bot.").format(user=user_id)
    if change.rules_resumed:
        text += " " + _("{n} of their rule(s) are active again.").format(n=change.rules_resumed)
    text += " " + (_("They were told.") if told
                   else _("They will see it when they write to the bot."))  # fmt: skip
    await reply(update, [text])


async def _tell(context: ContextTypes.DEFAULT_TYPE, user_id: int) -> bool:
    """Tell a newly allowed user (possible only once they have written to the bot)."""
    _ = translator(services(context).langs.get(user_id, "en"))  # their /lang, if any
    try:
        await context.bot.send_message(
            user_id,
            _(
                "An admin has let you in: you may now use this bot. Start with /help, or send "
                "any words to search the archive."
            ),
        )
    except TelegramError as exc:
        log.info("could not tell user %d they were allowed (%s)", user_id, type(exc).__name__)
        return False
    return True


async def deny_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if not await _admin(update, context):
        return
    _ = await translator_for(update, context)
    user_id, admin = _user_id(update), update.effective_user
    if user_id is None or admin is None:
        await reply(update, [usage("deny", _)])
        return
    change = await services(context).access.deny(user_id, admin.id)
    if change is None:
        await reply(update, [_("User <code>{user}</code> is an admin in the config: remove "
                               "them there.").format(user=user_id)])  # fmt: skip
        return
    log.info("admin %d denied user %d: %d rule(s) paused, %d alert(s) dropped", admin.id,
             user_id, change.rules_paused, change.alerts_dropped)  # fmt: skip
    text = _("User <code>{user}</code> can no longer use the bot nor receive alerts.").format(
        user=user_id)  # fmt: skip
    if change.rules_paused or change.alerts_dropped:
        text += " " + _("{rules} of their rule(s) paused (<code>/allow {user}</code> resumes "
                        "them), {alerts} waiting alert(s) dropped.").format(
            rules=change.rules_paused, user=user_id, alerts=change.alerts_dropped)  # fmt: skip
    await reply(update, [text])


async def follow_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/follow @channel [web|telethon]: synced from the archiver's next pass, no restart."""
    if not await _admin(update, context):
        return
    svc = services(context)
    _ = await translator_for(update, context)
    words = arg_text(update).split()
    if not 1 <= len(words) <= 2:
        await reply(update, [usage("follow", _)])
        return
    ref = parse_ref(words[0])  # BadChannelRef names the text: one line from the error handler
    source = words[1].lower() if len(words) == 2 else (
        "telethon" if telethon_configured(svc.settings) else "web"
    )  # fmt: skip
    user = update.effective_user
    if not await follow(svc.archive, svc.settings, ref, source, by=user.id if user else 0):
        await reply(update, [_("<b>{channel}</b> is in the config already: the config's "
                               "settings are used (change them there).").format(
            channel=esc(ref))])  # fmt: skip
        return
    log.info("admin %s follows channel %s (%s)", user.id if user else "?", ref, source)
    await reply(update, [
        _("Following <b>{channel}</b> ({source}): the archiver's next sync pass reads it (no "
          "restart needed). <code>/channels</code> shows it.").format(
            channel=esc(ref), source=esc(source))
    ])  # fmt: skip


async def unfollow_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if not await _admin(update, context):
        return
    svc = services(context)
    _ = await translator_for(update, context)
    text = arg_text(update)
    if not text or len(text.split()) != 1:
        await reply(update, [usage("unfollow", _)])
        return
    ref = parse_ref(text)
    channel = esc(ref)
    if await unfollow(svc.archive, ref):
        await reply(update, [_("No longer following <b>{channel}</b> from the chat; its "
                               "archived posts stay.").format(channel=channel)])  # fmt: skip
    elif str(ref) in {str(c.ref) for c in svc.settings.channels}:
        await reply(update, [_("<b>{channel}</b> is followed by the config: remove it "
                               "there.").format(channel=channel)])  # fmt: skip
    else:
        await reply(update, [_("<b>{channel}</b> was not followed from the chat.").format(
            channel=channel)])  # fmt: skip
