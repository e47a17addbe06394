"""Keyword rules: compile them, index them by the words they require, match one post.

A rule is a query of :mod:`archiver.query`, parsed by the same parser and evaluated on one
:class:`~archiver.query.Doc` with the semantics of ``query.matches`` (compiled once into a
predicate that the tests hold equal to it), plus a channel scope, the kinds of alert it wants
(new, edited, deleted) and its recipients.

Matching thousands of rules per post stays cheap because each rule is indexed by what it
*requires*: a word, a dictionary form or a prefix (its first 2 to 5 letters) that every
matching post must contain (for AND the most selective child, for OR the union of the
children, nothing for NOT).
A post gathers the rules filed under its own words, forms and prefixes and evaluates only
those; rules that require nothing (``-foo``, ``channel:x``) are checked on every post. The
result is exactly that of evaluating every rule (``tests/test_rules.py`` checks it with
hypothesis); the measured gain is in ``docs/benchmarks.md``.

:class:`RuleSet` is the :class:`~archiver.store.archive.Matcher` the ingest path calls;
:class:`RuleLoader` installs it on an archive and recompiles it when personal rules change.
The ``alerts`` and ``rules list`` commands' data and formatting are at the end.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import methodcaller
from zoneinfo import ZoneInfo

from archiver.channels import BadChannelRef, parse_ref
from archiver.config import Settings
from archiver.errors import QueryError, RuleError
from archiver.models import POST_KINDS, Rule
from archiver.query import (
    All,
    And,
    Doc,
    Filter,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Query,
    Term,
    contains_phrase,
    match_filter,
    matches,
    parse,
)
from archiver.store.archive import Archive
from archiver.store.outbox import AlertSummary

log = logging.getLogger(__name__)

# A requirement: keys of which a matching post contains at least one. None = no requirement.
# Keys are ("w", word) or ("p", the first 2 to 5 letters of a prefix*).
Key = tuple[str, str]
Req = frozenset[Key] | None
PREFIX_KEY = 5  # a prefix* is filed under its first 5 letters (all, if it has fewer)
SAMPLE = 5000  # recent versions counted to learn how common each key is


class KeyStats:
    """How many of a sample of posts contain each key: what makes one AND child's requirement
    more selective than another's (``обстрел Коваленко`` is filed under the name, not under
    the common word). Without a sample (:func:`default_cost`) a word or a form costs 1 and a
    prefix more the shorter it is."""

    def __init__(self) -> None:
        self.docs = 0
        self.counts: Counter[Key] = Counter()

    def add(self, words: Iterable[str]) -> None:
        ws = set(words)
        keys = {("w", w) for w in ws}
        keys.update(("p", w[:n]) for w in ws for n in range(2, PREFIX_KEY + 1) if len(w) >= n)
        self.counts.update(keys)
        self.docs += 1

    @classmethod
    def from_docs(cls, docs: Iterable[Doc]) -> KeyStats:
        stats = cls()
        for d in docs:
            stats.add(d.word_set)
        return stats

    def cost(self, key: Key) -> int:
        return self.counts.get(key, 0)


_PREFIX_COST = {2: 1000, 3: 200, 4: 100}  # against 1 a word form: a word has ~10-50


def default_cost(key: Key) -> int:
    if key[0] == "p":
        return _PREFIX_COST.get(len(key[1]), 50)
    return 1


def requirement(node: Node, cost: Callable[[Key], int] = default_cost) -> Req:
    """What every post matching ``node`` contains at least one of (None: nothing known).
    ``cost`` estimates how many posts contain a key; the cheapest AND child is chosen."""

    def total(req: frozenset[Key]) -> int:
        return sum(cost(k) for k in req)

    if isinstance(node, Term):
        return frozenset(("w", f) for f in node.forms)
    if isinstance(node, Phrase):
        # Every word of a phrase is required: the rarest one (the longest, on a tie).
        return frozenset({("w", min(node.words, key=lambda w: (cost(("w", w)), -len(w))))})
    if isinstance(node, Prefix):
        return frozenset({("p", node.prefix[:PREFIX_KEY])})
    if isinstance(node, Or):
        out: set[Key] = set()
        for n in node.items:
            r = requirement(n, cost)
            if r is None:
                return None
            out |= r
        return frozenset(out)
    if isinstance(node, And):
        best: frozenset[Key] | None = None
        for n in node.items:
            r = requirement(n, cost)
            if r is not None and (best is None or total(r) < total(best)):
                best = r
        return best
    return None  # Not, Filter, All


async def sample_stats(archive: Archive, limit: int = SAMPLE) -> KeyStats | None:
    """Key counts over the newest ``limit`` versions of the archive (None when it is empty)."""
    stats = KeyStats()
    async with archive.db.execute(
        "SELECT words FROM versions ORDER BY id DESC LIMIT ?", (limit,)
    ) as cur:
        for (words,) in await cur.fetchall():
            stats.add(words.split())
    return stats if stats.docs else None


def _exact(node: Node) -> bool:
    """Whether meeting the requirement alone decides a match: a word, a prefix* no longer
    than its key, or an OR of those."""
    if isinstance(node, Or):
        return all(_exact(n) for n in node.items)
    return isinstance(node, Term) or (isinstance(node, Prefix) and len(node.prefix) <= PREFIX_KEY)


# ---------------------------------------------------------------------------- compiling

Predicate = Callable[[Doc], bool]


def _order(node: Node) -> int:
    """Evaluate cheap children first: one set lookup before a scan of the post's words."""
    if isinstance(node, Term | Filter):
        return 0
    return 1 if isinstance(node, Phrase) else 2


def predicate(node: Node) -> Predicate:
    """``node`` as a function of a doc, equal to ``query.matches(node, doc)`` on non-service
    docs (the tests check it against that reference on generated rules and posts) and a few
    times faster: no dispatch on node types per post, channel references parsed once."""
    if isinstance(node, Term):
        forms = node.forms
        return lambda d: not forms.isdisjoint(d.word_set)
    if isinstance(node, Phrase):
        words, needed = node.words, frozenset(node.words)
        return lambda d: needed <= d.word_set and contains_phrase(d.words, words)
    if isinstance(node, Prefix):
        starts = methodcaller("startswith", node.prefix)  # no Python code per word
        return lambda d: any(map(starts, d.word_set))
    if isinstance(node, And | Or):
        items = tuple(predicate(n) for n in sorted(node.items, key=_order))
        return _all(items) if isinstance(node, And) else _any(items)
    if isinstance(node, Not):
        inner = predicate(node.item)
        return lambda d: not inner(d)
    if isinstance(node, Filter):
        if node.field == "channel":
            ref = parse_ref(node.value)
            if ref.id is not None:
                cid = ref.id
                return lambda d: d.channel_id == cid
            user = ref.username
            return lambda d: d.channel_username is not None and d.channel_username.lower() == user
        flt = node
        return lambda d: match_filter(flt, d)
    return lambda d: True  # All


def _all(items: tuple[Predicate, ...]) -> Predicate:
    if len(items) == 2:
        a, b = items
        return lambda d: a(d) and b(d)

    def every(d: Doc) -> bool:  # a loop: faster than all() over a generator
        for f in items:  # noqa: SIM110
            if not f(d):
                return False
        return True

    return every


def _any(items: tuple[Predicate, ...]) -> Predicate:
    if len(items) == 2:
        a, b = items
        return lambda d: a(d) or b(d)

    def some(d: Doc) -> bool:
        for f in items:  # noqa: SIM110
            if f(d):
                return True
        return False

    return some


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    query: Query
    root: Node  # query.root
    test: Predicate  # root compiled: what live matching evaluates
    name: str
    recipients: tuple[int, ...]  # notify, or the owner of a personal rule with none
    channel_ids: frozenset[int]
    channel_usernames: frozenset[str]
    kinds: frozenset[str]
    scoped: bool  # has a channel scope
    exact: bool  # meeting the indexed requirement is a match

    def in_scope(self, doc: Doc) -> bool:
        if not self.scoped:
            return True
        if doc.channel_id in self.channel_ids:
            return True
        u = doc.channel_username
        return u is not None and u.lower() in self.channel_usernames

    def matches(self, doc: Doc) -> bool:
        """The reference evaluation: channel scope and ``query.matches`` (kinds are the
        caller's business). Live matching uses :attr:`test`, which must agree."""
        return self.in_scope(doc) and matches(self.root, doc)


def describe(rule: Rule) -> str:
    """How errors name a rule: ``'evacuation'``, or ``personal rule 7 'x' of 123``."""
    if rule.owner is None:
        return f"rule {rule.name!r}"
    return f"personal rule {rule.id} {rule.name!r} of {rule.owner}"


def compile_rule(rule: Rule, tz: str = "UTC") -> CompiledRule:
    """Parse and index one rule; :class:`RuleError` names the rule and the error's position.
    ``tz`` (an IANA name) is the time zone whose days ``since:``/``until:`` name: the display
    time zone (``[display] timezone``), as in search, so a rule's day is the day dates show."""
    try:
        query = parse(rule.query, tz)
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
        test=predicate(root),
        name=rule.name,
        recipients=tuple(dict.fromkeys(recipients)),
        channel_ids=frozenset(ids),
        channel_usernames=frozenset(names),
        kinds=rule.kinds,
        scoped=bool(ids or names),
        exact=_exact(root),
    )


# ---------------------------------------------------------------------------- the rule set


class _FirstLetters(dict[str, str]):
    """word -> its first n letters, remembered: a post's words mostly recur, and a remembered
    slice is hashed already, so ``map(cache.__getitem__, words)`` runs without Python code."""

    LIMIT = 200_000

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def __missing__(self, word: str) -> str:
        if len(self) >= self.LIMIT:
            self.clear()
        value = self[word] = word[: self.n]
        return value


class _Index:
    """Rules (by position) filed under their requirement keys."""

    def __init__(self, positions: Iterable[int], reqs: Sequence[Req]) -> None:
        by: dict[str, dict[str, list[int]]] = {"w": {}, "p": {}}
        always: list[int] = []
        for i in positions:
            req = reqs[i]
            if req is None:
                always.append(i)
                continue
            for tag, value in req:
                by[tag].setdefault(value, []).append(i)
        self.always = tuple(always)
        self.by_word = {k: tuple(v) for k, v in by["w"].items()}
        self.by_prefix = {k: tuple(v) for k, v in by["p"].items()}
        self.words = frozenset(self.by_word)
        self.prefix_keys = frozenset(self.by_prefix)
        self.prefix_getters = [
            _FirstLetters(n).__getitem__ for n in sorted({len(k) for k in self.by_prefix})
        ]

    def candidates(self, doc: Doc) -> list[int]:
        found: set[int] = set(self.always)
        for w in doc.word_set & self.words:
            found.update(self.by_word[w])
        # Any first n letters of a post's word that name a prefix key: a shorter word gives
        # itself, which can only equal a shorter key, and that is a true prefix of it too.
        for first_n in self.prefix_getters:
            for key in self.prefix_keys.intersection(map(first_n, doc.word_set)):
                found.update(self.by_prefix[key])
        return sorted(found)


_FOLLOW_RANK = {"none": 0, "alerted": 1, "all": 2}


class RuleSet:
    """Compiled, indexed rules: the :class:`~archiver.store.archive.Matcher` of ingest.
    One index per alert kind holds only the rules that want that kind, and one holds all
    (for the backtest)."""

    def __init__(
        self,
        rules: Sequence[CompiledRule],
        broken: Sequence[RuleError] = (),
        stats: KeyStats | None = None,
    ) -> None:
        self.rules: tuple[CompiledRule, ...] = tuple(rules)
        self.broken: tuple[RuleError, ...] = tuple(broken)  # personal rules skipped
        self.stats = stats
        cost = stats.cost if stats is not None else default_cost
        self.requirements: tuple[Req, ...] = tuple(requirement(cr.root, cost) for cr in rules)
        self._kinds: dict[str, frozenset[str]] = {}
        self._follow: dict[str, str] = {}
        for cr in self.rules:
            self._kinds[cr.name] = self._kinds.get(cr.name, frozenset()) | cr.kinds
            # rules of two owners may share a name: the widest follow-up policy wins
            mine = cr.rule.follow_ups
            if _FOLLOW_RANK[mine] > _FOLLOW_RANK.get(self._follow.get(cr.name, "none"), 0):
                self._follow[cr.name] = mine
            else:
                self._follow.setdefault(cr.name, mine)
        positions = range(len(self.rules))
        self._index: dict[str | None, _Index] = {None: _Index(positions, self.requirements)}
        for kind in POST_KINDS:
            wanting = [i for i in positions if kind in self.rules[i].kinds]
            self._index[kind] = _Index(wanting, self.requirements)

    @classmethod
    def compile(
        cls,
        rules: Iterable[Rule],
        *,
        strict: bool = True,
        stats: KeyStats | None = None,
        tz: str = "UTC",
    ) -> RuleSet:
        """Compile rules. ``strict``: any bad rule raises one :class:`RuleError` naming every
        bad rule (the good ones are not kept half-loaded). Otherwise bad rules are logged,
        skipped and listed in :attr:`broken` (personal rules: one journalist's rule that a
        newer telewatch no longer accepts must not stop everyone's alerts). ``tz``: the
        time zone of ``since:``/``until:`` days (:func:`compile_rule`)."""
        good: list[CompiledRule] = []
        bad: list[RuleError] = []
        for rule in rules:
            try:
                good.append(compile_rule(rule, tz))
            except RuleError as exc:
                bad.append(exc)
        if bad and strict:
            if len(bad) == 1:
                raise bad[0]
            raise RuleError(f"{len(bad)} invalid rules: " + "; ".join(str(e) for e in bad))
        for err in bad:
            log.warning("skipping a rule that does not compile: %s", err)
        return cls(good, bad, stats)

    @property
    def size(self) -> int:
        return len(self.rules)

    def candidates(self, doc: Doc, kind: str | None = None) -> list[int]:
        """Positions of the rules (wanting ``kind``, when given) that could match ``doc``:
        a superset of those that do, in rule order."""
        return self._index[kind].candidates(doc)

    def matching(self, doc: Doc, kind: str | None = None) -> list[CompiledRule]:
        """The rules that match ``doc`` (and want ``kind``, when given), in rule order."""
        if doc.is_service:
            return []
        out: list[CompiledRule] = []
        rules = self.rules
        for i in self._index[kind].candidates(doc):
            cr = rules[i]
            if cr.scoped and not cr.in_scope(doc):
                continue
            if cr.exact or cr.test(doc):
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

    def follow_ups(self, rule_name: str) -> str:
        """The rule's follow-up policy: all | alerted | none (docs/rules.md)."""
        return self._follow.get(rule_name, "all")


# ---------------------------------------------------------------------------- the loader


class RuleLoader:
    """Keeps an archive's matcher current: config rules compiled once (strictly, so a bad one
    stops start-up), personal rules re-read only when their stamp in the archive changes.
    Each reload files the rules using key counts of the archive's newest posts
    (:func:`sample_stats`), sampled once per process (again while the archive is young).

    ``RuleLoader.for_settings(settings).install(archive)``; ingest then calls it before each
    write. ``tz``: the time zone whose days ``since:``/``until:`` name, config and personal
    rules alike (the display time zone: :meth:`for_settings`).
    """

    def __init__(self, config_rules: Sequence[Rule], tz: str = "UTC") -> None:
        self.tz = tz
        # Strict: one error naming every bad rule, and nothing starts.
        self.config: tuple[CompiledRule, ...] = RuleSet.compile(
            config_rules, strict=True, tz=tz
        ).rules
        self._stamp: tuple[object, ...] | None = None
        self._personal: dict[int, CompiledRule] = {}
        self._stats: KeyStats | None = None
        self._current: RuleSet = RuleSet(self.config)

    def install(self, archive: Archive) -> RuleLoader:
        archive.matcher_loader = self
        archive.matcher = self._current
        return self

    @classmethod
    def for_settings(cls, settings: Settings) -> RuleLoader:
        """The config's rules, with days in the display time zone (``[display] timezone``)."""
        return cls(settings.rules, settings.display.timezone.key)

    async def __call__(self, archive: Archive) -> RuleSet:
        from archiver.store.personal_rules import list_rules, rules_stamp

        stamp = await rules_stamp(archive)
        if stamp == self._stamp:
            return self._current
        if self._stats is None or self._stats.docs < SAMPLE:  # none yet, or a young archive
            self._stats = await sample_stats(archive)
        personal = await list_rules(archive)
        compiled: list[CompiledRule] = []
        broken: list[RuleError] = []
        cache: dict[int, CompiledRule] = {}
        for rule in personal:
            assert rule.id is not None
            cr = self._personal.get(rule.id)
            if cr is None or cr.rule != rule:
                try:
                    cr = compile_rule(rule, self.tz)
                except RuleError as exc:
                    log.warning("skipping a personal rule that does not compile: %s", exc)
                    broken.append(exc)
                    continue
            cache[rule.id] = cr
            compiled.append(cr)
        self._personal = cache
        self._current = RuleSet([*self.config, *compiled], broken, self._stats)
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


async def list_alerts(
    archive: Archive, *, status: str | None = None, limit: int = 50
) -> list[AlertSummary]:
    """The outbox, newest first; ``status`` one of pending, sent, failed."""
    from archiver.store.outbox import list_alerts as outbox_alerts

    if status is not None and status not in ALERT_STATUSES:
        raise RuleError(f"--status: expected one of {', '.join(ALERT_STATUSES)}, got {status!r}")
    return await outbox_alerts(archive, status, limit)


def format_alerts(rows: Sequence[AlertSummary], tz: ZoneInfo | None = None) -> str:
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
