"""Human output for the terminal: dates in the display time zone, highlighted snippets,
CSV and JSONL writers shared by ``search``, ``export`` and ``rules test``."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import datetime
from typing import IO, Any
from zoneinfo import ZoneInfo

import click

from archiver.snippets import Span, mark
from archiver.store.search import ChannelStats, Hit, PostHistory

EXPORT_FIELDS = (
    "channel_id",
    "channel",
    "channel_title",
    "message_id",
    "date",
    "text",
    "snippet",
    "link",
    "edited",
    "deleted",
    "views",
    "forwarded_from",
)


def local(dt: datetime | None, tz: ZoneInfo) -> str:
    if dt is None:
        return "-"
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def highlight(text: str, spans: list[Span], color: bool) -> str:
    if not color:
        return mark(text, spans, "[", "]")
    out: list[str] = []
    pos = 0
    for a, b in spans:
        out.append(text[pos:a])
        out.append(click.style(text[a:b], bold=True, fg="yellow"))
        pos = b
    out.append(text[pos:])
    return "".join(out)


def hit_lines(hit: Hit, tz: ZoneInfo, color: bool) -> list[str]:
    flags = [f for f, on in (("edited", hit.edited), ("DELETED", hit.deleted)) if on]
    where = hit.channel or hit.channel_title or str(hit.channel_id)
    head = f"{local(hit.date, tz)}  {where}"
    if flags:
        head += "  (" + ", ".join(flags) + ")"
    if hit.forwarded_from:
        head += f"  fwd from {hit.forwarded_from}"
    return [
        click.style(head, fg="cyan") if color else head,
        "  " + highlight(hit.snippet, hit.spans, color),
        "  " + hit.link,
    ]


def history_lines(h: PostHistory, tz: ZoneInfo) -> list[str]:
    name = h.channel or h.channel_title or str(h.channel_id)
    out = [f"{name} #{h.message_id}, posted {local(h.date, tz)}  {h.link}"]
    for i, v in enumerate(h.versions, 1):
        when = f"edited {local(v.edit_date, tz)}" if v.edit_date else "original"
        out.append(f"--- version {i} ({when}; seen {local(v.seen_at, tz)} via {v.source})")
        out.append(v.text if v.text else "(no text)")
    if h.deleted:
        out.append(f"--- DELETED (noticed {local(h.deleted_at, tz)}, {h.deleted_how})")
    return out


def stats_lines(rows: Iterable[ChannelStats], tz: ZoneInfo) -> list[str]:
    out = []
    for s in rows:
        name = s.channel or s.title or str(s.channel_id)
        sync = local(s.last_sync, tz)
        state = s.sync_status or ("imported" if s.source == "export" else "never synced")
        if s.flood_wait_until:
            state += f", flood wait until {local(s.flood_wait_until, tz)}"
        if s.last_error:
            state += f": {s.last_error}"
        out.append(
            f"{name} ({s.channel_id}, {s.source}): {s.posts} posts, {s.edited_posts} edited"
            f" ({s.edits} new versions seen), "
            f"{s.deletions} deletions; "
            f"posts {local(s.first_post, tz)} .. {local(s.last_post, tz)}; "
            f"last sync {sync} ({state})"
        )
    return out or [
        "the archive has no channels yet: run `telewatch import FILE` or `telewatch sync`"
    ]


class CsvWriter:
    """CSV that Excel and LibreOffice open with Cyrillic intact: UTF-8 with a BOM, CRLF."""

    def __init__(self, out: IO[str], fields: tuple[str, ...] = EXPORT_FIELDS) -> None:
        out.write("\ufeff")
        self.writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\r\n")
        self.writer.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow({k: _cell(v) for k, v in row.items()})


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as written: channel text is untrusted, and a cell
    starting with = + - @ would run as a formula (CSV injection), so it gets a leading '."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
