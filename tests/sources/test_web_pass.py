"""A web pass against the fake t.me and a real archive: deletions confirmed on the post's own
page, edits that are versions, re-reads and the rotation, one pacer and one budget for every
channel, pages that lie, and another address of a channel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fakes.tme import T0, FakeClock, FakePost, FakeTme

from archiver.config import Settings
from archiver.sources import web as web_source
from archiver.sources.web import TmeClient, last_pass, sync_web_channel, sync_web_channels
from archiver.store.archive import Archive, utcnow
from archiver.store.channels import get_channel, get_reread
from sources.webkit import (
    CID,
    NOW,
    EveryPost,
    alert_kinds,
    deleted,
    settings,
    states,
    texts,
    versions,
    web,
)


@pytest.fixture
def tme() -> FakeTme:
    return FakeTme()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(tme: FakeTme, clock: FakeClock) -> AsyncIterator[TmeClient]:
    async with TmeClient(settings(), transport=tme.transport, sleep=clock.sleep, clock=clock) as c:
        yield c


async def first_pass(
    archive: Archive, client: TmeClient, tme: FakeTme, name: str = "vsaldo"
) -> None:
    """The first pass (backfill), then the request log cleared."""
    await sync_web_channel(archive, client, web(name), now=NOW)
    tme.requests.clear()


# --- deletion is a claim with evidence --------------------------------------------------------


async def test_a_deleted_post_is_missing_then_confirmed_by_its_own_page(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    archive.matcher = EveryPost()
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 46))
    await first_pass(archive, client, tme)
    ch.delete(35)
    result = await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert result.missing == 1 and result.deleted == 1
    assert tme.embeds("vsaldo") == [35]
    req = next(r for r in tme.requests if r.url.path == "/vsaldo/35")
    assert dict(req.url.params) == {"embed": "1", "mode": "tme"}
    assert await deleted(archive) == {35: "web_embed"}
    assert (await states(archive))[35] == "deleted"
    assert (35, "deleted") in await alert_kinds(archive)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503),
        httpx.Response(500, text="<html>Internal error</html>"),
        httpx.Response(302, headers={"Location": "https://t.me/vsaldo"}),
        httpx.Response(429, headers={"Retry-After": "5"}),
        httpx.Response(200, text='<div class="tgme_widget_message_error">Channel is private</div>'),
        httpx.Response(200, text="<html><body>Telegram: Contact @vsaldo</body></html>"),
        httpx.ReadTimeout("timed out"),
    ],
    ids=["503", "500", "redirect", "429", "private", "another page", "timeout"],
)
async def test_anything_but_post_not_found_leaves_the_post_missing(
    archive: Archive, tme: FakeTme, client: TmeClient, answer: Any
) -> None:
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 46))
    await first_pass(archive, client, tme)
    ch.delete(35)
    tme.fail_embed("vsaldo", answer)
    result = await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert result.status == "ok" and result.unconfirmed == 1 and result.deleted == 0
    assert await deleted(archive) == {}
    assert (await states(archive))[35] == "missing"
    tme.requests.clear()
    again = await sync_web_channel(archive, client, web("vsaldo"), now=NOW)  # tried again
    assert tme.embeds("vsaldo") == [35] and again.deleted == 1
    assert await deleted(archive) == {35: "web_embed"}


async def test_a_post_shown_again_is_present_again(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 46))
    await first_pass(archive, client, tme)
    ch.hidden.add(35)
    tme.fail_embed("vsaldo", httpx.Response(502))
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert (await states(archive))[35] == "missing"
    ch.hidden.discard(35)  # the listing shows it again
    tme.requests.clear()
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert (await states(archive))[35] == "present"
    assert tme.embeds("vsaldo") == []  # the listing was evidence enough
    assert await deleted(archive) == {}


async def test_confirmations_fit_the_budget_and_go_on_next_pass(
    archive: Archive, tme: FakeTme, clock: FakeClock
) -> None:
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 46))
    async with TmeClient(settings(), transport=tme.transport, sleep=clock.sleep, clock=clock) as c:
        await sync_web_channel(archive, c, web("vsaldo"), now=NOW)
    ch.hidden |= {30, 32, 34, 36, 38}  # the listing leaves them out; they exist
    # Each pass: the newest page (1 request), then confirmations; the budget allows 3 in all.
    asked: list[list[int]] = []
    for hour in range(3):
        tme.requests.clear()
        async with TmeClient(
            settings(requests_per_pass=3), transport=tme.transport, sleep=clock.sleep, clock=clock
        ) as c:
            now = NOW + timedelta(hours=hour)
            await sync_web_channel(archive, c, web("vsaldo"), now=now)
            spent = c.budget.spent
            assert spent["new"] == 1 and spent["recent"] == 0 and sum(spent.values()) == 3
            assert spent["confirm"] == min(2, 5 - sum(len(a) for a in asked))
        asked.append(tme.embeds("vsaldo"))
    # Two a pass within the budget, each post once: a post its page showed is not marked
    # missing again (and asked again) the next pass.
    assert [len(a) for a in asked] == [2, 2, 1]
    assert sorted(asked[0] + asked[1] + asked[2]) == [30, 32, 34, 36, 38]
    assert await deleted(archive) == {}
    assert set((await states(archive)).values()) == {"present"}


# --- edits that are versions -------------------------------------------------------------------


async def test_a_link_only_edit_is_a_new_version(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 40))
    link = '<a href="https://example.org/{}" target="_blank" rel="noopener">the report</a>'
    ch.add(FakePost(40, "Read " + link.format("v1"), T0 + timedelta(hours=40)))
    await first_pass(archive, client, tme)
    ch.posts[40].html = "Read " + link.format("v2")  # the same words, another target
    result = await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert result.stats.versions_added == 1
    assert await versions(archive, 40) == 2
    raw = await archive.fetchone(
        "SELECT v.raw FROM posts p JOIN versions v ON v.id = p.current_version_id"
        " WHERE p.channel_id = ? AND p.message_id = 40",
        (CID,),
    )
    assert raw is not None
    assert json.loads(raw[0])["html"] == 'Read <a href="https://example.org/v2">the report</a>'


async def test_a_media_only_edit_is_a_new_version(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 40))
    ch.add(FakePost(40, "Photo of the site", T0 + timedelta(hours=40), photo="5249090012068914481"))
    await first_pass(archive, client, tme)
    ch.posts[40].photo = "5249090012068914999"  # another photo, the same caption
    result = await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert result.stats.versions_added == 1
    assert await versions(archive, 40) == 2


# --- the rotation ------------------------------------------------------------------------------


async def test_the_rotation_rereads_the_whole_channel_within_the_period(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 201))  # 200 posts, all older than recent_days
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    ch.posts[3].html = "post 3, corrected long after"
    period = timedelta(days=7)
    seen: list[int | None] = []
    for day in range(8):
        tme.requests.clear()
        await sync_web_channel(
            archive, client, web("vsaldo"), now=NOW + timedelta(days=day), period=period
        )
        seen.extend(tme.befores("vsaldo")[1:])
        if (await texts(archive))[3] != "post 3":
            break
    assert (await texts(archive))[3] == "post 3, corrected long after"
    assert day <= 7  # within full_recheck_days of the rotation's start
    state = await get_reread(archive, CID)
    assert state.last_full_check_at is not None
    assert seen == sorted(seen, key=lambda b: -(b or 0))  # walked from the top down


async def test_a_rotation_on_schedule_waits_for_a_pages_worth(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    """rotation_quota asks for at least one post a pass; a page holds 20. A pass 15 minutes
    after the round began reads no rotation page (before, every pass read one, for every
    channel: 500 requests a pass for 500 channels)."""
    tme.channel("vsaldo").add_texts(range(1, 201))
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)  # the round begins
    tme.requests.clear()
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW + timedelta(minutes=15))
    assert tme.befores("vsaldo") == [None]
    tme.requests.clear()
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW + timedelta(days=2))
    assert len(tme.befores("vsaldo")) > 1  # by then pages are due


async def test_the_rotation_knows_the_interval_between_passes(
    archive: Archive, tme: FakeTme, client: TmeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rotation_quota gets the time since the channel's previous pass (the guess of the time
    to the next one), so a round ends a pass before its period does."""
    from archiver.sources.web import pager

    seen: list[Any] = []
    real = pager.rotation_quota

    def spy(**kw: Any) -> int:
        seen.append(kw["interval"])
        return real(**kw)

    monkeypatch.setattr(pager, "rotation_quota", spy)
    tme.channel("vsaldo").add_texts(range(1, 201))
    import archiver.store.channels as store_channels

    earlier = utcnow() - timedelta(minutes=10)
    monkeypatch.setattr(store_channels, "utcnow", lambda: earlier)  # record_sync's clock
    await sync_web_channel(archive, client, web("vsaldo"))  # the first pass, 10 minutes ago
    await sync_web_channel(archive, client, web("vsaldo"))
    assert len(seen) == 1 and timedelta(minutes=10) <= seen[0] < timedelta(minutes=11)


# --- one client, one pacer, one budget per pass ------------------------------------------------


async def test_the_delay_holds_between_any_two_requests_of_a_pass(
    archive: Archive, tme: FakeTme, clock: FakeClock
) -> None:
    for name in ("first_one", "second_one", "third_one"):
        tme.channel(name, bare_id=hash(name) % 10**9 + 10**9).add_texts(range(1, 4))
    cfgs = [web("first_one"), web("second_one"), web("third_one")]
    await sync_web_channels(
        archive,
        settings(delay_seconds=2.0),
        cfgs,
        now=NOW,
        transport=tme.transport,
        sleep=clock.sleep,
        clock=clock,
    )
    assert len(tme.requests) == 3
    assert clock.sleeps == [2.0, 2.0]


async def test_sync_makes_one_web_pass_for_all_web_channels(
    archive: Archive, tme: FakeTme, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, archiver/sync.py called sync_web_channels once per channel (a new client,
    and no pause between channels)."""
    from archiver.sync import sync_all

    for name in ("first_one", "second_one", "third_one"):
        tme.channel(name, bare_id=hash(name) % 10**9 + 10**9).add_texts(range(1, 4))
    calls: list[list[str]] = []
    real = web_source.sync_web_channels

    async def recorded(archive: Archive, s: Any, channels: Any, **kw: Any) -> Any:
        cfgs = list(channels)
        calls.append([str(c.ref) for c in cfgs])
        return await real(
            archive, s, cfgs, transport=tme.transport, sleep=clock.sleep, clock=clock, **kw
        )

    monkeypatch.setattr(web_source, "sync_web_channels", recorded)
    conf = Settings(channels=(web("first_one"), web("second_one"), web("third_one")))
    results = await sync_all(archive, conf)
    assert calls == [["first_one", "second_one", "third_one"]]
    assert [(r.channel, r.status, r.new_posts) for r in results] == [
        ("first_one", "ok", 3),
        ("second_one", "ok", 3),
        ("third_one", "ok", 3),
    ]
    assert clock.sleeps == [1.0, 1.0]  # the default delay, between channels too


async def test_sync_reads_recheck_from_the_config(
    archive: Archive, tme: FakeTme, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[recheck] recent_days reaches the web pass that `telewatch sync` makes."""
    from archiver.config import RecheckSettings
    from archiver.sync import sync_all

    tme.channel("vsaldo").add_texts(range(1, 101))  # months old by the real clock
    real = web_source.sync_web_channels

    async def faked(archive: Archive, s: Any, channels: Any, **kw: Any) -> Any:
        return await real(archive, s, channels, transport=tme.transport, sleep=clock.sleep, **kw)

    monkeypatch.setattr(web_source, "sync_web_channels", faked)
    base = Settings(web=settings(), channels=(web("vsaldo"),))
    await sync_all(archive, base)
    tme.requests.clear()
    await sync_all(archive, base)
    assert tme.befores("vsaldo") == [None, 81]  # the newest page, one page of the rotation
    tme.requests.clear()
    await sync_all(archive, replace(base, recheck=RecheckSettings(recent_days=3650)))
    assert tme.befores("vsaldo") == [None, 81, 61, 41, 21]  # every post is "recent" now


async def test_the_budget_goes_to_new_posts_first_and_skipped_channels_go_first_next(
    archive: Archive, tme: FakeTme, clock: FakeClock
) -> None:
    names = [f"channel{i}" for i in range(5)]
    for i, name in enumerate(names):
        tme.channel(name, bare_id=1_900_000_000 + i).add_texts(range(1, 4))
    cfgs = [web(n) for n in names]
    kw: dict[str, Any] = {"now": NOW, "transport": tme.transport, "sleep": clock.sleep}
    first = await sync_web_channels(archive, settings(requests_per_pass=3), cfgs, **kw)
    assert [r.status for r in first] == ["ok", "ok", "ok", "skipped", "skipped"]
    assert "requests_per_pass" in (first[3].error or "")
    assert (first.budget, first.spent["new"], first.left) == (3, 3, 0)
    tme.requests.clear()
    second = await sync_web_channels(archive, settings(requests_per_pass=2), cfgs, **kw)
    assert [r.status for r in second] == ["skipped", "skipped", "skipped", "ok", "ok"]
    assert [str(r.url.path) for r in tme.requests] == ["/s/channel3", "/s/channel4"]
    report = await last_pass(archive)
    assert report is not None
    assert report["spent"] == {"new": 2, "recent": 0, "confirm": 0, "rotation": 0}
    assert (report["requests_per_pass"], report["left"], report["channels"]) == (2, 0, 5)
    # `telewatch stats` shows it.
    from click.testing import CliRunner

    from archiver.cli import cli

    def stats(*args: str) -> str:
        return CliRunner().invoke(cli, ["--db", str(archive.path), "stats", *args]).stdout

    human = await asyncio.to_thread(stats)  # the CLI runs its own event loop
    assert "web: last pass at " in human
    assert (
        "2 request(s) of 2 (new 2, recent 0, confirm 0, rotation 0); left 0; not done for lack"
        " of budget: new for 3 channel(s), recent for 5 channel(s)"
    ) in human
    # The last channel served finished its walk on the last request of the budget: its pass
    # still records it (before, the pass stopped it at its last page: never backfilled).
    row = await get_channel(archive, "channel4")
    assert row is not None and row.backfilled and row.high_water == 3
    assert second[4].backfilled and second[4].pending == ("recent", "confirm", "rotation")
    as_json = await asyncio.to_thread(stats, "--json")
    assert {"web_pass": report} in [json.loads(line) for line in as_json.splitlines()]


async def test_the_phases_spend_the_budget_in_order(
    archive: Archive, tme: FakeTme, clock: FakeClock
) -> None:
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 101))  # one post an hour
    now = T0 + timedelta(hours=110)  # every post under recent_days (7) old
    kw: dict[str, Any] = {"now": now, "transport": tme.transport, "sleep": clock.sleep}
    conf = Settings(web=settings())
    await sync_web_channels(archive, conf, [web("vsaldo")], **kw)
    ch.add_texts(range(101, 106))  # new posts
    ch.delete(90)  # a deletion to confirm
    tme.requests.clear()
    result = await sync_web_channels(archive, conf, [web("vsaldo")], **kw)
    assert result[0].stats.posts_added == 5 and result[0].deleted == 1
    paths = [(r.url.path, r.url.params.get("before")) for r in tme.requests]
    recent = [b for p, b in paths[1:-1]]
    assert paths[0] == ("/s/vsaldo", None)  # new posts: the newest page reaches 100
    assert all(p == "/s/vsaldo" for p, _ in paths[1:-1])  # then recent pages, down to post 1
    assert recent == sorted(recent, key=int, reverse=True) and len(recent) == 5
    assert paths[-1] == ("/vsaldo/90", None)  # then the confirmation
    # The recent pages read the whole channel: the rotation has nothing left this pass.
    assert result.spent == {"new": 1, "recent": 5, "confirm": 1, "rotation": 0}


# --- pages that lie ----------------------------------------------------------------------------


async def test_an_id_far_above_the_newest_makes_no_hole(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    """Before, a page showing an id above the real newest moved the high-water mark there,
    and the posts published below it were never fetched."""
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 61))
    ch.lies[10_000] = FakePost(10_000, "not a post of this channel", T0)
    result = await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert list(await texts(archive)) == list(range(1, 61))
    row = await get_channel(archive, "vsaldo")
    assert row is not None and row.high_water == 60
    assert tme.embeds("vsaldo") == [10_000]  # checked once; below a before= it is not believed
    assert result.backfilled
    ch.add_texts(range(61, 101))
    tme.requests.clear()
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert list(await texts(archive)) == list(range(1, 101))
    assert (await get_channel(archive, "vsaldo")).high_water == 100  # type: ignore[union-attr]


async def test_a_first_pass_marks_nothing_from_a_lying_page(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    """Before, a lying id on every page of a first pass made each page's range cover the posts
    of the pages before it, and they were marked deleted (162 of 208 in the report)."""
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 209))
    ch.lies[5_000] = FakePost(5_000, "pinned elsewhere", T0)
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert len(await texts(archive)) == 208
    assert await deleted(archive) == {}
    assert set((await states(archive)).values()) == {"present"}


async def test_a_real_gap_is_believed_after_one_check(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 11))
    ch.add_texts(range(500, 511))  # 489 posts deleted before we looked
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert list(await texts(archive)) == [*range(1, 11), *range(500, 511)]
    assert len(tme.embeds("vsaldo")) == 1
    assert (await get_channel(archive, "vsaldo")).high_water == 510  # type: ignore[union-attr]


# --- another address of the channel ------------------------------------------------------------


async def test_a_channel_followed_by_another_address(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    """The page of an alias shows the posts under the channel's own name; before, every block
    was taken for another channel's and nothing was archived."""
    ch = tme.channel("vsaldo_main", post_name="VSaldo_Main")
    ch.add_texts(range(1, 31))
    tme.alias("vsaldo", ch)  # the config follows the other address
    result = await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert result.stats.posts_added == 30
    ch.delete(20)
    tme.requests.clear()
    again = await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert tme.embeds("vsaldo_main") == [20] and again.deleted == 1
