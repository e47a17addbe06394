"""Test helpers for evidence bundles: an observation log in memory, written with the real chain
(archiver.evidence.chain) in the entry format of archiver.evidence.log, and zip surgery that
changes one file of a bundle (optionally re-hashing the manifest, as a forger would)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archiver.evidence import chain
from archiver.evidence.bundles import manifest_bytes
from archiver.evidence.log import Capture, Entry, Root


@dataclass
class MemLog:
    """The observation log's reading API (archiver.evidence.log) over entries in memory."""

    entries: list[Entry] = field(default_factory=list)
    captures: dict[str, Capture] = field(default_factory=dict)
    roots: list[Root] = field(default_factory=list)

    def add(
        self,
        post_id: int,
        message_id: int,
        kind: str,
        at: str,
        *,
        channel_id: int = -1001811111111,
        username: str | None = "saltpepper",
        source: str = "telethon",
        version: tuple[int, str] | None = None,
        edit_date: str | None = None,
        how: str | None = None,
        evidence: str | None = None,
        capture: tuple[bytes, str, str] | None = None,  # body, media type, url
        reconstructed: bool = False,
    ) -> Entry:
        content: dict[str, Any] = {
            "kind": kind,
            "at": at,
            "channel": {"id": channel_id, "username": username},
            "message_id": message_id,
            "source": source,
        }
        if version is not None:
            vid, text = version
            content["version"] = {
                "id": vid,
                "text": text,
                "entities": None,
                "content_sha": hashlib.sha256(text.encode()).hexdigest(),
            }
        for key, value in (("edit_date", edit_date), ("how", how), ("evidence", evidence)):
            if value is not None:
                content[key] = value
        if reconstructed:
            content["reconstructed"] = True
        cap_sha = None
        if capture is not None:
            body, media_type, url = capture
            cap_sha = hashlib.sha256(body).hexdigest()
            content["capture"] = {
                "sha256": cap_sha, "url": url, "fetched_at": at, "media_type": media_type,
            }  # fmt: skip
            self.captures.setdefault(cap_sha, Capture(cap_sha, media_type, len(body), body, at))
        text = chain.canonical(content)
        seq = len(self.entries) + 1
        prev = self.entries[-1].entry_hash if self.entries else chain.GENESIS
        content_sha = chain.sha256_hex(text)
        e = Entry(
            seq, at, post_id, channel_id, message_id, kind, None,
            version[0] if version else None, source, text.decode(), content_sha, cap_sha, prev,
            chain.entry_hash(
                seq, chain.post_key(channel_id, message_id), content_sha, cap_sha, prev
            ),
        )  # fmt: skip
        self.entries.append(e)
        return e

    def root(self, day: str, token: bytes | None = None, tsa_url: str | None = None) -> Root:
        last = self.entries[-1]
        r = Root(day, last.seq, last.entry_hash, tsa_url, token, f"{day} 23:59:59")
        self.roots.append(r)
        return r

    async def entries_for_post(self, post_id: int) -> list[Entry]:
        return [e for e in self.entries if e.post_id == post_id]

    async def links(self, first_seq: int, last_seq: int) -> list[chain.Link]:
        return [e.link() for e in self.entries if first_seq <= e.seq <= last_seq]

    async def root_covering(self, seq: int) -> Root | None:
        return next((r for r in sorted(self.roots, key=lambda r: r.seq) if r.seq >= seq), None)

    async def get_capture(self, sha256: str) -> Capture | None:
        return self.captures.get(sha256)


def read_member(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as zf:
        return zf.read(name)


def rewrite(
    path: Path,
    out: Path,
    name: str,
    change: Callable[[bytes], bytes],
    *,
    forge: bool = False,
) -> Path:
    """A copy of the bundle with ``name`` changed; ``forge``: manifest.json re-hashed to match."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members[name] = change(members[name])
    if forge and name != "manifest.json":
        manifest = json.loads(members["manifest.json"])
        manifest["files"][name] = {
            "sha256": hashlib.sha256(members[name]).hexdigest(),
            "size": len(members[name]),
        }
        members["manifest.json"] = manifest_bytes(manifest)
    with zipfile.ZipFile(out, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    return out


def flip(data: bytes, old: bytes, new: bytes) -> bytes:
    """``data`` with its first ``old`` replaced by ``new`` (asserting it is there)."""
    assert old in data, old
    return data.replace(old, new, 1)
