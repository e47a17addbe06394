"""Telegram Desktop "Export chat history" JSON: streamed into the archive.

Two shapes are read, both as Telegram Desktop writes them:

- one chat's ``result.json``: ``{"name", "type", "id", "messages": [...]}``;
- the whole-account export: chats in ``chats.list[*]`` and channels the account has left in
  ``left_chats.list[*]``, each of the same shape. Only channels (``public_channel``,
  ``private_channel``) are imported; personal chats, groups and bots are skipped and counted.

The file is never loaded whole. A single chat's file is read twice: a few events to learn its
header (Telegram Desktop always writes ``name``, ``type`` and ``id`` before ``messages``), then
its messages, each split out by Telegram Desktop's layout and decoded by orjson
(:func:`_framed_messages`); a file laid out otherwise, or broken, is read by ``ijson.items`` on
``messages.item`` from the start, skipping the messages already read (each built by ijson's
C backend). A whole-account file is read once by ijson: its events are routed by hand and
only the messages of channels are handed to a C object builder. Memory depends on the batch
size, not on the size of the file.

What is read from each message: ``date_unixtime`` (UTC; the ``date`` field is local time
without a zone), ``edited_unixtime``, ``text`` / ``text_entities`` (plain text plus entities with
UTF-16 offsets, export type names mapped to the Bot API's: ``link`` -> ``url``, ``mention_name``
-> ``text_mention``, ``phone`` -> ``phone_number``), service messages (kept, flagged, with their
``action``), forwards, replies, photos and files, reactions, views, and the message object
itself as compact JSON for provenance. Messages Telegram Desktop could not export
(``"type": "unsupported"``, no date) are skipped and counted.

Every malformed input raises :class:`~archiver.errors.InputFileError` naming the file and the
place: a byte offset for broken JSON, a JSON path (``messages[17].date_unixtime``) for a value
of the wrong type. What earlier batches archived stays archived.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import logging
import multiprocessing
import os
import re
import signal
import sqlite3
import traceback
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

import ijson
import orjson

from archiver.errors import InputFileError, TelewatchError
from archiver.models import ChannelInfo, Entity, Forward, IngestStats, Media, Post, marked_id
from archiver.pipeline import BatchWriter
from archiver.store.archive import Archive
from archiver.store.channels import upsert_channel
from archiver.store.ingest import Prepared, prepare

log = logging.getLogger(__name__)

_WORKER_MIN_BYTES = 16 * 1024 * 1024
_MAX_UNIXTIME = 4_102_444_800  # 2100-01-01: anything later is not a Telegram date

CHANNEL_TYPES = frozenset({"public_channel", "private_channel"})
BUF_SIZE = 64 * 1024

# Export entity names -> the Bot API names every source uses.
_ENTITY_TYPES = {"link": "url", "mention_name": "text_mention", "phone": "phone_number"}
# Export media_type -> Media.kind.
_MEDIA_KINDS = {
    "video_file": "video",
    "voice_message": "voice",
    "audio_file": "audio",
    "sticker": "sticker",
    "animation": "animation",
    "video_message": "video_note",
}
_CHAT_LISTS = ("chats.list.item", "left_chats.list.item")


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What importing one channel of a file changed."""

    channel_id: int
    title: str | None
    username: str | None
    posts_added: int
    versions_added: int


class _Bad(Exception):
    """A value of the wrong type; ``where`` is its JSON path inside the file."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where


_BOM = b"\xef\xbb\xbf"


class _Reader:
    """A binary file that counts what was read and keeps the last chunk (to place errors)."""

    def __init__(self, f: IO[bytes], on_read: Callable[[int], None] | None) -> None:
        self._f = f
        self._on_read = on_read
        self.pos = 0
        self.chunk = b""
        self.chunk_start = 0
        self.size = os.fstat(f.fileno()).st_size
        self.eof = False  # the parser asked for more after the last byte

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if not data and n:
            self.eof = True
        self.chunk_start = self.pos
        self.pos += len(data)
        if self.chunk_start == 0 and data.startswith(_BOM):
            # Telegram Desktop writes none, but a file saved again by a Windows editor starts
            # with one, and JSON parsers refuse it (RFC 8259 §8.1 lets a reader ignore it).
            data = data[len(_BOM) :]
        self.chunk = data
        if self._on_read is not None and data:
            self._on_read(self.pos)
        return data


def _show(value: Any) -> str:
    if value is None:
        return "null"
    try:  # orjson refuses nesting past 255 levels where json.dumps raises RecursionError
        text = orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return "a value nested too deep to show"
    return text if len(text) <= 40 else text[:37] + "..."


def _expected(where: str, what: str, value: Any) -> _Bad:
    return _Bad(where, f"expected {what}, got {_show(value)}")


_INT64 = range(-(2**63), 2**63)  # what SQLite stores
_MESSAGE_IDS = range(1, 2**31)  # Telegram's message ids: int32, counted from 1 in each channel


def _int(m: dict[str, Any], key: str, where: str) -> int | None:
    v = m.get(key)
    if v is None or (type(v) is int and v in _INT64):
        return v
    if type(v) is float and v.is_integer() and abs(v) < 2**53:  # exact as a float
        return int(v)
    raise _expected(f"{where}.{key}", "an integer", v)


def _str(m: dict[str, Any], key: str, where: str) -> str | None:
    v = m.get(key)
    if v is None or type(v) is str:
        return v
    raise _expected(f"{where}.{key}", "a string", v)


def _unixtime(m: dict[str, Any], key: str, where: str) -> datetime | None:
    v = m.get(key)
    if v is None:
        return None
    seconds = int(v) if type(v) is str and v.isdigit() else v
    if type(seconds) is int and 0 <= seconds < _MAX_UNIXTIME:
        return datetime.fromtimestamp(seconds, UTC)
    raise _expected(f"{where}.{key}", "a Unix time (seconds since 1970)", v)


def _peer_id(value: str) -> int | None:
    """``channel123`` -> the marked channel id; ``user123`` -> 123; ``chat123`` -> -123."""
    for prefix, convert in (("channel", marked_id), ("user", int), ("chat", lambda n: -n)):
        if value.startswith(prefix) and value[len(prefix) :].isdigit():
            peer: int = convert(int(value[len(prefix) :]))
            return peer if peer in _INT64 else None  # not a Telegram id: no link to it
    return None


def _u16(s: str) -> int:
    """Length in UTF-16 code units, as Telegram counts entity offsets (an emoji counts 2)."""
    return len(s) if s.isascii() else len(s.encode("utf-16-le")) // 2


def _text(m: dict[str, Any], where: str) -> tuple[str, tuple[Entity, ...]]:
    parts = m.get("text_entities")
    key = "text_entities"
    if parts is None:
        parts, key = m.get("text", ""), "text"
    if type(parts) is str:
        return parts, ()
    if type(parts) is not list:
        raise _expected(f"{where}.{key}", "a string or a list", parts)
    if len(parts) == 1 and type(parts[0]) is dict and parts[0].get("type") == "plain":
        text = parts[0].get("text")
        if type(text) is str:
            return text, ()
    pieces: list[str] = []
    entities: list[Entity] = []
    offset = 0
    for i, part in enumerate(parts):
        if type(part) is str:
            piece, kind = part, "plain"
        elif type(part) is dict:
            piece, kind = part.get("text", ""), part.get("type", "plain")
            if type(piece) is not str:
                raise _expected(f"{where}.{key}[{i}].text", "a string", piece)
            if type(kind) is not str:
                raise _expected(f"{where}.{key}[{i}].type", "a string", kind)
        else:
            raise _expected(f"{where}.{key}[{i}]", "a string or an object", part)
        pieces.append(piece)
        n = _u16(piece)
        if kind != "plain" and n:
            url = part.get("href") if kind == "text_link" else None
            entities.append(
                Entity(_ENTITY_TYPES.get(kind, kind), offset, n, url if type(url) is str else None)
            )
        offset += n
    return "".join(pieces), tuple(entities)


def _media(m: dict[str, Any], where: str) -> tuple[Media, ...]:
    out: list[Media] = []
    if "photo" in m:
        out.append(
            Media(
                "photo",
                size=_int(m, "photo_file_size", where),
                width=_int(m, "width", where),
                height=_int(m, "height", where),
            )
        )
    media_type = _str(m, "media_type", where)
    if media_type is not None or "file" in m:
        duration = m.get("duration_seconds")
        if duration is not None and type(duration) not in (int, float):
            raise _expected(f"{where}.duration_seconds", "a number", duration)
        out.append(
            Media(
                _MEDIA_KINDS.get(media_type, "other") if media_type else "document",
                mime_type=_str(m, "mime_type", where),
                size=_int(m, "file_size", where),
                file_name=_str(m, "file_name", where),
                width=_int(m, "width", where),
                height=_int(m, "height", where),
                duration=float(duration) if duration is not None else None,
            )
        )
    if "poll" in m:
        out.append(Media("poll"))
    elif "contact_information" in m:
        out.append(Media("contact"))
    elif "location_information" in m or "place_name" in m:
        out.append(Media("geo"))
    elif not out and ("game_title" in m or "invoice_information" in m):
        out.append(Media("other"))
    return tuple(out)


def _reactions(m: dict[str, Any], where: str) -> tuple[tuple[str, int], ...]:
    value = m.get("reactions")
    if value is None:
        return ()
    if type(value) is not list:
        raise _expected(f"{where}.reactions", "a list", value)
    out: list[tuple[str, int]] = []
    for i, r in enumerate(value):
        if type(r) is not dict:
            raise _expected(f"{where}.reactions[{i}]", "an object", r)
        count = _int(r, "count", f"{where}.reactions[{i}]") or 0
        key = r.get("emoji") or r.get("document_id") or r.get("type") or "?"
        out.append((str(key), count))
    return tuple(out)


def message_to_post(channel_id: int, m: Any, where: str) -> Post | None:
    """One exported message as a :class:`Post`; ``None`` for messages Telegram Desktop could
    not export (``"type": "unsupported"``). Raises ``_Bad`` naming the field at fault."""
    if type(m) is not dict:
        raise _expected(where, "an object", m)
    message_id = m.get("id")
    if type(message_id) is not int or message_id not in _MESSAGE_IDS:
        raise _expected(f"{where}.id", "an integer from 1 to 2147483647 (a message id)", message_id)
    kind = m.get("type", "message")
    if kind == "unsupported":
        return None
    date = _unixtime(m, "date_unixtime", where)
    if date is None:
        date = _local_date(m, where)
    text, entities = _text(m, where)
    forward = None
    if "forwarded_from" in m or "forwarded_from_id" in m:
        fwd_id = _str(m, "forwarded_from_id", where)
        forward = Forward(
            from_id=_peer_id(fwd_id) if fwd_id else None,
            from_title=_str(m, "forwarded_from", where),
        )
    is_service = kind == "service"
    reply_to = None if "reply_to_peer_id" in m else _int(m, "reply_to_message_id", where)
    return Post(
        channel_id=channel_id,
        message_id=message_id,
        date=date,
        text=text,
        entities=entities,
        edit_date=_unixtime(m, "edited_unixtime", where),
        views=_int(m, "views", where),
        forwards=_int(m, "forwards", where),
        reactions=_reactions(m, where),
        media=() if is_service else _media(m, where),
        forward=forward,
        reply_to=None if is_service else reply_to,
        is_service=is_service,
        service_action=_str(m, "action", where) if is_service else None,
        raw=_raw(m, where),
    )


def _raw(m: dict[str, Any], where: str) -> str:
    """The message as compact JSON, for provenance, without ``text`` when ``text_entities`` is
    there: Telegram Desktop writes the same text twice, and ``text`` is made from
    ``text_entities`` (plain parts as strings, the others as the same objects)."""
    if "text_entities" in m and "text" in m:
        m = {k: v for k, v in m.items() if k != "text"}
    try:
        return orjson.dumps(m).decode()
    except orjson.JSONEncodeError as exc:  # nested deeper than 254 levels, or a lone surrogate
        raise _Bad(where, f"cannot be kept as JSON ({exc})") from None


def _local_date(m: dict[str, Any], where: str) -> datetime:
    """Exports older than ``date_unixtime`` carry only local time: read it in this machine's
    zone, the best guess of where the export was made."""
    value = m.get("date")
    if type(value) is not str:
        raise _expected(f"{where}.date_unixtime", "a number", m.get("date_unixtime"))
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        raise _expected(f"{where}.date", "an ISO date", value) from None


def _channel(header: dict[str, Any], where: str) -> ChannelInfo:
    bare = header.get("id")
    if type(bare) is not int:
        raise _expected(f"{where}id", "an integer", bare)
    name = header.get("name")
    if name is not None and type(name) is not str:
        raise _expected(f"{where}name", "a string", name)
    return ChannelInfo(id=marked_id(bare), title=name)


# Nesting allowed in a file, counted from its top level. Telegram Desktop writes at most 7
# (chats.list[].messages[].text_entities[]{}); past this the file is refused with one line.
# ijson keeps the path of every open level, so its memory grows with the square of the depth
# (a 200 KB file of "[" once took 24 GB): counting levels first keeps memory flat.
MAX_DEPTH = 256
_OPEN = frozenset({"start_map", "start_array"})
_CLOSE = frozenset({"end_map", "end_array"})


def _basic_events(reader: _Reader) -> Iterator[tuple[str, Any]]:
    """ijson's events without their paths (``basic_parse``: nothing kept per level), with
    the nesting counted: deeper than :data:`MAX_DEPTH` raises ``_Bad`` before a path is ever
    built for it."""
    depth = 0
    for event, value in ijson.basic_parse(reader, buf_size=BUF_SIZE, use_float=True):
        if event in _OPEN:
            depth += 1
            if depth > MAX_DEPTH:
                raise _Bad(
                    "",
                    f"nested deeper than {MAX_DEPTH} levels (in its first {reader.pos} bytes):"
                    " not a Telegram Desktop export (theirs nest 7 levels at most); export again",
                )
        elif event in _CLOSE:
            depth -= 1
        yield event, value


def _prefixed_events(reader: _Reader) -> Iterator[tuple[str, str, Any]]:
    """``ijson.parse`` (events with their paths), built from :func:`_basic_events` so that
    the depth is checked before each path is made."""
    from ijson.backends import yajl2_c

    out: list[Any] = _SendableList()
    coro = yajl2_c.parse_basecoro(out)
    for event in _basic_events(reader):
        coro.send(event)
        yield from out
        del out[:]


def _items(reader: _Reader, prefix: str) -> Iterator[Any]:
    """``ijson.items(reader, prefix)`` (objects built in C) on depth-checked events."""
    from ijson.backends import yajl2_c

    built: list[Any] = _SendableList()
    coro = yajl2_c.parse_basecoro(yajl2_c.items_basecoro(built, prefix, None))
    for event in _basic_events(reader):
        coro.send(event)
        if built:
            yield from built
            del built[:]


class _Unframed(Exception):
    """The fast path cannot go on: the file is read again by ijson from the start."""


_MESSAGES = b'\n "messages": ['
_FRAME_READ = 4 * BUF_SIZE
_MAX_MESSAGE = 16 * 1024 * 1024  # a message is a few KB: past this, the layout is not known
_BLANKS = re.compile(rb"[ \t\r\n]*")


def _blanks_end(buf: bytes, pos: int) -> int:
    """Where the JSON blanks starting at ``pos`` end."""
    match = _BLANKS.match(buf, pos)
    assert match is not None  # * matches the empty string
    return match.end()


def _framed_messages(reader: _Reader) -> Iterator[Any]:
    """The messages of a single chat's file, split by its layout and decoded by orjson (8
    against 14 us a message for ijson's C backend, bench/bench_import_parts.py). Telegram
    Desktop indents its JSON, one space a level, and a JSON string cannot hold a raw newline,
    so a message ends at a line of its own indentation and ``}``; orjson then checks that the
    bytes between are exactly one object. Anything else (another layout, a broken or
    truncated file) raises :class:`_Unframed` before the message concerned, and the ijson
    reader takes over: it reads any layout and words errors with their place. One difference
    remains: an integer beyond 64 bits in a field telewatch does not read is kept in ``raw``
    as a float (orjson) where ijson stops with "integer overflow"; Telegram writes none."""
    buf, pos = b"", 0

    def more(limit: int = _MAX_MESSAGE) -> None:
        """Read on, keeping what is not consumed: at most ``limit`` bytes of it."""
        nonlocal buf, pos
        data = reader.read(_FRAME_READ)
        if not data or len(buf) - pos > limit:
            raise _Unframed
        keep = max(0, pos - 256)  # and the line before: the next "{" is checked against it
        buf, pos = buf[keep:] + data, pos - keep

    while (start := buf.find(_MESSAGES)) < 0:  # the header before it is a few lines
        more(BUF_SIZE)
    try:  # the top level's "messages", not a nested one: the header before it is complete
        header = orjson.loads(buf[:start] + b'"": 0}')
    except orjson.JSONDecodeError:
        raise _Unframed from None
    if type(header) is not dict or "messages" in header:  # a second "messages" key
        raise _Unframed
    pos = start + len(_MESSAGES)
    item_end = b""  # newline, the messages' indentation, "}"

    def next_token() -> int:
        nonlocal pos
        while (pos := _blanks_end(buf, pos)) == len(buf):
            more()
        return buf[pos]

    if next_token() == 0x5D:  # ]: no messages
        token = 0x5D
    else:
        while True:
            line = buf.rfind(b"\n", 0, pos)
            if buf[pos] != 0x7B or line < 0 or buf[line + 1 : pos].strip(b" "):  # {
                raise _Unframed
            if not item_end:
                item_end = b"\n" + b" " * (pos - line - 1) + b"}"
            while (end := buf.find(item_end, pos)) < 0:
                more()
            end += len(item_end)
            try:
                message = orjson.loads(buf[pos:end])
            except orjson.JSONDecodeError:
                raise _Unframed from None
            yield message
            pos = end
            token = next_token()
            if token != 0x2C:  # , (else "]" ends the list; anything else is for ijson)
                break
            pos += 1
            next_token()  # the next message's "{" (a "]" right after a comma is an error)
    if token != 0x5D:
        raise _Unframed
    rest = buf[pos + 1 :] + reader.read(BUF_SIZE)
    if rest.strip() != b"}" or reader.read(1):  # more keys after the messages, or a broken end
        raise _Unframed


class ExportReader:
    """Iterate a Telegram Desktop export as ``ChannelInfo`` (each channel first) then its
    ``Post`` objects, in file order. ``bytes_read`` and ``on_read`` follow the reading."""

    def __init__(self, path: Path, *, on_read: Callable[[int], None] | None = None) -> None:
        self.path = path
        self.on_read = on_read
        self.skipped_chats = 0
        self.skipped_messages = 0
        self.whole_account = False
        self._reader: _Reader | None = None
        self._read_before = 0
        self._where = ""

    @property
    def bytes_read(self) -> int:
        """How far the file has been read (never less than before: a second reading of a
        single chat's file, see _single, starts again from zero)."""
        return max(self._reader.pos if self._reader is not None else 0, self._read_before)

    def __iter__(self) -> Iterator[ChannelInfo | Post]:
        try:
            header = self._header()
            if header is None:
                self.whole_account = True
                yield from self._account()
            else:
                yield from self._single(header)
        except _Bad as exc:
            raise InputFileError(f"{self.path}: {exc}") from None
        except ijson.JSONError as exc:
            raise InputFileError(self._json_error(exc)) from None
        except UnicodeDecodeError:  # ijson: bytes that are not UTF-8, or a lone surrogate
            reader = self._reader
            at = f" between bytes {reader.chunk_start} and {reader.pos}" if reader else ""
            after = f" (after {self._where})" if self._where else ""
            raise InputFileError(
                f"{self.path}: text that is not UTF-8{at}{after}; export the channel again"
            ) from None
        except OSError as exc:
            raise InputFileError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        if self.skipped_messages:
            log.info(
                "export %s: %d message(s) Telegram Desktop could not export were skipped",
                self.path.name,
                self.skipped_messages,
            )

    # -- the two shapes -------------------------------------------------------------------

    def _header(self) -> dict[str, Any] | None:
        """The header of a single chat's file, or None for a whole-account export."""
        header: dict[str, Any] = {}
        with self.path.open("rb") as f:
            if f.read(512).removeprefix(_BOM).lstrip()[:1] == b"<":
                raise _Bad(
                    "", "this is an HTML export; export again choosing 'Machine-readable JSON'"
                )
            f.seek(0)
            self._reader = _Reader(f, None)
            events = _basic_events(self._reader)
            first = next(events, None)
            if first is not None and first[0] != "start_map":
                raise _Bad("top level", "expected an object (is this a Telegram export?)")
            depth, key = 1, ""
            seen_messages = False
            for event, value in events:
                if depth == 1 and event == "map_key":
                    key = value
                    continue
                if depth == 1 and event not in _CLOSE:
                    if key in ("name", "type", "id"):
                        if event in _OPEN:
                            raise _Bad(key, "expected a string or a number, got a list or object")
                        header[key] = value
                    elif key == "messages":
                        if event != "start_array":
                            raise _Bad("messages", "expected a list")
                        if "type" in header:
                            return header
                        # Written again by a tool that sorts keys ("id", "messages", "name",
                        # "type"): the rest of the header comes after the list.
                        seen_messages = True
                    elif key in ("chats", "left_chats") and event == "start_map":
                        return None
                if event in _OPEN:
                    depth += 1
                elif event in _CLOSE:
                    depth -= 1
        if seen_messages:
            return header
        raise _Bad("top level", "no messages and no chats.list: not a Telegram Desktop JSON export")

    def _single(self, header: dict[str, Any]) -> Iterator[ChannelInfo | Post]:
        kind = header.get("type")
        if kind not in CHANNEL_TYPES:
            raise _Bad(
                "type",
                f"this is a {_show(kind)} export, not a channel; telewatch archives channels"
                " (export a channel, or the whole account to pick its channels)",
            )
        info = _channel(header, "")
        yield info
        done = 0  # messages read by the fast path
        with self.path.open("rb") as f:
            self._reader = _Reader(f, self.on_read)
            try:
                for m in _framed_messages(self._reader):
                    yield from self._message(info.id, m, done)
                    done += 1
                return
            except _Unframed:
                pass  # not laid out as Telegram Desktop writes, or broken: ijson decides
            self._read_before = self._reader.pos
        with self.path.open("rb") as f:
            # Progress resumes where the fast path stopped, not from zero (bytes_read).
            on_read = self.on_read
            self._reader = _Reader(
                f, None if on_read is None else lambda _: on_read(self.bytes_read)
            )
            for i, m in enumerate(_items(self._reader, "messages.item")):
                if i >= done:
                    yield from self._message(info.id, m, i)

    def _message(self, channel_id: int, m: Any, i: int) -> Iterator[Post]:
        self._where = f"messages[{i}]"
        post = message_to_post(channel_id, m, self._where)
        if post is None:
            self.skipped_messages += 1
        else:
            yield post

    def _account(self) -> Iterator[ChannelInfo | Post]:
        from ijson.backends import yajl2_c

        built: list[Any] = _SendableList()
        builder: Any = None
        messages_prefix = ""
        chat: dict[str, Any] = {}
        index = {p: -1 for p in _CHAT_LISTS}
        channel_id = 0
        n = 0
        channels = 0
        with self.path.open("rb") as f:
            self._reader = _Reader(f, self.on_read)
            for prefix, event, value in _prefixed_events(self._reader):
                if builder is not None:
                    if event == "end_array" and prefix == messages_prefix:
                        builder = None
                        continue
                    builder.send((prefix, event, value))
                    if built:
                        for m in built:
                            self._where = f"{chat['where']}.messages[{n}]"
                            n += 1
                            post = message_to_post(channel_id, m, self._where)
                            if post is None:
                                self.skipped_messages += 1
                            else:
                                yield post
                        del built[:]
                    continue
                if prefix in index:
                    if event == "start_map":
                        index[prefix] += 1
                        name = prefix.removesuffix(".item")
                        chat = {"where": f"{name}[{index[prefix]}]"}
                        self._where = chat["where"]
                    continue
                base, _, key = prefix.rpartition(".")
                if base not in index or not chat:
                    continue
                if key in ("name", "type", "id") and event not in ("start_map", "start_array"):
                    chat[key] = value
                elif key == "messages" and event == "start_array":
                    n = 0
                    if chat.get("type") in CHANNEL_TYPES:
                        info = _channel(chat, f"{chat['where']}.")
                        channel_id = info.id
                        channels += 1
                        yield info
                        messages_prefix = prefix
                        builder = yajl2_c.items_basecoro(built, prefix + ".item", None)
                    else:
                        self.skipped_chats += 1
        if index == {p: -1 for p in _CHAT_LISTS}:
            raise _Bad("chats", "expected chats.list with the exported chats")
        log.info(
            "export %s: %d channel(s) found, %d chat(s) that are not channels skipped",
            self.path.name,
            channels,
            self.skipped_chats,
        )

    # -- errors ---------------------------------------------------------------------------

    def _json_error(self, exc: Exception) -> str:
        reader = self._reader
        message = _error_bytes(exc)
        lines = message.split(b"\n")
        reason = lines[0].decode("utf-8", "replace").split(": ", 1)[-1].strip()
        after = f" (after {self._where})" if self._where else ""
        if reader is None:
            return f"{self.path}: invalid JSON: {reason}"
        if reader.pos == 0:
            return f"{self.path}: the file is empty; export the channel again"
        where = _locate(lines, reader)
        near_end = where is not None and where >= reader.size - 6
        if "premature EOF" in reason or reader.eof or (near_end and "garbage" not in reason):
            return (
                f"{self.path}: the file ends too early at byte {reader.size}{after}: it is"
                " truncated; export the channel again"
            )
        at = (
            f"near byte {where}"
            if where is not None
            else f"between bytes {reader.chunk_start} and {reader.pos}"
        )
        return f"{self.path}: invalid JSON {at}{after}: {reason or 'syntax error'}"


def _error_bytes(exc: Exception) -> bytes:
    """yajl's message as bytes: ijson gives ``str`` when it decodes as UTF-8, else the
    ``repr`` of the bytes (the context cuts multi-byte characters)."""
    text = str(exc)
    if text[:2] in ("b'", 'b"'):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text.encode("utf-8", "replace")
        if isinstance(value, bytes):
            return value
    return text.encode("utf-8", "replace")


def _locate(lines: list[bytes], reader: _Reader) -> int | None:
    """Where yajl stopped: the offset just past the byte (or token) it could not take, which
    is also the 1-based position of that byte, as editors count (vim's ``:goto``).

    yajl prints the bytes around the error, 30 before it (fewer only near the start of the
    chunk it was given), padded with spaces so that the error sits under the caret of the
    next line, newlines shown as spaces; those bytes are found in the chunk."""
    if len(lines) < 3 or b"^" not in lines[2]:
        return None
    caret = lines[2].index(b"^")
    context = lines[1]
    chunk = reader.chunk.replace(b"\n", b" ").replace(b"\r", b" ")
    if caret < 30 or len(context) < caret:
        return None
    needle = context[caret - 30 :]
    found = chunk.find(needle)
    if found >= 0 and chunk.find(needle, found + 1) < 0:
        return reader.chunk_start + found + 30
    for offset in range(30):  # the error is that close to the start of the chunk
        if not context[: caret - offset].strip(b" ") and chunk.startswith(
            context[caret - offset :]
        ):
            return reader.chunk_start + offset
    return None


class _SendableList(list[Any]):
    """What ijson's C builder sends finished objects to."""

    def send(self, value: Any) -> None:
        self.append(value)


def read_export(
    path: Path, *, on_read: Callable[[int], None] | None = None
) -> Iterator[ChannelInfo | Post]:
    """Shorthand for ``iter(ExportReader(path, on_read=on_read))``."""
    return iter(ExportReader(path, on_read=on_read))


# What both readers yield: ("channel", ChannelInfo, whole_account) before a channel's posts,
# ("batch", posts or their Prepared rows, bytes read so far or None).
_Item = tuple[Any, ...]


def _batches(reader: ExportReader, batch_size: int) -> Iterator[_Item]:
    """``reader``'s items as both readers send them: each channel, then its posts in batches
    with the bytes read so far. On an error in the file, the batch read before it comes
    first (every message in it is complete, so it lands), then the error."""
    batch: list[Post] = []
    try:
        for item in reader:
            if isinstance(item, ChannelInfo):
                if batch:
                    yield ("batch", batch, reader.bytes_read)
                    batch = []
                yield ("channel", item, reader.whole_account)
                continue
            batch.append(item)
            if len(batch) >= batch_size:
                yield ("batch", batch, reader.bytes_read)
                batch = []
    except InputFileError:
        if batch:
            yield ("batch", batch, reader.bytes_read)
        raise
    if batch:
        yield ("batch", batch, reader.bytes_read)


async def _read_inline(
    path: Path, batch_size: int, progress: Callable[[int], None] | None
) -> AsyncGenerator[_Item, None]:
    """Read in this process (small files, tests); ``progress`` follows every read."""
    for kind, value, extra in _batches(ExportReader(path, on_read=progress), batch_size):
        yield (kind, value, extra if kind == "channel" else None)
        await asyncio.sleep(0)  # let the batch being written reach SQLite


async def _read_in_worker(path: Path, batch_size: int) -> AsyncGenerator[_Item, None]:
    """Read and prepare in a worker process (see archiver.pipeline for why): posts arrive as
    :class:`~archiver.store.ingest.Prepared` batches, the worker's log records are logged
    here, and an error in the file is raised here after the batches read before it."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(path, batch_size, theirs), name="telewatch-reader")
    proc.start()
    theirs.close()
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                msg = await loop.run_in_executor(None, ours.recv)
            except EOFError:
                proc.join(timeout=5)
                raise TelewatchError(
                    f"{path}: the process reading the file stopped unexpectedly (exit code"
                    f" {proc.exitcode}); what was read is archived, run the import again"
                ) from None
            kind = msg[0]
            if kind == "batch":  # plain tuples travel: see _read_and_send
                yield (kind, [Prepared._make(row) for row in msg[1]], msg[2])
            elif kind == "channel":
                yield msg
            elif kind == "log":
                logging.getLogger(msg[1]).log(msg[2], "%s", msg[3])
            elif kind == "error":
                raise InputFileError(msg[1])
            elif kind == "crash":
                raise TelewatchError(f"{path}: reading failed: {msg[1]}")
            else:  # "done"
                return
    finally:
        ours.close()
        proc.join(timeout=5)
        if proc.is_alive():  # stopped early (an error while writing): stop the reader too
            proc.terminate()
            proc.join()


class _Forward(logging.Handler):
    """In the worker: log records go to the parent, which logs them."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(logging.INFO)
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(OSError, EOFError):  # the parent has stopped listening
            self.conn.send(("log", record.name, record.levelno, record.getMessage()))


def _worker(path: Path, batch_size: int, conn: Connection) -> None:
    """The worker process: read, prepare (words, hashes, JSON columns), send. It never prints:
    Ctrl-C is the parent's to handle (it stops the worker), and once the parent has stopped
    listening (an error on its side) the worker just ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with contextlib.suppress(OSError, EOFError):  # the parent closed the pipe: it stopped
            _read_and_send(path, batch_size, conn)
    finally:
        conn.close()


def _read_and_send(path: Path, batch_size: int, conn: Connection) -> None:
    root = logging.getLogger()
    root.addHandler(_Forward(conn))
    root.setLevel(logging.INFO)
    try:
        for kind, value, extra in _batches(ExportReader(path), batch_size):
            # A NamedTuple pickles through a Python __getnewargs__ call per row: plain tuples
            # are 3.7 times faster to send (measured: 8.9 -> 2.4 us a post).
            rows = [tuple(p) for p in prepare(value)] if kind == "batch" else value
            conn.send((kind, rows, extra))
        conn.send(("done",))
    except InputFileError as exc:
        conn.send(("error", str(exc)))
    except (OSError, EOFError):
        raise
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("crash", "".join(traceback.format_exception_only(exc)).strip()))


async def import_file(
    archive: Archive,
    path: Path,
    *,
    username: str | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 2000,
    workers: bool | None = None,
) -> list[ImportResult]:
    """Import a Telegram Desktop export into ``archive``; one result per channel in the file.

    Each channel is upserted (``source="export"``; ``username`` attached when given, a known
    username is never cleared), then its posts go through the one ingest path in batches of
    ``batch_size``, each batch one transaction, never queuing alerts. ``progress`` receives
    the bytes read so far. ``workers``: read and prepare the posts in a worker process while
    this one writes (default: for files of 16 MB and more). On malformed input
    :class:`InputFileError` is raised; the batches written before it stay archived, and
    importing the same file again adds nothing.
    """
    results: list[ImportResult] = []
    channel: ImportResult | None = None

    def done(result: ImportResult, writer: BatchWriter) -> None:
        stats = writer.stats.get(result.channel_id, IngestStats())
        result = replace(result, posts_added=stats.posts_added, versions_added=stats.versions_added)
        results.append(result)
        log.info(
            "import %s: channel %s: %d post(s), %d version(s) added",
            path.name,
            result.channel_id,
            result.posts_added,
            result.versions_added,
        )

    if workers is None:
        workers = path.stat().st_size >= _WORKER_MIN_BYTES
    items = (
        _read_in_worker(path, batch_size) if workers else _read_inline(path, batch_size, progress)
    )
    created: list[int] = []  # channels this import added to the archive
    try:
        async with BatchWriter(archive, source="export", alerts=False, bulk=workers) as writer:
            try:
                async for item in items:
                    if item[0] == "channel":
                        if username is not None and item[2]:
                            raise InputFileError(
                                f"{path}: a whole-account export holds several channels;"
                                " --username names the channel of a single channel's export"
                            )
                        if channel is not None:
                            await writer.drain()
                            done(channel, writer)
                        info = replace(item[1], username=username)
                        if (
                            await archive.fetchone(
                                "SELECT 1 FROM channels WHERE id = ?", (info.id,)
                            )
                            is None
                        ):
                            created.append(info.id)
                        row = await upsert_channel(archive, info, source="export")
                        channel = ImportResult(row.id, row.title, row.username, 0, 0)
                        continue
                    await writer.submit(item[1])
                    if progress is not None and item[2] is not None:
                        progress(item[2])
            finally:
                await items.aclose()
            await writer.drain()
    except BaseException:
        await _forget_empty(archive, created)
        raise
    if channel is not None:
        done(channel, writer)
    return results


async def _forget_empty(archive: Archive, channel_ids: list[int]) -> None:
    """After a failed import: remove the channels it added that got no post, so a file that
    broke before its first message leaves nothing behind (never a channel with posts)."""
    if not channel_ids or archive.closed:
        return
    try:
        async with archive.transaction() as db:
            for cid in channel_ids:
                async with db.execute(
                    "SELECT 1 FROM posts WHERE channel_id = ? LIMIT 1", (cid,)
                ) as cur:
                    if await cur.fetchone() is not None:
                        continue
                await db.execute("DELETE FROM channel_versions WHERE channel_id = ?", (cid,))
                await db.execute("DELETE FROM channels WHERE id = ?", (cid,))
    except sqlite3.Error:
        log.exception("import: could not remove the empty channel(s) %s", channel_ids)
