"""Raw captures: the bytes telewatch read an observation from (docs/evidence.md).

Pure (no I/O): the web source builds a :class:`Raw` from each answer it reads, the Telethon
source's capture is the message object's JSON (``versions.raw``). The store keeps a capture
zlib-compressed under the SHA-256 of its bytes (:mod:`archiver.evidence.log`), so the same
bytes are kept once.

A web capture is the HTTP response as telewatch read it: the status line, the headers as
received, a blank line, and the body with its ``Content-Encoding`` undone. A body longer than
``[evidence] max_capture_bytes`` is cut there, and the capture says so in a last header line
``X-Telewatch-Truncated: <the body's full size in bytes>``. A ``Set-Cookie`` header's value
is replaced by ``[not kept]``: t.me gives each client a session cookie, which is telewatch's,
not part of what the channel showed, and bundles are handed to others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

HTTP_RESPONSE = "application/http;msgtype=response"
JSON = "application/json"
DEFAULT_MAX_BYTES = 2_000_000
TRUNCATED_HEADER = "X-Telewatch-Truncated"
PRIVATE_HEADERS = frozenset({"set-cookie"})  # telewatch's own session with t.me
NOT_KEPT = "[not kept]"


@dataclass(frozen=True, slots=True)
class Raw:
    """A capture before it is stored: what was read, from where, when."""

    url: str
    fetched_at: str  # UTC 'YYYY-MM-DD HH:MM:SS'
    media_type: str
    data: bytes
    truncated: int | None = None  # the body's full size, when it was cut
    sha256: str = field(init=False)  # of ``data``: the capture's address

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())

    def ref(self) -> dict[str, Any]:
        """What a log entry's content says of its capture."""
        out: dict[str, Any] = {
            "sha256": self.sha256,
            "url": self.url,
            "fetched_at": self.fetched_at,
            "media_type": self.media_type,
        }
        if self.truncated is not None:
            out["truncated"] = self.truncated
        return out


def http_response(
    *,
    url: str,
    fetched_at: str,
    http_version: str,
    status: int,
    reason: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Raw:
    """The capture of one HTTP answer (see the module docstring)."""
    lines = [f"{http_version} {status} {reason}".rstrip()]
    lines += [f"{name}: {_kept(name, value)}" for name, value in headers]
    truncated = None
    if len(body) > max_bytes:
        truncated = len(body)
        body = body[:max_bytes]
        lines.append(f"{TRUNCATED_HEADER}: {truncated}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "replace")
    return Raw(url, fetched_at, HTTP_RESPONSE, head + body, truncated)


def _kept(name: str, value: str) -> str:
    return NOT_KEPT if name.lower() in PRIVATE_HEADERS else value


def json_object(*, url: str, fetched_at: str, raw_json: str) -> Raw:
    """The capture of a message object as the Telethon source stored it (``versions.raw``)."""
    return Raw(url, fetched_at, JSON, raw_json.encode())
