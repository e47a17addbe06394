"""The Telegram Desktop export importer: hand-written fixtures in the real format, the bundled
sample channel, and the real exports in ../shared/samples when they are there."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ijson
import pytest
from conftest import MakeChannel

from archiver.errors import InputFileError
from archiver.models import ChannelInfo, Post
from archiver.sources.export import ExportReader, import_file
from archiver.store.archive import Archive
from archiver.text import words

HERE = Path(__file__).resolve()
FIXTURES = HERE.parents[1] / "fixtures" / "export"
CHANNEL = FIXTURES / "channel.json"
ACCOUNT = FIXTURES / "account.json"
SAMPLE = HERE.parents[2] / "archiver" / "data" / "sample_channel.json"
SAMPLES = Path(os.environ.get("TELEWATCH_SAMPLES", HERE.parents[3] / "shared" / "samples"))
REAL_SAMPLES = sorted(SAMPLES.glob("tdesktop_*_result.json")) if SAMPLES.is_dir() else []
CHANNEL_ID = -1001700000001


def read(path: Path) -> tuple[list[ChannelInfo], list[Post]]:
    channels: list[ChannelInfo] = []
    posts: list[Post] = []
    for item in ExportReader(path):
        if isinstance(item, ChannelInfo):
            channels.append(item)
        else:
            posts.append(item)
    return channels, posts


def by_id(posts: list[Post]) -> dict[int, Post]:
    return {p.message_id: p for p in posts}


def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def export_doc(
    n: int, *, bare_id: int = 1700000050, text: str = "Пост номер {i}"
) -> dict[str, Any]:
    """A single-channel export of ``n`` plain posts, ids 1..n."""
    return {
        "name": f"Канал {bare_id}",
        "type": "public_channel",
        "id": bare_id,
        "messages": [
            {
                "id": i,
                "type": "message",
                "date": "2024-04-01T12:00:00",
                "date_unixtime": str(1711962000 + 60 * i),
                "from": "x",
                "from_id": f"channel{bare_id}",
                "text": text.format(i=i),
                "text_entities": [{"type": "plain", "text": text.format(i=i)}],
            }
            for i in range(1, n + 1)
        ],
    }


async def counts(archive: Archive, channel_id: int | None = None) -> tuple[int, int]:
    where = "" if channel_id is None else f" WHERE p.channel_id = {int(channel_id)}"
    posts = await archive.fetchone(f"SELECT count(*) FROM posts p{where}")
    versions = await archive.fetchone(
        f"SELECT count(*) FROM versions v JOIN posts p ON p.id = v.post_id{where}"
    )
    assert posts is not None and versions is not None
    return posts[0], versions[0]


# -- parsing ------------------------------------------------------------------------------


def test_channel_header_and_counts() -> None:
    channels, posts = read(CHANNEL)
    assert channels == [ChannelInfo(id=CHANNEL_ID, title="Тестовый канал 🧪")]
    # 11 messages, one "unsupported" (no date) skipped
    assert [p.message_id for p in posts] == [1, 2, 3, 4, 5, 6, 7, 8, 10, 11]
    assert all(p.channel_id == CHANNEL_ID for p in posts)


@pytest.mark.parametrize(
    ("message_id", "expected"),
    [
        (1, {"is_service": True, "service_action": "create_channel", "text": ""}),
        (2, {"text": "Объявлена эвакуация жителей Заречного.", "entities": ()}),
        (
            3,
            {
                "text": "🚨 Внимание: обстріли тривають. Карта укрытий\n#евакуація",
                "edit_date": "2024-04-01 10:20:00",
                "reactions": (("👍", 7), ("stickers/sticker.webp", 2), ("paid", 1)),
                "media": [("photo", None, 123456, None, 1280, 720, None)],
            },
        ),
        (4, {"forward": (-1001800000002, "Областная администрация"), "edit_date": None}),
        (
            5,
            {
                "forward": (None, None),
                "reply_to": 4,
                "media": [("video", "video/mp4", 5242880, None, 1280, 720, 42.0)],
            },
        ),
        (
            6,
            {
                "forward": (123456, "Иван Петров"),
                "text": "Распоряжение о https://example.org/r12",
                "media": [
                    (
                        "document",
                        "application/pdf",
                        204800,
                        "распоряжение №12.pdf",
                        None,
                        None,
                        None,
                    )
                ],
            },
        ),
        (7, {"media": [("voice", "audio/ogg", 18000, None, None, None, 9.0)]}),
        (8, {"media": [("sticker", None, 4868, "sticker.webp", 512, 512, None)]}),
        (10, {"views": 1520}),
        (11, {"is_service": True, "service_action": "pin_message", "reply_to": None}),
    ],
)
def test_message_fields(message_id: int, expected: dict[str, Any]) -> None:
    post = by_id(read(CHANNEL)[1])[message_id]
    for key, want in expected.items():
        got: Any = getattr(post, key)
        if key == "edit_date":
            got = got.strftime("%Y-%m-%d %H:%M:%S") if got else None
        elif key == "forward":
            got = (got.from_id, got.from_title)
        elif key == "media":
            got = [
                (m.kind, m.mime_type, m.size, m.file_name, m.width, m.height, m.duration)
                for m in got
            ]
        assert got == want, key


def test_dates_come_from_unixtime_in_utc() -> None:
    post = by_id(read(CHANNEL)[1])[2]
    # "date" says 12:05 (the exporting machine's local time); date_unixtime is 09:05 UTC
    assert post.date.isoformat() == "2024-04-01T09:05:00+00:00"


@pytest.mark.parametrize(
    ("message_id", "expected"),
    [
        # "🚨 " is 3 UTF-16 units: the emoji counts 2
        (
            3,
            [
                ("bold", 3, 8, None),
                ("text_link", 32, 13, "https://example.org/map"),
                ("hashtag", 46, 10, None),
            ],
        ),
        (6, [("italic", 0, 12, None), ("url", 15, 23, None)]),
        # a family emoji (3 people joined by zero-width joiners) is 8 units
        (
            10,
            [
                ("custom_emoji", 31, 2, None),
                ("text_mention", 34, 5, None),
                ("phone_number", 40, 17, None),
            ],
        ),
    ],
)
def test_entities_utf16_and_bot_api_names(
    message_id: int, expected: list[tuple[str, int, int, str | None]]
) -> None:
    post = by_id(read(CHANNEL)[1])[message_id]
    assert [(e.type, e.offset, e.length, e.url) for e in post.entities] == expected


def _with_text(raw: dict[str, Any]) -> dict[str, Any]:
    """The exported message back from ``raw``: Telegram Desktop's ``text`` is the plain parts
    of ``text_entities`` as strings and the others as the same objects (a string when all
    are plain)."""
    if "text_entities" not in raw or "text" in raw:
        return raw
    parts = raw["text_entities"]
    if all(p["type"] == "plain" for p in parts):
        text: Any = "".join(p["text"] for p in parts)
    else:
        text = [p["text"] if p["type"] == "plain" else p for p in parts]
    return {**raw, "text": text}


@pytest.mark.parametrize("path", [CHANNEL, *REAL_SAMPLES], ids=lambda p: p.name)
def test_raw_is_the_exported_message(path: Path) -> None:
    """``raw`` is the message as exported, less the duplicate ``text``, which comes back
    exactly from ``text_entities`` (checked on every message of the real samples too)."""
    exported = {m["id"]: m for m in json.loads(path.read_text(encoding="utf-8"))["messages"]}
    posts = read(path)[1]
    assert posts
    for post in posts:
        assert post.raw is not None
        raw = json.loads(post.raw)
        assert "text" not in raw or "text_entities" not in raw  # stored once
        assert _with_text(raw) == exported[post.message_id]
        assert "\\u" not in post.raw  # Cyrillic stays readable


def test_whole_account_export_imports_only_channels(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="archiver.sources.export")
    reader = ExportReader(ACCOUNT)
    items = list(reader)
    channels = [i for i in items if isinstance(i, ChannelInfo)]
    assert [(c.id, c.title) for c in channels] == [
        (-1001700000011, "Новости района"),
        (-1001700000012, "Закрытый канал"),
        (-1001700000013, "Old channel"),  # from left_chats
    ]
    posts = [(i.channel_id, i.message_id) for i in items if isinstance(i, Post)]
    assert posts == [
        (-1001700000011, 1),
        (-1001700000011, 2),
        (-1001700000011, 3),
        (-1001700000012, 7),
        (-1001700000013, 42),
    ]
    assert reader.skipped_chats == 4  # saved messages, personal chat, group, bot
    assert any("4 chat(s) that are not channels skipped" in r.getMessage() for r in caplog.records)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "Someone" not in text and "private message" not in text


def test_reading_streams(tmp_path: Path) -> None:
    """The first post arrives long before the file has been read."""
    path = write_json(tmp_path / "big.json", export_doc(3000, text="Текст поста {i} " * 20))
    size = path.stat().st_size
    positions: list[int] = []
    reader = ExportReader(path, on_read=positions.append)
    for item in reader:
        if isinstance(item, Post):
            at_first_post = reader.bytes_read
            break
    assert size > 1_000_000
    assert at_first_post < size // 4
    assert positions == sorted(positions)


# -- the bundled sample and the real samples ------------------------------------------------


# -- the fast path: messages split by Telegram Desktop's layout, decoded by orjson ------------


def read_with_ijson(path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What the ijson reader alone gives (the reference), items or the error message."""
    import archiver.sources.export as export

    def unframed(reader: Any) -> Any:
        raise export._Unframed
        yield

    with monkeypatch.context() as m:
        m.setattr(export, "_framed_messages", unframed)
        try:
            return list(ExportReader(path))
        except InputFileError as exc:
            return [str(exc)]


def read_fast(path: Path) -> list[Any]:
    try:
        return list(ExportReader(path))
    except InputFileError as exc:
        return [str(exc)]


def no_ijson(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the ijson reader was used")

    monkeypatch.setattr(ijson, "items", fail)


@pytest.mark.parametrize("chunk", [1, 97, 4096, 256 * 1024])
def test_fast_path_reads_telegram_layout_alone(
    tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files as Telegram Desktop writes them are read without ijson, whatever the chunk
    boundaries, and give exactly what the ijson reader gives."""
    files = [SAMPLE, CHANNEL, *REAL_SAMPLES]
    files.append(write_json(tmp_path / "big.json", export_doc(300, text="Пост «{i}» — ok")))
    expected = {f: read_with_ijson(f, monkeypatch) for f in files}
    monkeypatch.setattr("archiver.sources.export._FRAME_READ", chunk)
    no_ijson(monkeypatch)
    for f in files:
        assert read_fast(f) == expected[f], f


def _tg(doc: dict[str, Any]) -> str:
    """JSON laid out as Telegram Desktop writes it."""
    return json.dumps(doc, ensure_ascii=False, indent=1)


LAYOUTS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("one line", lambda doc: json.dumps(doc, ensure_ascii=False)),
    ("indent 4, escaped", lambda doc: json.dumps(doc, indent=4)),
    ("CRLF", lambda doc: _tg(doc).replace("\n", "\r\n")),
    ("a key after messages", lambda doc: _tg(doc)[:-1] + ', "x": 1}'),
    (
        "another layout mid-file",
        lambda doc: _tg(doc).replace('"id": 31,', '"id": 31, "m": {"id": 1\n  },'),
    ),
    ("broken mid-file", lambda doc: _tg(doc).replace('"id": 40,', '"id": 40 oops,')),
    ("truncated", lambda doc: _tg(doc)[:-30]),
    ("garbage after the end", lambda doc: _tg(doc) + "\n]"),
    ("a comma after the last message", lambda doc: _tg(doc).replace("\n  }\n ]", "\n  },\n ]")),
    (
        'a nested "messages" before the real one',
        lambda doc: _tg(
            {"about": {"messages": [{"id": 99, "date_unixtime": "1700000000"}]}, **doc}
        ).replace('\n  "messages"', '\n "messages"'),
    ),
    (
        '"messages" inside a message',
        lambda doc: json.dumps(doc, ensure_ascii=False).replace(
            '"id": 2,', '"id": 2, "m": {\n "messages": [\n  {\n   "id": 77\n  }\n ]},'
        ),
    ),
]


@pytest.mark.parametrize("layout", [f for _, f in LAYOUTS], ids=[name for name, _ in LAYOUTS])
def test_other_layouts_and_broken_files_read_as_before(
    tmp_path: Path, layout: Callable[[dict[str, Any]], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the fast path stops (mid-file too), the ijson reader goes on from the start:
    every message once, in order, and the same errors as before."""
    doc = export_doc(80)
    doc["messages"][30]["views"] = 7
    path = tmp_path / "export.json"
    path.write_text(layout(doc), encoding="utf-8")
    expected = read_with_ijson(path, monkeypatch)
    monkeypatch.setattr("archiver.sources.export._FRAME_READ", 512)
    used: list[bool] = []
    import archiver.sources.export as export

    items = export._items

    def spy(*args: Any, **kwargs: Any) -> Any:
        used.append(True)
        return items(*args, **kwargs)

    monkeypatch.setattr(export, "_items", spy)
    got = read_fast(path)
    assert got == expected
    assert used == ([] if b"\r\n" in path.read_bytes() else [True])  # CRLF: the fast path
    posts = [p for p in got if isinstance(p, Post)]
    assert len({p.message_id for p in posts}) == len(posts)


def test_bytes_read_never_goes_back_when_ijson_takes_over(tmp_path: Path) -> None:
    """What a worker sends as progress with each batch."""
    path = write_json(tmp_path / "export.json", export_doc(6000))
    data = path.read_text(encoding="utf-8")
    at = data.index('"id": 3010,')  # the fast path stops here, well into its second read
    path.write_text(data[:at] + '"x": {"y": 1\n  },' + data[at:], encoding="utf-8")
    reader = ExportReader(path)
    seen = [reader.bytes_read for item in reader if isinstance(item, Post)]
    assert len(seen) == 6000 and seen == sorted(seen)


def test_progress_never_goes_back_when_ijson_takes_over(tmp_path: Path) -> None:
    doc = export_doc(400, text="Текст поста {i} " * 10)
    path = write_json(tmp_path / "export.json", doc)
    data = path.read_text(encoding="utf-8")
    at = data.index('"id": 300,')
    path.write_text(data[:at] + '"x": {"y": 1\n  },' + data[at:], encoding="utf-8")
    positions: list[int] = []
    items = list(ExportReader(path, on_read=positions.append))
    assert len([i for i in items if isinstance(i, Post)]) == 400
    assert positions == sorted(positions) and positions[-1] == path.stat().st_size


def test_bundled_sample() -> None:
    channels, posts = read(SAMPLE)
    assert len(channels) == 1 and channels[0].id == -1001811111111
    assert 35 <= len(posts) <= 50
    assert [p.message_id for p in posts] == sorted(p.message_id for p in posts)
    assert [p.date for p in posts] == sorted(p.date for p in posts)
    assert sum(p.is_service for p in posts) >= 1
    assert sum(p.edit_date is not None for p in posts) >= 1
    assert sum(p.forward is not None for p in posts) >= 1
    assert sum(any(m.kind == "photo" for m in p.media) for p in posts) >= 3
    kinds = {e.type for p in posts for e in p.entities}
    assert {"bold", "text_link", "hashtag"} <= kinds
    every_word = {w for p in posts for w in words(p.text)}
    for form in ("эвакуация", "эвакуацию", "эвакуации", "евакуація", "евакуації", "evacuation",
                 "обстріл", "обстріли", "фейк", "рынке", "рынка"):  # fmt: skip
        assert form in every_word, form


def _check_entities(path: Path) -> int:
    """Every entity covers exactly the text of its part of the exported list."""
    exported = {}
    for m in json.loads(path.read_text(encoding="utf-8"))["messages"]:
        parts = m.get("text_entities", [])
        exported[m["id"]] = [p["text"] for p in parts if p["type"] != "plain" and p["text"]]
    checked = 0
    for post in read(path)[1]:
        units = post.text.encode("utf-16-le")
        got = [
            units[2 * e.offset : 2 * (e.offset + e.length)].decode("utf-16-le")
            for e in post.entities
        ]
        assert got == exported[post.message_id], post.message_id
        checked += len(got)
    return checked


def test_entity_offsets_in_fixtures() -> None:
    assert _check_entities(CHANNEL) == 8
    assert _check_entities(SAMPLE) > 10


REAL = [
    # file, posts, service, forwarded, edited
    ("tdesktop_ru_pachum_channel_result.json", 6, 0, 0, 6),
    ("tdesktop_en_ar_salaf_channel_result.json", 213, 5, 27, 106),
]


@pytest.mark.samples
@pytest.mark.parametrize(("name", "n", "service", "forwarded", "edited"), REAL)
def test_real_samples(name: str, n: int, service: int, forwarded: int, edited: int) -> None:
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"{path} not present")
    channels, posts = read(path)
    assert len(channels) == 1 and channels[0].id < -1_000_000_000_000
    assert len(posts) == n
    assert sum(p.is_service for p in posts) == service
    assert sum(p.forward is not None for p in posts) == forwarded
    assert all(p.forward.from_id < 0 for p in posts if p.forward and p.forward.from_id)
    assert sum(p.edit_date is not None for p in posts) == edited
    assert _check_entities(path) > 0


# -- bad input ------------------------------------------------------------------------------


def _json_case(mutate: Callable[[dict[str, Any]], Any]) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        doc = json.loads(CHANNEL.read_text(encoding="utf-8"))
        return write_json(tmp / "export.json", mutate(doc) or doc)

    return make


def _bytes_case(transform: Callable[[bytes], bytes]) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / "export.json"
        path.write_bytes(transform(CHANNEL.read_bytes()))
        return path

    return make


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


BAD: list[tuple[str, Callable[[Path], Path], list[str]]] = [
    ("truncated", _bytes_case(lambda b: b[: len(b) // 2]), ["ends too early at byte", "truncated"]),
    (
        "garbage",
        _bytes_case(lambda b: b.replace(b'"id": 4,', b'"id": 4 oops,')),
        ["invalid JSON near byte"],
    ),
    (
        "cut in a character",
        _bytes_case(lambda b: b[: b.index("Заречного".encode()) + 3]),
        ["ends too early", "truncated"],
    ),
    ("empty", _bytes_case(lambda b: b""), ["empty"]),
    ("html", _bytes_case(lambda b: b"<!DOCTYPE html>\n<html><body>chat</body></html>"), ["HTML"]),
    ("binary", _bytes_case(lambda b: b"PK\x03\x04\x14\x00\x00\x00"), ["invalid JSON"]),
    ("top list", _bytes_case(lambda b: b"[1, 2, 3]"), ["expected an object"]),
    ("no messages", _bytes_case(lambda b: b'{"foo": 1}'), ["not a Telegram Desktop JSON export"]),
    ("messages object", _json_case(_set(["messages"], {"1": {}})), ["messages: expected a list"]),
    (
        "channel id string",
        _json_case(_set(["id"], "1700000001")),
        ['id: expected an integer, got "1700000001"'],
    ),
    (
        "a group",
        _json_case(_set(["type"], "private_supergroup")),
        ['"private_supergroup" export, not a channel'],
    ),
    (
        "id string",
        _json_case(_set(["messages", 3, "id"], "4")),
        ['messages[3].id: expected an integer from 1 to 2147483647 (a message id), got "4"'],
    ),
    (
        "date word",
        _json_case(_set(["messages", 3, "date_unixtime"], "soon")),
        ['messages[3].date_unixtime: expected a Unix time (seconds since 1970), got "soon"'],
    ),
    (
        "edit date",
        _json_case(_set(["messages", 2, "edited_unixtime"], [1])),
        ["messages[2].edited_unixtime: expected a Unix time (seconds since 1970), got [1]"],
    ),
    (
        "text number",
        _json_case(_set(["messages", 1, "text_entities"], 5)),
        ["messages[1].text_entities: expected a string or a list, got 5"],
    ),
    (
        "entity text",
        _json_case(_set(["messages", 2, "text_entities", 1, "text"], None)),
        ["messages[2].text_entities[1].text: expected a string, got null"],
    ),
    (
        "message not object",
        _json_case(_set(["messages", 0], "hello")),
        ['messages[0]: expected an object, got "hello"'],
    ),
    (
        "file size",
        _json_case(_set(["messages", 4, "file_size"], "5 MB")),
        ['messages[4].file_size: expected an integer, got "5 MB"'],
    ),
    (
        "reactions",
        _json_case(_set(["messages", 2, "reactions"], {"👍": 1})),
        ["messages[2].reactions: expected a list"],
    ),
]


@pytest.mark.parametrize(("name", "make", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_file_and_place(
    tmp_path: Path, name: str, make: Callable[[Path], Path], expected: list[str]
) -> None:
    path = make(tmp_path)
    with pytest.raises(InputFileError) as info:
        read(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    for part in expected:
        assert part in message


@pytest.mark.parametrize("key", ["views", "id"])
@pytest.mark.parametrize("value", [2**63, 10**23, -(2**63) - 1])
def test_integers_beyond_64_bits_are_an_error(tmp_path: Path, key: str, value: int) -> None:
    """SQLite stores 64-bit integers: a bigger id or count is a clear error, not a crash at
    write (orjson reads 10**23 as a float, ijson says "integer overflow")."""
    doc = export_doc(50)
    doc["messages"][30][key] = value
    path = write_json(tmp_path / "export.json", doc)
    with pytest.raises(InputFileError) as info:
        read(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    placed = f"messages[30].{key}: expected an integer", "(after messages[29])"  # orjson, ijson
    assert any(p in message for p in placed)


@pytest.mark.parametrize("value", [0, -5])
def test_message_ids_start_at_one(tmp_path: Path, value: int) -> None:
    """Telegram counts a channel's message ids from 1 (int32): 0 or a negative id is not a
    post, and stored it would sit outside every coverage range."""
    doc = export_doc(5)
    doc["messages"][2]["id"] = value
    path = write_json(tmp_path / "export.json", doc)
    with pytest.raises(InputFileError) as info:
        read(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert "a message id" in message and f"got {value}" in message


def test_a_byte_order_mark_is_read_past(tmp_path: Path) -> None:
    """A file saved again by a Windows editor starts with a UTF-8 BOM (RFC 8259 §8.1: a
    reader may ignore it); the posts are the same as without it."""
    doc = export_doc(40)
    plain = write_json(tmp_path / "plain.json", doc)
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert read(bom) == read(plain)
    assert len(read(bom)[1]) == 40


def test_header_keys_after_the_messages_are_read(tmp_path: Path) -> None:
    """A tool that rewrites the file with sorted keys puts "messages" before "name" and
    "type": the channel is still recognised (it was refused as "a null export")."""
    doc = export_doc(30)
    plain = write_json(tmp_path / "plain.json", doc)
    ordered = tmp_path / "sorted.json"
    ordered.write_text(json.dumps(doc, ensure_ascii=False, sort_keys=True), encoding="utf-8")
    channels, posts = read(ordered)
    want_channels, want_posts = read(plain)
    assert channels == want_channels
    # the same posts; only ``raw`` (the message as written in the file) has its keys sorted
    assert [dataclasses.replace(p, raw="") for p in posts] == [
        dataclasses.replace(p, raw="") for p in want_posts
    ]
    assert len(posts) == 30


def test_a_peer_id_beyond_64_bits_is_no_link(tmp_path: Path) -> None:
    doc = export_doc(3)
    doc["messages"][1].update(forwarded_from="Someone", forwarded_from_id="user" + "9" * 30)
    _, posts = read(write_json(tmp_path / "export.json", doc))
    forward = posts[1].forward
    assert forward is not None and forward.from_id is None and forward.from_title == "Someone"


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (b'"\\udc00"', "text that is not UTF-8"),  # a lone surrogate
        (b'"\xc0\xaf"', "text that is not UTF-8"),  # an overlong encoding
        (b"[" * 300 + b"]" * 300, "messages[1]: cannot be kept as JSON"),  # nested too deep
    ],
    ids=["lone surrogate", "overlong UTF-8", "nested too deep"],
)
def test_text_and_nesting_json_cannot_hold_are_one_line_errors(
    tmp_path: Path, broken: bytes, expected: str
) -> None:
    path = write_json(tmp_path / "export.json", export_doc(3))
    data = path.read_bytes().replace(b'"id": 2,', b'"id": 2, "x": ' + broken + b",")
    path.write_bytes(data)
    with pytest.raises(InputFileError) as info:
        read(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and expected in message


def test_invalid_json_gives_the_byte(tmp_path: Path) -> None:
    data = CHANNEL.read_bytes().replace(b'"id": 4,', b'"id": 4 oops,')
    path = tmp_path / "export.json"
    path.write_bytes(data)
    with pytest.raises(InputFileError, match=r"invalid JSON near byte \d+ ") as info:
        read(path)
    at = int(str(info.value).split("near byte ")[1].split()[0])
    assert at - 4 <= data.index(b"oops") < at
    assert "(after messages[2])" in str(info.value)


@pytest.mark.parametrize("buf_size", [64, 1000, 64 * 1024])
def test_error_bytes_across_chunk_boundaries(
    tmp_path: Path, buf_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """yajl sees the file in chunks; the byte found is right wherever the error falls."""
    monkeypatch.setattr("archiver.sources.export.BUF_SIZE", buf_size)
    base = SAMPLE.read_bytes()
    path = tmp_path / "export.json"
    commas = [i for i in range(len(base)) if base[i : i + 2] == b",\n"]  # not inside strings
    for i in commas[:: max(1, len(commas) // 60)]:
        path.write_bytes(base[:i] + b" @" + base[i:])
        with pytest.raises(InputFileError) as info:
            read(path)
        assert re.search(rf"near byte {i + 2}\b", str(info.value))


def test_truncated_gives_the_size_and_last_message(tmp_path: Path) -> None:
    data = CHANNEL.read_bytes()
    cut = data.index(b'"id": 6,')
    path = tmp_path / "export.json"
    path.write_bytes(data[:cut])
    with pytest.raises(InputFileError) as info:
        read(path)
    assert f"ends too early at byte {cut}" in str(info.value)


def test_whole_account_errors_name_the_chat(tmp_path: Path) -> None:
    doc = json.loads(ACCOUNT.read_text(encoding="utf-8"))
    doc["chats"]["list"][3]["messages"][1]["id"] = "2"
    path = write_json(tmp_path / "result.json", doc)
    with pytest.raises(InputFileError, match=r"chats\.list\[3\]\.messages\[1\]\.id: expected"):
        read(path)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="cannot read"):
        read(tmp_path / "missing.json")


# -- import into the archive -----------------------------------------------------------------


async def test_import_and_idempotency(archive: Archive, tmp_path: Path) -> None:
    results = await import_file(archive, CHANNEL, username="testchan")
    assert [
        (r.channel_id, r.title, r.username, r.posts_added, r.versions_added) for r in results
    ] == [(CHANNEL_ID, "Тестовый канал 🧪", "testchan", 10, 10)]
    row = await archive.fetchone("SELECT source, username, title FROM channels")
    assert row is not None and tuple(row) == ("export", "testchan", "Тестовый канал 🧪")
    assert await counts(archive) == (10, 10)
    service = await archive.fetchall("SELECT message_id FROM posts WHERE is_service = 1")
    assert sorted(r[0] for r in service) == [1, 11]

    again = await import_file(archive, CHANNEL)  # no username this time
    assert [(r.posts_added, r.versions_added, r.username) for r in again] == [(0, 0, "testchan")]
    assert await counts(archive) == (10, 10)
    row = await archive.fetchone("SELECT username FROM channels")
    assert row is not None and row[0] == "testchan"  # a known username is kept

    doc = json.loads(CHANNEL.read_text(encoding="utf-8"))
    doc["messages"][1]["text"] = "Эвакуация жителей Заречного отменена."
    doc["messages"][1]["text_entities"] = [{"type": "plain", "text": doc["messages"][1]["text"]}]
    changed = await import_file(archive, write_json(tmp_path / "changed.json", doc))
    assert [(r.posts_added, r.versions_added) for r in changed] == [(0, 1)]
    assert await counts(archive) == (10, 11)
    texts = await archive.fetchall(
        "SELECT v.text FROM versions v JOIN posts p ON p.id = v.post_id"
        " WHERE p.message_id = 2 ORDER BY v.id"
    )
    assert [r[0] for r in texts] == [
        "Объявлена эвакуация жителей Заречного.",
        "Эвакуация жителей Заречного отменена.",
    ]


@pytest.mark.parametrize("workers", [False, True], ids=["inline", "worker"])
async def test_import_whole_account(
    archive: Archive, workers: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="archiver.sources.export")
    results = await import_file(archive, ACCOUNT, workers=workers)
    # the reader's log lines reach this process's log even from the worker
    assert any("3 channel(s) found" in r.getMessage() for r in caplog.records)
    assert [(r.channel_id, r.posts_added) for r in results] == [
        (-1001700000011, 3),
        (-1001700000012, 1),
        (-1001700000013, 1),
    ]
    rows = await archive.fetchall("SELECT id FROM channels ORDER BY id DESC")
    assert [r[0] for r in rows] == [-1001700000011, -1001700000012, -1001700000013]


@pytest.mark.parametrize("workers", [False, True], ids=["inline", "worker"])
async def test_username_refused_for_whole_account(archive: Archive, workers: bool) -> None:
    with pytest.raises(InputFileError, match="whole-account"):
        await import_file(archive, ACCOUNT, username="somechannel", workers=workers)
    assert await counts(archive) == (0, 0)


class _MatchEverything:
    def match(self, doc: Any, kind: str) -> dict[int, list[str]]:
        return {42: ["everything"]}

    def wants(self, name: str, kind: str) -> bool:
        return True


async def test_import_never_queues_alerts(archive: Archive) -> None:
    archive.matcher = _MatchEverything()
    await import_file(archive, CHANNEL)
    row = await archive.fetchone("SELECT count(*) FROM alerts")
    assert row is not None and row[0] == 0


@pytest.mark.parametrize("workers", [False, True], ids=["inline", "worker"])
async def test_progress_reports_bytes(archive: Archive, tmp_path: Path, workers: bool) -> None:
    path = write_json(tmp_path / "e.json", export_doc(4000, text="Пост {i} " * 10))
    data = path.read_text(encoding="utf-8")  # the fast path stops at message 2100
    at = data.index('"id": 2100,')
    path.write_text(data[:at] + '"x": {"y": 1\n  },' + data[at:], encoding="utf-8")
    seen: list[int] = []
    await import_file(archive, path, progress=seen.append, batch_size=500, workers=workers)
    assert len(seen) > 3
    assert seen == sorted(seen)
    assert seen[-1] == path.stat().st_size


@pytest.mark.parametrize("workers", [False, True], ids=["inline", "worker"])
async def test_broken_files_leave_earlier_batches_intact(
    archive: Archive, tmp_path: Path, workers: bool
) -> None:
    good = write_json(tmp_path / "a.json", export_doc(60, bare_id=1700000051))
    await import_file(archive, good, batch_size=10)
    channel_a = -1001700000051
    before = await counts(archive, channel_a)
    assert before == (60, 60)
    versions_before = {
        tuple(r) for r in await archive.fetchall("SELECT post_id, sha256, text FROM versions")
    }

    # a truncated export of another channel: every message read before the break is kept
    other = tmp_path / "b.json"
    data = json.dumps(export_doc(60, bare_id=1700000052), ensure_ascii=False, indent=1).encode()
    other.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputFileError, match="ends too early"):
        await import_file(archive, other, batch_size=10, workers=workers)
    assert await counts(archive, channel_a) == before
    b_posts, _ = await counts(archive, -1001700000052)
    assert 10 < b_posts < 60
    top = await archive.fetchone(
        "SELECT max(message_id), count(*) FROM posts WHERE channel_id = -1001700000052"
    )
    assert top is not None and top[0] - top[1] == export_doc(1)["messages"][0]["id"] - 1  # no hole

    # a truncated export of the same channel with an edited early post
    doc = export_doc(60, bare_id=1700000051)
    doc["messages"][2]["text"] = doc["messages"][2]["text_entities"][0]["text"] = "Правка"
    data = json.dumps(doc, ensure_ascii=False, indent=1).encode()
    same = tmp_path / "a2.json"
    same.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match=r"a2\.json: .*byte"):
        await import_file(archive, same, batch_size=10, workers=workers)
    after = {tuple(r) for r in await archive.fetchall("SELECT post_id, sha256, text FROM versions")}
    assert versions_before <= after  # every earlier version is still there
    assert await counts(archive, channel_a) == (60, 61)  # plus the edit's one new version


async def test_a_worker_process_gives_the_same_archive_as_inline(tmp_path: Path) -> None:
    """Big files are analysed in a worker process; the archive must not depend on it."""
    from archiver.store.archive import Archive

    snapshots = []
    for workers in (False, True):
        archive = await Archive.open(tmp_path / f"w{workers}.db")
        try:
            results = await import_file(archive, SAMPLE, batch_size=7, workers=workers)
            rows = await archive.fetchall(
                "SELECT p.message_id, v.text, v.words FROM versions v"
                " JOIN posts p ON p.id = v.post_id ORDER BY p.message_id, v.id"
            )
            fts = await archive.fetchall("SELECT count(*) FROM versions_fts")
        finally:
            await archive.close()
        snapshots.append(([tuple(r) for r in rows], fts[0][0], [r.posts_added for r in results]))
    assert snapshots[0] == snapshots[1]
    assert snapshots[0][2] == [41]


@pytest.mark.parametrize("workers", [False, True], ids=["inline", "worker"])
async def test_a_bad_chat_after_a_good_channel_keeps_the_good_channel(
    tmp_path: Path, workers: bool
) -> None:
    """The good channel's last batch is still queued when the bad chat's header fails: it is
    complete, so it must land (found by the end-to-end review)."""
    from archiver.store.archive import Archive

    good = {
        "name": "Good", "type": "public_channel", "id": 1811111111,
        "messages": [
            {"id": i, "type": "message", "date": "2024-03-01T10:00:00",
             "date_unixtime": str(1709287200 + i), "text": f"обстріл {i}", "text_entities": []}
            for i in range(1, 4)
        ],
    }  # fmt: skip
    bad = {"name": "Bad", "type": "public_channel", "id": "not a number", "messages": []}
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"chats": {"list": [good, bad]}}), encoding="utf-8")
    archive = await Archive.open(tmp_path / "a.db")
    try:
        with pytest.raises(InputFileError, match=r"result\.json: chats\.list\[1\]\.id"):
            await import_file(archive, path, workers=workers)
        rows = await archive.fetchall("SELECT count(*) FROM posts")
    finally:
        await archive.close()
    assert rows[0][0] == 3


@pytest.mark.parametrize("workers", [False, True], ids=["inline", "worker"])
async def test_a_file_broken_before_its_first_message_leaves_no_channel(
    archive: Archive, make_channel: MakeChannel, tmp_path: Path, workers: bool
) -> None:
    """The channel row is written when its header is read; if no message follows, a failed
    import removes it again, but never a channel that was there before (found by review)."""
    data = json.dumps(export_doc(5, bare_id=1700000061), ensure_ascii=False, indent=1)
    broken = tmp_path / "broken.json"
    broken.write_text(data[: data.index('"id": 1,') + 10], encoding="utf-8")
    with pytest.raises(InputFileError, match="ends too early"):
        await import_file(archive, broken, workers=workers)
    assert await archive.fetchall("SELECT id FROM channels") == []
    assert await archive.fetchall("SELECT channel_id FROM channel_versions") == []

    # a channel that was already known (here with no posts yet, as sync creates it) stays
    await make_channel(-1001700000061, "known", "Known")
    with pytest.raises(InputFileError):
        await import_file(archive, broken, workers=workers)
    rows = await archive.fetchall("SELECT id, username FROM channels")
    assert [tuple(r) for r in rows] == [(-1001700000061, "known")]

    # and a channel the failed import did write posts to stays with them
    partial = tmp_path / "partial.json"
    doc = export_doc(60, bare_id=1700000062)
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    partial.write_text(text[: len(text) * 2 // 3], encoding="utf-8")
    with pytest.raises(InputFileError):
        await import_file(archive, partial, batch_size=10, workers=workers)
    posts, _ = await counts(archive, -1001700000062)
    assert posts > 10
    assert await archive.fetchone("SELECT 1 FROM channels WHERE id = -1001700000062") is not None


async def test_a_reader_process_that_dies_is_a_clear_error_and_keeps_what_landed(
    archive: Archive, tmp_path: Path
) -> None:
    """The worker reading a big export is killed (out of memory, kill -9): one clear error,
    and the batches it had sent are archived."""
    import multiprocessing
    import signal

    from archiver.errors import TelewatchError

    path = write_json(tmp_path / "big.json", export_doc(6000, text="Пост {i} " * 20))
    killed: list[int] = []

    def kill_the_reader(_: int) -> None:
        if not killed:
            for child in multiprocessing.active_children():
                if child.name == "telewatch-reader" and child.pid is not None:
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)

    with pytest.raises(TelewatchError, match=r"stopped unexpectedly.*run the import again"):
        await import_file(archive, path, batch_size=500, workers=True, progress=kill_the_reader)
    assert killed
    posts, versions = await counts(archive)
    assert 500 <= posts < 6000 and versions == posts


async def test_a_file_with_a_bad_message_id_keeps_what_was_archived(
    archive: Archive, tmp_path: Path
) -> None:
    """The refusal of an id below 1 leaves the archive as it was: the channel's earlier import
    is all there, and nothing of the refused file."""
    await import_file(archive, CHANNEL, username="testchan")
    before = await counts(archive)
    doc = json.loads(CHANNEL.read_text(encoding="utf-8"))
    doc["messages"].append(dict(doc["messages"][-1], id=-5, text="подменённый текст"))
    doc["messages"][0] = dict(doc["messages"][0], text="изменено перед ошибкой")
    bad = write_json(tmp_path / "bad.json", doc)
    with pytest.raises(InputFileError, match=r"\(a message id\), got -5"):
        await import_file(archive, bad)
    assert await counts(archive) == before
