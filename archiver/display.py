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
from archiver.store.coverage import Coverage
from archiver.store.search import (
    RECORD_FIELDS,
    ChannelStats,
    HistoryEvent,
    Hit,
    PostHistory,
    VersionInfo,
)

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
    *RECORD_FIELDS,
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


def version_label(i: int, v: VersionInfo, tz: ZoneInfo) -> str:
    """How a version is introduced: the first is the original; later ones say when they were
    edited, or that the source gave no edit time (the web preview never does)."""
    if i == 1:
        return "original"
    return f"edited {local(v.edit_date, tz)}" if v.edit_date else "edit time unknown"


EVENT_WORDS = {
    "edited": "new version {v}",
    "late": "an older version {v} arrived late",
    "reverted": "back to version {v}",
    "missing": "not shown in the channel's listing (not a confirmed deletion)",
    "deleted": "DELETED",
    "restored": "RESTORED: shown again after its deletion",
    "present": "shown again",
}


PART_WORDS = {"fmt": "formatting", "links": "link targets", "html": "rendered HTML"}


def event_words(e: HistoryEvent) -> str:
    """What was observed, in words: ``new version 2 (changed: link targets)``, ``DELETED:
    the post page said "Post not found"`` (the CLI's history and the bot's /history)."""
    what = EVENT_WORDS.get(e.kind, e.kind).format(v=e.version or "?")
    if e.parts:
        what += f" (changed: {', '.join(PART_WORDS.get(p, p) for p in e.parts)})"
    if e.evidence and e.kind in ("deleted", "missing"):
        what += f": {e.evidence}"
    return what


def history_lines(h: PostHistory, tz: ZoneInfo) -> list[str]:
    name = h.channel or h.channel_title or str(h.channel_id)
    out = [f"{name} #{h.message_id}, posted {local(h.date, tz)}  {h.link}"]
    for i, v in enumerate(h.versions, 1):
        current = ", current" if i == h.current and len(h.versions) > 1 else ""
        out.append(
            f"--- version {i} ({version_label(i, v, tz)}; seen {local(v.seen_at, tz)}"
            f" via {v.source}{current})"
        )
        out.append(v.text if v.text else "(no text)")
    if h.events:
        out.append("--- what was observed")
        for e in h.events:
            out.append(f"{local(e.at, tz)}  {event_words(e)} (via {e.source})")
    if h.deleted:
        out.append(
            f"--- DELETED (confirmed {local(h.deleted_at, tz)}: "
            f"{h.deleted_evidence or h.deleted_how})"
        )
    elif h.state == "missing":
        out.append("--- not shown in the channel's listing; deletion not confirmed")
    return out


def coverage_lines(c: Coverage, tz: ZoneInfo) -> list[str]:
    """``telewatch coverage``: what the archive can vouch for in one channel."""
    ranges = ", ".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in c.ranges[:20])
    if len(c.ranges) > 20:
        ranges += f", ... ({len(c.ranges)} ranges)"
    states = ", ".join(f"{n} {s}" for s, n in sorted(c.states.items())) or "none"
    out = [
        f"{c.name} ({c.channel_id}, {c.source}): {c.posts} posts archived ({states})",
        f"message ids archived: {ranges or 'none'}",
        f"ids never seen between them: {c.never_seen} (deleted before we looked, service"
        " messages the source does not show, or missed)",
        f"watched since: {local(c.watched_since, tz)}; last check {local(c.last_check_at, tz)}",
        f"last full re-read: {local(c.last_full_check_at, tz) if c.last_full_check_at else 'never'}"
        + (f" (rotation now at id {c.reread_cursor})" if c.reread_cursor else ""),
    ]
    if not c.unwatched:
        out.append("no window without a check since then")
    for w in c.unwatched:
        why = "; ".join(f"{s}: {r or '-'} (x{n})" for s, r, n in w.faults) or "no check ran"
        end = local(w.end, tz) if w.end else "now"
        out.append(f"NOT WATCHED {local(w.start, tz)} .. {end}: {why}")
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
            f"{s.deletions} deletions"
            + (f" (+{s.missing} missing from the listing, unconfirmed)" if s.missing else "")
            + "; "
            f"posts {local(s.first_post, tz)} .. {local(s.last_post, tz)}; "
            f"last sync {sync} ({state}); "
            f"last full re-read {local(s.last_full_check, tz) if s.last_full_check else 'never'}"
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
        self.writer.writerow({k: _cell(_flat(v)) for k, v in row.items() if k != "versions"})


def _flat(value: Any) -> Any:
    """A list (the edit times) as one cell."""
    return "; ".join(str(v) for v in value) if isinstance(value, list) else value


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
