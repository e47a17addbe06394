"""Personal rules: the keyword rules journalists create from the bot, stored in the archive.

They are the same :class:`~archiver.models.Rule` as the configured ones and go through the same
compiler and matcher (:mod:`archiver.rules`). Every change bumps ``meta.rules_version`` in the
same transaction, so a running archiver notices it with one cheap read before its next write
(:func:`rules_stamp`). Deleting a rule deactivates it (``active = 0``): the alerts it caused keep
naming it, and it stops matching at once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence

import aiosqlite

from archiver.channels import parse_ref
from archiver.errors import RuleError
from archiver.models import POST_KINDS, Rule
from archiver.query import All, parse
from archiver.store.archive import Archive, ts, utcnow

NAME_MAX = 64
VERSION_KEY = "rules_version"


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


async def _bump(db: aiosqlite.Connection) -> None:
    await db.execute(
        "INSERT INTO meta (key, value) VALUES (?, '1')"
        " ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
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
    bad kinds or a name the owner already uses. The name defaults to the query; an empty
    ``notify`` means the owner.
    """
    text, label, refs, kind_set = _validate(query, channels, kinds, name)
    ordered_kinds = [k for k in POST_KINDS if k in kind_set]
    chats = tuple(dict.fromkeys(int(n) for n in notify))
    async with archive.transaction() as db:
        async with db.execute(
            "SELECT id FROM rules WHERE owner = ? AND name = ? AND active = 1", (owner, label)
        ) as cur:
            clash = await cur.fetchone()
        if clash is not None:
            raise RuleError(
                f"you already have a rule named {label!r} (#{clash[0]}):"
                " delete it first or choose another name"
            )
        cur = await db.execute(
            "INSERT INTO rules (owner, name, query, channels, notify, kinds, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        rule_id = cur.lastrowid
        await _bump(db)
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


async def list_rules(archive: Archive, owner: int | None = None) -> list[Rule]:
    """Active personal rules, oldest first; only ``owner``'s when given."""
    sql = "SELECT id, owner, name, query, channels, notify, kinds FROM rules WHERE active = 1"
    params: tuple[int, ...] = ()
    if owner is not None:
        sql += " AND owner = ?"
        params = (owner,)
    return [_rule(r) for r in await archive.fetchall(sql + " ORDER BY id", params)]


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
            await _bump(db)
    return changed


async def rules_stamp(archive: Archive) -> tuple[object, ...]:
    """Changes whenever the personal rules do (three index lookups: cheap before every write)."""
    row = await archive.fetchone(
        "SELECT (SELECT value FROM meta WHERE key = ?), count(*), max(id) FROM rules",
        (VERSION_KEY,),
    )
    assert row is not None
    return (row[0], row[1], row[2])
