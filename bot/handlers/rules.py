"""/watch, /rules (with delete buttons) and /unwatch: a journalist's own rules."""

from __future__ import annotations

import logging

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from archiver.store.personal_rules import add_rule, delete_rule, list_rules
from bot.format import esc
from bot.handlers.common import arg_text, reply, usage
from bot.messages import rules_blocks
from bot.services import services

log = logging.getLogger(__name__)

DELETE_PREFIX = "rd"


async def watch_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc = services(context)
    text = arg_text(update)
    user, chat = update.effective_user, update.effective_chat
    if not text or user is None or chat is None:
        await reply(update, [usage("watch")])
        return
    notify = [] if chat.type == "private" else [chat.id]  # in a group, alerts go to the group
    rule = await add_rule(svc.archive, user.id, text, notify=notify)
    log.info("user %d added rule %s", user.id, rule.id)
    where = "here" if notify else "to you here"
    await reply(
        update,
        [
            f"Rule <b>#{rule.id}</b> saved: <code>{esc(rule.query)}</code>\n"
            f"New, edited and deleted posts that match are sent {where}. "
            f"See /rules; remove it with <code>/unwatch {rule.id}</code>."
        ],
    )


def _rules_markup(ids: list[int]) -> InlineKeyboardMarkup | None:
    if not ids:
        return None
    buttons = [InlineKeyboardButton(f"🗑 #{i}", callback_data=f"{DELETE_PREFIX}:{i}") for i in ids]
    return InlineKeyboardMarkup([buttons[i : i + 4] for i in range(0, len(buttons), 4)])


async def _listing(
    context: ContextTypes.DEFAULT_TYPE, owner: int
) -> tuple[list[str], InlineKeyboardMarkup | None]:
    rules = await list_rules(services(context).archive, owner=owner)
    rows = [(r.id or 0, r.name, r.query, r.channels) for r in rules]
    return rules_blocks(rows), _rules_markup([r[0] for r in rows])


async def rules_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    user = update.effective_user
    if user is None:
        return
    blocks, markup = await _listing(context, user.id)
    await reply(update, blocks, markup=markup)


async def unwatch_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    user = update.effective_user
    text = arg_text(update).lstrip("#")
    if user is None or not text.isdigit():
        await reply(update, [usage("unwatch") + " (the ids are in /rules)"])
        return
    if await delete_rule(services(context).archive, int(text), user.id):
        log.info("user %d deleted rule %s", user.id, text)
        await reply(update, [f"Rule #{int(text)} deleted."])
    else:
        await reply(update, [f"You have no rule #{int(text)}: see /rules."])


async def delete_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    cq = update.callback_query
    if cq is None or cq.data is None or cq.from_user is None:
        return
    try:
        rule_id = int(cq.data.split(":", 1)[1])
    except (IndexError, ValueError):
        await cq.answer("Unknown button.")
        return
    deleted = await delete_rule(services(context).archive, rule_id, cq.from_user.id)
    await cq.answer(f"Rule #{rule_id} deleted." if deleted else f"No rule #{rule_id} of yours.")
    blocks, markup = await _listing(context, cq.from_user.id)
    await cq.edit_message_text("\n\n".join(blocks)[:4000], reply_markup=markup)
