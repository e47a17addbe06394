"""What the bot says: alerts, search results, post histories, channel lists, status.

Pure functions from domain objects to Telegram HTML (escaped, see :mod:`bot.format`). Times
are shown in the display time zone; matched words are bold.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from archiver.errors import QueryError
from archiver.query import Query, parse
from archiver.snippets import match_spans
from archiver.store.outbox import AlertRow, OutboxCounts
from archiver.store.search import ChannelStats, Hit, PostHistory
from bot.format import (
    MAX_MESSAGE,
    Span,
    esc,
    link,
    local_time,
    merge_spans,
    styled,
    truncate,
    u16len,
    word_diff,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 5


def channel_label(title: str | None, username: str | None, channel_id: int) -> str:
    if title and username:
        return f"{title} (@{username})"
    return title or (f"@{username}" if username else str(channel_id))


# ---------------------------------------------------------------------------- alerts


def _queries(alert: AlertRow, config_rules: Mapping[str, str]) -> list[Query]:
    texts = [q for _, q in alert.rule_queries]
    texts += [config_rules[n] for n in alert.rules if n in config_rules]
    out: list[Query] = []
    for text in dict.fromkeys(texts):
        try:
            out.append(parse(text))
        except QueryError:
            log.debug("a rule query no longer parses; not highlighting it")
    return out


def matched(text: str, queries: Sequence[Query]) -> list[Span]:
    """Spans of ``text`` holding words any of ``queries`` matched."""
    return merge_spans(s for q in queries for s in match_spans(text, q))


def alert_html(alert: AlertRow, tz: ZoneInfo, config_rules: Mapping[str, str]) -> str:
    """One alert as one message (never more than 4096: long texts are shortened, the link
    leads to the whole post)."""
    queries = _queries(alert, config_rules)
    for budget in (3600, 2400, 1500, 800, 300):
        out = _alert(alert, tz, queries, budget)
        if u16len(out) <= MAX_MESSAGE:
            return out
    return _alert(alert, tz, queries, 100)


def _alert(alert: AlertRow, tz: ZoneInfo, queries: Sequence[Query], budget: int) -> str:
    icon = {"new": "🔔", "edited": "✏️", "deleted": "🗑"}.get(alert.kind, "🔔")
    head = f"{icon} <b>{esc(alert.channel_name)}</b> · {esc(local_time(alert.post_date, tz))}"
    lines = [head]
    empty = f"<i>(no text{': ' + esc(alert.media_kind) if alert.media_kind else ''})</i>"
    if alert.kind == "edited" and alert.old_text is not None:
        removed, added = word_diff(alert.old_text, alert.text)
        half = budget // 2
        old, old_spans = truncate(alert.old_text, matched(alert.old_text, queries), half)
        new, new_spans = truncate(alert.text, matched(alert.text, queries), half)
        lines.append("<i>Edited. Before:</i>")
        lines.append(styled(old, {"b": old_spans, "s": _clip(removed, len(old))}) or empty)
        lines.append("<i>After:</i>")
        lines.append(styled(new, {"b": new_spans, "u": _clip(added, len(new))}) or empty)
    else:
        if alert.kind == "deleted":
            when = local_time(alert.deleted_at, tz) if alert.deleted_at else "just now"
            lines.append(f"<i>Deleted from the channel (noticed {esc(when)}). The text was:</i>")
        text, spans = truncate(alert.text, matched(alert.text, queries), budget)
        lines.append(styled(text, {"b": spans}) or empty)
    rules = ", ".join(esc(r) for r in alert.rules)
    lines.append(f"<i>Rules:</i> {rules}" if rules else "")
    lines.append(link(alert.link))
    return "\n".join(line for line in lines if line)


def _clip(spans: Sequence[Span], n: int) -> list[Span]:
    return [(a, min(b, n)) for a, b in spans if a < n]


# ---------------------------------------------------------------------------- search


def hit_html(hit: Hit, tz: ZoneInfo, number: int | None = None) -> str:
    flags = [f for f, on in (("edited", hit.edited), ("deleted", hit.deleted)) if on]
    head = f"<b>{esc(channel_label(hit.channel_title, hit.channel, hit.channel_id))}</b>"
    head += f" · {esc(local_time(hit.date, tz))}"
    if flags:
        head += " · <i>" + ", ".join(flags) + "</i>"
    if number is not None:
        head = f"{number}. {head}"
    body = styled(hit.snippet, {"b": hit.spans}) or "<i>(no text)</i>"
    return f"{head}\n{body}\n{link(hit.link)}"


def search_page_html(
    query_text: str, hits: Sequence[Hit], offset: int, tz: ZoneInfo, *, more: bool
) -> str:
    if not hits:
        if offset:
            return f"No more results for <code>{esc(query_text)}</code>."
        return f"Nothing found for <code>{esc(query_text)}</code>."
    last = offset + len(hits)
    head = (
        f"Results {offset + 1}–{last}{'' if more else ' (all)'} for <code>{esc(query_text)}</code>"
    )
    blocks = [head] + [hit_html(h, tz, offset + i + 1) for i, h in enumerate(hits)]
    return "\n\n".join(blocks)


def latest_blocks(hits: Sequence[Hit], tz: ZoneInfo, where: str | None) -> list[str]:
    if not hits:
        return [f"No posts archived{' for ' + esc(where) if where else ''} yet."]
    head = f"Latest posts{' of ' + esc(where) if where else ''}:"
    return [head] + [hit_html(h, tz) for h in hits]


# ---------------------------------------------------------------------------- archive


def history_blocks(h: PostHistory, tz: ZoneInfo) -> list[str]:
    name = channel_label(h.channel_title, h.channel, h.channel_id)
    blocks = [
        f"<b>{esc(name)}</b> #{h.message_id} · posted {esc(local_time(h.date, tz))}\n"
        f"{link(h.link)}\n{len(h.versions)} version(s)"
    ]
    prev: str | None = None
    for i, v in enumerate(h.versions, 1):
        when = f"edited {local_time(v.edit_date, tz)}" if v.edit_date else "original"
        head = f"<b>Version {i}</b> <i>({esc(when)}; seen {esc(local_time(v.seen_at, tz))})</i>"
        if prev is None:
            body = esc(v.text)
        else:
            _, added = word_diff(prev, v.text)
            body = styled(v.text, {"u": added})
        blocks.append(f"{head}\n{body or '<i>(no text)</i>'}")
        prev = v.text
    if h.deleted:
        blocks.append(
            f"🗑 <b>Deleted</b> <i>(noticed {esc(local_time(h.deleted_at, tz))}"
            f"{', ' + esc(h.deleted_how) if h.deleted_how else ''})</i>"
        )
    return blocks


def channels_blocks(stats: Sequence[ChannelStats], tz: ZoneInfo) -> list[str]:
    if not stats:
        return ["No channels archived yet."]
    blocks = [f"<b>{len(stats)} channel(s)</b>"]
    for s in stats:
        state = s.sync_status or ("imported" if s.source == "export" else "not synced yet")
        if not s.backfilled and s.source != "export":
            state += ", backfilling"
        blocks.append(
            f"<b>{esc(channel_label(s.title, s.channel, s.channel_id))}</b>\n"
            f"{s.posts} posts, {s.edits} edits, {s.deletions} deletions\n"
            f"last post {esc(local_time(s.last_post, tz))}; "
            f"last sync {esc(local_time(s.last_sync, tz))} ({esc(state)})"
        )
    return blocks


@dataclass(frozen=True, slots=True)
class Status:
    stats: Sequence[ChannelStats]
    counts: OutboxCounts
    now: datetime
    inactive: Mapping[int, str | None]


def _ago(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    secs = max(0, int((now - then).total_seconds()))
    if secs < 120:
        return f"{secs}s ago"
    if secs < 7200:
        return f"{secs // 60} min ago"
    if secs < 172800:
        return f"{secs // 3600} h ago"
    return f"{secs // 86400} days ago"


def status_blocks(st: Status, tz: ZoneInfo) -> list[str]:
    c = st.counts
    alerts = (
        f"<b>Alerts</b>: {c.pending} pending"
        + (
            f" ({c.held} held for {c.inactive_recipients} chat(s) that blocked the bot)"
            if c.held
            else ""
        )
        + f", {c.failed} failed, {c.sent} sent"
    )
    if c.oldest_pending is not None:
        alerts += f"\noldest pending since {esc(local_time(c.oldest_pending, tz))}"
    if c.failed:
        alerts += "\nfailed alerts keep their last error in the outbox (the alerts table)"
    blocks = [alerts]
    if st.inactive:
        ids = ", ".join(f"<code>{cid}</code>" for cid in sorted(st.inactive))
        blocks.append(f"<b>Inactive chats</b>: {ids}")
    lines = [f"<b>Channels</b> ({len(st.stats)})"]
    for s in st.stats:
        name = esc(channel_label(s.title, s.channel, s.channel_id))
        line = (
            f"{name}: last sync ok {_ago(s.last_sync_ok, st.now)}, "
            f"last post {_ago(s.last_post, st.now)}"
        )
        if s.flood_wait_until is not None and s.flood_wait_until > st.now:
            line += f", <b>flood wait</b> until {esc(local_time(s.flood_wait_until, tz))}"
        if s.sync_status and s.sync_status != "ok":
            line += f", <b>{esc(s.sync_status)}</b>"
            if s.last_error:
                line += f": {esc(s.last_error[:200])}"
        lines.append(line)
    blocks.append("\n".join(lines))
    return blocks


def rules_blocks(rules: Sequence[tuple[int, str, str, tuple[str, ...]]]) -> list[str]:
    """``(id, name, query, channels)`` of the user's own rules."""
    if not rules:
        return ["You have no rules. Add one with <code>/watch QUERY</code>."]
    blocks = [f"<b>Your rules</b> ({len(rules)}): tap a button to delete one."]
    for rule_id, name, query, channels in rules:
        line = f"<b>#{rule_id}</b> {esc(name)}"
        if name != query:
            line += f"\n<code>{esc(query)}</code>"
        if channels:
            line += "\nchannels: " + ", ".join(esc(c) for c in channels)
        blocks.append(line)
    return blocks
