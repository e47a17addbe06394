"""Thin handlers: parse the command, call the archive, format the reply.

:func:`register` wires them all, behind the access gate, with the one error handler.
"""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.alerts import FULL_TEXT, HISTORY, MUTE
from bot.handlers import (
    admin,
    alerts,
    archive,
    common,
    everyday,
    evidence,
    language,
    rules,
    search,
)


def register(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    app.add_handler(TypeHandler(Update, common.gate), group=-1)
    commands = {
        "start": common.start,
        "help": common.help_,
        "search": search.search_cmd,
        "latest": search.latest_cmd,
        "export": search.export_cmd,
        "channels": archive.channels_cmd,
        "history": archive.history_cmd,
        "evidence": evidence.evidence_cmd,
        "watch": rules.watch_cmd,
        "rules": rules.rules_cmd,
        "unwatch": rules.unwatch_cmd,
        "pause": rules.pause_cmd,
        "resume": rules.resume_cmd,
        "rename": rules.rename_cmd,
        "unmute": rules.unmute_cmd,
        "quiet": everyday.quiet_cmd,
        "digest": everyday.digest_cmd,
        "lang": language.lang_cmd,
        "status": admin.status_cmd,
        "allow": admin.allow_cmd,
        "deny": admin.deny_cmd,
        "follow": admin.follow_cmd,
        "unfollow": admin.unfollow_cmd,
    }
    for name, callback in commands.items():
        app.add_handler(CommandHandler(name, callback))
    app.add_handler(CallbackQueryHandler(search.page_button, pattern=rf"^{search.PAGE_PREFIX}:"))
    app.add_handler(CallbackQueryHandler(rules.delete_button, pattern=rf"^{rules.DELETE_PREFIX}:"))
    app.add_handler(CallbackQueryHandler(alerts.full_text_button, pattern=rf"^{FULL_TEXT}:"))
    app.add_handler(CallbackQueryHandler(alerts.history_button, pattern=rf"^{HISTORY}:"))
    app.add_handler(CallbackQueryHandler(alerts.mute_button, pattern=rf"^{MUTE}:"))
    app.add_handler(CallbackQueryHandler(common.unknown_button))
    app.add_handler(MessageHandler(filters.COMMAND & filters.ChatType.PRIVATE, common.unknown))
    app.add_handler(
        MessageHandler(
            filters.TEXT & ~filters.COMMAND & filters.ChatType.PRIVATE, search.text_search
        )
    )
    app.add_error_handler(common.on_error)
