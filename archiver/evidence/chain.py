"""The observation log's hash chain: pure functions, no I/O (docs/evidence.md).

Each entry commits to the post it is about (``post_key``, ``"{channel_id}/{message_id}"``), to
its content (``content_sha``), to the raw capture it was read from (``capture_sha``, optional)
and to the entry before it (``prev_hash``)::

    entry_hash = sha256_hex(
        f"telewatch-log-v1\\n{seq}\\n{post_key}\\n{content_sha}\\n{capture_sha or ''}"
        f"\\n{prev_hash}".encode()
    )

so changing, removing or reordering any entry changes every hash after it, and a bare link
(an entry without its content, as in a bundle) still says which post it is about.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

GENESIS = "0" * 64


def canonical(obj: Any) -> bytes:
    """The one byte form of a JSON value that hashes are taken over: exactly
    ``json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()``
    (:func:`canonical_reference`), written by orjson, which gives the same bytes for the
    values a log entry holds (strings, integers, booleans, null, lists, objects with string
    keys; tests/evidence/test_chain.py checks it) 8x faster: the log is written for every
    post an import adds."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def canonical_reference(obj: Any) -> bytes:
    """The definition :func:`canonical` follows (docs/evidence.md), for readers in any
    language."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def post_key(channel_id: int, message_id: int) -> str:
    """The post an entry is about, as its hash commits to it: public channel and message ids."""
    return f"{channel_id}/{message_id}"


def entry_hash(
    seq: int, post_key: str, content_sha: str, capture_sha: str | None, prev_hash: str
) -> str:
    return sha256_hex(
        f"telewatch-log-v1\n{seq}\n{post_key}\n{content_sha}\n{capture_sha or ''}"
        f"\n{prev_hash}".encode()
    )


@dataclass(frozen=True)
class Link:
    """The part of a log entry the chain is made of."""

    seq: int
    post_key: str
    content_sha: str
    capture_sha: str | None
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True)
class Broken:
    """The first link that does not hold, and why in words."""

    seq: int
    reason: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.reason}"


def verify_links(links: Sequence[Link], *, start_prev: str = GENESIS) -> Broken | None:
    """Check consecutive seqs, each prev_hash against the entry before, each entry_hash
    recomputed. ``start_prev`` is the entry_hash before ``links[0]`` (GENESIS for seq 1)."""
    prev = start_prev
    expected_seq: int | None = None
    for link in links:
        if expected_seq is not None and link.seq != expected_seq:
            return Broken(link.seq, f"expected seq {expected_seq} after {expected_seq - 1}")
        if link.prev_hash != prev:
            return Broken(link.seq, "prev_hash does not match the previous entry's entry_hash")
        recomputed = entry_hash(
            link.seq, link.post_key, link.content_sha, link.capture_sha, link.prev_hash
        )
        if link.entry_hash != recomputed:
            return Broken(link.seq, "entry_hash does not match its recomputed hash")
        prev = link.entry_hash
        expected_seq = link.seq + 1
    return None
