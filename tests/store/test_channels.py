"""Channels: identity by marked id, versioned metadata, lookup by any reference, the resume
cursor and the sync state."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pg import archive_both  # noqa: F401  (these tests run on SQLite and PostgreSQL)

from archiver.channels import BadChannelRef
from archiver.errors import ChannelNotFound
from archiver.models import ChannelInfo
from archiver.store.archive import Archive
from archiver.store.channels import (
    get_channel,
    list_channels,
    record_sync,
    require_channel,
    set_cursor,
    upsert_channel,
)

CID = -1001811111111


async def versions(archive: Archive) -> list[tuple[object, ...]]:
    rows = await archive.fetchall(
        "SELECT username, title, description, subscribers FROM channel_versions"
        " WHERE channel_id = ? ORDER BY id",
        (CID,),
    )
    return [tuple(r) for r in rows]


async def test_upsert_creates_a_channel_with_its_first_version(archive: Archive) -> None:
    row = await upsert_channel(
        archive,
        ChannelInfo(CID, "VSaldo", "Сальдо", "описание", 1200, access_hash=77),
        source="telethon",
    )
    assert (row.id, row.username, row.title, row.subscribers) == (CID, "vsaldo", "Сальдо", 1200)
    assert (row.access_hash, row.source, row.high_water, row.backfilled) == (
        77,
        "telethon",
        0,
        False,
    )
    assert row.created_at.tzinfo is not None
    assert await versions(archive) == [("vsaldo", "Сальдо", "описание", 1200)]


async def test_metadata_changes_are_versioned_and_none_never_erases(archive: Archive) -> None:
    await upsert_channel(archive, ChannelInfo(CID, "vsaldo", "Сальдо", "раз"), source="telethon")
    same = await upsert_channel(archive, ChannelInfo(CID, "vsaldo", "Сальдо"), source="telethon")
    assert same.description == "раз"  # None keeps what is known
    assert len(await versions(archive)) == 1  # nothing changed, no new version

    renamed = await upsert_channel(
        archive, ChannelInfo(CID, None, "Сальдо (архив)", subscribers=5), source="web"
    )
    assert (renamed.username, renamed.title, renamed.subscribers) == ("vsaldo", "Сальдо (архив)", 5)
    assert renamed.source == "telethon"  # the first source stays
    assert await versions(archive) == [
        ("vsaldo", "Сальдо", "раз", None),
        ("vsaldo", "Сальдо (архив)", "раз", 5),
    ]


@pytest.mark.parametrize(
    "ref",
    [
        "vsaldo",
        "@vsaldo",
        "VSALDO",
        "1811111111",
        "-1001811111111",
        "https://t.me/vsaldo",
        "t.me/s/vsaldo",
        "https://t.me/vsaldo/42",
        "https://t.me/c/1811111111/5",
        CID,
    ],
)
async def test_get_channel_by_any_reference(archive: Archive, ref: str | int) -> None:
    await upsert_channel(archive, ChannelInfo(CID, "vsaldo", "Сальдо"), source="telethon")
    row = await get_channel(archive, ref)
    assert row is not None and row.id == CID


async def test_unknown_and_malformed_references(archive: Archive) -> None:
    await upsert_channel(archive, ChannelInfo(CID, "vsaldo"), source="telethon")
    assert await get_channel(archive, "someoneelse") is None
    assert await get_channel(archive, -1009999999999) is None
    with pytest.raises(ChannelNotFound, match=r"'someoneelse'.*telewatch stats"):
        await require_channel(archive, "someoneelse")
    with pytest.raises(BadChannelRef, match="'no spaces allowed'"):
        await get_channel(archive, "no spaces allowed")


async def test_list_channels_and_name(archive: Archive) -> None:
    await upsert_channel(archive, ChannelInfo(-1003, None, "Без имени"), source="export")
    await upsert_channel(archive, ChannelInfo(-1002, "bravo"), source="web")
    await upsert_channel(archive, ChannelInfo(-1001, "alpha"), source="telethon")
    await upsert_channel(archive, ChannelInfo(-1004), source="telethon")
    rows = await list_channels(archive)
    assert {r.id for r in rows} == {-1001, -1002, -1003, -1004}
    names = {r.id: r.name for r in rows}
    assert names == {-1001: "alpha", -1002: "bravo", -1003: "Без имени", -1004: "-1004"}


async def test_the_cursor_only_moves_forward_and_backfill_is_recorded(archive: Archive) -> None:
    await upsert_channel(archive, ChannelInfo(CID, "vsaldo"), source="telethon")
    await set_cursor(archive, CID, high_water=120, backfill_low=50)
    await set_cursor(archive, CID, high_water=80)  # an old batch finishing late
    row = await require_channel(archive, CID)
    assert (row.high_water, row.backfill_low, row.backfilled) == (120, 50, False)

    await set_cursor(archive, CID, backfilled=True)
    row = await require_channel(archive, CID)
    assert row.backfilled and row.backfilled_at is not None
    await set_cursor(archive, CID)  # nothing to set: a no-op
    await set_cursor(archive, CID, backfilled=False)
    assert not (await require_channel(archive, CID)).backfilled


async def test_record_sync(archive: Archive) -> None:
    await upsert_channel(archive, ChannelInfo(CID, "vsaldo"), source="telethon")
    await record_sync(archive, CID, status="ok")
    ok = await require_channel(archive, CID)
    assert ok.last_sync_status == "ok" and ok.last_sync_ok_at is not None
    assert ok.last_error is None

    until = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    await record_sync(
        archive, CID, status="flood_wait", error="FloodWait 600s", flood_wait_until=until
    )
    fw = await require_channel(archive, CID)
    assert (fw.last_sync_status, fw.last_error, fw.flood_wait_until) == (
        "flood_wait",
        "FloodWait 600s",
        until,
    )
    assert fw.last_sync_ok_at == ok.last_sync_ok_at  # the last good sync is kept

    await record_sync(archive, CID, status="ok")
    again = await require_channel(archive, CID)
    assert again.flood_wait_until is None and again.last_error is None
