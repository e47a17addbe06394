"""/channels and /history."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from archiver.channels import parse_ref
from archiver.store.followed import followed
from archiver.store.following import channel_statuses
from archiver.store.search import channel_stats, history
from bot.handlers.common import arg_text, reply, translator_for, usage
from bot.messages import channels_blocks, history_blocks
from bot.services import services


async def channels_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc = services(context)
    stats = await channel_stats(svc.archive)
    problems = await channel_statuses(svc.archive, problems_only=True)
    chat = await followed(svc.archive, svc.settings)
    _ = await translator_for(update, context)
    tz = svc.settings.display.timezone
    await reply(update, channels_blocks(stats, tz, problems, chat, _))


async def history_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc = services(context)
    _ = await translator_for(update, context)
    text = arg_text(update)
    if not text or len(text.split()) != 1:
        example = "<code>/history https://t.me/vsaldo/123</code>"
        await reply(update, [usage("history", _) + "\n" + _("e.g. {example}").format(
            example=example)])  # fmt: skip
        return
    ref = parse_ref(text)
    if ref.message_id is None:
        await reply(update, [usage("history", _) + "\n"
                             + _("The link must name a post, like t.me/vsaldo/123.")])  # fmt: skip
        return
    channel = ref.username if ref.username is not None else ref.id
    assert channel is not None
    h = await history(svc.archive, channel, ref.message_id)
    await reply(update, history_blocks(h, svc.settings.display.timezone, _))
