"""/evidence LINK: the post's evidence bundle as a file (archiver.evidence.bundles).

Only users the gate lets in get here (bot/handlers/common.py: strangers get nothing from the
archive). The bundle is written to a temporary folder, sent as a document and removed.
Telegram takes documents of up to 50 MB from a bot (https://core.telegram.org/bots/api#senddocument:
"Bots can currently send files of any type of up to 50 MB in size"): a bigger bundle is
refused with a message saying how to make it on the server.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

from telegram import InputFile, Update
from telegram.ext import ContextTypes

from archiver.evidence.bundles import BundleError, bundle_from_archive, parse_post_link
from bot.format import esc
from bot.handlers.common import arg_text, reply, translator_for, usage
from bot.services import services

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 50 * 1024 * 1024  # the Bot API's limit for a file a bot uploads


def _filename(channel: str | int, message_id: int) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "", str(channel)) or "channel"
    return f"telewatch-evidence-{name}-{message_id}.zip"


async def evidence_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc = services(context)
    _ = await translator_for(update, context)
    text = arg_text(update)
    msg = update.effective_message
    if msg is None:
        return
    if not text or len(text.split()) != 1:
        example = "<code>/evidence https://t.me/vsaldo/123</code>"
        await reply(update, [usage("evidence", _) + "\n" + _("e.g. {example}").format(
            example=example)])  # fmt: skip
        return
    try:
        channel, message_id = parse_post_link(text)  # not a link: BadChannelRef, on_error
    except BundleError:  # a channel's link, not a post's
        await reply(update, [usage("evidence", _) + "\n"
                             + _("The link must name a post, like t.me/vsaldo/123.")])  # fmt: skip
        return
    with tempfile.TemporaryDirectory(prefix="telewatch-evidence-") as tmp:
        path = Path(tmp) / _filename(channel, message_id)
        summary = await bundle_from_archive(
            svc.archive, path, links=[text], request={"links": [text], "query": None}
        )
        link = esc(text)
        user = update.effective_user
        if summary.size > MAX_DOCUMENT_BYTES:
            log.info("evidence bundle of %d bytes refused for user %s (over the bot limit)",
                     summary.size, user.id if user else "-")  # fmt: skip
            await reply(update, [_(
                "The bundle of {link} is {size} MB, more than the {limit} MB a bot may send."
                " Make it on the server with <code>telewatch evidence</code>."
            ).format(link=link, size=round(summary.size / 2**20, 1),
                     limit=MAX_DOCUMENT_BYTES // 2**20)])  # fmt: skip
            return
        fields = {"link": link, "entries": summary.entries, "captures": summary.captures}
        if summary.root_day:
            caption = _("Evidence bundle of {link}: {entries} log entries chained to the root"
                        " of {day}, {captures} capture(s).").format(day=summary.root_day,
                                                                    **fields)  # fmt: skip
        else:
            caption = _("Evidence bundle of {link}: {entries} log entries, not yet covered by"
                        " a daily root; {captures} capture(s).").format(**fields)  # fmt: skip
        caption += "\n" + _("Check it offline: <code>telewatch evidence verify FILE</code>")
        log.info("evidence bundle (%d entries, %d bytes) for user %s",
                 summary.entries, summary.size, user.id if user else "-")  # fmt: skip
        with path.open("rb") as f:
            await msg.reply_document(InputFile(f, filename=path.name), caption=caption)
