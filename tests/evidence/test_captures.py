"""Raw captures in the log: the web source keeps the listing page and the post's embed page
as telewatch read them (the fake t.me behind the real client), Telethon keeps the message
object's JSON; content-addressed, zlib-compressed, cut at [evidence] max_capture_bytes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fakes.telethon_client import FakeTelegram, Sleeper, connected, settings_for
from fakes.tme import FakeClock, FakeTme
from pg import archive_both  # noqa: F401  (these tests run on SQLite and PostgreSQL)
from sources.webkit import CID, NOW, settings, web

from archiver.channels import parse_ref
from archiver.config import Backfill, ChannelConfig
from archiver.evidence.capture import HTTP_RESPONSE, JSON
from archiver.evidence.log import entries_for_post, get_capture, verify
from archiver.sources.telethon import sync_telethon_channel
from archiver.sources.web import TmeClient, sync_web_channel
from archiver.store.archive import Archive
from archiver.sync import SyncOptions


@pytest.fixture
def tme() -> FakeTme:
    return FakeTme()


@pytest.fixture
async def client(tme: FakeTme) -> AsyncIterator[TmeClient]:
    clock = FakeClock()
    async with TmeClient(settings(), transport=tme.transport, sleep=clock.sleep, clock=clock) as c:
        yield c


async def post_id(archive: Archive, message_id: int, channel_id: int = CID) -> int:
    row = await archive.fetchone(
        "SELECT id FROM posts WHERE channel_id = ? AND message_id = ?", (channel_id, message_id)
    )
    assert row is not None
    return int(row[0])


async def test_a_web_post_first_seen_keeps_the_listing_page_it_was_on(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    tme.channel("vsaldo").add_texts(range(1, 6), text="новина {id}")
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    entries = [(await entries_for_post(archive, await post_id(archive, m)))[0] for m in (1, 5)]
    assert [e.kind for e in entries] == ["seen", "seen"]
    sha = entries[0].capture_sha
    assert sha is not None and entries[1].capture_sha == sha  # one page, kept once
    capture = await get_capture(archive, sha)
    assert capture is not None and capture.media_type == HTTP_RESPONSE
    head, _, body = capture.body.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-type: text/html; charset=utf-8" in head.lower()
    assert "новина 5".encode() in body
    ref = json.loads(entries[0].content)["capture"]
    assert ref["sha256"] == sha and ref["url"] == "https://t.me/s/vsaldo"
    assert ref["media_type"] == HTTP_RESPONSE
    assert await verify(archive) is None


async def test_a_deletion_keeps_the_listing_and_the_embed_page_that_showed_it(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 46))
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    ch.delete(35)
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    entries = await entries_for_post(archive, await post_id(archive, 35))
    assert [e.kind for e in entries] == ["seen", "missing", "deleted"]
    listing = await get_capture(archive, entries[1].capture_sha or "")
    embed = await get_capture(archive, entries[2].capture_sha or "")
    assert listing is not None and embed is not None
    assert b"?before=" not in listing.body.split(b"\r\n")[0]
    assert b"Post not found" in embed.body
    assert json.loads(entries[2].content)["capture"]["url"] == (
        "https://t.me/vsaldo/35?embed=1&mode=tme"
    )
    assert await verify(archive) is None


async def test_a_capture_over_the_cap_is_cut_and_says_so(archive: Archive, tme: FakeTme) -> None:
    tme.channel("vsaldo").add_texts(range(1, 4))
    clock = FakeClock()
    async with TmeClient(
        settings(), transport=tme.transport, sleep=clock.sleep, clock=clock,
        max_capture_bytes=1000,
    ) as small:  # fmt: skip
        await sync_web_channel(archive, small, web("vsaldo"), now=NOW)
    entry = (await entries_for_post(archive, await post_id(archive, 1)))[0]
    capture = await get_capture(archive, entry.capture_sha or "")
    assert capture is not None
    head, _, body = capture.body.partition(b"\r\n\r\n")
    assert len(body) == 1000
    full = int(head.split(b"X-Telewatch-Truncated: ")[1])
    assert full > 1000
    assert json.loads(entry.content)["capture"]["truncated"] == full
    assert capture.size == len(capture.body)


async def test_a_telethon_post_keeps_its_message_object(archive: Archive, tmp_path: Path) -> None:
    tg = FakeTelegram()
    tg.add_channel()
    tg.posts(3)
    client = await connected(tg)
    cfg = ChannelConfig(parse_ref("vsaldo"), backfill=Backfill("all"))
    sleeper = Sleeper(client)
    options = SyncOptions(page_wait=0, sleeper=sleeper, now=sleeper.clock.now)
    await sync_telethon_channel(archive, client, cfg, settings_for(tmp_path, cfg), options=options)
    pid = await post_id(archive, 2)
    entry = (await entries_for_post(archive, pid))[0]
    capture = await get_capture(archive, entry.capture_sha or "")
    assert capture is not None and capture.media_type == JSON
    raw = await archive.fetchone("SELECT raw FROM versions WHERE post_id = ?", (pid,))
    assert capture.body == raw[0].encode()
    assert json.loads(capture.body)["id"] == 2
    assert await verify(archive) is None


def test_the_cookie_t_me_gives_telewatch_is_not_kept() -> None:
    """t.me answers with `Set-Cookie: stel_ssid=...`, telewatch's own session: a capture
    (and so every bundle handed to others) keeps the header's name, not its value."""
    from archiver.evidence.capture import http_response

    raw = http_response(
        url="https://t.me/s/vsaldo", fetched_at="2024-05-01 12:30:00", http_version="HTTP/1.1",
        status=200, reason="OK", body=b"<html></html>",
        headers=[("Content-Type", "text/html"),
                 ("Set-Cookie", "stel_ssid=0123456789abcdef_1; expires=Thu; path=/")],
    )  # fmt: skip
    head = raw.data.split(b"\r\n\r\n", 1)[0].decode()
    assert "Set-Cookie: [not kept]" in head.splitlines()
    assert "stel_ssid" not in raw.data.decode() and "Content-Type: text/html" in head
