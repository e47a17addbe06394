"""The bundle's captures as a WARC file (ISO 28500), written and read with ``warcio``.

WARC is what web archives (the Wayback Machine, Webrecorder, pywb) read, so a bundle's
captures open in the tools an archivist already has. Each capture is one record whose block
is exactly the bytes telewatch stored (their SHA-256 is the log entry's ``capture_sha``):

- a web capture (``application/http;msgtype=response``: status line, headers, body as
  received) is a ``response`` record for the page's URL, dated when it was fetched;
- a Telethon message object (``application/json``) is a ``resource`` record for the post's
  link (the JSON is not an HTTP response), with a ``metadata`` record beside it saying so.

``WARC-Block-Digest`` names the block's SHA-256 (``sha256:<hex>``). warcio writes the HTTP
headers of a response record from its parsed form (one space after each colon); the headers
here are kept as received, so the block's hash is the capture's.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.statusandheaders import StatusAndHeaders, StatusAndHeadersParser
from warcio.warcwriter import WARCWriter

HTTP_RESPONSE = "application/http;msgtype=response"
CAPTURE_HEADER = "WARC-Block-Digest"


class _RawHeaders(StatusAndHeaders):  # type: ignore[misc]
    """Parsed HTTP headers that write themselves back exactly as they were received."""

    def __init__(self, parsed: StatusAndHeaders, raw: bytes) -> None:
        super().__init__(parsed.statusline, parsed.headers, parsed.protocol)
        self._raw = raw

    def compute_headers_buffer(self, header_filter: Any = None) -> None:
        self.headers_buff = self._raw


def _split_http(body: bytes) -> tuple[StatusAndHeaders, bytes, bytes] | None:
    """(parsed headers, raw header bytes with the blank line, payload), or None when the
    bytes are not an HTTP response."""
    end = body.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = body.find(b"\n\n"), 2
    if end < 0 or not body.startswith(b"HTTP/"):
        return None
    raw = body[: end + sep]
    try:
        parsed = StatusAndHeadersParser(["HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/2.0"]).parse(
            io.BytesIO(raw)
        )
    except ValueError:
        return None
    return parsed, raw, body[end + sep :]


def warc_date(at: str) -> str:
    """'YYYY-MM-DD HH:MM:SS' (UTC) as WARC-Date wants it."""
    return at.replace(" ", "T") + ("Z" if not at.endswith("Z") else "")


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class CaptureWriter:
    """Appends captures to a gzipped WARC stream (one gzip member per record)."""

    def __init__(self, out: Writable, *, software: str) -> None:
        self._writer = WARCWriter(out, gzip=True, warc_version="1.1")
        info = self._writer.create_warcinfo_record(
            "captures.warc.gz",
            {
                "software": software,
                "format": "WARC File Format 1.1",
                "description": "captures of a telewatch evidence bundle; each record's"
                " block SHA-256 is the capture_sha of the log entries in log.jsonl",
            },
        )
        self._writer.write_record(info)

    def add(self, *, sha256: str, media_type: str, body: bytes, uri: str, fetched_at: str) -> None:
        digest = f"sha256:{sha256}"
        headers = {"WARC-Date": warc_date(fetched_at), CAPTURE_HEADER: digest}
        split = _split_http(body) if media_type.startswith("application/http") else None
        if split is not None:
            parsed, raw, payload = split
            record = self._writer.create_warc_record(
                uri,
                "response",
                payload=io.BytesIO(payload),
                length=len(payload),
                warc_content_type="application/http; msgtype=response",
                warc_headers_dict=headers,
                http_headers=_RawHeaders(parsed, raw),
            )
            self._writer.write_record(record)
            return
        record = self._writer.create_warc_record(
            uri,
            "resource",
            payload=io.BytesIO(body),
            length=len(body),
            warc_content_type=media_type,
            warc_headers_dict=headers,
        )
        self._writer.write_record(record)
        if media_type == "application/json":
            note = (
                f"capture-sha256: {sha256}\r\nmedia-type: {media_type}\r\n"
                "what: the Telegram message object as the Telethon client received it\r\n"
            ).encode()
            meta = self._writer.create_warc_record(
                uri,
                "metadata",
                payload=io.BytesIO(note),
                length=len(note),
                warc_content_type="application/warc-fields",
                warc_headers_dict={
                    "WARC-Date": warc_date(fetched_at),
                    "WARC-Concurrent-To": record.rec_headers.get_header("WARC-Record-ID"),
                },
            )
            self._writer.write_record(meta)


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    number: int  # 1-based position in the WARC file
    kind: str  # response | resource
    uri: str | None
    date: str | None
    claimed: str | None  # the sha256 WARC-Block-Digest names
    sha256: str  # of the block as read
    size: int


class WarcError(ValueError):
    pass


def read_captures(stream: IO[bytes]) -> Iterator[CaptureRecord]:
    """The capture records (response and resource) of a WARC stream, with the SHA-256 of each
    block as read. Raises :class:`WarcError` when the stream is not a readable WARC."""
    n = 0
    try:
        for rec in ArchiveIterator(stream, no_record_parse=True, arc2warc=False):
            n += 1
            if rec.rec_type not in ("response", "resource"):
                continue
            h = hashlib.sha256()
            size = 0
            while chunk := rec.raw_stream.read(65536):
                h.update(chunk)
                size += len(chunk)
            digest = rec.rec_headers.get_header(CAPTURE_HEADER) or ""
            yield CaptureRecord(
                number=n,
                kind=rec.rec_type,
                uri=rec.rec_headers.get_header("WARC-Target-URI"),
                date=rec.rec_headers.get_header("WARC-Date"),
                claimed=digest.removeprefix("sha256:") if digest.startswith("sha256:") else None,
                sha256=h.hexdigest(),
                size=size,
            )
    except (ArchiveLoadFailed, OSError, EOFError, ValueError, zlib.error) as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        raise WarcError(f"record {n + 1} cannot be read ({first or type(exc).__name__})") from None
