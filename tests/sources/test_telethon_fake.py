"""The fake Telegram is a claim about Telegram and Telethon: these tests pin what Telethon's
own code does on top of it (connect, the update loop, gaps, flood bookkeeping), the
behaviours the issue found hidden by the old fake."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fakes.telethon_client import (
    SELF_ID,
    FakeTelegram,
    connected,
    fake_client,
    flood,
)
from telethon import errors, events, functions, types

Resolve = functions.contacts.ResolveUsernameRequest
History = functions.messages.GetHistoryRequest
ChannelDiff = functions.updates.GetChannelDifferenceRequest
BARE = 1811111111
OTHER_ACCOUNT = 555000222


async def until(check: Callable[[], Awaitable[bool] | bool]) -> None:
    """Let Telethon's background loop run until ``check`` holds (bounded, not a timing)."""
    for _ in range(300):
        got = check()
        if got if isinstance(got, bool) else await got:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


@pytest.fixture
def tg() -> FakeTelegram:
    t = FakeTelegram()
    t.add_channel()
    t.posts(3)
    return t


async def test_telethons_own_connect_runs_and_logs_in(tg: FakeTelegram) -> None:
    client = await connected(tg, receive_updates=True)
    # client/telegrambaseclient.py: InitConnection(GetConfig), then with an empty MessageBox
    # get_me() and _on_login()'s GetState + GetDifference (client/auth.py)
    assert [type(r).__name__ for r in tg.requests] == [
        "GetConfigRequest",
        "GetUsersRequest",
        "GetStateRequest",
        "GetDifferenceRequest",
    ]
    assert client._self_id == SELF_ID
    assert await client.is_user_authorized()
    await client.disconnect()


async def test_a_session_telegram_does_not_know_is_not_logged_in(tg: FakeTelegram) -> None:
    from telethon.sessions import StringSession

    client = fake_client(tg, StringSession())  # no key: connect makes a new, unknown one
    await client.connect()
    assert not await client.is_user_authorized()
    await client.disconnect()


async def test_requests_on_a_disconnected_client_fail_as_the_real_sender_does(
    tg: FakeTelegram,
) -> None:
    client = fake_client(tg)
    with pytest.raises(ConnectionError, match="Cannot send requests while disconnected"):
        await client(functions.updates.GetStateRequest())


async def test_pushed_updates_reach_handlers_through_telethons_update_loop(
    tg: FakeTelegram,
) -> None:
    tg.join()
    client = await connected(tg, receive_updates=True)
    seen: list[int] = []

    async def on_new(event: Any) -> None:
        seen.append(event.message.id)

    client.add_event_handler(on_new, events.NewMessage(chats=[tg.channel().marked_id]))
    tg.post("live")
    await until(lambda: seen == [4])
    await client.disconnect()


async def test_no_updates_reach_a_client_that_asked_for_none(tg: FakeTelegram) -> None:
    tg.join()
    client = await connected(tg, receive_updates=False)
    tg.post("live")
    assert client._updates_queue.empty()  # invokeWithoutUpdates: never subscribed
    await client.disconnect()


async def test_a_lost_update_is_a_gap_telethon_fills_with_get_channel_difference(
    tg: FakeTelegram,
) -> None:
    tg.join()
    client = await connected(tg, receive_updates=True)
    seen: list[int] = []

    async def on_new(event: Any) -> None:
        seen.append(event.message.id)

    client.add_event_handler(on_new, events.NewMessage(chats=[tg.channel().marked_id]))
    tg.post("first")
    await until(lambda: seen == [4])
    tg.post("lost", push=False)  # Telegram never delivers this one
    tg.post("next")  # its pts shows the gap: after 0.5 s Telethon asks for the difference
    await until(lambda: sorted(seen) == [4, 5, 6])
    assert tg.count(ChannelDiff) == 1
    await client.disconnect()


async def test_telethon_drops_edits_and_deletions_of_a_channel_difference(
    tg: FakeTelegram,
) -> None:
    """Telethon moves the channel's pts before applying ``other_updates`` and then skips them
    as already applied (_updates/messagebox.py:783-797): only new posts come back."""
    tg.join()
    client = await connected(tg, receive_updates=True)
    seen: list[str] = []

    async def on_any(event: Any) -> None:
        kinds = (events.MessageEdited, events.MessageDeleted, events.NewMessage)  # subclasses first
        seen.append(next(k.__name__ for k in kinds if isinstance(event, k.Event)))

    cid = [tg.channel().marked_id]
    client.add_event_handler(on_any, events.NewMessage(chats=cid))
    client.add_event_handler(on_any, events.MessageEdited(chats=cid))
    client.add_event_handler(on_any, events.MessageDeleted(chats=cid))
    tg.post("seen live")
    await until(lambda: seen == ["NewMessage"])
    tg.edit(1, "edited while the update was lost", push=False)
    tg.delete(2, push=False)
    tg.post("new while lost", push=False)
    tg.post("the update that shows the gap")
    await until(lambda: seen.count("NewMessage") == 3)
    await asyncio.sleep(0.05)
    assert "MessageEdited" not in seen and "MessageDeleted" not in seen
    await client.disconnect()


async def test_channel_difference_too_long_returns_nothing_to_handlers(
    tg: FakeTelegram,
) -> None:
    tg.join()
    client = await connected(tg, receive_updates=True)
    seen: list[int] = []

    async def on_new(event: Any) -> None:
        seen.append(event.message.id)

    client.add_event_handler(on_new, events.NewMessage(chats=[tg.channel().marked_id]))
    tg.post("known")
    await until(lambda: seen == [4])
    tg.posts(150, push=False)  # more than getChannelDifference's limit of 100
    tg.post("shows the gap")
    await until(lambda: tg.count(ChannelDiff) >= 1)
    await asyncio.sleep(0.05)
    assert seen == [4]  # channelDifferenceTooLong: 151 posts, no event at all
    await client.disconnect()


async def test_access_hashes_belong_to_the_account(tg: FakeTelegram) -> None:
    tg.add_account(OTHER_ACCOUNT)
    mine = await connected(tg)
    other = await connected(tg, account=OTHER_ACCOUNT)
    a = (await mine(Resolve("vsaldo"))).chats[0]
    b = (await other(Resolve("vsaldo"))).chats[0]
    assert a.access_hash != b.access_hash
    with pytest.raises(errors.ChannelInvalidError):
        await other(History(types.InputPeerChannel(BARE, a.access_hash), 0, None, 0, 1, 0, 0, 0))
    await mine.disconnect()
    await other.disconnect()


async def test_joins_fail_the_way_telegram_refuses_them(tg: FakeTelegram) -> None:
    tg.add_account(OTHER_ACCOUNT, channel_limit=1)
    tg.add_channel(1922222222, "second")
    tg.add_channel(1933333333, None, "Private").private = True
    client = await connected(tg, account=OTHER_ACCOUNT)
    first = tg.channel(BARE)
    second = tg.channel(1922222222)
    hidden = tg.channel(1933333333)

    def peer(fc: Any) -> Any:
        return types.InputChannel(fc.bare_id, fc.hash_for(OTHER_ACCOUNT))

    await client(functions.channels.JoinChannelRequest(peer(first)))
    with pytest.raises(errors.ChannelsTooMuchError):
        await client(functions.channels.JoinChannelRequest(peer(second)))
    with pytest.raises(errors.ChannelPrivateError):
        await client(functions.channels.JoinChannelRequest(peer(hidden)))
    with pytest.raises(errors.UsernameNotOccupiedError):
        await client(Resolve("nosuchchannel"))
    assert OTHER_ACCOUNT in first.members
    await client.disconnect()


async def test_telethons_own_flood_guard_never_matches_without_updates(
    tg: FakeTelegram,
) -> None:
    """The hole the ledger closes: with receive_updates=False Telethon records the wait under
    InvokeWithoutUpdates' id and checks ResolveUsername's (client/users.py:46-64, 105-114)."""
    client = await connected(tg, receive_updates=False)
    tg.fail(Resolve, flood(20000))
    for _ in range(4):
        with pytest.raises(errors.FloodWaitError):
            await client(Resolve("vsaldo"))
    assert functions.InvokeWithoutUpdatesRequest.CONSTRUCTOR_ID in client._flood_waited_requests
    assert tg.count(Resolve) == 4  # every one went out to Telegram
    assert len(tg.sent_during_wait) == 3  # and Telegram answered FLOOD_WAIT again
    await client.disconnect()
