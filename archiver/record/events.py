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

from archiver.record.content import Signature

PRESENT, MISSING, DELETED, RESTORED = "present", "missing", "deleted", "restored"
STATES = (PRESENT, MISSING, DELETED, RESTORED)
# Sources whose reading of a post says it exists now. An export is a copy made in the past.
LIVE_SOURCES = frozenset({"telethon", "web"})
# Sources that always date an edit (Telegram, exports); the web preview never does.
DATED_SOURCES = frozenset({"telethon", "export"})


@dataclass(frozen=True, slots=True)
class Known:
    """One stored version of a post: its id, content and edit time (``None``: unknown)."""

    id: int
    sig: Signature
    edit_date: str | None


@dataclass(frozen=True, slots=True)
class Held:
    """What the archive holds for a post: its versions in the order observed, which one is
    current, and its deletion state."""

    versions: tuple[Known, ...]
    current: int  # a version id
    state: str = PRESENT

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


def _newer(seen: str | None, current: str | None, source: str) -> bool:
    """Whether an observation is newer than the current version. Telegram and exports date
    every edit; the web preview never does, and observes in time order. An undated text from
    a dated source is older than a dated current one."""
    if current is None:
        return True
    if seen is not None:
        return seen > current
    return source not in DATED_SOURCES


def observe(held: Held | None, seen: Seen) -> list[Event]:
    """The events of reading a post's content (see the module docstring)."""
    if held is None:
        return [Event(NEW_POST)]
    events: list[Event] = []
    if seen.source in LIVE_SOURCES and held.state in (MISSING, DELETED):
        events.append(Event(RESTORED_EV if held.state == DELETED else PRESENT_EV, held.current))
    cur = held.version(held.current)
    if cur.sig.same(seen.sig):
        if seen.sig.merged(cur.sig) != cur.sig:
            events.append(Event(FILLED, cur.id))
        return events
    match = next((v for v in reversed(held.versions) if v.sig.same(seen.sig)), None)
    if match is not None:  # an earlier text again: a revert, or an old copy arriving late
        if _newer(seen.edit_date, cur.edit_date, seen.source):
            events.append(Event(REVERTED, match.id, cur.id))
        return events
    parts = seen.sig.changed_parts(cur.sig)
    if _newer(seen.edit_date, cur.edit_date, seen.source):
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
