"""``telewatch rules test``: run rules over the whole archive before switching them on.

One streaming pass over every version of every post, newest post first, each version matched
against all the rules at once through the same index and evaluator as live alerts
(:class:`archiver.rules.RuleSet`). Like a search, a post matches a rule when any of its
versions does, and counts once. Kinds are not considered: the backtest answers "which posts
would this query, in this channel scope, have caught". Texts are read only for the hits, in
batches, so memory stays flat and the pass reads little more than the word columns.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from archiver.channels import post_link
from archiver.models import Rule
from archiver.query import Doc
from archiver.rules import CompiledRule, RuleSet, sample_stats
from archiver.snippets import Span, mark, snippet
from archiver.store.archive import Archive, iso_utc, parse_ts

_HYDRATE_CHUNK = 200
_FETCH = 1000

# Newest post first; a post's versions together, newest first. ``posts_date`` gives the
# order without sorting the archive (only the few versions of one post are sorted).
_SCAN = """
SELECT p.id, p.channel_id, c.username, c.title, p.message_id, p.date, p.edited,
       p.deleted_at, p.media_kind, p.has_link, v.id, v.words
FROM posts p
JOIN channels c ON c.id = p.channel_id
JOIN versions v ON v.post_id = p.id
WHERE p.is_service = 0
ORDER BY p.date DESC, p.id DESC, v.id DESC
"""


@dataclass(frozen=True, slots=True)
class BacktestHit:
    """One post one rule matched."""

    rule: str
    post_id: int
    version_id: int  # the newest version that matched
    channel_id: int
    channel: str | None  # username
    channel_title: str | None
    message_id: int
    date: datetime
    snippet: str
    spans: list[Span]

    @property
    def link(self) -> str:
        return post_link(self.channel_id, self.channel, self.message_id)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object: exactly the documented keys."""
        return {
            "rule": self.rule,
            "channel_id": self.channel_id,
            "channel": self.channel,
            "message_id": self.message_id,
            "date": iso_utc(self.date),
            "snippet": mark(self.snippet, self.spans),
        }


@dataclass(slots=True)
class RuleResult:
    """Per rule: how many posts matched and the newest of them."""

    rule: Rule
    matches: int = 0
    newest: list[BacktestHit] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Found:
    rule: CompiledRule
    post: tuple[Any, ...]  # post columns of the scan row
    version_id: int


async def _scan(archive: Archive, ruleset: RuleSet) -> AsyncIterator[_Found]:
    """Every (rule, post) match, newest post first, without texts."""
    pid: int | None = None
    post: tuple[Any, ...] = ()
    seen: set[int] = set()  # rules already matched by the current post
    async with archive.db.execute(_SCAN) as cur:
        cur.arraysize = _FETCH
        while rows := await cur.fetchmany(_FETCH):
            for r in rows:
                if r[0] != pid:
                    pid, post, seen = r[0], tuple(r[:10]), set()
                words = tuple(r[11].split())
                doc = Doc(
                    words=words, word_set=frozenset(words),
                    channel_id=r[1], channel_username=r[2], date=r[5], edited=bool(r[6]),
                    deleted=r[7] is not None, media_kind=r[8], has_link=bool(r[9]),
                )  # fmt: skip
                for cr in ruleset.matching(doc):
                    if id(cr) not in seen:
                        seen.add(id(cr))
                        yield _Found(cr, post, r[10])


async def _hydrate(archive: Archive, found: Sequence[_Found]) -> list[BacktestHit]:
    ids = sorted({f.version_id for f in found})
    marks = ",".join("?" * len(ids))
    texts = {
        r[0]: r[1]
        for r in await archive.fetchall(f"SELECT id, text FROM versions WHERE id IN ({marks})", ids)
    }
    out: list[BacktestHit] = []
    for f in found:
        snip, spans = snippet(texts.get(f.version_id, ""), f.rule.query)
        date = parse_ts(f.post[5])
        assert date is not None
        out.append(
            BacktestHit(
                rule=f.rule.name, post_id=f.post[0], version_id=f.version_id,
                channel_id=f.post[1], channel=f.post[2], channel_title=f.post[3],
                message_id=f.post[4], date=date, snippet=snip, spans=spans,
            )
        )  # fmt: skip
    return out


async def _ruleset(archive: Archive, rules: Sequence[Rule] | RuleSet, tz: str) -> RuleSet:
    if isinstance(rules, RuleSet):
        return rules
    compiled = RuleSet.compile(rules, strict=True, tz=tz).rules  # bad rules fail before any read
    return RuleSet(compiled, stats=await sample_stats(archive))


async def iter_backtest(
    archive: Archive, rules: Sequence[Rule] | RuleSet, *, tz: str = "UTC"
) -> AsyncIterator[BacktestHit]:
    """Every (rule, post) match with its snippet, newest post first (``rules test --json``).
    A bad rule raises :class:`~archiver.errors.RuleError` before anything is read. ``tz``:
    the time zone of ``since:``/``until:`` days (the display one, as live matching)."""
    ruleset = await _ruleset(archive, rules, tz)
    batch: list[_Found] = []
    async for f in _scan(archive, ruleset):
        batch.append(f)
        if len(batch) >= _HYDRATE_CHUNK:
            for hit in await _hydrate(archive, batch):
                yield hit
            batch = []
    if batch:
        for hit in await _hydrate(archive, batch):
            yield hit


async def backtest(
    archive: Archive, rules: Sequence[Rule] | RuleSet, *, newest: int = 3, tz: str = "UTC"
) -> list[RuleResult]:
    """Per rule (in the order given): the number of posts matched and the ``newest`` few."""
    ruleset = await _ruleset(archive, rules, tz)
    results = {id(cr): RuleResult(cr.rule) for cr in ruleset.rules}
    keep: list[_Found] = []
    async for f in _scan(archive, ruleset):
        res = results[id(f.rule)]
        res.matches += 1
        if res.matches <= newest:
            keep.append(f)
    for i in range(0, len(keep), _HYDRATE_CHUNK):
        for hit, f in zip(
            await _hydrate(archive, keep[i : i + _HYDRATE_CHUNK]),
            keep[i : i + _HYDRATE_CHUNK],
            strict=True,
        ):
            results[id(f.rule)].newest.append(hit)
    return list(results.values())


def hit_json_line(hit: BacktestHit) -> str:
    return json.dumps(hit.to_json(), ensure_ascii=False)


def format_backtest(
    results: Sequence[RuleResult], tz: ZoneInfo, *, color: bool = False
) -> list[str]:
    """Human output: per rule its match count, then its newest matches."""
    from archiver.display import highlight, local

    out: list[str] = []
    for res in results:
        head = f"{res.rule.name}: {res.matches} post(s)  {res.rule.query}"
        out.append(head)
        for h in res.newest:
            where = h.channel or h.channel_title or str(h.channel_id)
            out.append(f"  {local(h.date, tz)}  {where}  {h.link}")
            out.append("    " + highlight(h.snippet, h.spans, color))
        out.append("")
    total = sum(r.matches for r in results)
    out.append(f"{len(results)} rule(s), {total} match(es) in the archive")
    return out
