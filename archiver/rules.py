"""Keyword rules: compile them, index them by the words they require, match one post.

A rule is a query of :mod:`archiver.query`, parsed by the same parser and evaluated on one
:class:`~archiver.query.Doc` by the same evaluator as a search, plus a channel scope, the kinds
of alert it wants (new, edited, deleted) and its recipients.

Matching thousands of rules per post stays cheap because each rule is indexed by what it
*requires*: a word, a dictionary form or a 2-3 letter prefix that every matching post must
contain (for AND the most selective child, for OR the union of the children, nothing for NOT).
A post gathers the rules filed under its own words, forms and prefixes and evaluates only
those; rules that require nothing (``-foo``, ``channel:x``) are checked on every post. The
result is exactly that of evaluating every rule (``tests/test_rules.py`` checks it with
hypothesis); the measured gain is in ``docs/benchmarks.md``.

:class:`RuleSet` is the :class:`~archiver.store.archive.Matcher` the ingest path calls;
:class:`RuleLoader` installs it on an archive and recompiles it when personal rules change.
The ``alerts`` and ``rules list`` commands' data and formatting are at the end.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from archiver.channels import BadChannelRef, parse_ref
from archiver.errors import QueryError, RuleError
from archiver.models import Rule
from archiver.query import (
    All,
    And,
    Doc,
    Node,
    Or,
    Phrase,
    Prefix,
    Query,
    Term,
    matches,
    parse,
)
from archiver.store.archive import Archive, parse_ts

log = logging.getLogger(__name__)

# A requirement: keys of which a matching post contains at least one. None = no requirement.
# Keys are ("w", word), ("l", lemma) or ("p", the first 2-3 letters of a prefix*).
Key = tuple[str, str]
Req = frozenset[Key] | None
PREFIX_KEY = 3  # a prefix* is filed under its first 3 letters (2 if it only has 2)

# Rough cost of one key in candidate posts: a word or a form is rare next to a 3-letter
# prefix, which is rare next to a 2-letter one. Used to pick the most selective AND child.
_COST = {"w": 1, "l": 1}


def _key_cost(key: Key) -> int:
    if key[0] == "p":
        return 10 if len(key[1]) >= PREFIX_KEY else 100
    return _COST[key[0]]


def _cost(req: frozenset[Key]) -> int:
    return sum(_key_cost(k) for k in req)


def requirement(node: Node) -> Req:
    """What every post matching ``node`` contains at least one of (None: nothing known)."""
    if isinstance(node, Term):
        return frozenset({("w", node.word), *(("l", lemma) for lemma in node.lemmas)})
    if isinstance(node, Phrase):
        # Every word of a phrase is required; the longest is likely the rarest.
        return frozenset({("w", max(node.words, key=len))})
    if isinstance(node, Prefix):
        return frozenset({("p", node.prefix[:PREFIX_KEY])})
    if isinstance(node, Or):
        reqs = [requirement(n) for n in node.items]
        out: set[Key] = set()
        for r in reqs:
            if r is None:
                return None
            out |= r
        return frozenset(out)
    if isinstance(node, And):
        best: frozenset[Key] | None = None
        for n in node.items:
            r = requirement(n)
            if r is not None and (best is None or _cost(r) < _cost(best)):
                best = r
        return best
    return None  # Not, Filter, All


def _exact(node: Node) -> bool:
    """Whether meeting the requirement alone decides a match (a word, or words ORed)."""
    if isinstance(node, Term):
        return True
    return isinstance(node, Or) and all(isinstance(n, Term) for n in node.items)


# ---------------------------------------------------------------------------- compiling


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    query: Query
    root: Node  # query.root, read on every evaluation
    recipients: tuple[int, ...]  # notify, or the owner of a personal rule with none
    channel_ids: frozenset[int]
    channel_usernames: frozenset[str]
    requires: Req
    exact: bool

    @property
    def name(self) -> str:
        return self.rule.name

    def in_scope(self, doc: Doc) -> bool:
        if not self.channel_ids and not self.channel_usernames:
            return True
        if doc.channel_id in self.channel_ids:
            return True
        u = doc.channel_username
        return u is not None and u.lower() in self.channel_usernames

    def matches(self, doc: Doc) -> bool:
        """The full evaluation: channel scope and query (kinds are the caller's business)."""
        return self.in_scope(doc) and matches(self.root, doc)


def describe(rule: Rule) -> str:
    """How errors name a rule: ``'evacuation'``, or ``personal rule 7 'x' of 123``."""
    if rule.owner is None:
        return f"rule {rule.name!r}"
    return f"personal rule {rule.id} {rule.name!r} of {rule.owner}"


def compile_rule(rule: Rule) -> CompiledRule:
    """Parse and index one rule; :class:`RuleError` names the rule and the error's position."""
    try:
        query = parse(rule.query)
    except QueryError as exc:
        raise RuleError(
            f"{describe(rule)}: query {rule.query!r}: {exc}; fix or remove the rule"
        ) from None
    root = query.root
    if isinstance(root, All):
        raise RuleError(f"{describe(rule)}: the query is empty; a rule needs words or filters")
    ids: set[int] = set()
    names: set[str] = set()
    for ref_text in rule.channels:
        try:
            ref = parse_ref(ref_text)
        except BadChannelRef as exc:
            raise RuleError(f"{describe(rule)}: channels: {exc}") from None
        if ref.id is not None:
            ids.add(ref.id)
        elif ref.username is not None:
            names.add(ref.username)
    recipients = rule.notify or ((rule.owner,) if rule.owner is not None else ())
    return CompiledRule(
        rule=rule,
        query=query,
        root=root,
        recipients=tuple(dict.fromkeys(recipients)),
        channel_ids=frozenset(ids),
        channel_usernames=frozenset(names),
        requires=requirement(root),
        exact=_exact(root),
    )


# ---------------------------------------------------------------------------- the rule set


class RuleSet:
    """Compiled, indexed rules: the :class:`~archiver.store.archive.Matcher` of ingest."""

    def __init__(self, rules: Sequence[CompiledRule], broken: Sequence[RuleError] = ()) -> None:
        self.rules: tuple[CompiledRule, ...] = tuple(rules)
        self.broken: tuple[RuleError, ...] = tuple(broken)  # personal rules skipped
        self._kinds: dict[str, frozenset[str]] = {}
        by: dict[str, dict[str, list[int]]] = {"w": {}, "l": {}, "p": {}}
        always: list[int] = []
        for i, cr in enumerate(self.rules):
            self._kinds[cr.name] = self._kinds.get(cr.name, frozenset()) | cr.rule.kinds
            if cr.requires is None:
                always.append(i)
                continue
            for tag, value in cr.requires:
                by[tag].setdefault(value, []).append(i)
        self._always = tuple(always)
        self._by_word = {k: tuple(v) for k, v in by["w"].items()}
        self._by_lemma = {k: tuple(v) for k, v in by["l"].items()}
        self._by_prefix = {k: tuple(v) for k, v in by["p"].items()}
        self._words = frozenset(self._by_word)
        self._lemmas = frozenset(self._by_lemma)
        self._prefix_lens = sorted({len(k) for k in self._by_prefix})

    @classmethod
    def compile(cls, rules: Iterable[Rule], *, strict: bool = True) -> RuleSet:
        """Compile rules. ``strict``: any bad rule raises one :class:`RuleError` naming every
        bad rule (the good ones are not kept half-loaded). Otherwise bad rules are logged,
        skipped and listed in :attr:`broken` (personal rules: one journalist's rule that a
        newer telewatch no longer accepts must not stop everyone's alerts)."""
        good: list[CompiledRule] = []
        bad: list[RuleError] = []
        for rule in rules:
            try:
                good.append(compile_rule(rule))
            except RuleError as exc:
                bad.append(exc)
        if bad and strict:
            if len(bad) == 1:
                raise bad[0]
            raise RuleError(f"{len(bad)} invalid rules: " + "; ".join(str(e) for e in bad))
        for err in bad:
            log.warning("skipping a rule that does not compile: %s", err)
        return cls(good, bad)

    @property
    def size(self) -> int:
        return len(self.rules)

    def candidates(self, doc: Doc) -> list[int]:
        """Indexes of the rules that could match ``doc`` (a superset of those that do)."""
        found: set[int] = set(self._always)
        for w in doc.word_set & self._words:
            found.update(self._by_word[w])
        for lemma in doc.lemmas & self._lemmas:
            found.update(self._by_lemma[lemma])
        if self._prefix_lens:
            by_prefix = self._by_prefix
            for n in self._prefix_lens:
                for key in {w[:n] for w in doc.word_set if len(w) >= n}:
                    hit = by_prefix.get(key)
                    if hit is not None:
                        found.update(hit)
        return sorted(found)

    def matching(self, doc: Doc, kind: str | None = None) -> list[CompiledRule]:
        """The rules that match ``doc`` (and want ``kind``, when given), in rule order."""
        if doc.is_service:
            return []
        out: list[CompiledRule] = []
        rules = self.rules
        for i in self.candidates(doc):
            cr = rules[i]
            if kind is not None and kind not in cr.rule.kinds:
                continue
            if not cr.in_scope(doc):
                continue
            if cr.exact or matches(cr.root, doc):
                out.append(cr)
        return out

    def naive_matching(self, doc: Doc, kind: str | None = None) -> list[CompiledRule]:
        """The same as :meth:`matching`, evaluating every rule (the test and bench baseline)."""
        return [
            cr for cr in self.rules if (kind is None or kind in cr.rule.kinds) and cr.matches(doc)
        ]

    def match(self, doc: Doc, kind: str) -> dict[int, list[str]]:
        """Recipients mapped to the names of the rules that matched (the Matcher protocol)."""
        out: dict[int, list[str]] = {}
        for cr in self.matching(doc, kind):
            for recipient in cr.recipients:
                names = out.setdefault(recipient, [])
                if cr.name not in names:
                    names.append(cr.name)
        return out

    def wants(self, rule_name: str, kind: str) -> bool:
        """Whether a rule of that name exists and alerts on ``kind``. Personal rules of two
        owners may share a name: then any of them wanting ``kind`` is enough."""
        return kind in self._kinds.get(rule_name, frozenset())


# ---------------------------------------------------------------------------- the loader


class RuleLoader:
    """Keeps an archive's matcher current: config rules compiled once (strictly, so a bad one
    stops start-up), personal rules re-read only when their stamp in the archive changes.

    ``RuleLoader(settings.rules).install(archive)``; ingest then calls it before each write.
    """

    def __init__(self, config_rules: Sequence[Rule]) -> None:
        # Strict: one error naming every bad rule, and nothing starts.
        self.config: tuple[CompiledRule, ...] = RuleSet.compile(config_rules, strict=True).rules
        self._stamp: tuple[object, ...] | None = None
        self._personal: dict[int, CompiledRule] = {}
        self._current: RuleSet = RuleSet(self.config)

    def install(self, archive: Archive) -> RuleLoader:
        archive.matcher_loader = self
        archive.matcher = self._current
        return self

    async def __call__(self, archive: Archive) -> RuleSet:
        from archiver.store.personal_rules import list_rules, rules_stamp

        stamp = await rules_stamp(archive)
        if stamp == self._stamp:
            return self._current
        personal = await list_rules(archive)
        compiled: list[CompiledRule] = []
        broken: list[RuleError] = []
        cache: dict[int, CompiledRule] = {}
        for rule in personal:
            assert rule.id is not None
            cr = self._personal.get(rule.id)
            if cr is None or cr.rule != rule:
                try:
                    cr = compile_rule(rule)
                except RuleError as exc:
                    log.warning("skipping a personal rule that does not compile: %s", exc)
                    broken.append(exc)
                    continue
            cache[rule.id] = cr
            compiled.append(cr)
        self._personal = cache
        self._current = RuleSet([*self.config, *compiled], broken)
        self._stamp = stamp
        log.info(
            "rules loaded: %d from the config, %d personal, %d skipped",
            len(self.config),
            len(compiled),
            len(broken),
        )
        return self._current


# ---------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class RuleListing:
    """One line of ``telewatch rules list``."""

    rule: Rule
    error: str | None  # why a personal rule is skipped, if it is

    @property
    def origin(self) -> str:
        return "config" if self.rule.owner is None else f"personal #{self.rule.id}"


async def list_all_rules(
    archive: Archive | None, config_rules: Sequence[Rule]
) -> list[RuleListing]:
    """Configured rules, then the archive's personal rules (with any compile error)."""
    from archiver.store.personal_rules import list_rules

    out = [RuleListing(r, None) for r in config_rules]
    if archive is not None:
        for rule in await list_rules(archive):
            try:
                compile_rule(rule)
            except RuleError as exc:
                out.append(RuleListing(rule, str(exc)))
            else:
                out.append(RuleListing(rule, None))
    return out


def _kinds_text(kinds: frozenset[str]) -> str:
    from archiver.models import POST_KINDS

    return ",".join(k for k in POST_KINDS if k in kinds)


def format_rules_list(items: Sequence[RuleListing]) -> str:
    if not items:
        return "no rules: add [[rules]] to the config, or create one from the bot"
    lines: list[str] = []
    for it in items:
        r = it.rule
        who = ", ".join(str(n) for n in r.notify) or (
            f"owner {r.owner}" if r.owner is not None else "nobody"
        )
        lines.append(f"{r.name}  [{it.origin}]  {r.query}")
        lines.append(
            f"    channels: {', '.join(r.channels) or 'all'}  kinds: {_kinds_text(r.kinds)}"
            f"  notify: {who}"
        )
        if it.error:
            lines.append(f"    SKIPPED: {it.error}")
    return "\n".join(lines)


ALERT_STATUSES = ("pending", "sent", "failed")


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One alert of the outbox, as ``telewatch alerts`` shows it."""

    id: int
    rules: tuple[str, ...]
    channel_id: int
    channel: str
    message_id: int
    kind: str
    recipient: int
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "rules": list(self.rules),
                "channel_id": self.channel_id,
                "message_id": self.message_id,
                "kind": self.kind,
                "recipient": self.recipient,
                "status": self.status,
                "created_at": self.created_at.isoformat(),
                "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            },
            ensure_ascii=False,
        )


async def list_alerts(
    archive: Archive, *, status: str | None = None, limit: int = 50
) -> list[AlertRow]:
    """The outbox, newest first; ``status`` one of pending, sent, failed."""
    if status is not None and status not in ALERT_STATUSES:
        raise RuleError(f"--status: expected one of {', '.join(ALERT_STATUSES)}, got {status!r}")
    where = "WHERE a.status = ?" if status else ""
    params: tuple[object, ...] = (status, limit) if status else (limit,)
    rows = await archive.fetchall(
        "SELECT a.id, a.rules, p.channel_id, coalesce(c.username, c.title, p.channel_id),"
        " p.message_id, a.kind, a.recipient, a.status, a.attempts, a.last_error,"
        " a.created_at, a.sent_at FROM alerts a JOIN posts p ON p.id = a.post_id"
        f" LEFT JOIN channels c ON c.id = p.channel_id {where} ORDER BY a.id DESC LIMIT ?",
        params,
    )
    out: list[AlertRow] = []
    for r in rows:
        created = parse_ts(r[10])
        assert created is not None
        out.append(
            AlertRow(
                id=r[0], rules=tuple(json.loads(r[1])), channel_id=r[2], channel=str(r[3]),
                message_id=r[4], kind=r[5], recipient=r[6], status=r[7], attempts=r[8],
                last_error=r[9], created_at=created, sent_at=parse_ts(r[11]),
            )
        )  # fmt: skip
    return out


def format_alerts(rows: Sequence[AlertRow], tz: ZoneInfo | None = None) -> str:
    if not rows:
        return "no alerts"
    lines: list[str] = []
    for a in rows:
        when = a.created_at.astimezone(tz) if tz else a.created_at
        line = (
            f"#{a.id} {when:%Y-%m-%d %H:%M} {a.status:<7} {a.kind:<7} -> {a.recipient}"
            f"  {a.channel}/{a.message_id}  [{', '.join(a.rules)}]"
        )
        if a.status == "failed" and a.last_error:
            line += f"  ({a.attempts} attempts: {a.last_error})"
        lines.append(line)
    return "\n".join(lines)
