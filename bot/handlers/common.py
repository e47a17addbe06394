"""The access gate, /start, /help, replies, and the one error handler."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from telegram import InlineKeyboardMarkup, Message, Update
from telegram.error import RetryAfter, TelegramError
from telegram.ext import ApplicationHandlerStop, ContextTypes

from archiver.channels import BadChannelRef
from archiver.errors import ChannelNotFound, QueryError, TelewatchError
from archiver.store import outbox
from archiver.store.user_langs import get_lang
from bot.access import Role
from bot.delivery import retry_seconds
from bot.format import MAX_MESSAGE, esc, pack, split_html, u16len
from bot.i18n import Translate, pick, translator
from bot.query_errors import channel_ref_reason, query_error_html, reason
from bot.services import KEY, Services, services

log = logging.getLogger(__name__)


def _(text: str) -> str:
    """Marks a message id for the catalogs (``pybabel extract -k _``); it is translated
    where it is shown (the command descriptions, in /help, usage lines and the menus)."""
    return text


COMMANDS = (
    ("search", "QUERY", _("search the archive (in a private chat, any text is a search)")),
    ("latest", "[channel]", _("the newest posts")),
    ("channels", "", _("archived channels, last post and sync state")),
    ("history", "LINK", _("every version of a post, and its deletion")),
    ("evidence", "LINK", _("a post's evidence bundle: versions, deletion, proofs, captures")),
    ("watch", "[NAME:] QUERY", _("alert me about posts that match")),
    ("rules", "", _("my rules, with delete buttons")),
    ("unwatch", "ID", _("delete one of my rules")),
    ("pause", "ID", _("pause one of my rules")),
    ("resume", "ID", _("resume a paused rule")),
    ("rename", "ID NAME", _("rename one of my rules")),
    ("unmute", "[RULE]", _("end the mutes of this chat (the Mute button)")),
    ("quiet", "HH:MM-HH:MM|off", _("quiet hours: alerts held, then sent as one summary")),
    ("digest", "daily HH:MM|off", _("my daily digest of what matched my rules")),
    ("export", "[csv|jsonl] QUERY", _("search results as a file")),
    ("status", "", _("admins: sync lag, alert queue, flood waits")),
    ("allow", "USER_ID", _("admins: let a user in")),
    ("deny", "USER_ID", _("admins: shut a user out")),
    ("follow", "@channel [web|telethon]", _("admins: archive a channel (no restart)")),
    ("unfollow", "@channel", _("admins: stop following a channel followed from the chat")),
    ("lang", "[en|uk|ru]", _("the bot's language")),
    ("help", "", _("commands and query examples")),
)

QUERY_HELP = """<b>Queries</b> (the same language as the command line)
<code>мобилизация</code>: every form of the word (мобилизации, мобилизацию…)
<code>"гуманітарний коридор"</code>: this exact phrase
<code>обстрел OR взрыв</code>: either word
<code>дрон -учения</code>: without a word (also <code>NOT</code>)
<code>энерго*</code>: words that start so
<code>(Херсон OR Каховка) AND эвакуация</code>: grouping
<code>channel:vsaldo since:2024-05-01 until:2024-05-31</code>
<code>is:edited</code> <code>is:deleted</code> <code>has:photo</code> <code>has:link</code>"""


def usage(command: str, _: Translate = str) -> str:
    """The command's usage line, in the language of ``_`` (English by default)."""
    for name, args, what in COMMANDS:
        if name == command:
            line = f"<code>/{name}{' ' + esc(args) if args else ''}</code> ({esc(_(what))})"
            return _("Usage: {command}").format(command=line)
    return _("Usage: {command}").format(command=f"/{command}")


def arg_text(update: Update) -> str:
    """Everything after the command, as typed (whitespace inside kept)."""
    msg = update.effective_message
    text = (msg.text or msg.caption or "") if msg is not None else ""
    parts = text.split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


async def reply(
    update: Update, blocks: Sequence[str], *, markup: InlineKeyboardMarkup | None = None
) -> list[Message]:
    """Send ``blocks`` of HTML as few messages as fit; buttons go on the last one."""
    msg = update.effective_message
    if msg is None:
        return []
    parts = pack(blocks)
    out: list[Message] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        out.append(await msg.reply_html(part, reply_markup=markup if last else None))
    return out


def callback_origin(update: Update) -> tuple[int, int] | None:
    """(user, chat) of a button press: who pressed it, in which chat."""
    cq = update.callback_query
    if cq is None or cq.message is None:
        return None
    return cq.from_user.id, cq.message.chat.id


async def role_of(update: Update, context: ContextTypes.DEFAULT_TYPE) -> Role:
    user, chat = update.effective_user, update.effective_chat
    return await services(context).access.role(
        user.id if user else None,
        chat.id if chat else None,
        chat is not None and chat.type == "private",
    )


async def language_of(update: Update, context: ContextTypes.DEFAULT_TYPE) -> str:
    """The language to answer this update's user in (bot/i18n.py)."""
    user = update.effective_user
    if user is None:
        return "en"
    svc = services(context)
    code = user.language_code or svc.seen_langs.get(user.id)  # some updates leave it out
    return pick(await get_lang(svc.archive, user.id), code)


async def translator_for(update: Update, context: ContextTypes.DEFAULT_TYPE) -> Translate:
    return translator(await language_of(update, context))


async def gate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Runs before every handler: strangers get one short reply and nothing else."""
    svc = services(context)
    role = await role_of(update, context)
    user, chat = update.effective_user, update.effective_chat
    if role is not Role.STRANGER:
        if user is not None and chat is not None:
            await svc.seen(user.id, user.language_code, chat.id, chat.type == "private")
        if chat is not None and await outbox.set_recipient_active(svc.archive, chat.id, True):
            log.info("chat %d is reachable again: its held alerts go out", chat.id)
            if svc.delivery is not None:
                svc.delivery.notify()
        return
    if user is not None and chat is not None:
        log.info("refused user %d in chat %d", user.id, chat.id)
        private = chat.type == "private"
        # In an allowed group the stranger is a user an admin denied: the bot works there, so
        # only a command addressed to the bot gets the private reply (their user id), and
        # nothing else they say there is answered.
        member_of_allowed = not private and chat.id in svc.settings.bot.allowed_chats
        key = user.id if private or member_of_allowed else chat.id
        msg = update.effective_message
        if update.callback_query is not None:
            _ = translator(pick(None, user.language_code))  # a stranger's choice is not kept
            await update.callback_query.answer(_("Not allowed."))
        elif (
            msg is not None
            and (not member_of_allowed or _addressed_command(msg, context.bot.username))
            and svc.access.answer_stranger(key)
        ):
            _ = translator(pick(None, user.language_code))  # a stranger's choice is not kept
            if private or member_of_allowed:
                text = _(
                    "This bot is private. Your Telegram user id is <code>{user}</code>: "
                    "send it to the person who runs the bot to be let in."
                ).format(user=user.id)
            else:
                text = _(
                    "This bot does not work in this chat. Chat id <code>{chat}</code>, "
                    "your user id <code>{user}</code>: an admin can add the chat."
                ).format(chat=chat.id, user=user.id)
            await msg.reply_html(text)
    raise ApplicationHandlerStop


def _addressed_command(msg: Message, bot_username: str | None) -> bool:
    """Whether ``msg`` is a command for this bot (``/cmd`` or ``/cmd@this_bot``)."""
    text = msg.text or msg.caption or ""
    if not text.startswith("/"):
        return False
    _cmd, at, target = text.split(maxsplit=1)[0].partition("@")
    return not at or target.lower() == (bot_username or "").lower()


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    _ = await translator_for(update, context)
    user = update.effective_user
    name = esc(user.first_name) if user else "👋"
    await reply(
        update,
        [
            _(
                "Hello, {name}. This bot searches the channel archive and sends you alerts "
                "when a post matches your rules (or the newsroom's)."
            ).format(name=name),
            _(
                "Try <code>/search мобилизация</code>, <code>/latest</code>, or "
                '<code>/watch "гуманитарный коридор"</code>. All commands: /help'
            ),
            _("Language: /lang"),
        ],
    )


async def help_(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    role = await role_of(update, context)
    _ = await translator_for(update, context)
    lines = ["<b>" + _("Commands") + "</b>"]
    for name, args, what in COMMANDS:
        if what.startswith("admins:") and role is not Role.ADMIN:
            continue
        lines.append(f"/{name}{' ' + esc(args) if args else ''}: {esc(_(what))}")
    cap = services(context).settings.bot.export_cap
    lines.append(_("(exports hold at most {cap} results)").format(cap=cap))
    await reply(update, ["\n".join(lines), QUERY_HELP])


def _error_translator(update: object, context: ContextTypes.DEFAULT_TYPE) -> Translate:
    """The user's language from memory only (their /lang, else their client's): the error
    may be the archive's, so it is not read here."""
    user = update.effective_user if isinstance(update, Update) else None
    if user is None:
        return translator("en")
    svc = context.bot_data.get(KEY)
    chosen = svc.langs.get(user.id) if isinstance(svc, Services) else None
    return translator(pick(chosen, user.language_code))


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The one error handler: domain errors become a one-line reply; anything else is
    logged (without message text) and the user is told it failed."""
    err = context.error
    if isinstance(err, RetryAfter):  # Telegram's flood control: an apology would be refused too
        chat = update.effective_chat if isinstance(update, Update) else None
        log.warning("flood control: a reply to chat %s was refused (retry after %.0fs)",
                    chat.id if chat else "-", retry_seconds(err))  # fmt: skip
        return
    _ = _error_translator(update, context)
    if isinstance(err, QueryError):
        text = query_error_html(err, _)
    elif isinstance(err, ChannelNotFound):  # its hint names a command-line tool
        text = f"⚠️ {esc(str(err).split(' (see ')[0])}: " + _(
            "/channels lists the archived channels."
        )
    elif isinstance(err, BadChannelRef):
        text = f"⚠️ {esc(channel_ref_reason(str(err), _))}"
    elif isinstance(err, TelewatchError):
        text = f"⚠️ {esc(err)}"
    else:
        log.error("handler failed", exc_info=err)
        text = _("Something went wrong on our side; it is in the log for the admins.")
    if not isinstance(update, Update):
        return
    if update.callback_query is not None:
        toast = str(err) if isinstance(err, TelewatchError) else _("Failed.")
        if isinstance(err, QueryError):
            said = reason(err, _)
            toast = toast if said is None else said
        try:
            await update.callback_query.answer(toast[:190])
        except TelegramError:
            log.debug("could not answer a callback query")
        return
    msg = update.effective_message
    if msg is None:
        return
    if u16len(text) > MAX_MESSAGE:  # an error quoting a long message back: its first part
        text = split_html(text)[0]
    try:
        await msg.reply_html(text)
    except TelegramError:
        log.warning("could not send the error reply to chat %s", msg.chat_id)


async def unknown(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    _ = await translator_for(update, context)
    await reply(update, [_("Unknown command: see /help.")])


async def unknown_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if update.callback_query is not None:
        _ = await translator_for(update, context)
        await update.callback_query.answer(_("Unknown button."))
