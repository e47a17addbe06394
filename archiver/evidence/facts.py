"""What a post's observation log entries say, recomputed from their content alone (pure).

A bundle's report is written from these facts, and ``telewatch evidence verify`` computes them
again from the bundle's log entries, whose content the hash chain covers: a report that says
anything its entries do not is found. Only an entry's ``content`` (canonical JSON, covered by
its ``content_sha``) is read here; the columns beside it are not part of the chain.

The rules are docs/record.md's: versions in the order telewatch observed them, Telegram's edit
time when the source gave one; a deletion is a claim with evidence, and only a confirmed one
(kind ``deleted``) is called deleted; ``missing`` (not shown in a listing) is not a deletion.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from archiver.channels import post_link

# what each kind of entry means, as the report says it
KIND_WORDS = {
    "seen": "first seen",
    "edited": "a new version",
    "late": "an older text, read late (kept in the history, not made current)",
    "reverted": "an earlier version is current again",
    "missing": "not shown in a listing of the channel (not confirmed)",
    "deleted": "deletion confirmed",
    "restored": "seen again after a confirmed deletion (restored)",
    "present": "shown again after it was missing from a listing",
}
STATE_KINDS = ("missing", "deleted", "restored", "present")


class BadContent(ValueError):
    """An entry's content is not what a telewatch log entry holds (named by the caller)."""


@dataclass(frozen=True, slots=True)
class Observation:
    """One log entry, as its content states it."""

    seq: int
    at: str  # UTC 'YYYY-MM-DD HH:MM:SS'
    kind: str
    source: str
    version: int | None  # 1-based index into PostFacts.versions
    how: str | None
    evidence: str | None
    capture_sha: str | None
    capture_url: str | None
    reconstructed: bool = False  # rebuilt from the archive when the log began, not logged live


@dataclass(frozen=True, slots=True)
class VersionFact:
    n: int
    text: str
    entities: Any
    content_sha: str | None
    first_at: str  # when telewatch first observed it
    edit_date: str | None  # Telegram's edit time, when the source gave one
    source: str
    first_seq: int


@dataclass(frozen=True, slots=True)
class PostFacts:
    channel_id: int
    username: str | None
    message_id: int
    versions: tuple[VersionFact, ...]
    observations: tuple[Observation, ...]
    current: int | None  # the version current after the last entry
    state: str  # present | missing | deleted | restored
    state_entry: Observation | None  # the entry that established the state
    deletions: tuple[Observation, ...] = field(default=())  # every confirmed deletion

    @property
    def link(self) -> str:
        return post_link(self.channel_id, self.username, self.message_id)

    @property
    def first_at(self) -> str:
        return self.observations[0].at

    @property
    def last_at(self) -> str:
        return self.observations[-1].at


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise BadContent(f"{key} is not text")
    return value


def _opt(value: Any, key: str) -> str | None:
    return None if value is None else _str(value, key)


def parse_content(text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):  # (nested deeper than Python's stack)
        raise BadContent("content is not JSON") from None
    if not isinstance(obj, dict):
        raise BadContent("content is not a JSON object")
    return obj


def post_key(content: dict[str, Any]) -> tuple[int, int]:
    """(channel id, message id) the content is about."""
    channel = content.get("channel")
    cid = channel.get("id") if isinstance(channel, dict) else None
    mid = content.get("message_id")
    if not isinstance(cid, int) or not isinstance(mid, int):
        raise BadContent("content names no channel id and message id")
    return cid, mid


def post_facts(entries: Sequence[tuple[int, dict[str, Any]]]) -> PostFacts:
    """The facts of one post from its entries ``(seq, content)`` in seq order."""
    if not entries:
        raise BadContent("no entries")
    first = entries[0][1]
    cid, mid = post_key(first)
    channel = first["channel"]
    username = _opt(channel.get("username"), "channel.username")
    versions: list[VersionFact] = []
    by_key: dict[str, int] = {}
    observations: list[Observation] = []
    current: int | None = None
    state, state_entry = "present", None
    deletions: list[Observation] = []
    for seq, c in entries:
        if post_key(c) != (cid, mid):
            raise BadContent(f"entry {seq} is about another post")
        kind = _str(c.get("kind"), "kind")
        at = _str(c.get("at"), "at")
        source = _str(c.get("source"), "source")
        number: int | None = None
        v = c.get("version")
        if isinstance(v, dict):
            text = _str(v.get("text"), "version.text")
            sha = _opt(v.get("content_sha"), "version.content_sha")
            vid = v.get("id")
            key = f"id:{vid}" if isinstance(vid, int) else f"sha:{sha}" if sha else "text:" + text
            number = by_key.get(key)
            if number is None:
                number = len(versions) + 1
                by_key[key] = number
                versions.append(
                    VersionFact(
                        n=number,
                        text=text,
                        entities=v.get("entities"),
                        content_sha=sha,
                        first_at=at,
                        edit_date=_opt(c.get("edit_date"), "edit_date"),
                        source=source,
                        first_seq=seq,
                    )
                )
        elif v is not None:
            raise BadContent("version is not an object")
        capture = c.get("capture")
        cap_sha = cap_url = None
        if isinstance(capture, dict):
            cap_sha = _opt(capture.get("sha256"), "capture.sha256")
            cap_url = _opt(capture.get("url"), "capture.url")
        obs = Observation(
            seq=seq,
            at=at,
            kind=kind,
            source=source,
            version=number,
            how=_opt(c.get("how"), "how"),
            evidence=_opt(c.get("evidence"), "evidence"),
            capture_sha=cap_sha,
            capture_url=cap_url,
            reconstructed=c.get("reconstructed") is True,
        )
        observations.append(obs)
        if number is not None and kind != "late":
            current = number
        if kind in STATE_KINDS:
            state, state_entry = kind, obs
            if kind == "deleted":
                deletions.append(obs)
    return PostFacts(
        channel_id=cid,
        username=username,
        message_id=mid,
        versions=tuple(versions),
        observations=tuple(observations),
        current=current,
        state=state,
        state_entry=state_entry,
        deletions=tuple(deletions),
    )
