"""What an observation of a post means: the events the archive records. Pure, no I/O.

Two kinds of observation:

- **Content** (:func:`observe`): a source read the post (an export, a history page, a live
  update, a listing page, the post's own page). Against what the archive holds it is a new
  post, the current version again (counters only), a new version, an earlier version becoming
  current again (a *revert*: an event of its own, with an alert), or an older text arriving
  late (kept in the history, not made current). Being read by a live source is also evidence
  that the post exists: a missing post is present again, a deleted one is *restored*.
- **Absence** (:func:`absent`): a listing did not show the post (it becomes *missing*, not
  deleted: the web preview leaves out posts that still exist), or a check confirmed the
  deletion (Telegram's deletion update, ``channels.GetMessages`` answering ``MessageEmpty``,
  the post's page saying "Post not found").

Deletion states: ``present`` -> ``missing`` (not shown, not confirmed) -> ``deleted``
(confirmed) -> ``restored`` (seen again). Only ``deleted`` is a deletion anywhere users look.
docs/record.md states the same rules; tests/record/test_events.py holds them as a table.
"""

from __future__ import annotations

from dataclasses import dataclass

from archiver.record.content import Signature, comparable, kept

PRESENT, MISSING, DELETED, RESTORED = "present", "missing", "deleted", "restored"
STATES = (PRESENT, MISSING, DELETED, RESTORED)
# Sources whose reading of a post says it exists now. An export is a copy made in the past.
LIVE_SOURCES = frozenset({"telethon", "web"})
# Sources that always date an edit (Telegram, exports); the web preview never does.
DATED_SOURCES = frozenset({"telethon", "export"})
EXPORT = "export"  # a copy made in the past, whose formatting and links are lossy


@dataclass(frozen=True, slots=True)
class Known:
    """One stored version of a post: its id, content and edit time (``None``: unknown)."""

    id: int
    sig: Signature
    edit_date: str | None


@dataclass(frozen=True, slots=True)
class Since:
    """How the current version became current (its first observation, or the revert that
    made it current again): Telegram's edit time when the source gave one (``None``: the
    original text, or the web preview, which gives none), the source, and when telewatch
    observed it. Times in the archive's form (``YYYY-MM-DD HH:MM:SS`` UTC)."""

    edit_date: str | None
    source: str | None = None  # None: not known (then only edit times are compared)
    at: str | None = None


@dataclass(frozen=True, slots=True)
class Held:
    """What the archive holds for a post: its versions in the order observed, which one is
    current, its deletion state, and how the current one became current (``None``: as the
    current version was first observed, with its own edit time)."""

    versions: tuple[Known, ...]
    current: int  # a version id
    state: str = PRESENT
    since: Since | None = None

    def version(self, vid: int) -> Known:
        for v in self.versions:
            if v.id == vid:
                return v
        raise KeyError(vid)


@dataclass(frozen=True, slots=True)
class Seen:
    """One observation of a post's content by a source."""

    sig: Signature
    source: str
    edit_date: str | None = None
    # A service message ("Channel created", a pin): Telegram never edits one, and sources
    # render it differently (the export writes an empty text, the web preview the words).
    service: bool = False


# Events. ``kind`` names them in the archive (post_events.kind) and in alerts.
NEW_POST = "new"  # the first observation (the posts row itself records it)
NEW_VERSION = "edited"  # a new version, made current
LATE_VERSION = "late"  # a new version older than the current one: history only
REVERTED = "reverted"  # an earlier version became current again
FILLED = "filled"  # same content; parts the stored version did not know are now known
COUNTERS = "counters"  # same content: only counters refresh (always, for any observation)
MISSING_EV = "missing"
DELETED_EV = "deleted"
RESTORED_EV = "restored"
PRESENT_EV = "present"  # a missing post shown again (no deletion had been claimed)


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    version: int | None = None  # the version it concerns (a matched earlier one for REVERTED)
    prev: int | None = None  # the version current before it
    parts: tuple[str, ...] = ()  # for NEW_VERSION / LATE_VERSION: which parts changed


def _newer(seen: Seen, since: Since) -> bool:
    """Whether an observation is newer than the current version. The web preview never dates
    an edit, and observes in time order. Telegram and exports date every edit (an undated
    text is the original): a dated text is newer than a current text with an earlier edit
    time (a revert's included), than the original, or than a text the web preview showed
    before that edit time. An original text never follows another text."""
    if seen.source not in DATED_SOURCES:
        return True
    if since.edit_date is not None:
        return seen.edit_date is not None and seen.edit_date > since.edit_date
    if since.source is None or since.at is None:
        return True  # nothing known of when the current text was written
    if seen.edit_date is None:
        return False
    if since.source in DATED_SOURCES:
        return True  # the current text is the original
    return seen.edit_date > since.at  # the web showed the current text at `at`


def observe(held: Held | None, seen: Seen) -> list[Event]:
    """The events of reading a post's content (see the module docstring)."""
    if held is None:
        return [Event(NEW_POST)]
    events: list[Event] = []
    if seen.source in LIVE_SOURCES and held.state in (MISSING, DELETED):
        events.append(Event(RESTORED_EV if held.state == DELETED else PRESENT_EV, held.current))
    if seen.service:  # another rendering of the same action: never a version
        return events
    cur = held.version(held.current)
    if seen.sig == cur.sig:  # the same reading again (most re-reads): nothing to compare
        return events
    view = comparable(seen.sig, cur.sig)
    if cur.sig.same(view):
        if kept(seen.sig, cur.sig) != cur.sig:
            events.append(Event(FILLED, cur.id))
        return events
    match = next(
        (v for v in reversed(held.versions) if v.sig.same(comparable(seen.sig, v.sig))), None
    )
    since = held.since or Since(cur.edit_date)
    if match is not None:  # an earlier text again: a revert, or an old copy arriving late
        if _newer(seen, since):
            events.append(Event(REVERTED, match.id, cur.id))
        return events
    parts = view.changed_parts(cur.sig)
    if _newer(seen, since):
        events.append(Event(NEW_VERSION, None, cur.id, parts))
    else:
        events.append(Event(LATE_VERSION, None, cur.id, parts))
    return events


def absent(state: str, claim: str) -> Event | None:
    """The event of a claim about a post's existence, or ``None`` when it changes nothing.

    ``claim``: ``missing`` (a listing did not show it), ``deleted`` (a confirmed deletion) or
    ``present`` (a check showed it exists, without its content being re-read)."""
    if claim == MISSING:
        return Event(MISSING_EV) if state in (PRESENT, RESTORED) else None
    if claim == DELETED:
        return Event(DELETED_EV) if state != DELETED else None
    if claim == PRESENT:
        if state == DELETED:
            return Event(RESTORED_EV)
        if state == MISSING:
            return Event(PRESENT_EV)
        return None
    raise ValueError(f"unknown claim {claim!r}")


def state_after(state: str, event: Event) -> str:
    """The deletion state after an event."""
    return {
        MISSING_EV: MISSING,
        DELETED_EV: DELETED,
        RESTORED_EV: RESTORED,
        PRESENT_EV: PRESENT,
    }.get(event.kind, state)
