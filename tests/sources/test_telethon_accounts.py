"""Access hashes belong to the account that resolved the channel: stored with its user id; a
login with another account resolves again instead of failing forever; a hash Telegram
refuses is dropped and resolved once, at most once a day."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes.telethon_client import SELF_ID, FakeTelegram, Sleeper, connected, settings_for
from telethon import errors, functions

from archiver.channels import parse_ref
from archiver.config import Backfill, ChannelConfig
from archiver.errors import SourceError
from archiver.store.archive import Archive
from archiver.store.following import flood_waits, get_following, update_following
from archiver.sync import SyncOptions, sync_all

Resolve = functions.contacts.ResolveUsernameRequest
History = functions.messages.GetHistoryRequest
CID = -1001811111111
OTHER = 555000222
CFG = ChannelConfig(parse_ref("vsaldo"), backfill=Backfill("all"), join=False)


def opts(tg: FakeTelegram) -> SyncOptions:
    return SyncOptions(page_wait=0, sleeper=Sleeper(clock=tg.clock), now=tg.clock.now)


@pytest.fixture
def tg() -> FakeTelegram:
    t = FakeTelegram()
    t.add_channel()
    t.posts(3)
    t.add_account(OTHER)
    return t


async def test_the_hash_is_stored_with_the_account_it_belongs_to(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, CFG)
    await sync_all(archive, settings, client=await connected(tg), options=opts(tg))
    f = await get_following(archive, CID)
    assert f is not None
    assert (f.access_hash, f.hash_account) == (tg.channel().hash_for(SELF_ID), SELF_ID)


async def test_a_login_with_another_account_resolves_once_and_goes_on(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, CFG)
    await sync_all(archive, settings, client=await connected(tg), options=opts(tg))
    tg.post("after the new login")

    other = await connected(tg, account=OTHER)  # `telewatch login` with another account
    tg.requests.clear()
    for _ in range(3):
        [result] = await sync_all(archive, settings, client=other, options=opts(tg))
        assert result.status == "ok"
    assert tg.count(Resolve) == 1  # the first pass only
    f = await get_following(archive, CID)
    assert f is not None and f.hash_account == OTHER
    assert f.access_hash == tg.channel().hash_for(OTHER)
    row = await archive.fetchone("SELECT count(*) FROM posts WHERE channel_id = ?", (CID,))
    assert row is not None and row[0] == 4


async def test_a_refused_hash_is_dropped_and_resolved_once(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    """An archive from before hashes had an owner: the hash was another account's. The first
    CHANNEL_INVALID drops it and resolves; the pass goes on."""
    settings = settings_for(tmp_path, CFG)
    await sync_all(archive, settings, client=await connected(tg), options=opts(tg))
    await update_following(archive, CID, hash_account=None)  # as migrated: owner unknown
    tg.clock.advance(2 * 86400)

    other = await connected(tg, account=OTHER)
    tg.requests.clear()
    [result] = await sync_all(archive, settings, client=other, options=opts(tg))
    assert result.status == "ok"
    assert tg.count(Resolve) == 1
    f = await get_following(archive, CID)
    assert f is not None and (f.access_hash, f.hash_account) == (
        tg.channel().hash_for(OTHER),
        OTHER,
    )


async def test_resolving_again_is_rate_limited(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    """Telegram keeps refusing the channel even right after resolving: invalid, no storm of
    ResolveUsername; tried once a day."""
    settings = settings_for(tmp_path, CFG)
    client = await connected(tg)
    await sync_all(archive, settings, client=client, options=opts(tg))
    tg.fail(History, lambda r: errors.ChannelInvalidError(request=r), times=1000)
    tg.requests.clear()
    for _ in range(10):
        [result] = await sync_all(archive, settings, client=client, options=opts(tg))
        tg.clock.advance(900)
    assert result.status == "invalid"
    assert tg.count(Resolve) == 0  # resolved less than a day ago: the channel waits
    assert tg.count(History) == 1


async def test_another_accounts_flood_waits_do_not_hold_a_new_login(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    """Flood waits are the account's: after a login with another account, the waits of the
    previous one (its ledger is loaded before connecting, when the account is not known yet)
    refuse none of the new account's requests, and the new account's own waits are recorded
    as its own."""
    from dataclasses import replace

    from fakes.telethon_client import factory_for, flood

    from archiver.sources.telethon import connect_client

    settings = settings_for(tmp_path, CFG)
    first = replace(settings, telegram=replace(
        settings.telegram, session_string=tg.session(SELF_ID).save()))  # fmt: skip
    second = replace(settings, telegram=replace(
        settings.telegram, session_string=tg.session(OTHER).save()))  # fmt: skip
    GetState = functions.updates.GetStateRequest
    async with await Archive.open(settings.storage.path) as archive:
        tg.fail(GetState, flood(20000))  # the first account's wait
        with pytest.raises(SourceError, match="wait 20000s"):
            await connect_client(first, factory=factory_for(tg), archive=archive,
                                 now=tg.clock.now)  # fmt: skip
        tg.fail(GetState, flood(600))  # Telegram's answer to the second account
        with pytest.raises(SourceError, match="wait 600s"):
            await connect_client(second, factory=factory_for(tg), archive=archive,
                                 now=tg.clock.now)  # fmt: skip
        waits = {(w.account, w.method, w.seconds) for w in await flood_waits(archive)}
        assert waits == {(SELF_ID, "updates.GetState", 20000), (OTHER, "updates.GetState", 600)}

        tg.clock.advance(600)
        client = await connect_client(second, factory=factory_for(tg), archive=archive,
                                      now=tg.clock.now)  # fmt: skip
        assert client.ledger.account == OTHER
        [result] = await sync_all(archive, settings, client=client, options=opts(tg))
        assert result.status == "ok"
        await client.disconnect()
