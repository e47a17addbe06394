"""The search page and its exports.

The page runs the query as ``telewatch search`` does (``archiver.query.parse``, then
``archiver.store.search``): 20 posts a page, newest first or by relevance, the matched words
marked in each snippet, and the total (counted up to :data:`COUNT_CAP`, then "more than";
``count=all`` counts everything). ``search.csv`` and ``search.json`` export every result with
the fields of ``telewatch export`` (the record included).
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

from datasette.utils.asgi import AsgiStream, Request, Response

from archiver.display import CsvWriter
from archiver.errors import TelewatchError
from archiver.store.archive import Archive
from archiver.store.channels import list_channels
from archiver.store.search import Hit, count, export_rows, iter_hits, search
from web.forms import PAGE_SIZE, SearchForm
from web.pages import context, error_text, page
from web.site import Site, site_of

COUNT_CAP = 2_000
EXPORT_CHUNK = 200


async def channel_choices(archive: Archive) -> list[tuple[str, str]]:
    """(value, label) of every archived channel, for the form's select."""
    out = []
    for ch in await list_channels(archive):
        value = ch.username or str(ch.id)
        label = ch.title or ch.username or str(ch.id)
        if ch.username and ch.title:
            label = f"{ch.title} (@{ch.username})"
        out.append((value, label))
    return sorted(out, key=lambda c: c[1].lower())


@page
async def search_page(request: Request, site: Site, archive: Archive) -> Response:
    form = SearchForm.from_args(request.args)
    values: dict[str, Any] = {
        "form": form,
        "channels": await channel_choices(archive),
        "hits": [],
        "total": None,
        "capped": False,
        "error": None,
        "page_size": PAGE_SIZE,
        "count_cap": COUNT_CAP,
    }
    status = 200
    if not form.empty:
        try:
            query = form.query(site.tz.key)
            offset = (form.page - 1) * PAGE_SIZE
            exact = request.args.get("count") == "all"
            counter = await site.open_counter()
            values["hits"], total = await asyncio.gather(
                search(archive, query, limit=PAGE_SIZE, offset=offset, sort=form.sort),
                count(counter, query, cap=None if exact else COUNT_CAP),
            )
            values["capped"] = not exact and total > COUNT_CAP
            values["total"] = min(total, COUNT_CAP) if values["capped"] else total
        except TelewatchError as exc:
            status, values["error"] = error_text(exc)
    title = f"{form.q} - search" if form.q else "Search"
    html = site.render("search.html", **context(request, site, title=title, **values))
    return Response.html(html, status=status)


async def export(request: Request, datasette: Any) -> Any:
    """Every result of the form's query, as CSV (the same file as ``telewatch export``) or
    JSON (an object with the query and a ``rows`` list), streamed in chunks."""
    site = site_of(datasette)
    fmt = request.url_vars["format"]
    form = SearchForm.from_args(request.args)
    try:
        archive = await site.open()
        query = form.query(site.tz.key)
        await count(archive, query, cap=0)  # errors (an unknown channel) before the headers
    except TelewatchError as exc:
        status, message = error_text(exc)
        return Response.text(message + "\n", status=status)
    name = "telewatch-search"

    async def rows() -> Any:
        chunk: list[Hit] = []
        async for hit in iter_hits(archive, query, sort=form.sort):
            chunk.append(hit)
            if len(chunk) >= EXPORT_CHUNK:
                yield await export_rows(archive, chunk)
                chunk = []
        yield await export_rows(archive, chunk)

    if fmt == "csv":

        async def write_csv(w: Any) -> None:
            buf = io.StringIO()
            writer = CsvWriter(buf)
            async for batch in rows():
                for row in batch:
                    writer.write(row)
                await w.write(buf.getvalue())
                buf.seek(0)
                buf.truncate()

        return AsgiStream(
            write_csv,
            headers={"content-disposition": f'attachment; filename="{name}.csv"'},
            content_type="text/csv; charset=utf-8",
        )

    async def write_json(w: Any) -> None:
        head = {
            "query": form.q,
            "channels": list(form.channels),
            "since": form.since or None,
            "until": form.until or None,
            "edited": form.edited,
            "deleted": form.deleted,
            "media": form.media,
            "sort": form.sort,
        }
        await w.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "rows": [')
        first = True
        async for batch in rows():
            for row in batch:
                await w.write(("\n" if first else ",\n") + json.dumps(row, ensure_ascii=False))
                first = False
        await w.write("\n]}\n")

    return AsgiStream(write_json, content_type="application/json; charset=utf-8")
