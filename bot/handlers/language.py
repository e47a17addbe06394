"""/lang: the language the bot speaks to this user; in a group, an admin's /lang sets the
language of the group's alerts and digests (without one: that of the first user who used the
bot there, see :meth:`bot.services.Services.seen`)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from archiver.store.user_langs import set_lang
from bot.access import Role
from bot.handlers.common import arg_text, language_of, reply, role_of
from bot.i18n import LANGS, NAMES, translator
from bot.services import services


async def lang_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    if chat.type != "private":
        await _group_lang(update, context, chat.id)
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


async def _group_lang(update: Update, context: ContextTypes.DEFAULT_TYPE, chat_id: int) -> None:
    svc = services(context)
    choice = arg_text(update).lower()
    _ = translator(await language_of(update, context))
    if not choice:
        name = NAMES[svc.chat_lang(chat_id)]
        await reply(update, [_("Alerts in this group are in {name}. An admin can change it: "
                               "/lang en, /lang uk, /lang ru").format(name=name)])  # fmt: skip
        return
    if choice not in LANGS:
        await reply(update, [_("Unknown language '{code}': choose en, uk or ru.").format(
            code=choice[:10])])  # fmt: skip
        return
    if await role_of(update, context) is not Role.ADMIN:
        await reply(update, [_("Only an admin of the bot can change the group's language.")])
        return
    await set_lang(svc.archive, chat_id, choice)  # a group's /lang: a row under its chat id
    svc.langs[chat_id] = choice
    _ = translator(choice)
    await reply(update, [_("Alerts in this group are in {name} now.").format(name=NAMES[choice])])
