"""Media: metadata always; optional content-addressed downloads recorded against the post."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from fakes.telethon_client import T0, FakeTelegram, Sleeper, connected, flood, settings_for
from telethon import functions, types

from archiver.channels import parse_ref
from archiver.config import Backfill, ChannelConfig
from archiver.sources.media import MediaStore
from archiver.sources.telethon import recheck_channel, sync_telethon_channel
from archiver.store.archive import Archive
from archiver.store.channels import get_channel
from archiver.sync import SyncOptions, sync_all

CFG = ChannelConfig(parse_ref("vsaldo"), backfill=Backfill("all"))


def photo(photo_id: int, size: int) -> Any:
    return types.MessageMediaPhoto(
        photo=types.Photo(
            id=photo_id,
            access_hash=1,
            file_reference=b"\x01",
            date=T0,
            sizes=[types.PhotoSize(type="y", w=1280, h=720, size=size)],
            dc_id=2,
        )
    )


def video(size: int) -> Any:
    return types.MessageMediaDocument(
        document=types.Document(
            id=9,
            access_hash=1,
            file_reference=b"\x01",
            date=T0,
            mime_type="video/mp4",
            size=size,
            dc_id=2,
            attributes=[types.DocumentAttributeVideo(duration=30, w=640, h=360)],
        )
    )


class Files:
    """The "network" of downloads: bytes per message id, and what was asked for."""

    def __init__(self, data: dict[int, bytes]) -> None:
        self.data = data
        self.asked: list[int] = []

    async def __call__(self, msg: Any) -> bytes | None:
        self.asked.append(msg.id)
        return self.data.get(msg.id)


def options(files: Files) -> SyncOptions:
    return SyncOptions(
        page_wait=0, sleeper=Sleeper(), fetch_media=files, now=lambda: T0 + timedelta(minutes=10)
    )


async def test_media_metadata_is_archived_without_downloading(
    archive: Archive, tmp_path: Path
) -> None:
    tg = FakeTelegram()
    tg.add_channel()
    tg.post("", media=photo(1, 150_000))
    tg.post("Видео", media=video(8_000_000))
    files = Files({})
    settings = settings_for(tmp_path, CFG)  # [media] download = []
    await sync_telethon_channel(archive, await connected(tg), CFG, settings, options=options(files))
    rows = await archive.fetchall("SELECT media_kind, media_json FROM posts ORDER BY message_id")
    assert [r[0] for r in rows] == ["photo", "video"]
    meta = json.loads(rows[1][1])[0]
    assert meta == {
        "kind": "video",
        "mime_type": "video/mp4",
        "size": 8_000_000,
        "width": 640,
        "height": 360,
        "duration": 30.0,
        "file_unique_id": "document:9",
    }
    assert files.asked == []
    assert not (tmp_path / "media").exists()


async def test_downloads_are_content_addressed_deduplicated_and_recorded(
    archive: Archive, tmp_path: Path
) -> None:
    tg = FakeTelegram()
    tg.add_channel()
    same = b"\xff\xd8 the same photo, posted twice"
    tg.post("", media=photo(1, len(same)))  # 1
    tg.post("", media=photo(2, len(same)))  # 2: the same bytes again
    tg.post("", media=video(1000))  # 3: not a kind we download
    tg.post("", media=photo(3, 50 * 1024 * 1024))  # 4: above max_size_mb
    files = Files({1: same, 2: same, 3: b"video", 4: b"big"})
    settings = settings_for(tmp_path, CFG, download=frozenset({"photo"}), max_size_mb=1)

    result = await sync_telethon_channel(
        archive, await connected(tg), CFG, settings, options=options(files)
    )

    assert files.asked == [1, 2]
    assert result.media_stored == 2
    sha = hashlib.sha256(same).hexdigest()
    stored = await archive.fetchall("SELECT sha256, path, size, mime_type FROM media_files")
    assert [tuple(r) for r in stored] == [(sha, f"{sha[:2]}/{sha}.jpg", len(same), "image/jpeg")]
    assert (tmp_path / "media" / sha[:2] / f"{sha}.jpg").read_bytes() == same
    links = await archive.fetchall(
        "SELECT p.message_id, pm.idx, pm.sha256 FROM post_media pm"
        " JOIN posts p ON p.id = pm.post_id ORDER BY p.message_id"
    )
    assert [tuple(r) for r in links] == [(1, 0, sha), (2, 0, sha)]

    # reading the posts again (recent window) downloads nothing twice
    await recheck_channel(archive, await connected(tg), CFG, settings, options=options(files))
    assert files.asked == [1, 2]


async def test_a_long_flood_wait_on_downloads_never_stops_the_posts(
    archive: Archive, tmp_path: Path
) -> None:
    """upload.GetFile is a method of its own in the flood ledger: a long wait on it leaves the
    files for later and every channel's posts (and cursor) go on, as for GetFullChannel."""
    tg = FakeTelegram()
    for bare, name in ((1811111111, "vsaldo"), (1922222222, "other")):
        tg.add_channel(bare, name)
        tg.post("with a photo", bare_id=bare, media=photo(bare, 5))
        tg.post("text after it", bare_id=bare)
        tg.files[bare] = b"photo"
    cfgs = [ChannelConfig(parse_ref(n), backfill=Backfill("all")) for n in ("vsaldo", "other")]
    settings = settings_for(tmp_path, *cfgs, download=frozenset({"photo"}))
    tg.fail(functions.upload.GetFileRequest, flood(3600))
    opts = SyncOptions(page_wait=0, sleeper=Sleeper(clock=tg.clock), now=tg.clock.now)

    results = await sync_all(archive, settings, client=await connected(tg), options=opts)

    assert [(r.status, r.new_posts, r.high_water) for r in results] == [("ok", 2, 2)] * 2
    assert tg.count(functions.upload.GetFileRequest) == 1  # the second waits without asking
    assert tg.sent_during_wait == []
    tg.clock.advance(3600)  # the wait is over: the next read of the posts fetches the files
    results = await sync_all(archive, settings, client=await connected(tg), options=opts)
    assert [r.media_stored for r in results] == [1, 1]
    row = await get_channel(archive, -1001811111111)
    assert row is not None and row.high_water == 2


def test_media_store_writes_each_content_once(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    a = store.put(b"abc", "image/png")
    b = store.put(b"abc", "image/png")
    c = store.put(b"abd", None)
    assert a == b
    assert a.path.endswith(".png") and "." not in c.path.split("/")[-1]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        [a.path.split("/")[-1], c.path.split("/")[-1]]
    )
