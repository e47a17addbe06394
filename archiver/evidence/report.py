"""The bundle's human-readable report, as Markdown and HTML (pure and deterministic).

Both are written from the same blocks: the bundle's facts (``manifest.json``: when and by what
it was made, the posts asked for, each channel's coverage) and each post's
:class:`~archiver.evidence.facts.PostFacts`, computed from its log entries. ``telewatch evidence
verify`` writes them again from the bundle and compares, so the report can say nothing its
entries do not. Times are UTC, as the log writes them.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from archiver.diff import word_pieces
from archiver.evidence.facts import KIND_WORDS, PostFacts

REPORT_FORMAT = 1
_NEW_CURRENT = ("edited", "late", "reverted")  # kinds whose version the table names
AROUND = timedelta(days=7)  # coverage shown this long before and after a post's observations

# A block: ("h1"|"h2"|"h3"|"p", text) | ("pre", text) | ("diff", [(op, text)]) |
# ("table", header, rows) | ("ul", items)
Block = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Section:
    """A part of the report: the head, or one post (``label``: its link)."""

    label: str
    anchor: str
    blocks: tuple[Block, ...]


def _t(value: str | None) -> str:
    """A time as the report shows it: UTC ``YYYY-MM-DD HH:MM:SS`` (from the log's or ISO form)."""
    if not value:
        return "unknown"
    return value.replace("T", " ").removesuffix("Z")


def _dt(value: str) -> datetime:
    return datetime.strptime(_t(value), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def head_section(meta: dict[str, Any]) -> Section:
    posts = meta.get("posts", [])
    made = f"Made {_t(meta.get('made_at'))} UTC by telewatch {meta.get('telewatch_version')}"
    if meta.get("archive_id"):
        made += f" from archive {meta['archive_id']}"
    log = meta.get("log") or {}
    root = log.get("root")
    if log.get("first_seq") is None:
        chain = "The bundle holds no log entries."
    elif root:
        chain = (
            f"Log entries {log['first_seq']} to {log['last_seq']} are chained, link by link, to"
            f" the daily root of {root['day']} (entry {root['seq']})"
            + (", timestamped by a time-stamping authority." if root.get("tsa") else
               ", which has no timestamp token.")
        )  # fmt: skip
    else:
        chain = (
            f"Log entries {log['first_seq']} to {log['last_seq']} are chained, link by link; no"
            " daily root covered them yet when the bundle was made, so no timestamp vouches"
            " for when they were written."
        )
    request = meta.get("request") or {}
    asked = [f"post {x}" for x in request.get("links") or []]
    if request.get("query") is not None:
        asked.append(f"the search {request['query']!r}")
    for key in ("since", "until"):
        if request.get(key):
            asked.append(f"{key} {request[key]}")
    roots = [
        f"root of {r['day']}: entry {r['seq']}, made {_t(r.get('made_at'))}, "
        + (f"timestamp from {r['tsa_url']}" if r.get("tsa_url") else "no timestamp authority")
        for r in meta.get("roots") or []
    ]
    return Section(
        "head",
        "head",
        (
            ("h1", "telewatch evidence bundle"),
            ("p", f"{made}. {len(posts)} post(s). Asked for: {', '.join(asked) or 'nothing'}."),
            ("p", chain),
            ("ul", roots or ["no daily root"]),
            (
                "p",
                "All times are UTC. 'Observed' is when telewatch saw it; 'edit time' is"
                " Telegram's own, when the source gave one. This bundle shows what telewatch"
                " saw and when, not that Telegram showed it to everyone; 'telewatch evidence"
                " verify' checks it offline.",
            ),
        ),
    )


def _deletion(f: PostFacts) -> str:
    e = f.state_entry
    if f.state == "deleted" and e is not None:
        how = f" ({e.how})" if e.how else ""
        why = f": {e.evidence}" if e.evidence else ""
        return f"Deleted: confirmed at {_t(e.at)} by {e.source}{how}{why}."
    if f.state == "missing" and e is not None:
        return (
            f"Not shown in a listing at {_t(e.at)} ({e.source}), not confirmed: telewatch"
            " does not claim it was deleted."
        )
    if f.state == "restored" and e is not None:
        was = f.deletions[-1].at if f.deletions else None
        return f"Restored: seen again at {_t(e.at)} ({e.source}) after a confirmed deletion" + (
            f" at {_t(was)}." if was else "."
        )
    if f.state == "present" and e is not None:
        return f"Not deleted: shown again at {_t(e.at)} ({e.source}) after it was missing."
    return "No deletion observed."


def _coverage(f: PostFacts, cov: dict[str, Any] | None, made_at: str | None) -> Block:
    if not cov:
        return ("p", "Coverage: the archive holds no coverage for this channel.")
    lo, hi = _dt(f.first_at) - AROUND, _dt(f.last_at) + AROUND
    with contextlib.suppress(ValueError):  # a garbled made_at: the report will not match
        hi = min(hi, _dt(made_at or ""))  # not past when the bundle was made
    items = [
        f"watched since {_t(cov.get('watched_since'))}; last successful check"
        f" {_t(cov.get('last_check_at'))}; last full re-read {_t(cov.get('last_full_check_at'))}"
    ]
    windows = 0
    for w in cov.get("unwatched", []):
        start = _dt(w["start"])
        end = _dt(w["end"]) if w.get("end") else None
        if start > hi or (end is not None and end < lo):
            continue
        windows += 1
        faults = "; ".join(
            f"{x['status']}{': ' + x['reason'] if x.get('reason') else ''} x{x['count']}"
            for x in w.get("faults", [])
        )
        items.append(
            f"not watched from {_t(w['start'])} to {_t(w.get('end')) if end else 'the bundle'}"
            + (f" (failed checks: {faults})" if faults else " (no failed check recorded)")
        )
    if not windows:
        items.append(
            f"no window without watching between {lo:%Y-%m-%d} and {hi:%Y-%m-%d} (7 days"
            " around its observations)"
        )
    return ("ul", items)


def post_section(
    f: PostFacts,
    cov: dict[str, Any] | None,
    missing: frozenset[str] = frozenset(),
    made_at: str | None = None,
) -> Section:
    """A post's part of the report; ``missing``: captures the archive no longer kept;
    ``made_at``: when the bundle was made (coverage is shown up to then)."""
    who = f"@{f.username}" if f.username else "a channel without username"
    blocks: list[Block] = [
        ("h2", f.link),
        ("p", f"Channel {who} (id {f.channel_id}), message {f.message_id}."),
        ("p", _deletion(f)),
    ]
    for v in f.versions:
        current = " (current)" if v.n == f.current else ""
        edit = _t(v.edit_date) if v.edit_date else "not given by the source"
        blocks.append(("h3", f"Version {v.n}{current}"))
        blocks.append(
            ("p", f"Observed {_t(v.first_at)} by {v.source} (entry {v.first_seq});"
                  f" edit time: {edit}.")
        )  # fmt: skip
        blocks.append(("pre", v.text))
        if v.n > 1:
            old = f.versions[v.n - 2].text
            pieces = [(p.op, p.text) for p in word_pieces(old, v.text)]
            blocks.append(("p", f"Changes from version {v.n - 1}, word by word:"))
            blocks.append(("diff", pieces))
    blocks.append(("h3", "Observations"))
    rows = [
        (
            str(o.seq),
            _t(o.at),
            KIND_WORDS.get(o.kind, o.kind)
            + (f" (version {o.version})" if o.version and o.kind in _NEW_CURRENT else "")
            + (f", {o.how}" if o.how else "")
            + (f": {o.evidence}" if o.evidence else "")
            + (" (rebuilt from the archive when the log began)" if o.reconstructed else ""),
            o.source,
            (
                "none"
                if not o.capture_sha
                else o.capture_sha[:12] + (" (no longer kept)" if o.capture_sha in missing else "")
            ),
        )
        for o in f.observations
    ]
    blocks.append(("table", ("entry", "observed", "what", "source", "capture"), rows))
    blocks.append(("h3", "Coverage of the channel around it"))
    blocks.append(_coverage(f, cov, made_at))
    return Section(f.link, f"post-{f.channel_id}-{f.message_id}", tuple(blocks))


def unlogged_section(post: dict[str, Any]) -> Section:
    link = str(post["link"])
    return Section(
        link,
        f"post-{post['channel_id']}-{post['message_id']}",
        (
            ("h2", link),
            (
                "p",
                "The archive holds this post, but the observation log has no entry for it"
                " (archived before the log began): this bundle proves nothing about it.",
            ),
        ),
    )


# ---------------------------------------------------------------------------- Markdown

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _md_block(b: Block) -> str:
    kind = b[0]
    if kind in ("h1", "h2", "h3"):
        return "#" * int(kind[1]) + " " + _md(b[1])
    if kind == "p":
        return _md(b[1])
    if kind == "pre":
        fence = _fence(b[1])
        return f"{fence}text\n{b[1]}\n{fence}"
    if kind == "diff":
        text = "".join(
            t if op == "same" else f"[-{t}-]" if op == "removed" else f"{{+{t}+}}" for op, t in b[1]
        )
        fence = _fence(text)
        return f"{fence}diff-words\n{text}\n{fence}"
    if kind == "table":
        lines = ["| " + " | ".join(b[1]) + " |", "|" + "---|" * len(b[1])]
        for row in b[2]:
            lines.append("| " + " | ".join(_md(c).replace("\n", " ") for c in row) + " |")
        return "\n".join(lines)
    if kind == "ul":
        return "\n".join(f"- {_md(i)}" for i in b[1])
    raise ValueError(kind)


def markdown_parts(sections: Sequence[Section]) -> Iterator[tuple[str, str]]:
    """(label, text) of each section of report.md, in order; joined they are the file."""
    for s in sections:
        yield s.label, "\n\n".join(_md_block(b) for b in s.blocks) + "\n\n"


# ---------------------------------------------------------------------------- HTML

_STYLE = (
    "body{font-family:sans-serif;max-width:50em;margin:2em auto;padding:0 1em}"
    "pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}"
    "del{background:#fdd}ins{background:#dfd}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.2em .4em;vertical-align:top}"
)
HTML_HEAD = (
    '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
    f"<title>telewatch evidence bundle</title><style>{_STYLE}</style></head>\n<body>\n"
)
HTML_TAIL = "</body>\n</html>\n"


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def _html_block(b: Block) -> str:
    kind = b[0]
    if kind in ("h1", "h2", "h3", "p"):
        return f"<{kind}>{_h(b[1])}</{kind}>"
    if kind == "pre":
        return f"<pre>{_h(b[1])}</pre>"
    if kind == "diff":
        tags = {"same": "", "removed": "del", "added": "ins"}
        out = "".join(
            _h(t) if op == "same" else f"<{tags[op]}>{_h(t)}</{tags[op]}>" for op, t in b[1]
        )
        return f"<pre>{out}</pre>"
    if kind == "table":
        head = "".join(f"<th>{_h(c)}</th>" for c in b[1])
        rows = "".join("<tr>" + "".join(f"<td>{_h(c)}</td>" for c in r) + "</tr>" for r in b[2])
        return f"<table><tr>{head}</tr>{rows}</table>"
    if kind == "ul":
        return "<ul>" + "".join(f"<li>{_h(i)}</li>" for i in b[1]) + "</ul>"
    raise ValueError(kind)


def html_parts(sections: Sequence[Section]) -> Iterator[tuple[str, str]]:
    """(label, text) of each part of report.html, in order; joined they are the file."""
    yield "head", HTML_HEAD
    for s in sections:
        body = "\n".join(_html_block(b) for b in s.blocks)
        yield s.label, f'<section id="{_h(s.anchor)}">\n{body}\n</section>\n'
    yield "tail", HTML_TAIL
