"""/quiet and /digest: a chat's quiet hours and its own daily digest."""

from __future__ import annotations

from datetime import UTC, datetime

from telegram import Update
from telegram.ext import ContextTypes

from archiver.store.personal_digests import clear_digest, get_digest, set_digest
from archiver.store.quiet import clear_quiet, parse_span, parse_time, quiet_hours, set_quiet
from bot.format import esc
from bot.handlers.common import arg_text, reply, translator_for, usage
from bot.services import services


def _chat(update: Update) -> int | None:
    chat = update.effective_chat
    return None if chat is None else chat.id


async def quiet_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc = services(context)
    chat = _chat(update)
    if chat is None:
        return
    text = arg_text(update)
    tz = svc.settings.display.timezone.key
    _ = await translator_for(update, context)
    if not text:
        hours = (await quiet_hours(svc.archive)).get(chat)
        if hours is None:
            await reply(
                update, [_("No quiet hours: alerts come at once.") + " " + usage("quiet", _)]
            )
        else:
            await reply(update, [_("Quiet hours: <b>{hours}</b> ({tz}). "
                                   "<code>/quiet off</code> ends them.").format(
                                       hours=hours, tz=esc(tz))])  # fmt: skip
        return
    if text.lower() == "off":
        had = await clear_quiet(svc.archive, chat)
        await reply(update, [_("Quiet hours off: alerts come at once.")
                             if had else _("There were no quiet hours.")])  # fmt: skip
        return
    hours = parse_span(text)  # a TelewatchError names the text: one line from the error handler
    await set_quiet(svc.archive, chat, hours)
    await reply(update, [
        _("Quiet hours: <b>{hours}</b> ({tz}). Alerts that come then are held and sent "
          "as one summary when they end.").format(hours=hours, tz=esc(tz))
    ])  # fmt: skip


async def digest_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc = services(context)
    chat = _chat(update)
    if chat is None:
        return
    words = arg_text(update).split()
    tz = svc.settings.display.timezone
    _ = await translator_for(update, context)
    if not words:
        at = await get_digest(svc.archive, chat)
        if at is None:
            await reply(update, [_("No daily digest.") + " " + usage("digest", _)])
        else:
            await reply(update, [_("Daily digest at <b>{at}</b> ({tz}).").format(
                at=f"{at:%H:%M}", tz=esc(tz.key))])  # fmt: skip
        return
    if [w.lower() for w in words] == ["off"]:
        had = await clear_digest(svc.archive, chat)
        await reply(update, [_("Daily digest off.") if had else _("There was no daily digest.")])
        return
    if len(words) != 2 or words[0].lower() != "daily":
        await reply(update, [usage("digest", _)])
        return
    at = parse_time(words[1])
    await set_digest(svc.archive, chat, at, datetime.now(UTC), tz)
    await reply(update, [
        _("Daily digest at <b>{at}</b> ({tz}): what matched your rules in the "
          "24 hours before, per rule. <code>/digest off</code> ends it.").format(
              at=f"{at:%H:%M}", tz=esc(tz.key))
    ])  # fmt: skip
