"""Alerts as the chat shows them: glanceable, at most about 1,000 characters however long the post.

One alert reads, top to bottom:

- the kind's icon and name (new post, edited, edit reverted, deleted, restored), the channel,
  the post's time in the display time zone, and a media mark (📷 photo, 🎬 video, 📎 file, with
  the count for an album);
- a window of about 400 characters around the first match, the matched words in bold and the
  post's own formatting and links kept; for an edit (or a reverted edit), only the changed
  passages, removed words struck through and added words underlined, with a few words of
  context each side; for a deletion, how it was noticed and the evidence, then the text that
  was deleted;
- the rules that fired and the link to the post;
- buttons: *Full text* (the whole current text), *History* (every version), *Mute rule 24 h*.

Every alert is valid Telegram HTML of at most 4,096 characters (tests/bot/test_bot_alerts.py
checks it on generated posts).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from zoneinfo import ZoneInfo

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from archiver.diff import Opcode, opcodes
from archiver.errors import QueryError
from archiver.query import Query, parse
from archiver.snippets import match_spans
from archiver.store.outbox import AlertRow
from bot.format import MAX_MESSAGE, Span, esc, link, local_time, merge_spans, split_html, u16len
from bot.i18n import Translate
from bot.richtext import Style, entity_styles, render, spans

log = logging.getLogger(__name__)

WINDOW = 400  # characters of the post around the first match
DIFF_BUDGET = 600  # characters of changed passages in an edit alert
CONTEXT_WORDS = 6  # words of context each side of a change

KINDS = {"new": "🔔", "edited": "✏️", "reverted": "↩️", "deleted": "🗑", "restored": "♻️"}
MEDIA_MARKS = {
    "photo": "📷",
    "video": "🎬",
    "animation": "🎬",
    "video_note": "🎬",
    "document": "📎",
    "audio": "📎",
    "voice": "📎",
    "sticker": "📎",
    "other": "📎",
}


def _english(text: str) -> str:
    return text


def kind_of(kind: str, _: Translate = _english) -> tuple[str, str]:
    """An alert kind's icon and name, in the language of ``_``."""
    names = {
        "new": _("new post"),
        "edited": _("edited"),
        "reverted": _("edit reverted"),
        "deleted": _("deleted"),
        "restored": _("restored"),
    }
    return KINDS.get(kind, "🔔"), names.get(kind, kind)


def how_of(how: str, _: Translate = _english) -> str:
    """How a confirmed deletion was noticed (``post_events.how``, docs/record.md)."""
    hows = {
        "live": _("Telegram reported the deletion"),
        "recheck": _("Telegram returned no message for this id when re-read"),
        "web_embed": _("the post page said it was not found"),
        "manual": _("marked deleted by hand"),
    }
    return hows.get(how, how)


# Callback data of the buttons under an alert: "<prefix>:<alert id>".
FULL_TEXT, HISTORY, MUTE = "af", "ah", "am"


def queries(alert: AlertRow, config_rules: Mapping[str, str]) -> list[Query]:
    texts = [q for _, q in alert.rule_queries]
    texts += [config_rules[n] for n in alert.rules if n in config_rules]
    out: list[Query] = []
    for text in dict.fromkeys(texts):
        try:
            out.append(parse(text))
        except QueryError:
            log.debug("a rule query no longer parses; not highlighting it")
    return out


def matched(text: str, qs: Sequence[Query]) -> list[Span]:
    """Spans of ``text`` holding words any of ``qs`` matched."""
    return merge_spans(s for q in qs for s in match_spans(text, q))


def media_mark(alert: AlertRow) -> str:
    """``📷``, ``📷 3`` for an album of three photos, ``📷 2 🎬 1`` for a mixed one."""
    kinds = [k for k in alert.album if k] or ([alert.media_kind] if alert.media_kind else [])
    counts: dict[str, int] = {}
    for k in kinds:
        mark = MEDIA_MARKS.get(k)
        if mark is not None:
            counts[mark] = counts.get(mark, 0) + 1
    if not counts:
        return ""
    if len(kinds) == 1:
        return next(iter(counts))
    return " ".join(f"{m} {n}" for m, n in counts.items())


# ---------------------------------------------------------------------------- the window


def window(text: str, first: int | None, size: int = WINDOW) -> tuple[int, int]:
    """About ``size`` characters of ``text`` around character ``first`` (or from the start),
    cut at spaces where one is near."""
    if len(text) <= size:
        return 0, len(text)
    anchor = first or 0
    start = max(0, min(anchor - size // 4, len(text) - size))
    if start:
        space = text.rfind(" ", max(0, start - 30), start + 1)
        line = text.rfind("\n", max(0, start - 30), start + 1)
        cut = max(space, line)
        start = cut + 1 if cut >= 0 else start
    end = min(len(text), start + size)
    if end < len(text):
        cut = max(text.rfind(" ", end - 40, end), text.rfind("\n", end - 40, end))
        end = cut if cut > start else end
    return start, end


def text_window(text: str, entities: str | None, hits: list[Span], size: int = WINDOW) -> str:
    """The window as HTML: ellipses where it cuts, matched words bold, the post's own
    formatting and links kept."""
    first = hits[0][0] if hits else None
    start, end = window(text, first, size)
    styles = entity_styles(text, entities) + spans("b", hits)
    body = _squeeze(render(text, styles, start, end))
    return ("…" if start > 0 else "") + body + ("…" if end < len(text) else "")


def _squeeze(html_text: str) -> str:
    """At most one blank line in a row (a glance, not a page)."""
    return re.sub(r"\n{3,}", "\n\n", html_text).strip("\n")


# ---------------------------------------------------------------------------- the changes


_WORD = re.compile(r"\S+")


def changes_html(
    old: str, new: str, hits: list[Span], budget: int = DIFF_BUDGET, _: Translate = _english
) -> str:
    """Only what changed from ``old`` to ``new``: each changed passage with
    :data:`CONTEXT_WORDS` words each side, removed words struck through, added ones
    underlined, passages apart joined by ``…``. At most about ``budget`` characters."""
    a = [(m.start(), m.end()) for m in _WORD.finditer(old)]
    b = [(m.start(), m.end()) for m in _WORD.finditer(new)]
    hunks = _grouped([old[s:e] for s, e in a], [new[s:e] for s, e in b], CONTEXT_WORDS)
    if not hunks:
        return "<i>" + _("(the text did not change: only its formatting or media)") + "</i>"
    bold = spans("b", hits)
    parts: list[str] = []
    used = 0
    for n, group in enumerate(hunks):
        piece = "".join(_hunk(old, new, a, b, group, bold))
        piece = re.sub(r"\s*\n\s*", " ⏎ ", piece).strip()
        if used and used + len(piece) > budget:
            more = _("(and {n} more change(s): see History)").format(n=len(hunks) - n)
            parts.append(f"<i>{more}</i>")
            break
        if len(piece) > budget:
            piece = _clip_hunk(old, new, a, b, group, bold, budget)
        before = "…" if group[0][1] > 0 or group[0][3] > 0 else ""
        after = "…" if group[-1][2] < len(a) or group[-1][4] < len(b) else ""
        parts.append(before + piece + after)
        used += len(piece)
    return "\n".join(parts)


def _grouped(a: list[str], b: list[str], context: int) -> list[list[Opcode]]:
    """The changes between two word lists, with up to ``context`` words each side
    (:func:`archiver.diff.opcodes`: difflib with the common head and tail cut off first)."""
    return _group(opcodes(a, b), context)


def _group(ops: list[Opcode], n: int) -> list[list[Opcode]]:
    """Changes with up to ``n`` words of context each side (``SequenceMatcher.
    get_grouped_opcodes``, for opcodes computed above)."""
    if not any(o[0] != "equal" for o in ops):
        return []
    codes = list(ops)
    tag, i1, i2, j1, j2 = codes[0]
    if tag == "equal":
        codes[0] = tag, max(i1, i2 - n), i2, max(j1, j2 - n), j2
    tag, i1, i2, j1, j2 = codes[-1]
    if tag == "equal":
        codes[-1] = tag, i1, min(i2, i1 + n), j1, min(j2, j1 + n)
    groups: list[list[Opcode]] = []
    group: list[Opcode] = []
    for tag, i1, i2, j1, j2 in codes:
        if tag == "equal" and i2 - i1 > n * 2:
            group.append((tag, i1, min(i2, i1 + n), j1, min(j2, j1 + n)))
            groups.append(group)
            group = []
            i1, j1 = max(i1, i2 - n), max(j1, j2 - n)
        group.append((tag, i1, i2, j1, j2))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        groups.append(group)
    return groups


def _hunk(
    old: str,
    new: str,
    a: list[Span],
    b: list[Span],
    group: list[Opcode],
    bold: list[Style],
) -> list[str]:
    out: list[str] = []
    for op, i1, i2, j1, j2 in group:
        if op == "equal":
            out.append(render(new, bold, b[j1][0], b[j2 - 1][1]) + " ")
            continue
        if i2 > i1:
            removed = old[a[i1][0] : a[i2 - 1][1]]
            out.append(f"<s>{esc(removed)}</s> ")
        if j2 > j1:
            s, e = b[j1][0], b[j2 - 1][1]
            out.append("<u>" + render(new, bold, s, e) + "</u> ")
    return out


def _clip_hunk(
    old: str,
    new: str,
    a: list[Span],
    b: list[Span],
    group: list[Opcode],
    bold: list[Style],
    budget: int,
) -> str:
    """One huge change: its first words removed and added, each cut to half the budget."""
    removed = " ".join(old[s:e] for op, i1, i2, _, _ in group if op != "equal"
                       for s, e in a[i1:i2])  # fmt: skip
    added = [(s, e) for op, _, _, j1, j2 in group if op != "equal" for s, e in b[j1:j2]]
    half = budget // 2
    out = ""
    if removed:
        out += f"<s>{esc(removed[:half])}</s>{'…' if len(removed) > half else ''} "
    if added:
        s, e = added[0][0], added[-1][1]
        cut = min(e, s + half)
        out += "<u>" + render(new, bold, s, cut) + "</u>" + ("…" if cut < e else "")
    return out.strip()


# ---------------------------------------------------------------------------- the alert


def alert_html(
    alert: AlertRow, tz: ZoneInfo, config_rules: Mapping[str, str], _: Translate = _english
) -> str:
    """One alert as one glanceable message (see the module docstring), in the language of
    ``_`` (:func:`bot.i18n.translator`; English by default)."""
    qs = queries(alert, config_rules)
    for size in (WINDOW, 200, 80):
        out = _alert(alert, tz, qs, size, _)
        if u16len(out) <= MAX_MESSAGE:
            return out
    return split_html(_alert(alert, tz, [], 0, _))[0]  # unreachable: names and rules are short


def _alert(alert: AlertRow, tz: ZoneInfo, qs: Sequence[Query], size: int, _: Translate) -> str:
    icon, name = kind_of(alert.kind, _)
    head = f"{icon} <b>{esc(alert.channel_name)}</b> · {esc(local_time(alert.post_date, tz))}"
    mark = media_mark(alert)
    lines = [f"{head} · <i>{esc(name)}</i>" + (f" · {mark}" if mark else "")]
    text = alert.text
    hits = matched(text, qs)
    if alert.kind in ("edited", "reverted") and alert.old_text is not None:
        lines.append(changes_html(alert.old_text, text, hits, min(DIFF_BUDGET, size + 200), _))
    else:
        if alert.kind == "deleted":
            lines.append(_deletion(alert, tz, _))
        elif alert.kind == "restored":
            back = _(
                "The post is back in the channel: an earlier deletion alert about it was wrong."
            )
            lines.append(f"<i>{back}</i>")
        if text.strip() and size:
            lines.append(text_window(text, alert.entities, hits, size))
        elif not text.strip():
            none = (_("(no text: {kind})").format(kind=esc(alert.media_kind))
                    if alert.media_kind else _("(no text)"))  # fmt: skip
            lines.append(f"<i>{none}</i>")
    rules = esc(", ".join(alert.rules)[:300])  # cut before escaping: never inside an entity
    if rules:
        lines.append("<i>" + _("Rules:") + f"</i> {rules}")
    lines.append(link(alert.link))
    return "\n".join(line for line in lines if line)


def _deletion(alert: AlertRow, tz: ZoneInfo, _: Translate) -> str:
    when = local_time(alert.deleted_at, tz) if alert.deleted_at else _("just now")
    how = how_of(alert.deleted_how or "", _)
    if how:
        line = _("Deleted from the channel (noticed {when}; {how})").format(
            when=esc(when), how=esc(how))  # fmt: skip
    else:
        line = _("Deleted from the channel (noticed {when})").format(when=esc(when))
    if alert.deleted_evidence:
        line += "\n" + _("Evidence: {evidence}").format(evidence=esc(alert.deleted_evidence[:300]))
    return "<i>" + line + "\n" + _("The text was:") + "</i>"


def alert_buttons(alert: AlertRow, _: Translate = _english) -> InlineKeyboardMarkup:
    """*Full text*, *History*, *Mute rule 24 h* (callback data ``af:ID``, ``ah:ID``,
    ``am:ID``: 64 bytes at most, so the alert id only)."""
    mute = _("Mute rule 24 h") if len(alert.rules) <= 1 else _("Mute rules 24 h")
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(_("Full text"), callback_data=f"{FULL_TEXT}:{alert.id}"),
                InlineKeyboardButton(_("History"), callback_data=f"{HISTORY}:{alert.id}"),
            ],
            [InlineKeyboardButton(mute, callback_data=f"{MUTE}:{alert.id}")],
        ]
    )


def full_text_blocks(text: str, entities: str | None) -> list[str]:
    """The whole text with its formatting, as blocks for :func:`bot.format.pack` (which
    splits one too long for a message without breaking its markup)."""
    if not text.strip():
        return ["<i>(no text)</i>"]
    return [render(text, entity_styles(text, entities))]


SUMMARY_SNIPPET = 60  # characters of each post in a quiet-hours summary
SUMMARY_CHANNEL = 32  # characters of its channel's name


def _clip(text: str, size: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= size else flat[: size - 1].rstrip() + "…"


def summary_html(summary: AlertRow, tz: ZoneInfo, _: Translate = _english) -> str:
    """The alerts held during a chat's quiet hours, one line each, as one message."""
    held = summary.held
    for size in (SUMMARY_SNIPPET, 20, 0):
        head = _("{n} alert(s) while your quiet hours were on").format(n=len(held))
        lines = [f"🌙 <b>{head}</b>"]
        for i, a in enumerate(held, 1):
            icon, name = kind_of(a.kind, _)
            where = link(a.link, f"{_clip(a.channel_name, SUMMARY_CHANNEL)} · "
                                 f"{local_time(a.post_date, tz)}")  # fmt: skip
            text = f": {esc(_clip(a.text, size))}" if size and a.text.strip() else ""
            lines.append(f"{i}. {icon} {where} · <i>{esc(name)}</i>{text}")
        out = "\n".join(lines)
        if u16len(out) <= MAX_MESSAGE:
            return out
    return split_html(out)[0]  # unreachable: 20 lines without text are far below the limit


def summary_buttons(summary: AlertRow, _: Translate = _english) -> InlineKeyboardMarkup:
    """The buttons of a quiet-hours summary: one row per held alert, numbered as its line,
    with the alert's own *Full text*, *History* and *Mute 24 h* (the same ``af:ID``,
    ``ah:ID``, ``am:ID`` data as under an alert). At most ``SUMMARY_MAX`` (20) alerts in a
    summary: 60 buttons, within Telegram's 100 per message; data stays far below 64 bytes."""
    rows = []
    for i, a in enumerate(summary.held, 1):
        rows.append(
            [
                InlineKeyboardButton(
                    _("{n}: Full text").format(n=i), callback_data=f"{FULL_TEXT}:{a.id}"
                ),
                InlineKeyboardButton(_("History"), callback_data=f"{HISTORY}:{a.id}"),
                InlineKeyboardButton(_("Mute 24 h"), callback_data=f"{MUTE}:{a.id}"),
            ]
        )
    return InlineKeyboardMarkup(rows)
