"""Time lines: the posts that match a query, one column per channel, on one time axis.

Each matching post is a row at its date, in its channel's column; each edit, deletion,
revert or restore of those posts is a row of its own at the time it happened (Telegram's
edit time when the source gave one, else when telewatch saw it), so a contradiction between
two officials reads top to bottom in the order it happened. The newest :data:`LIMIT`
matches are shown. Below, each channel's activity per day (posts, edits, deletions) over
the time line's span, as an inline SVG chart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from datasette.utils.asgi import Request, Response
from markupsafe import Markup

from archiver.errors import TelewatchError
from archiver.query import Query
from archiver.snippets import snippet
from archiver.store.activity import daily_activity, first_texts, post_events
from archiver.store.archive import Archive
from archiver.store.search import Hit, count, hydrate, iter_matches
from web import fmt
from web.chart import activity_svg
from web.forms import SearchForm
from web.pages import context, error_text, page
from web.search import channel_choices
from web.site import Site

LIMIT = 200
MAX_CHART_DAYS = 120
MARKED = ("edited", "reverted", "deleted", "restored", "missing")
DIFF_CHARS = 1200  # an edit of shorter texts shows its whole diff; longer, a snippet
MIN_CHART_DAYS = 14


@dataclass(frozen=True, slots=True)
class Column:
    channel_id: int
    ref: str  # username or id, for links
    name: str


@dataclass(frozen=True, slots=True)
class Entry:
    at: datetime
    column: int
    kind: str  # post | edited | reverted | deleted | restored | missing
    hit: Hit
    text: Any = None  # Markup: the first text (matches marked), or an edit's diff
    note: str | None = None  # evidence of a deletion


@dataclass(frozen=True, slots=True)
class Chart:
    column: Column
    svg: Any


def columns_of(hits: list[Hit]) -> list[Column]:
    seen: dict[int, Column] = {}
    for h in sorted(hits, key=lambda h: h.date):
        if h.channel_id not in seen:
            seen[h.channel_id] = Column(
                h.channel_id, h.channel or str(h.channel_id), h.channel_title or h.channel or ""
            )
    return list(seen.values())


def _text(text: str, query: Query) -> Markup:
    snip, spans = snippet(text, query)
    return fmt.marked(snip, spans)


async def entries(
    archive: Archive, query: Query, hits: list[Hit], cols: list[Column]
) -> list[Entry]:
    """A row for each post (its text as first seen) and for each change of it (an edit or a
    revert with its words struck and added, a deletion with its evidence)."""
    index = {c.channel_id: i for i, c in enumerate(cols)}
    ids = [h.post_id for h in hits]
    events = await post_events(archive, ids)
    firsts = await first_texts(archive, ids)
    out = []
    for h in hits:
        col = index[h.channel_id]
        current = firsts.get(h.post_id, h.text)
        out.append(Entry(h.date, col, "post", h, _text(current, query)))
        for e in events.get(h.post_id, []):
            if e.kind not in MARKED:
                continue
            text = None
            if e.kind in ("edited", "reverted") and e.text is not None:
                short = len(current) + len(e.text) <= DIFF_CHARS
                text = fmt.diffed(current, e.text) if short else _text(e.text, query)
                current = e.text
            out.append(Entry(e.when, col, e.kind, h, text, e.evidence))
    out.sort(key=lambda e: (e.at, e.kind != "post"))
    return out


async def charts(
    archive: Archive, site: Site, cols: list[Column], hits: list[Hit]
) -> tuple[list[Chart], date | None, date | None]:
    if not hits:
        return [], None, None
    end = max(h.date for h in hits).astimezone(site.tz).date()
    start = min(h.date for h in hits).astimezone(site.tz).date()
    start = max(start, end - timedelta(days=MAX_CHART_DAYS - 1))
    start = min(start, end - timedelta(days=MIN_CHART_DAYS - 1))
    out = []
    for c in cols:
        days = await daily_activity(archive, c.channel_id, start, end, site.tz)
        out.append(Chart(c, activity_svg(days, f"{c.name}: posts, edits and deletions per day")))
    return out, start, end


@page
async def timeline_page(request: Request, site: Site, archive: Archive) -> Response:
    form = SearchForm.from_args(request.args)
    values: dict[str, Any] = {
        "form": form,
        "channels": await channel_choices(archive),
        "columns": [],
        "entries": [],
        "charts": [],
        "total": 0,
        "limit": LIMIT,
        "chart_start": None,
        "chart_end": None,
        "error": None,
    }
    status = 200
    if not form.empty:
        try:
            query = form.query(site.tz.key)
            found: list[tuple[int, int]] = []
            async for pair in iter_matches(archive, query):
                found.append(pair)
                if len(found) >= LIMIT:
                    break
            hits = await hydrate(archive, query, found)
            cols = columns_of(hits)
            values["columns"] = cols
            values["entries"] = await entries(archive, query, hits, cols)
            values["total"] = (
                len(hits) if len(found) < LIMIT else await count(archive, query, cap=10 * LIMIT)
            )
            values["charts"], values["chart_start"], values["chart_end"] = await charts(
                archive, site, cols, hits
            )
        except TelewatchError as exc:
            status, values["error"] = error_text(exc)
    title = f"{form.q} - time line" if form.q else "Time line"
    html = site.render("timeline.html", **context(request, site, title=title, **values))
    return Response.html(html, status=status)
