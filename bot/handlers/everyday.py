"""/quiet and /digest: a chat's quiet hours and its own daily digest."""

from __future__ import annotations

from datetime import UTC, datetime

from telegram import Update
from telegram.ext import ContextTypes

from archiver.store.personal_digests import clear_digest, get_digest, set_digest
from archiver.store.quiet import clear_quiet, parse_span, parse_time, quiet_hours, set_quiet
from bot.format import esc
from bot.handlers.common import arg_text, reply, usage
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
    if not text:
        hours = (await quiet_hours(svc.archive)).get(chat)
        if hours is None:
            await reply(update, ["No quiet hours: alerts come at once. " + usage("quiet")])
        else:
            await reply(update, [f"Quiet hours: <b>{hours}</b> ({esc(tz)}). "
                                 "<code>/quiet off</code> ends them."])  # fmt: skip
        return
    if text.lower() == "off":
        had = await clear_quiet(svc.archive, chat)
        await reply(update, ["Quiet hours off: alerts come at once."
                             if had else "There were no quiet hours."])  # fmt: skip
        return
    hours = parse_span(text)  # a TelewatchError names the text: one line from the error handler
    await set_quiet(svc.archive, chat, hours)
    await reply(update, [
        f"Quiet hours: <b>{hours}</b> ({esc(tz)}). Alerts that come then are held and sent "
        "as one summary when they end."
    ])  # fmt: skip


async def digest_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc = services(context)
    chat = _chat(update)
    if chat is None:
        return
    words = arg_text(update).split()
    tz = svc.settings.display.timezone
    if not words:
        at = await get_digest(svc.archive, chat)
        if at is None:
            await reply(update, ["No daily digest. " + usage("digest")])
        else:
            await reply(update, [f"Daily digest at <b>{at:%H:%M}</b> ({esc(tz.key)})."])
        return
    if [w.lower() for w in words] == ["off"]:
        had = await clear_digest(svc.archive, chat)
        await reply(update, ["Daily digest off." if had else "There was no daily digest."])
        return
    if len(words) != 2 or words[0].lower() != "daily":
        await reply(update, [usage("digest")])
        return
    at = parse_time(words[1])
    await set_digest(svc.archive, chat, at, datetime.now(UTC), tz)
    await reply(update, [
        f"Daily digest at <b>{at:%H:%M}</b> ({esc(tz.key)}): what matched your rules in the "
        "24 hours before, per rule. <code>/digest off</code> ends it."
    ])  # fmt: skip
