"""Personal rules: the keyword rules journalists create from the bot, stored in the archive.

They are the same :class:`~archiver.models.Rule` as the configured ones and go through the same
compiler and matcher (:mod:`archiver.rules`). Every change bumps ``meta.rules_version`` in the
same transaction, so a running archiver notices it with one cheap read before its next write
(:func:`rules_stamp`). Deleting a rule deactivates it (``active = 0``): the alerts it caused keep
naming it, and it stops matching at once.

A rule can be *paused* (``paused``): by its owner (``owner``, ``/pause``), or because its owner or
its chats lost access to the bot (``access``, see :mod:`archiver.store.access`). A paused rule
is kept, listed to its owner, and matches nothing; :func:`list_rules`, which the matcher reads,
leaves paused rules out.

Names are unique among an owner's rules. ``/watch NAME: QUERY`` names a rule
(:func:`split_name`); an unnamed rule is named after its query, with `` (2)``, `` (3)`` ...
when an earlier rule already has that name.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import aiosqlite

from archiver.channels import parse_ref
from archiver.errors import RuleError
from archiver.models import POST_KINDS, Rule
from archiver.query import All, parse
from archiver.store.archive import Archive, ts, utcnow

NAME_MAX = 64
VERSION_KEY = "rules_version"
PAUSED_FOR_ACCESS = "access"
PAUSED_BY_OWNER = "owner"

# "NAME: QUERY": a name of ordinary characters, a colon, then a space. A filter of the query
# language (channel:x, since:2024-05-01) has no space after its colon, so it is never a name.
_NAMED = re.compile(r"^\s*([^:\"()\n]{1,64}?)\s*:\s+(\S.*)$", re.DOTALL)


def split_name(text: str) -> tuple[str | None, str]:
    """``"Херсон: эвакуация -учения"`` -> ``("Херсон", "эвакуация -учения")``; text without a
    name -> ``(None, text)``."""
    m = _NAMED.match(text)
    if m is None:
        return None, text.strip()
    return " ".join(m.group(1).split()), m.group(2).strip()


@dataclass(frozen=True, slots=True)
class RuleEntry:
    """A personal rule as its owner sees it in ``/rules``."""

    rule: Rule
    paused: str | None  # None, "owner" or "access"

    @property
    def chats(self) -> tuple[int, ...]:
        """The chats its alerts go to."""
        owner = self.rule.owner
        return self.rule.notify or ((owner,) if owner is not None else ())


def _validate(
    query: str, channels: Sequence[str], kinds: Iterable[str], name: str | None
) -> tuple[str, str, tuple[str, ...], frozenset[str]]:
    text = query.strip()
    if isinstance(parse(text).root, All):  # QueryError (with the position) if it does not parse
        raise RuleError("a rule needs a query: words to look for, or a filter like channel:name")
    refs = tuple(c.strip() for c in channels if c.strip())
    for ref in refs:
        parse_ref(ref)  # BadChannelRef names the text and the accepted forms
    kind_set = frozenset(kinds)
    unknown = sorted(kind_set - set(POST_KINDS))
    if unknown or not kind_set:
        raise RuleError(
            f"kinds: expected some of {', '.join(POST_KINDS)}, got {', '.join(unknown) or 'none'}"
        )
    label = " ".join((name if name is not None else text).split())
    if not label:
        raise RuleError("a rule name cannot be empty")
    if len(label) > NAME_MAX:
        if name is not None:
            raise RuleError(f"rule name too long ({len(label)} characters, at most {NAME_MAX})")
        label = label[: NAME_MAX - 1] + "…"
    return text, label, refs, kind_set


def _numbered(label: str, n: int) -> str:
    """``label (n)`` within :data:`NAME_MAX` characters."""
    suffix = f" ({n})"
    if len(label) + len(suffix) > NAME_MAX:
        label = label[: NAME_MAX - len(suffix) - 1].rstrip() + "…"
    return label + suffix


async def _taken(db: aiosqlite.Connection, owner: int) -> dict[str, int]:
    async with db.execute(
        "SELECT name, id FROM rules WHERE owner = ? AND active = 1", (owner,)
    ) as cur:
        return {r[0]: r[1] async for r in cur}


async def bump_stamp(db: aiosqlite.Connection) -> None:
    """Tell running archivers that the personal rules changed (inside the change's transaction)."""
    await db.execute(
        "INSERT INTO meta (key, value) VALUES (?, '1')"
        " ON CONFLICT (key) DO UPDATE SET value = CAST(meta.value AS INTEGER) + 1",
        (VERSION_KEY,),
    )


async def add_rule(
    archive: Archive,
    owner: int,
    query: str,
    *,
    channels: Sequence[str] = (),
    notify: Sequence[int] = (),
    kinds: Iterable[str] = POST_KINDS,
    name: str | None = None,
) -> Rule:
    """Store a personal rule of ``owner`` (a Telegram user id) and return it with its id.

    Raises :class:`~archiver.errors.QueryError` (with the position) for a query that does not
    parse, ``BadChannelRef`` for a channel that is not a reference, :class:`RuleError` for
    bad kinds or a name the owner already uses. The name defaults to the query (numbered when
    the owner has a rule of that name already); an empty ``notify`` means the owner.
    """
    text, label, refs, kind_set = _validate(query, channels, kinds, name)
    ordered_kinds = [k for k in POST_KINDS if k in kind_set]
    chats = tuple(dict.fromkeys(int(n) for n in notify))
    async with archive.transaction() as db:
        taken = await _taken(db, owner)
        if label in taken:
            if name is not None:
                raise RuleError(
                    f"you already have a rule named {label!r} (#{taken[label]}):"
                    " choose another name, or delete that rule first"
                )
            n = 2
            while _numbered(label, n) in taken:
                n += 1
            label = _numbered(label, n)
        cur = await db.execute(  # RETURNING: PostgreSQL has no lastrowid
            "INSERT INTO rules (owner, name, query, channels, notify, kinds, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                owner,
                label,
                text,
                json.dumps(list(refs), ensure_ascii=False),
                json.dumps(list(chats)),
                json.dumps(ordered_kinds),
                ts(utcnow()),
            ),
        )
        row = await cur.fetchone()
        rule_id = None if row is None else int(row[0])
        await bump_stamp(db)
    assert rule_id is not None
    return Rule(
        name=label,
        query=text,
        notify=chats,
        channels=refs,
        kinds=kind_set,
        owner=owner,
        id=rule_id,
    )


def _rule(row: sqlite3.Row) -> Rule:
    return Rule(
        name=row["name"],
        query=row["query"],
        notify=tuple(int(n) for n in json.loads(row["notify"])),
        channels=tuple(str(c) for c in json.loads(row["channels"])),
        kinds=frozenset(json.loads(row["kinds"])),
        owner=row["owner"],
        id=row["id"],
    )


async def list_rules(
    archive: Archive, owner: int | None = None, *, include_paused: bool = False
) -> list[Rule]:
    """Personal rules that match posts (not deleted, not paused), oldest first; only
    ``owner``'s when given; paused ones too with ``include_paused``."""
    return [e.rule for e in await _entries(archive, owner, include_paused)]


async def owned_rules(archive: Archive, owner: int, chat_id: int | None = None) -> list[RuleEntry]:
    """``owner``'s rules, paused ones included, oldest first; with ``chat_id`` only those
    whose alerts go to that chat (a group's rules are not listed in a private chat, nor a
    private rule in a group)."""
    entries = await _entries(archive, owner, True)
    if chat_id is None:
        return entries
    return [e for e in entries if chat_id in e.chats]


async def _entries(archive: Archive, owner: int | None, include_paused: bool) -> list[RuleEntry]:
    sql = (
        "SELECT id, owner, name, query, channels, notify, kinds, paused FROM rules WHERE active = 1"
    )
    params: tuple[int, ...] = ()
    if not include_paused:
        sql += " AND paused IS NULL"
    if owner is not None:
        sql += " AND owner = ?"
        params = (owner,)
    rows = await archive.fetchall(sql + " ORDER BY id", params)
    return [RuleEntry(_rule(r), r["paused"]) for r in rows]


async def get_rule(archive: Archive, rule_id: int) -> RuleEntry | None:
    """A rule that was not deleted, paused or not."""
    row = await archive.fetchone(
        "SELECT id, owner, name, query, channels, notify, kinds, paused FROM rules"
        " WHERE id = ? AND active = 1",
        (rule_id,),
    )
    return None if row is None else RuleEntry(_rule(row), row["paused"])


async def set_paused(archive: Archive, rule_id: int, owner: int, paused: bool) -> bool:
    """Pause (or resume) one of ``owner``'s rules. A rule paused because its owner lost access
    is not resumed here (``/allow`` does that). False when nothing changed."""
    if paused:
        sql = (
            "UPDATE rules SET paused = ? WHERE id = ? AND owner = ? AND active = 1"
            " AND paused IS NULL"
        )
        params: tuple[object, ...] = (PAUSED_BY_OWNER, rule_id, owner)
    else:
        sql = (
            "UPDATE rules SET paused = NULL WHERE id = ? AND owner = ? AND active = 1"
            " AND paused = ?"
        )
        params = (rule_id, owner, PAUSED_BY_OWNER)
    async with archive.transaction() as db:
        cur = await db.execute(sql, params)
        changed = cur.rowcount > 0
        if changed:
            await bump_stamp(db)
    return changed


async def rename_rule(archive: Archive, rule_id: int, owner: int, name: str) -> str:
    """Give one of ``owner``'s rules a new name (unique among their rules); returns it.
    Raises :class:`RuleError` for a bad, taken or unknown name."""
    label = " ".join(name.split())
    if not label:
        raise RuleError("a rule name cannot be empty")
    if len(label) > NAME_MAX:
        raise RuleError(f"rule name too long ({len(label)} characters, at most {NAME_MAX})")
    async with archive.transaction() as db:
        taken = await _taken(db, owner)
        if rule_id not in taken.values():
            raise RuleError(f"you have no rule #{rule_id}: see /rules")
        if taken.get(label, rule_id) != rule_id:
            raise RuleError(f"you already have a rule named {label!r} (#{taken[label]})")
        await db.execute("UPDATE rules SET name = ? WHERE id = ?", (label, rule_id))
        await bump_stamp(db)
    return label


async def delete_rule(archive: Archive, rule_id: int, owner: int | None) -> bool:
    """Deactivate a rule; ``owner`` must own it (None: any owner, for the operator's CLI).
    False when there is no such active rule of that owner."""
    sql = "UPDATE rules SET active = 0 WHERE id = ? AND active = 1"
    params: tuple[int, ...] = (rule_id,)
    if owner is not None:
        sql += " AND owner = ?"
        params = (rule_id, owner)
    async with archive.transaction() as db:
        cur = await db.execute(sql, params)
        changed = cur.rowcount > 0
        if changed:
            await bump_stamp(db)
    return changed


async def rules_stamp(archive: Archive) -> tuple[object, ...]:
    """Changes whenever the personal rules do (three index lookups: cheap before every write)."""
    row = await archive.fetchone(
        "SELECT (SELECT value FROM meta WHERE key = ?), count(*), max(id) FROM rules",
        (VERSION_KEY,),
    )
    assert row is not None
    return (row[0], row[1], row[2])
