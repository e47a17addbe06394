"""/search (with ◀ ▶ paging), /latest and /export."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Update
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from archiver.channels import parse_ref
from archiver.display import CsvWriter
from archiver.query import Query
from archiver.store.channels import require_channel
from archiver.store.search import Hit, export_rows, iter_hits, iter_matches, search
from archiver.store.vocabulary import corrected, suggest
from bot.format import MAX_MESSAGE, esc, split_html, u16len
from bot.handlers.common import arg_text, callback_origin, reply, translator_for, usage
from bot.i18n import Translate
from bot.messages import (
    PAGE_SIZE,
    channel_label,
    latest_blocks,
    nothing_found_html,
    search_page_html,
)
from bot.services import SearchPage, services

log = logging.getLogger(__name__)

PAGE_PREFIX = "p"


COUNT_CAP = 10_000  # results counted for "1–5 of N"; more shows as "10000+"


def _buttons(key: int, offset: int, more: bool) -> InlineKeyboardMarkup | None:
    row = []
    if offset > 0:
        row.append(
            InlineKeyboardButton(
                "◀", callback_data=f"{PAGE_PREFIX}:{key}:{max(0, offset - PAGE_SIZE)}"
            )
        )
    if more:
        row.append(
            InlineKeyboardButton("▶", callback_data=f"{PAGE_PREFIX}:{key}:{offset + PAGE_SIZE}")
        )
    return InlineKeyboardMarkup([row]) if row else None


async def _count(context: ContextTypes.DEFAULT_TYPE, query: Query) -> int | None:
    """How many results, up to :data:`COUNT_CAP` (None: more)."""
    n = 0
    async for _ in iter_matches(services(context).archive, query):
        n += 1
        if n > COUNT_CAP:
            return None
    return n


async def _page(
    context: ContextTypes.DEFAULT_TYPE, page: SearchPage, key: int, offset: int, _: Translate
) -> tuple[str, InlineKeyboardMarkup | None]:
    svc = services(context)
    query = svc.parse(page.query)
    found = await search(svc.archive, query, limit=PAGE_SIZE + 1, offset=offset)
    more = len(found) > PAGE_SIZE
    hits = found[:PAGE_SIZE]
    text = search_page_html(
        page.query, hits, offset, svc.settings.display.timezone, more=more, total=page.total, _=_
    )
    if u16len(text) > MAX_MESSAGE:  # one page is one message (the buttons edit it in place)
        text = split_html(text)[0]
    return text, _buttons(key, offset, more)


async def run_search(update: Update, context: ContextTypes.DEFAULT_TYPE, query_text: str) -> None:
    """The first page of a search, with ◀ ▶ buttons that only its asker, there, may use."""
    # a QueryError goes to the error handler before anything is stored
    query = services(context).parse(query_text)
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    page = SearchPage(query_text, user.id, chat.id, await _count(context, query))
    _ = await translator_for(update, context)
    if page.total == 0:
        found = await suggest(services(context).archive, query)
        fixed = corrected(query_text, found)
        await reply(update, [nothing_found_html(query_text, found, fixed, _)])
        return
    key = services(context).pages.put(page)
    text, markup = await _page(context, page, key, 0, _)
    await reply(update, [text], markup=markup)


async def search_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query_text = arg_text(update)
    if not query_text:
        await reply(update, [usage("search", await translator_for(update, context))])
        return
    await run_search(update, context, query_text)


async def text_search(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Plain text in a private chat is a search."""
    msg = update.effective_message
    text = (msg.text or "").strip() if msg is not None else ""
    if text:
        await run_search(update, context, text)


async def page_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    cq = update.callback_query
    if cq is None or cq.data is None:
        return
    _ = await translator_for(update, context)
    try:
        _prefix, key_s, offset_s = cq.data.split(":")
        key, offset = int(key_s), max(0, int(offset_s))
    except ValueError:
        await cq.answer(_("Unknown button."))
        return
    page = services(context).pages.get(key)
    if page is None:
        await cq.answer(_("This search has expired: send /search again."), show_alert=True)
        return
    if callback_origin(update) != (page.owner, page.chat):
        log.info("a search button of user %d pressed by another user or in another chat",
                 page.owner)  # fmt: skip
        await cq.answer(_("This button belongs to someone else's search."), show_alert=True)
        return
    text, markup = await _page(context, page, key, offset, _)
    await cq.answer()
    try:
        await cq.edit_message_text(text, reply_markup=markup)
    except BadRequest as exc:
        if "not modified" not in exc.message.lower():
            raise
        # a double tap: the page already shows what this press asked for
        log.debug("search page %d: already showing offset %d", key, offset)


async def latest_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc = services(context)
    ref_text = arg_text(update)
    where = None
    query_text = ""
    if ref_text:
        if len(ref_text.split()) > 1:
            await reply(update, [usage("latest", await translator_for(update, context))])
            return
        ch = await require_channel(svc.archive, parse_ref(ref_text))
        where = channel_label(ch.title, ch.username, ch.id)
        query_text = f"channel:{ch.id}"
    hits = await search(svc.archive, svc.parse(query_text), limit=PAGE_SIZE)
    _ = await translator_for(update, context)
    await reply(update, latest_blocks(hits, svc.settings.display.timezone, where, _))


FORMATS = ("csv", "jsonl")


async def export_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc = services(context)
    _ = await translator_for(update, context)
    text = arg_text(update)
    fmt = "csv"
    first, _sep, rest = text.partition(" ")
    if first.lower() in FORMATS:
        fmt, text = first.lower(), rest.strip()
    if not text:
        await reply(update, [usage("export", _)])
        return
    query = svc.parse(text)
    cap = svc.settings.bot.export_cap
    hits: list[Hit] = [h async for h in iter_hits(svc.archive, query, limit=cap + 1)]
    capped = len(hits) > cap
    hits = hits[:cap]
    if not hits:
        await reply(update, [_("Nothing found for <code>{query}</code>: no file to send.").format(
            query=esc(text))])  # fmt: skip
        return
    data = _encode(await export_rows(svc.archive, hits), fmt)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    fields = {"n": len(hits), "query": esc(text[:200]), "cap": cap}
    if capped:
        caption = _("{n} result(s) for <code>{query}</code>. Only the newest {cap} (the export "
                    "limit): narrow the query for the rest.").format(**fields)  # fmt: skip
    else:
        caption = _("{n} result(s) for <code>{query}</code> (exports hold at most {cap}).").format(
            **fields)  # fmt: skip
    msg = update.effective_message
    if msg is None:
        return
    user = update.effective_user
    log.info("export of %d result(s) (%s) for user %s", len(hits), fmt, user.id if user else "-")
    await msg.reply_document(
        InputFile(io.BytesIO(data), filename=f"telewatch-{stamp}.{fmt}"),
        caption=caption,
    )


def _encode(rows: list[dict[str, Any]], fmt: str) -> bytes:
    """CSV or JSON lines of the export rows: every version's story is in them (the first
    text, the edit times, the deletion and its evidence; JSON lines: every version)."""
    buf = io.StringIO()
    if fmt == "jsonl":
        import json

        for row in rows:
            buf.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        writer = CsvWriter(buf)
        for row in rows:
            writer.write(row)
    return buf.getvalue().encode("utf-8")
