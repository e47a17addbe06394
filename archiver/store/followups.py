"""Who is told when a post changes: the recipients of new-post, edit, revert, deletion and
restore alerts (docs/rules.md, "Follow-ups").

- A rule that matches the new version and matched none before is a *new match*: its
  recipients are told (an ``edited`` alert), whatever its ``follow_ups``.
- A change of a post that matched a rule in any of its versions is a *follow-up*: the rule's
  recipients are told when its ``follow_ups`` is ``all`` (the default), or ``alerted`` and they
  were alerted about the post before; never with ``none``.
- A restore (a deleted post seen again) is a correction: whoever was told of the deletion is
  told of the restore.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

from archiver.models import RULE_KIND_OF
from archiver.query import Doc
from archiver.store.archive import Matcher

Recipients = dict[int, set[str]]


def follow_ups_of(matcher: Matcher, name: str) -> str:
    """A rule's ``follow_ups`` ("all" for a matcher that does not say)."""
    getter = getattr(matcher, "follow_ups", None)
    return "all" if getter is None else str(getter(name))


def hits(matcher: Matcher | None, doc: Doc, kind: str) -> Recipients:
    if matcher is None:
        return {}
    return {r: set(names) for r, names in matcher.match(doc, RULE_KIND_OF[kind]).items()}


def _union(maps: Iterable[Recipients]) -> Recipients:
    out: Recipients = {}
    for m in maps:
        for r, names in m.items():
            out.setdefault(r, set()).update(names)
    return out


def change_recipients(
    matcher: Matcher | None,
    kind: str,
    now_doc: Doc | None,
    before_docs: Sequence[Doc],
    alerted: Recipients,
) -> Recipients:
    """Recipients (with rule names) of an alert of ``kind`` (edited, reverted, deleted) about a
    post whose current content is ``now_doc`` (None for a deletion: nothing new to match) and
    whose earlier versions are ``before_docs``; ``alerted``: who was alerted about it already."""
    if matcher is None:
        return {}
    rule_kind = RULE_KIND_OF[kind]
    now = hits(matcher, now_doc, kind) if now_doc is not None else {}
    before = _union(hits(matcher, d, kind) for d in before_docs)
    out: Recipients = {}
    for r, names in now.items():  # new matches
        fresh = names - before.get(r, set())
        if fresh:
            out.setdefault(r, set()).update(fresh)
    for r, names in _union([now, before]).items():  # follow-ups of rules that matched
        for name in names:
            policy = follow_ups_of(matcher, name)
            if policy == "all" or (policy == "alerted" and name in alerted.get(r, set())):
                out.setdefault(r, set()).add(name)
    for r, names in alerted.items():  # alerted by a rule whose query changed since
        for name in names:
            if matcher.wants(name, rule_kind) and follow_ups_of(matcher, name) != "none":
                out.setdefault(r, set()).add(name)
    return out


async def alerted_recipients(
    db: aiosqlite.Connection, post_id: int, kinds: Sequence[str] | None = None
) -> Recipients:
    """Recipients already alerted about a post (optionally: by alerts of ``kinds``)."""
    sql = "SELECT recipient, rules FROM alerts WHERE post_id = ?"
    params: list[Any] = [post_id]
    if kinds:
        sql += f" AND kind IN ({','.join('?' * len(kinds))})"
        params += list(kinds)
    out: Recipients = {}
    async with db.execute(sql + " ORDER BY id", params) as cur:
        async for r in cur:
            out.setdefault(r[0], set()).update(json.loads(r[1]))
    return out


async def version_words(db: aiosqlite.Connection, post_id: int) -> list[tuple[int, str]]:
    """(version id, indexed words) of every version of a post, in the order observed."""
    async with db.execute(
        "SELECT id, words FROM versions WHERE post_id = ? ORDER BY id", (post_id,)
    ) as cur:
        return [(r[0], r[1]) async for r in cur]
