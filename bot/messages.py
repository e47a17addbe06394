"""What the bot says: search results, post histories, channel lists, status, rule lists.

Pure functions from domain objects to Telegram HTML (escaped, see :mod:`bot.format`). Times
are shown in the display time zone; matched words are bold. Alerts are in :mod:`bot.alerts`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from archiver.diff import word_diff
from archiver.store.deletions import HOW
from archiver.store.followed import Followed
from archiver.store.following import ChannelStatus
from archiver.store.leases import parse as parse_lease_time
from archiver.store.outbox import OutboxCounts
from archiver.store.personal_rules import PAUSED_FOR_ACCESS, RuleEntry
from archiver.store.search import ChannelStats, HistoryEvent, Hit, PostHistory
from archiver.store.vocabulary import Suggestion
from archiver.worker import Following, Stopped
from bot.alerts import how_of
from bot.format import (
    MAX_MESSAGE,
    esc,
    link,
    local_time,
    styled,
    u16len,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 5

Tr = Callable[[str], str]  # bot.i18n.Translate; ``str``: English


def channel_label(title: str | None, username: str | None, channel_id: int) -> str:
    if title and username:
        return f"{title} (@{username})"
    return title or (f"@{username}" if username else str(channel_id))


# ---------------------------------------------------------------------------- search


def hit_html(hit: Hit, tz: ZoneInfo, number: int | None = None, _: Tr = str) -> str:
    flags = [f for f, on in ((_("edited"), hit.edited), (_("deleted"), hit.deleted)) if on]
    head = f"<b>{esc(channel_label(hit.channel_title, hit.channel, hit.channel_id))}</b>"
    head += f" · {esc(local_time(hit.date, tz))}"
    if flags:
        head += " · <i>" + ", ".join(flags) + "</i>"
    if number is not None:
        head = f"{number}. {head}"
    body = styled(hit.snippet, {"b": hit.spans}) or "<i>" + _("(no text)") + "</i>"
    return f"{head}\n{body}\n{link(hit.link)}"


def search_page_html(
    query_text: str,
    hits: Sequence[Hit],
    offset: int,
    tz: ZoneInfo,
    *,
    more: bool,
    total: int | None = -1,
    _: Tr = str,
) -> str:
    """One page of results. ``total``: how many in all (None: more than were counted;
    -1: not counted)."""
    if not hits:
        if offset:
            return _("No more results for <code>{query}</code>.").format(query=esc(query_text))
        return _("Nothing found for <code>{query}</code>.").format(query=esc(query_text))
    last = offset + len(hits)
    page = ""
    fields = {"first": offset + 1, "last": last, "query": esc(query_text)}
    if total is None:
        head = _("Results {first}–{last} of {total} for <code>{query}</code>")
        fields["total"] = "10000+"
    elif total >= 0:
        total = max(total, last)
        head = _("Results {first}–{last} of {total} for <code>{query}</code>")
        fields["total"] = total
        pages = -(-total // PAGE_SIZE)
        if pages > 1:
            page = " · " + _("page {page}/{pages}").format(
                page=offset // PAGE_SIZE + 1, pages=pages)  # fmt: skip
    elif more:
        head = _("Results {first}–{last} for <code>{query}</code>")
    else:
        head = _("Results {first}–{last} (all) for <code>{query}</code>")
    head = head.format(**fields) + page
    blocks = [head] + [hit_html(h, tz, offset + i + 1, _) for i, h in enumerate(hits)]
    return "\n\n".join(blocks)


def nothing_found_html(
    query_text: str,
    suggestions: Sequence[Suggestion],
    fixed: str | None,
    _: Callable[[str], str] = str,
) -> str:
    """No results, and the archive's nearest words for the query words it does not have."""
    text = _("Nothing found for <code>{query}</code>.").format(query=esc(query_text))
    if not suggestions:
        return text
    lines = [text, _("The archive has no post with these words; the nearest it has:")]
    for s in suggestions:
        near = ", ".join(f"<code>{esc(c)}</code>" for c in s.candidates)
        lines.append(f"• {esc(s.word)} → {near}")
    if fixed is not None:
        lines.append(_("Try: <code>{query}</code>").format(query=esc(fixed)))
    return "\n".join(lines)


def latest_blocks(hits: Sequence[Hit], tz: ZoneInfo, where: str | None, _: Tr = str) -> list[str]:
    if not hits:
        if where:
            return [_("No posts archived for {channel} yet.").format(channel=esc(where))]
        return [_("No posts archived yet.")]
    if where:
        head = _("Latest posts of {channel}:").format(channel=esc(where))
    else:
        head = _("Latest posts:")
    return [head] + [hit_html(h, tz, None, _) for h in hits]


# ---------------------------------------------------------------------------- archive


def observed_words(e: HistoryEvent, _: Tr = str) -> str:
    """What was observed, in words of ``_`` (:func:`archiver.display.event_words` in the
    user's language). Evidence is quoted as it was recorded, unless it is the standard text
    of how the deletion was noticed (then that, translated)."""
    events = {
        "edited": _("new version {v}"),
        "late": _("an older version {v} arrived late"),
        "reverted": _("back to version {v}"),
        "missing": _("not shown in the channel's listing (not a confirmed deletion)"),
        "deleted": _("DELETED"),
        "restored": _("RESTORED: shown again after its deletion"),
        "present": _("shown again"),
    }
    parts = {"fmt": _("formatting"), "links": _("link targets"), "html": _("rendered HTML"),
             "text": _("text"), "media": _("media")}  # fmt: skip
    what = events.get(e.kind, e.kind).format(v=e.version or "?")
    if e.parts:
        changed = ", ".join(parts.get(p, p) for p in e.parts)
        what += " (" + _("changed: {parts}").format(parts=changed) + ")"
    if e.evidence and e.kind in ("deleted", "missing"):
        evidence = e.evidence
        if e.how is not None and evidence == HOW.get(e.how):
            evidence = how_of(e.how, _)
        elif e.kind == "missing" and evidence == "not shown in the channel's listing":
            evidence = _("not shown in the channel's listing")
        what += f": {evidence}"
    return what


def history_blocks(h: PostHistory, tz: ZoneInfo, _: Tr = str) -> list[str]:
    """Every version in the order telewatch observed it, what was observed when, and how a
    deletion was established (docs/record.md)."""
    name = channel_label(h.channel_title, h.channel, h.channel_id)
    blocks = [
        f"<b>{esc(name)}</b> #{h.message_id} · "
        + _("posted {when}").format(when=esc(local_time(h.date, tz)))
        + f"\n{link(h.link)}\n"
        + _("{n} version(s)").format(n=len(h.versions))
    ]
    prev: str | None = None
    for i, v in enumerate(h.versions, 1):
        if i == 1:
            when = _("original")
        elif v.edit_date:
            when = _("edited {when}").format(when=local_time(v.edit_date, tz))
        else:
            when = _("edit time unknown")
        seen = _("seen {when}").format(when=esc(local_time(v.seen_at, tz)))
        current = "; " + _("current") if i == h.current and len(h.versions) > 1 else ""
        version = _("Version {n}").format(n=i)
        head = f"<b>{version}</b> <i>({esc(when)}; {seen}{current})</i>"
        if prev is None:
            body = esc(v.text)
        else:
            _removed, added = word_diff(prev, v.text)
            body = styled(v.text, {"u": added})
        blocks.append(f"{head}\n" + (body or "<i>" + _("(no text)") + "</i>"))
        prev = v.text
    if h.events:
        lines = []
        for e in h.events:
            lines.append(f"{esc(local_time(e.at, tz))} · {esc(observed_words(e, _))}")
        blocks.append("<b>" + _("Observed") + "</b>\n" + "\n".join(lines))
    if h.deleted:
        how = h.deleted_evidence or h.deleted_how
        if h.deleted_how is not None and how in (h.deleted_how, HOW.get(h.deleted_how)):
            how = how_of(h.deleted_how, _)  # the standard words: translated
        confirmed = _("confirmed {when}").format(when=esc(local_time(h.deleted_at, tz)))
        blocks.append(
            "🗑 <b>" + _("Deleted") + f"</b> <i>({confirmed}{': ' + esc(how) if how else ''})</i>"
        )
    elif h.state == "missing":
        missing = _("Not shown in the channel's listing; the deletion is not confirmed.")
        blocks.append(f"<i>{missing}</i>")
    return blocks


def problem_block(problems: Sequence[ChannelStatus], _: Tr = str) -> list[str]:
    """Configured channels that cannot be followed, each with its reason and next try."""
    if not problems:
        return []
    return [
        "⚠️ <b>"
        + _("{n} channel(s) cannot be followed").format(n=len(problems))
        + "</b>\n"
        + "\n".join(esc(p.line()) for p in problems)
    ]


def followed_block(followed: Sequence[Followed], _: Tr = str) -> list[str]:
    """The channels admins follow from the chat (/follow), if any."""
    if not followed:
        return []
    lines = ["<b>" + _("Followed from the chat ({n})").format(n=len(followed)) + "</b>"]
    for f in followed:
        also = _("(also in the config: the config's settings are used)")
        note = " " + also if f.in_config else ""
        lines.append(f"{esc(f.ref)} · {esc(f.source)}{esc(note)}")
    return ["\n".join(lines)]


def channels_blocks(
    stats: Sequence[ChannelStats],
    tz: ZoneInfo,
    problems: Sequence[ChannelStatus] = (),
    followed: Sequence[Followed] = (),
    _: Tr = str,
) -> list[str]:
    if not stats:
        return [
            _("No channels archived yet."),
            *problem_block(problems, _),
            *followed_block(followed, _),
        ]
    blocks = [
        "<b>" + _("{n} channel(s)").format(n=len(stats)) + "</b>",
        *problem_block(problems, _),
        *followed_block(followed, _),
    ]
    for s in stats:
        state = s.sync_status or (_("imported") if s.source == "export" else _("not synced yet"))
        if not s.backfilled and s.source != "export":
            state += ", " + _("backfilling")
        counts = _("{posts} posts, {edits} edits, {deletions} deletions").format(
            posts=s.posts, edits=s.edits, deletions=s.deletions)  # fmt: skip
        if s.missing:
            counts += " " + _("(+{n} missing from the listing, unconfirmed)").format(n=s.missing)
        reread = esc(local_time(s.last_full_check, tz)) if s.last_full_check else _("never")
        times = _("last post {post}; last sync {sync} ({state}); last full re-read {reread}")
        blocks.append(
            f"<b>{esc(channel_label(s.title, s.channel, s.channel_id))}</b>\n{counts}\n"
            + times.format(
                post=esc(local_time(s.last_post, tz)),
                sync=esc(local_time(s.last_sync, tz)),
                state=esc(state),
                reread=reread,
            )
        )
    return blocks


@dataclass(frozen=True, slots=True)
class Status:
    stats: Sequence[ChannelStats]
    counts: OutboxCounts
    now: datetime
    inactive: Mapping[int, str | None]
    paused_since: datetime | None = None  # delivery paused: the archive cannot be written
    paused_reason: str | None = None
    problems: Sequence[ChannelStatus] = ()  # configured channels that cannot be followed
    accounts: Mapping[int, str] | None = None  # channel id -> the [[accounts]] account
    no_account: Sequence[str] = ()  # Telethon channels no account has room for


def _ago(then: datetime | None, now: datetime, _: Tr = str) -> str:
    if then is None:
        return _("never")
    secs = max(0, int((now - then).total_seconds()))
    if secs < 120:
        return _("{n}s ago").format(n=secs)
    if secs < 7200:
        return _("{n} min ago").format(n=secs // 60)
    if secs < 172800:
        return _("{n} h ago").format(n=secs // 3600)
    return _("{n} days ago").format(n=secs // 86400)


def status_blocks(st: Status, tz: ZoneInfo, _: Tr = str) -> list[str]:
    c = st.counts
    held = ""
    if c.held:
        held = " " + _("({held} held for {chats} chat(s) that blocked the bot)").format(
            held=c.held, chats=c.inactive_recipients)  # fmt: skip
    alerts = (
        "<b>" + _("Alerts") + "</b>: " + _("{n} pending").format(n=c.pending) + held + ", "
        + _("{failed} failed, {sent} sent").format(failed=c.failed, sent=c.sent)
    )  # fmt: skip
    if c.oldest_pending is not None:
        alerts += "\n" + _("oldest pending since {when}").format(
            when=esc(local_time(c.oldest_pending, tz)))  # fmt: skip
    if c.failed:
        alerts += "\n" + _("failed alerts keep their last error in the outbox (the alerts table)")
    if c.unknown:
        alerts += "\n" + _(
            "{n} of unknown outcome (no answer from Telegram: they may have been delivered, so "
            "they were not resent; <code>telewatch alerts --status unknown</code>)"
        ).format(n=c.unknown)
    if c.dropped:
        alerts += "\n" + _("{n} dropped on purpose (access withdrawn, or muted)").format(
            n=c.dropped)  # fmt: skip
    blocks = [alerts]
    if st.paused_since is not None:
        blocks.insert(
            0,
            "⚠️ "
            + _(
                "<b>Delivery paused</b> since {when}: the archive cannot be written ({reason})."
                " Free disk space, or end the process holding its write lock."
            ).format(when=esc(local_time(st.paused_since, tz)), reason=esc(st.paused_reason or "")),
        )
    if st.inactive:
        ids = ", ".join(f"<code>{cid}</code>" for cid in sorted(st.inactive))
        blocks.append("<b>" + _("Inactive chats") + f"</b>: {ids}")
    blocks += problem_block(st.problems, _)
    lines = ["<b>" + _("Channels") + f"</b> ({len(st.stats)})"]
    for s in st.stats:
        name = esc(channel_label(s.title, s.channel, s.channel_id))
        line = name + ": " + _("last sync ok {sync}, last post {post}").format(
            sync=_ago(s.last_sync_ok, st.now, _), post=_ago(s.last_post, st.now, _))  # fmt: skip
        if st.accounts is not None and s.channel_id in st.accounts:
            line += ", " + _("account {name}").format(name=esc(st.accounts[s.channel_id]))
        if s.flood_wait_until is not None and s.flood_wait_until > st.now:
            line += ", " + _("<b>flood wait</b> until {when}").format(
                when=esc(local_time(s.flood_wait_until, tz)))  # fmt: skip
        if s.sync_status and s.sync_status != "ok":
            line += f", <b>{esc(s.sync_status)}</b>"
            if s.last_error:
                line += f": {esc(s.last_error[:200])}"
        lines.append(line)
    if st.no_account:
        lines.append(
            _("<b>No account</b> has room for: {channels} (add an account or raise a join_limit)")
            .format(channels=esc(", ".join(st.no_account)))
        )  # fmt: skip
    blocks.append("\n".join(lines))
    return blocks


def rules_page(
    entries: Sequence[RuleEntry], mutes: Mapping[str, datetime], tz: ZoneInfo, _: Tr = str
) -> tuple[str, list[int]]:
    """The user's rules in this chat as one message (at most 4,096 characters: a long list
    ends with how many more there are), and the ids of the rules it shows."""
    if not entries:
        return _("You have no rules here. Add one with <code>/watch QUERY</code>."), []
    head = _("<b>Your rules</b> ({n}): tap 🗑 to delete one.").format(n=len(entries))
    out = head
    shown: list[int] = []
    for n, e in enumerate(entries):
        r = e.rule
        line = f"<b>#{r.id}</b> {esc(r.name)}"
        if e.paused == PAUSED_FOR_ACCESS:
            line += " <i>" + _("(paused: access withdrawn)") + "</i>"
        elif e.paused:
            line += " <i>" + _("(paused: /resume {id})").format(id=r.id) + "</i>"
        if r.name in mutes:
            until = esc(local_time(mutes[r.name], tz))
            line += " <i>" + _("(muted until {when})").format(when=until) + "</i>"
        if r.name != r.query:
            q = r.query if len(r.query) <= 200 else r.query[:199] + "…"
            line += f"\n<code>{esc(q)}</code>"
        if r.channels:
            line += "\n" + _("channels:") + " " + ", ".join(esc(c) for c in r.channels[:10])
        more = "\n\n" + _("… and {n} more rule(s) not shown.").format(n=len(entries) - n)
        if u16len(out + "\n\n" + line + more) > MAX_MESSAGE:
            out += more
            break
        out += "\n\n" + line
        if r.id is not None:
            shown.append(r.id)
    return out, shown


def workers_block(
    rows: Sequence[Following],
    _: Tr = str,
    stopped: Sequence[Stopped] = (),
    tz: ZoneInfo | None = None,
) -> str:
    """/status: which worker follows which channel now (several workers share the archive
    through leases; docs/operations.md "Several workers"), then the workers that stopped
    without a clean stop, with when they were last seen."""
    by: dict[str | None, list[str]] = {}
    for f in rows:
        by.setdefault(f.worker, []).append(f.channel)
    lines = ["<b>" + _("Workers") + "</b>"]
    for who, keys in sorted(by.items(), key=lambda kv: (kv[0] is None, kv[0] or "")):
        channels = esc(", ".join(keys))
        if who is None:
            lines.append(_("no worker follows: {channels}").format(channels=channels))
        else:
            lines.append(_("{worker} follows: {channels}").format(worker=esc(who),
                                                                   channels=channels))  # fmt: skip
    for w in stopped:
        when = esc(local_time(parse_lease_time(w.seen_at), tz or ZoneInfo("UTC")))
        who = esc(w.name)
        if w.left:
            text = _("{worker} stopped, last seen {when}; nobody has taken over: {units}")
            lines.append(text.format(worker=who, when=when, units=esc(", ".join(w.left))))
        else:
            lines.append(_("{worker} stopped, last seen {when}").format(worker=who, when=when))
    return "\n".join(lines)
