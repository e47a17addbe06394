"""The buttons under an alert: Full text, History, Mute rule 24 h.

A button acts only in the chat the alert was sent to (its recipient), for a user allowed
there (the access gate runs first): a forged ``af:ID`` of another chat's alert gets nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from telegram import Update
from telegram.ext import ContextTypes

from archiver.store import outbox
from archiver.store.archive import utcnow
from archiver.store.outbox import AlertRow
from archiver.store.search import history
from bot.alerts import full_text_blocks
from bot.format import esc, local_time, pack
from bot.handlers.common import callback_origin, translator_for
from bot.messages import history_blocks
from bot.services import services

log = logging.getLogger(__name__)

MUTE_FOR = timedelta(hours=24)


async def _alert_of(update: Update, context: ContextTypes.DEFAULT_TYPE) -> AlertRow | None:
    """The alert behind a pressed button, when it was sent to this chat; else the press is
    answered and None returned."""
    cq = update.callback_query
    origin = callback_origin(update)
    if cq is None or cq.data is None or origin is None:
        return None
    _user, chat_id = origin
    _prefix, _sep, id_text = cq.data.partition(":")
    alert = None
    if id_text.isascii() and id_text.isdigit() and len(id_text) <= 18:
        alert = await outbox.get_alert(services(context).archive, int(id_text))
    if alert is None or alert.recipient != chat_id:
        if alert is not None:
            log.info("an alert button of chat %d pressed in chat %d", alert.recipient, chat_id)
        _ = await translator_for(update, context)
        await cq.answer(_("This alert is not in this chat."), show_alert=True)
        return None
    return alert


async def _send(update: Update, blocks: list[str]) -> None:
    cq = update.callback_query
    if cq is None or cq.message is None:
        return
    for part in pack(blocks):
        await cq.get_bot().send_message(cq.message.chat.id, part)


async def full_text_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    alert = await _alert_of(update, context)
    if alert is None or update.callback_query is None:
        return
    text, entities = await outbox.current_text(services(context).archive, alert.post_id)
    if alert.kind == "deleted" or text is None:
        text, entities = alert.text, alert.entities  # what was deleted
    await update.callback_query.answer()
    head = f"<b>{esc(alert.channel_name)}</b> · {esc(alert.link)}"
    await _send(update, [head, *full_text_blocks(text, entities)])


async def history_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    alert = await _alert_of(update, context)
    if alert is None or update.callback_query is None:
        return
    svc = services(context)
    h = await history(svc.archive, alert.channel_id, alert.message_id)
    await update.callback_query.answer()
    _ = await translator_for(update, context)
    await _send(update, history_blocks(h, svc.settings.display.timezone, _))


async def mute_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    alert = await _alert_of(update, context)
    cq = update.callback_query
    if alert is None or cq is None:
        return
    svc = services(context)
    until = utcnow() + MUTE_FOR
    await outbox.mute(svc.archive, alert.recipient, alert.rules, until)
    log.info("rules of alert %d muted in chat %d for 24 h", alert.id, alert.recipient)
    names = ", ".join(alert.rules)
    when = local_time(until, svc.settings.display.timezone)
    _ = await translator_for(update, context)
    muted = _("Muted here until {when}: {rules}. /unmute ends it.").format(when=when, rules=names)
    await cq.answer(muted[:190], show_alert=True)
