"""/watch, /rules (with delete buttons), /unwatch, /pause, /resume, /rename, /unmute: a
journalist's own rules.

A rule belongs to its owner and to the chat it alerts: ``/watch`` in a private chat alerts
that chat, in a group the group. ``/rules`` in a chat lists the rules that alert it, and its
buttons act only for their owner, in that chat.
"""

from __future__ import annotations

import logging

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from archiver.channels import parse_ref
from archiver.config import Settings
from archiver.errors import RuleError
from archiver.query import parse
from archiver.store import outbox
from archiver.store.archive import Archive
from archiver.store.channels import get_channel
from archiver.store.personal_rules import (
    add_rule,
    delete_rule,
    get_rule,
    owned_rules,
    rename_rule,
    set_paused,
    split_name,
)
from bot.format import esc
from bot.handlers.common import arg_text, callback_origin, reply, translator_for, usage
from bot.i18n import Translate
from bot.messages import rules_page
from bot.services import services

log = logging.getLogger(__name__)

DELETE_PREFIX = "rd"


async def check_channels(
    archive: Archive, settings: Settings, query_text: str, _: Translate = str
) -> None:
    """Every ``channel:`` filter of a query names a channel of the archive or the config;
    a rule about one that does not exist could never fire."""
    configured = {str(c.ref).lower() for c in settings.channels}
    for f in parse(query_text).filters:
        if f.field != "channel":
            continue
        ref = parse_ref(f.value)  # BadChannelRef names the text and the accepted forms
        if str(ref).lower() in configured or await get_channel(archive, ref) is not None:
            continue
        raise RuleError(
            _(
                "channel:{value}: no channel of the archive or the config is called that, so "
                "the rule could never fire. See /channels for the archived ones; an admin can "
                "add it."
            ).format(value=f.value)
        )


async def watch_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc = services(context)
    _ = await translator_for(update, context)
    text = arg_text(update)
    user, chat = update.effective_user, update.effective_chat
    if not text or user is None or chat is None:
        example = "<code>/watch Херсон: эвакуация -учения</code>"
        await reply(update, [usage("watch", _) + "\n" + _("e.g. {example}").format(
            example=example)])  # fmt: skip
        return
    name, query_text = split_name(text)
    await check_channels(svc.archive, svc.settings, query_text, _)
    notify = [] if chat.type == "private" else [chat.id]  # in a group, alerts go to the group
    rule = await add_rule(svc.archive, user.id, query_text, notify=notify, name=name)
    log.info("user %d added rule %s", user.id, rule.id)
    saved = _("Rule <b>#{id}</b> <b>{name}</b> saved: <code>{query}</code>").format(
        id=rule.id, name=esc(rule.name), query=esc(rule.query))  # fmt: skip
    if notify:
        sent = _("New, edited and deleted posts that match are sent here.")
    else:
        sent = _("New, edited and deleted posts that match are sent to you here.")
    remove = _("See /rules; remove it with <code>/unwatch {id}</code>.").format(id=rule.id)
    await reply(update, [f"{saved}\n{sent} {remove}"])


def _rules_markup(ids: list[int]) -> InlineKeyboardMarkup | None:
    if not ids:
        return None
    buttons = [InlineKeyboardButton(f"🗑 #{i}", callback_data=f"{DELETE_PREFIX}:{i}") for i in ids]
    return InlineKeyboardMarkup([buttons[i : i + 4] for i in range(0, len(buttons), 4)])


async def _listing(
    context: ContextTypes.DEFAULT_TYPE, owner: int, chat_id: int, _: Translate
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The owner's rules of this chat as one message (so a button can edit it in place)."""
    svc = services(context)
    entries = await owned_rules(svc.archive, owner, chat_id)
    mutes = await outbox.mutes(svc.archive, chat_id)
    text, shown = rules_page(entries, mutes, svc.settings.display.timezone, _)
    return text, _rules_markup(shown)


async def rules_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    text, markup = await _listing(context, user.id, chat.id, await translator_for(update, context))
    await reply(update, [text], markup=markup)


def _rule_id(update: Update) -> tuple[int | None, str]:
    """The ``#ID`` (or ``ID``) after the command, and the rest of the text."""
    first, _, rest = arg_text(update).partition(" ")
    first = first.lstrip("#")
    if not first.isascii() or not first.isdigit() or len(first) > 18:
        return None, rest.strip()
    return int(first), rest.strip()


async def _own(update: Update, context: ContextTypes.DEFAULT_TYPE, rule_id: int) -> bool:
    """Whether the user owns rule ``rule_id`` and it alerts this chat."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return False
    entry = await get_rule(services(context).archive, rule_id)
    return entry is not None and entry.rule.owner == user.id and chat.id in entry.chats


async def unwatch_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    user = update.effective_user
    _ = await translator_for(update, context)
    rule_id, _rest = _rule_id(update)
    if user is None or rule_id is None:
        await reply(update, [usage("unwatch", _) + " " + _("(the ids are in /rules)")])
        return
    if await _own(update, context, rule_id) and await delete_rule(
        services(context).archive, rule_id, user.id
    ):
        log.info("user %d deleted rule %s", user.id, rule_id)
        await reply(update, [_("Rule #{id} deleted.").format(id=rule_id)])
    else:
        await reply(update, [_("You have no rule #{id} here: see /rules.").format(id=rule_id)])


async def _pause(update: Update, context: ContextTypes.DEFAULT_TYPE, paused: bool) -> None:
    user = update.effective_user
    _ = await translator_for(update, context)
    rule_id, _rest = _rule_id(update)
    command = "pause" if paused else "resume"
    if user is None or rule_id is None:
        await reply(update, [usage(command, _) + " " + _("(the ids are in /rules)")])
        return
    if not await _own(update, context, rule_id):
        await reply(update, [_("You have no rule #{id} here: see /rules.").format(id=rule_id)])
        return
    if await set_paused(services(context).archive, rule_id, user.id, paused):
        log.info("user %d %sd rule %s", user.id, command, rule_id)
        if paused:
            done = _("Rule #{id} is paused: it sends nothing until /resume.")
        else:
            done = _("Rule #{id} is active again.")
        await reply(update, [done.format(id=rule_id)])
    else:
        if paused:
            state = _("Rule #{id} is already paused: see /rules.")
        else:
            state = _("Rule #{id} is not paused by you: see /rules.")
        await reply(update, [state.format(id=rule_id)])


async def pause_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _pause(update, context, True)


async def resume_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _pause(update, context, False)


async def rename_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    user = update.effective_user
    _ = await translator_for(update, context)
    rule_id, name = _rule_id(update)
    if user is None or rule_id is None or not name:
        await reply(update, [usage("rename", _)])
        return
    if not await _own(update, context, rule_id):
        await reply(update, [_("You have no rule #{id} here: see /rules.").format(id=rule_id)])
        return
    label = await rename_rule(services(context).archive, rule_id, user.id, name)
    await reply(update, [_("Rule #{id} is now called <b>{name}</b>.").format(
        id=rule_id, name=esc(label))])  # fmt: skip


async def unmute_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    chat = update.effective_chat
    if chat is None:
        return
    _ = await translator_for(update, context)
    name = arg_text(update)
    ended = await outbox.unmute(services(context).archive, chat.id, (name,) if name else None)
    if ended:
        await reply(update, [_("{n} mute(s) ended: those alerts come here again.").format(
            n=ended)])  # fmt: skip
    elif name:
        await reply(update, [_("Nothing is muted here under {rule}.").format(
            rule=esc(repr(name)))])  # fmt: skip
    else:
        await reply(update, [_("Nothing is muted here.")])


async def delete_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    cq = update.callback_query
    origin = callback_origin(update)
    if cq is None or cq.data is None or origin is None:
        return
    user_id, chat_id = origin
    _ = await translator_for(update, context)
    try:
        rule_id = int(cq.data.split(":", 1)[1])
    except (IndexError, ValueError):
        await cq.answer(_("Unknown button."))
        return
    archive = services(context).archive
    entry = await get_rule(archive, rule_id)
    mine = entry is not None and entry.rule.owner == user_id and chat_id in entry.chats
    if not mine or not await delete_rule(archive, rule_id, user_id):
        await cq.answer(_("No rule #{id} of yours here.").format(id=rule_id))
        return
    log.info("user %d deleted rule %s", user_id, rule_id)
    text, markup = await _listing(context, user_id, chat_id, _)
    await cq.edit_message_text(text, reply_markup=markup)
    await cq.answer(_("Rule #{id} deleted.").format(id=rule_id))
