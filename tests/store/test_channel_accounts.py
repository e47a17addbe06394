"""Which account follows each Telethon channel (issue 18, [[accounts]]): shared out by room,
kept on the account that joined it, moved when its account goes or Telegram finds it full,
and never dropped silently. On SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pg import archive_both  # noqa: F401

from archiver.channels import parse_ref
from archiver.config import AccountSettings, ChannelConfig, Settings, StorageSettings
from archiver.sources.telethon_accounts import NO_ACCOUNT, account_full, assign
from archiver.store.accounts import assignment_rows, assignments, mark_joined
from archiver.store.archive import Archive
from archiver.store.channels import get_channel, upsert_channel
from archiver.store.following import get_following, get_status, update_following

NOW = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)


def now() -> datetime:
    return NOW


def ch(name: str, **kw: object) -> ChannelConfig:
    return ChannelConfig(parse_ref(name), **kw)  # type: ignore[arg-type]


def acct(name: str, limit: int = 500) -> AccountSettings:
    return AccountSettings(name, Path(f"/tmp/{name}.session"), join_limit=limit)


def settings(channels: list[ChannelConfig], *accounts: AccountSettings) -> Settings:
    return Settings(
        storage=StorageSettings(path=Path("/tmp/unused.db")),
        channels=tuple(channels),
        configured_accounts=accounts,
    )


CHANNELS = [ch(f"chan_{i:02d}") for i in range(6)]


async def test_new_channels_go_to_the_account_with_most_room_ties_in_config_order(
    archive: Archive,
) -> None:
    s = settings(CHANNELS, acct("desk1", 2), acct("desk2", 5), acct("desk3", 3))
    got = await assign(archive, s, now=now)
    # room 2/5/3: desk2 (5), desk2 (4 > 3), desk2 (3 ties desk3's 3: config order), desk3 (3),
    # then all three at 2: desk1, then desk2 and desk3 at 2: desk2
    assert list(got.values()) == ["desk2", "desk2", "desk2", "desk3", "desk1", "desk2"]
    assert await assignments(archive) == got


async def test_a_web_channel_gets_no_account(archive: Archive) -> None:
    s = settings([ch("webby_one", source="web"), CHANNELS[0]], acct("desk1"))
    assert await assign(archive, s, now=now) == {"chan_00": "desk1"}


async def test_pins_win_and_count_against_their_accounts_room(archive: Archive) -> None:
    chans = [ch("chan_a1"), ch("chan_p1", account="desk2"), ch("chan_p2", account="desk2")]
    s = settings(chans, acct("desk1", 2), acct("desk2", 3))
    got = await assign(archive, s, now=now)
    # desk2 holds the two pins (room 1 left), desk1 has room 2: the free channel goes there
    assert got == {"chan_a1": "desk1", "chan_p1": "desk2", "chan_p2": "desk2"}


async def test_a_joined_channel_stays_with_its_account_when_others_have_more_room(
    archive: Archive,
) -> None:
    s = settings(CHANNELS[:2], acct("desk1"), acct("desk2"))
    first = await assign(archive, s, now=now)
    assert first == {"chan_00": "desk1", "chan_01": "desk2"}
    await mark_joined(archive, "chan_00", "desk1")
    # a third account with far more room comes: nothing moves
    s = settings(CHANNELS[:2], acct("desk1"), acct("desk2"), acct("desk3", 1000))
    assert await assign(archive, s, now=now) == first
    # and a new channel goes to the roomiest
    s = replace(s, channels=tuple(CHANNELS[:3]))
    assert (await assign(archive, s, now=now))["chan_02"] == "desk3"


async def test_a_removed_accounts_channels_are_assigned_again_and_joined_again(
    archive: Archive,
) -> None:
    s = settings(CHANNELS[:4], acct("desk1"), acct("desk2"))
    await assign(archive, s, now=now)
    row = await upsert_channel_for(archive, "chan_01")  # desk2's, joined by desk2
    await update_following(archive, row, joined_at=NOW)
    await mark_joined(archive, "chan_01", "desk2")
    s = settings(CHANNELS[:4], acct("desk1"), acct("desk3"))
    got = await assign(archive, s, now=now)
    assert set(got.values()) == {"desk1", "desk3"}
    assert got["chan_00"] == "desk1" and got["chan_02"] == "desk1"  # desk1's stay
    rows = await assignment_rows(archive)
    assert not rows["chan_01"].joined  # desk3 has not joined it
    f = await get_following(archive, row)
    assert f is not None and f.joined_at is None  # the live listener joins it with desk3


async def upsert_channel_for(archive: Archive, name: str) -> int:
    from archiver.models import ChannelInfo

    bare = 1811111100 + int(name[-2:])
    info = ChannelInfo(id=-1000000000000 - bare, username=name, title=name)
    row = await upsert_channel(archive, info, source="telethon")
    got = await get_channel(archive, parse_ref(name))
    assert got is not None and got.id == row.id
    return row.id


async def test_when_every_account_is_full_a_new_channel_has_none_and_says_what_to_do(
    archive: Archive,
) -> None:
    s = settings(CHANNELS[:3], acct("desk1", 1), acct("desk2", 1))
    got = await assign(archive, s, now=now)
    assert got == {"chan_00": "desk1", "chan_01": "desk2", "chan_02": None}
    st = await get_status(archive, "chan_02")
    assert st is not None and st.status == NO_ACCOUNT
    assert "add an [[accounts]] account or raise a join_limit" in st.line()
    # room again (a raised limit): assigned, and the status says so no more
    s = settings(CHANNELS[:3], acct("desk1", 2), acct("desk2", 1))
    assert (await assign(archive, s, now=now))["chan_02"] == "desk1"
    st = await get_status(archive, "chan_02")
    assert st is not None and st.status == "ok"


async def test_channels_too_much_makes_the_account_full_and_its_unjoined_channels_move(
    archive: Archive,
) -> None:
    s = settings(CHANNELS[:4], acct("desk1", 500), acct("desk2", 500))
    got = await assign(archive, s, now=now)
    assert got == {"chan_00": "desk1", "chan_01": "desk2", "chan_02": "desk1", "chan_03": "desk2"}
    await mark_joined(archive, "chan_00", "desk1")
    # Telegram refuses desk1 the join of chan_02: it is full at the one channel it joined
    assert await account_full(archive, "desk1", CHANNELS[2], now=NOW) == 1
    got = await assign(archive, s, now=now)
    assert got["chan_00"] == "desk1"  # joined: stays
    assert got["chan_02"] == "desk2"  # moved to the account with room
    # a new channel does not go to desk1 either, though 499 of its 500 look free
    s = replace(s, channels=tuple(CHANNELS[:5]))
    assert (await assign(archive, s, now=now))["chan_04"] == "desk2"
    # a day later desk1 is tried again
    later = NOW + timedelta(days=1, minutes=1)
    s = replace(s, channels=tuple(CHANNELS[:6]))
    assert (await assign(archive, s, now=lambda: later))["chan_05"] == "desk1"


async def test_with_no_room_anywhere_a_refused_channel_stays_polled_where_it_was(
    archive: Archive,
) -> None:
    s = settings(CHANNELS[:2], acct("desk1", 1), acct("desk2", 1))
    assert await assign(archive, s, now=now) == {"chan_00": "desk1", "chan_01": "desk2"}
    await mark_joined(archive, "chan_01", "desk2")
    await account_full(archive, "desk1", CHANNELS[0], now=NOW)  # desk1: 0 joined, full
    got = await assign(archive, s, now=now)
    assert got == {"chan_00": "desk1", "chan_01": "desk2"}  # not dropped


async def test_one_account_keeps_the_archives_join_on_upgrade(archive: Archive) -> None:
    """An archive from before [[accounts]]: the channel was joined (by the one account).
    The implicit account takes it as joined: no join request again after the upgrade."""
    row = await upsert_channel_for(archive, "chan_00")
    await update_following(archive, row, joined_at=NOW)
    s = Settings(channels=(CHANNELS[0],))
    assert await assign(archive, s, now=now) == {"chan_00": "main"}
    assert (await assignment_rows(archive))["chan_00"].joined
    f = await get_following(archive, row)
    assert f is not None and f.joined_at is not None
