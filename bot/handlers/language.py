"""/lang: the language the bot speaks to this user."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from archiver.store.user_langs import set_lang
from bot.handlers.common import arg_text, language_of, reply
from bot.i18n import LANGS, NAMES, translator
from bot.services import services


async def lang_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    user = update.effective_user
    if user is None:
        return
    choice = arg_text(update).lower()
    if not choice:
        _ = translator(await language_of(update, context))
        current = NAMES[await language_of(update, context)]
        await reply(update, [_("Language: {name}. Choose: /lang en, /lang uk, /lang ru").format(
            name=current)])  # fmt: skip
        return
    if choice not in LANGS:
        _ = translator(await language_of(update, context))
        await reply(update, [_("Unknown language '{code}': choose en, uk or ru.").format(
            code=choice[:10])])  # fmt: skip
        return
    await set_lang(services(context).archive, user.id, choice)
    services(context).langs[user.id] = choice  # the alerts to this user follow at once
    _ = translator(choice)
    await reply(update, [_("The bot speaks {name} to you now.").format(name=NAMES[choice])])
