"""The web preview source: the parser against hand-written and saved real pages, the polite
fetcher against a fake t.me (429, 5xx, redirects), and sync into a real archive (paging to
the high-water mark, the backfill limit, edits, deletions, the loop guard, alerts)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.tme import T0, FakeChannel, FakeClock, FakePost, FakeTme, render_page

from archiver.channels import parse_ref
from archiver.config import Backfill, ChannelConfig, WebSettings
from archiver.errors import SourceError
from archiver.models import Post, marked_id
from archiver.sources.web import TmeClient, sync_web_channel, sync_web_channels
from archiver.sources.webpage import (
    DERIVED_BASE,
    derived_channel_id,
    is_derived_id,
    parse_count,
    parse_page,
)
from archiver.store.archive import Archive
from archiver.store.channels import get_channel
from archiver.store.ingest import ingest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "web"
SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"
BARE = 1811111111
CID = marked_id(BARE)
NOW = T0 + timedelta(days=30)


def settings(**kw: Any) -> WebSettings:
    base: dict[str, Any] = {"base_url": "https://t.me", "delay_seconds": 0.0, "max_retries": 2}
    return WebSettings(**(base | kw))


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


def web(username: str, backfill: Backfill | None = None) -> ChannelConfig:
    return ChannelConfig(
        ref=parse_ref(username), source="web", backfill=backfill or Backfill("all")
    )


async def texts(archive: Archive, channel_id: int = CID) -> dict[int, str]:
    rows = await archive.fetchall(
        "SELECT p.message_id, v.text FROM posts p JOIN versions v ON v.id = p.current_version_id"
        " WHERE p.channel_id = ? ORDER BY p.message_id",
        (channel_id,),
    )
    return {r[0]: r[1] for r in rows}


async def deleted(archive: Archive, channel_id: int = CID) -> dict[int, str]:
    rows = await archive.fetchall(
        "SELECT message_id, deleted_how FROM posts WHERE channel_id = ? AND deleted_at IS NOT NULL",
        (channel_id,),
    )
    return {r[0]: r[1] for r in rows}


async def alert_kinds(archive: Archive) -> list[tuple[int, str]]:
    rows = await archive.fetchall(
        "SELECT p.message_id, a.kind FROM alerts a JOIN posts p ON p.id = a.post_id ORDER BY a.id"
    )
    return [(r[0], r[1]) for r in rows]


# --- the parser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rich() -> Any:
    html = (FIXTURES / "rich_channel.html").read_text(encoding="utf-8")
    return parse_page(html, username="testograd_news")


def test_header_gives_the_channel(rich: Any) -> None:
    info = rich.channel
    assert info.id == marked_id(1234567890) == -1001234567890
    assert not rich.channel_id_derived
    assert info.username == "testograd_news"
    assert info.title == "Новини Тестограду 📰"
    assert info.description == "Оперативні новини міста.\nПишіть нам: @testograd_bot"
    assert info.subscribers == 12300
    assert rich.has_history


def test_posts_in_order_and_foreign_blocks_ignored(rich: Any) -> None:
    ids = [p.message_id for p in rich.posts]
    assert ids == [100, 101, 102, 105, 106, 107, 108, 109, 110, 111, 112, 113]
    assert 5 not in rich.shown_ids  # other_channel/5
    assert {103, 104} <= rich.shown_ids  # album items are shown, under post 102
    assert all(p.channel_id == -1001234567890 for p in rich.posts)


def test_text_keeps_line_breaks_links_and_utf16_offsets(rich: Any) -> None:
    p = {p.message_id: p for p in rich.posts}[101]
    assert p.text == (
        "🔴 Увага! Перекрито вулицю Шевченка.\n\n"
        "Деталі у звіті міськради, джерело: https://example.com/\n#дороги @city_council оновлено"
    )
    by_type = {e.type: e for e in p.entities}
    units = p.text.encode("utf-16-le")

    def cut(offset: int, length: int) -> str:
        return units[offset * 2 : (offset + length) * 2].decode("utf-16-le")

    link = by_type["text_link"]
    assert link.url == "https://example.org/report?id=7"
    assert cut(link.offset, link.length) == "звіті міськради"
    assert cut(by_type["bold"].offset, by_type["bold"].length) == "Увага!"
    assert by_type["bold"].offset == 3  # the emoji counts 2 UTF-16 units, then a space
    assert cut(by_type["url"].offset, by_type["url"].length) == "https://example.com/"
    assert by_type["url"].url is None
    assert cut(by_type["hashtag"].offset, by_type["hashtag"].length) == "#дороги"
    assert cut(by_type["mention"].offset, by_type["mention"].length) == "@city_council"
    assert cut(by_type["italic"].offset, by_type["italic"].length) == "оновлено"


def test_counters_edited_mark_reactions_and_date(rich: Any) -> None:
    p = {p.message_id: p for p in rich.posts}
    assert p[101].views == 1200
    assert p[102].views == 3_400_000
    assert p[101].date == datetime(2026, 9, 1, 7, 15, 30, tzinfo=UTC)
    assert p[101].edit_date is None  # the preview shows the mark, not the time
    assert json.loads(p[101].raw or "{}")["edited"] is True
    assert "edited" not in json.loads(p[102].raw or "{}")
    assert p[101].reactions == (("👍", 34), ("5368324170671202286", 1100))


def test_media_kinds(rich: Any) -> None:
    kinds = {p.message_id: [m.kind for m in p.media] for p in rich.posts}
    assert kinds[102] == ["photo", "photo", "video"]
    assert kinds[105] == ["video"]
    assert kinds[106] == ["voice"]
    assert kinds[107] == ["document"]
    assert kinds[108] == ["sticker"]
    assert kinds[109] == ["poll"]
    assert kinds[110] == ["webpage"]
    assert kinds[111] == ["video_note"]
    assert sorted(kinds[112]) == ["animation", "audio", "geo"]
    p = {p.message_id: p for p in rich.posts}
    assert p[105].media[0].duration == 65.0
    assert p[106].media[0].duration == 27.0
    assert p[107].media[0].file_name == "рішення_сесії_2026.pdf"
    raw = json.loads(p[109].raw or "{}")
    assert raw["poll"]["question"] == "Чи потрібен новий міст?"
    assert raw["poll"]["options"] == ["Так", "Ні"]
    assert json.loads(p[110].raw or "{}")["link_preview"]["title"] == "Маршрут 5"
    assert json.loads(p[102].raw or "{}")["album"] == [102, 103, 104]


def test_forwards_replies_service_and_signature(rich: Any) -> None:
    p = {p.message_id: p for p in rich.posts}
    assert p[105].forward is not None
    assert p[105].forward.from_title == "Обласні новини"
    assert p[105].forward.from_message_id == 4410
    assert json.loads(p[105].raw or "{}")["forward"]["url"] == "https://t.me/oblast_news/4410"
    assert json.loads(p[105].raw or "{}")["author"] == "Олена К."
    assert p[106].forward is not None and p[106].forward.from_title == "Прихований автор"
    assert p[110].reply_to == 101
    assert p[110].text == "Рух відновлено: https://maps.example.net/route/5"  # not the reply's
    assert p[100].is_service and p[100].service_action == "create_channel"
    assert not p[101].is_service


def test_other_formatting_and_outer_blanks(rich: Any) -> None:
    p = {p.message_id: p for p in rich.posts}
    assert p[112].text == "Пісня, гіфка і місце зустрічі"  # outer blanks stripped
    post = p[113]
    assert (
        post.text == "Цитата мера\nКод: rm -rf, старе, таємниця\nprint(1)\nПишіть: news@example.org"
    )
    types = [e.type for e in post.entities]
    for t in ("blockquote", "underline", "code", "strikethrough", "spoiler", "pre", "email"):
        assert t in types
    assert types.count("code") == 1  # <pre><code> is one pre entity


def test_raw_is_compact_json_with_the_data_post(rich: Any) -> None:
    for p in rich.posts:
        raw = json.loads(p.raw or "{}")
        assert raw["data_post"] == f"testograd_news/{p.message_id}"
        assert "views" not in raw  # counters change; the raw of a version must not


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("880", 880),
        ("1.2K", 1200),
        ("4.85K", 4850),
        ("79.8K", 79800),
        ("3.4M", 3_400_000),
        ("2B", 2_000_000_000),
        ("12 345", 12345),
        ("1,234", 1234),
        ("", None),
        ("K", None),
        ("1.5", None),
        ("views", None),
        ("inf", None),
    ],
)
def test_parse_count(text: str, value: int | None) -> None:
    assert parse_count(text) == value


def test_derived_ids_are_stable_and_never_real() -> None:
    a = derived_channel_id("Air_Alert_UA")
    assert a == derived_channel_id("air_alert_ua")
    assert a != derived_channel_id("air_alert_ub")
    assert is_derived_id(a)
    for real in (-1001005640892, -1003976510481, marked_id(997_852_516_352)):
        assert not is_derived_id(real)
    assert -a - 1_000_000_000_000 >= DERIVED_BASE


def test_page_without_data_view_gets_a_derived_id() -> None:
    html = (FIXTURES / "rich_channel.html").read_text(encoding="utf-8")
    stripped = parse_page(html.replace("data-view=", "data-x="), username="testograd_news")
    assert stripped.channel_id_derived
    assert stripped.channel is not None
    assert stripped.channel.id == derived_channel_id("testograd_news")


@pytest.mark.samples
def test_conformance_real_page_prstnk() -> None:
    path = SAMPLES / "tme_s_ru_prstnk.html"
    if not path.exists():
        pytest.skip("../shared/samples not present")
    page = parse_page(path.read_text(encoding="utf-8"), username="prstnk_eprst")
    assert page.channel is not None
    assert page.channel.id == -1003976510481  # data-view c = -3976510481
    assert page.channel.title == "PRSTNK - [простенок]"
    assert page.channel.subscribers == 1
    assert page.has_history
    first, second = page.posts
    assert first.is_service and first.text == "Channel created"
    assert first.date == datetime(2026, 5, 30, 21, 56, 29, tzinfo=UTC)
    assert second.text.startswith("Как Штапаков травит цинк в Смольном\nЗашли в мастерскую")
    tag = second.entities[-1]
    assert tag.type == "hashtag"
    assert second.text.encode("utf-16-le")[tag.offset * 2 :].decode("utf-16-le") == "#репортаж"
    assert second.views == 1
    assert [m.kind for m in second.media] == ["photo"]


@pytest.mark.samples
def test_conformance_real_fragment_air_alert() -> None:
    path = SAMPLES / "tme_s_uk_air_alert_fragment.html"
    if not path.exists():
        pytest.skip("../shared/samples not present")
    page = parse_page(path.read_text(encoding="utf-8"))
    assert page.username == "air_alert_ua"
    assert page.channel_id_derived
    assert [p.message_id for p in page.posts] == [501, 502, 503]
    assert page.posts[0].text == "🔴 Львівська область\nПовітряна тривога. Ракетна небезпека"
    assert page.posts[2].date == datetime(2026, 9, 1, 21, 20, tzinfo=UTC)


# --- the fetcher ----------------------------------------------------------------------------


async def test_fetch_sends_an_honest_user_agent_to_base_url(
    tme: FakeTme, client: TmeClient
) -> None:
    tme.channel("vsaldo").add_texts(range(1, 4))
    page = await client.fetch("@VSaldo")
    assert [p.message_id for p in page.posts] == [1, 2, 3]
    req = tme.requests[0]
    assert req.url == "https://t.me/s/vsaldo"
    ua = req.headers["user-agent"]
    assert ua.startswith("telewatch/") and "(+https://github.com/telewatch/telewatch)" in ua


async def test_delay_between_requests_to_the_host(tme: FakeTme, clock: FakeClock) -> None:
    tme.channel("vsaldo").add_texts(range(1, 4))
    async with TmeClient(
        settings(delay_seconds=1.5), transport=tme.transport, sleep=clock.sleep, clock=clock
    ) as c:
        await c.fetch("vsaldo")
        await c.fetch("vsaldo", before=3)
    assert clock.sleeps == [1.5]


async def test_429_with_retry_after_then_success(
    tme: FakeTme, client: TmeClient, clock: FakeClock
) -> None:
    tme.channel("vsaldo").add_texts(range(1, 4))
    tme.fail("vsaldo", httpx.Response(429, headers={"Retry-After": "7"}))
    page = await client.fetch("vsaldo")
    assert len(page.posts) == 3
    assert clock.sleeps == [7.0]
    assert len(tme.requests) == 2


async def test_5xx_retried_with_backoff_then_a_message_naming_the_channel(
    tme: FakeTme, client: TmeClient, clock: FakeClock
) -> None:
    tme.channel("vsaldo").add_texts(range(1, 4))
    tme.fail("vsaldo", *(httpx.Response(503) for _ in range(5)))
    with pytest.raises(SourceError, match=r"@vsaldo: t.me answered HTTP 503 3 times"):
        await client.fetch("vsaldo")
    assert clock.sleeps == [1.0, 2.0]  # max_retries=2: backoff 1 s, 2 s
    assert len(tme.requests) == 3


async def test_transport_errors_are_retried(
    tme: FakeTme, client: TmeClient, clock: FakeClock
) -> None:
    tme.channel("vsaldo").add_texts(range(1, 4))
    tme.fail("vsaldo", httpx.ConnectError("refused"))
    page = await client.fetch("vsaldo")
    assert len(page.posts) == 3
    assert clock.sleeps == [1.0]


async def test_retry_after_above_the_ceiling_fails_at_once(
    tme: FakeTme, client: TmeClient, clock: FakeClock
) -> None:
    tme.channel("vsaldo")
    tme.fail("vsaldo", httpx.Response(429, headers={"Retry-After": "3600"}))
    with pytest.raises(SourceError, match="asks to wait 3600s"):
        await client.fetch("vsaldo")
    assert clock.sleeps == []


async def test_channel_without_preview_redirects(tme: FakeTme, client: TmeClient) -> None:
    tme.channel("private_ish", preview=False)
    with pytest.raises(SourceError, match=r"@private_ish: t.me has no web preview.*redirects"):
        await client.fetch("private_ish")
    with pytest.raises(SourceError, match="@nobody_here"):
        await client.fetch("nobody_here")


async def test_page_without_messages_widget_is_no_preview(clock: FakeClock) -> None:
    transport = httpx.MockTransport(
        lambda r: httpx.Response(200, text="<html><body><div class=tgme_page></div></body></html>")
    )
    async with TmeClient(settings(), transport=transport, sleep=clock.sleep, clock=clock) as c:
        with pytest.raises(SourceError, match=r"@vsaldo: t\.me shows no web preview"):
            await c.fetch("vsaldo")


# --- sync into the archive ------------------------------------------------------------------


async def test_first_pass_pages_to_the_start_without_alerts(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    archive.matcher = EveryPost()
    ch = tme.channel("vsaldo", title="Салдо")
    ch.add_texts(range(1, 46))
    result = await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert tme.befores("vsaldo") == [None, 26, 6]
    assert result.pages == 3 and result.stopped == "channel_start"
    assert result.first_pass and result.backfilled
    assert result.stats.posts_added == 45
    assert list(await texts(archive)) == list(range(1, 46))
    row = await get_channel(archive, "vsaldo")
    assert row is not None and row.id == CID and row.source == "web"
    assert row.backfilled and row.high_water == 45 and row.backfill_low == 1
    assert row.title == "Салдо" and row.subscribers == 1200
    assert row.last_sync_status == "ok"
    assert await alert_kinds(archive) == []  # none from the first pass


async def test_next_sync_pages_down_to_the_high_water_mark_with_alerts(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    archive.matcher = EveryPost()
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 46))
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    tme.requests.clear()
    ch.add_texts(range(46, 71))
    result = await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert tme.befores("vsaldo") == [None, 51]  # 51..70, then 31..50 reaches 45
    assert result.stopped == "high_water" and not result.first_pass
    assert result.stats.posts_added == 25
    assert len(await texts(archive)) == 70
    assert (await get_channel(archive, "vsaldo")).high_water == 70  # type: ignore[union-attr]
    assert sorted(await alert_kinds(archive)) == [(i, "new") for i in range(46, 71)]


async def test_recent_pages_are_reread_even_when_nothing_is_new(
    archive: Archive, tme: FakeTme, clock: FakeClock
) -> None:
    tme.channel("vsaldo").add_texts(range(1, 46))
    async with TmeClient(
        settings(recent_pages=2), transport=tme.transport, sleep=clock.sleep, clock=clock
    ) as c:
        await sync_web_channel(archive, c, web("vsaldo"), now=NOW)
        tme.requests.clear()
        result = await sync_web_channel(archive, c, web("vsaldo"), now=NOW)
    assert tme.befores("vsaldo") == [None, 26]
    assert result.stats.posts_added == 0 and result.stats.posts_updated == 40


async def test_backfill_limit_by_count(archive: Archive, tme: FakeTme, client: TmeClient) -> None:
    tme.channel("vsaldo").add_texts(range(1, 46))
    result = await sync_web_channel(
        archive, client, web("vsaldo", Backfill("count", count=30)), now=NOW
    )
    assert result.stopped == "backfill_limit" and result.backfilled
    assert list(await texts(archive)) == list(range(16, 46))
    assert tme.befores("vsaldo") == [None, 26]


async def test_backfill_limit_by_age(archive: Archive, tme: FakeTme, client: TmeClient) -> None:
    tme.channel("vsaldo").add_texts(range(1, 46))  # post i is dated T0 + i hours
    now = T0 + timedelta(hours=45)
    result = await sync_web_channel(
        archive, client, web("vsaldo", Backfill("age", age=timedelta(hours=24))), now=now
    )
    assert result.stopped == "backfill_limit"
    assert list(await texts(archive)) == list(range(21, 46))
    row = await get_channel(archive, "vsaldo")
    assert row is not None and row.backfilled and row.high_water == 45


async def test_an_edit_is_a_new_version_and_the_old_text_is_kept(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    archive.matcher = WordRule("corrected")
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 46))
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    ch.posts[40].html = "post 40, corrected"
    ch.posts[40].edited = True
    result = await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert result.stats.versions_added == 1 and result.stats.posts_added == 0
    assert (await texts(archive))[40] == "post 40, corrected"
    rows = await archive.fetchall(
        "SELECT v.text FROM versions v JOIN posts p ON p.id = v.post_id"
        " WHERE p.channel_id = ? AND p.message_id = 40 ORDER BY v.id",
        (CID,),
    )
    assert [r[0] for r in rows] == ["post 40", "post 40, corrected"]
    assert await alert_kinds(archive) == [(40, "edited")]  # the edit made the rule match


async def test_deletions_inside_a_page_range_but_not_at_its_ends(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 46))
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    # The newest page covers ids 26..45. Hide its two ends and one id inside.
    ch.hidden |= {45, 26, 35}
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    # A listing that leaves a post out is not evidence of deletion: it is missing, unconfirmed.
    assert await deleted(archive) == {}
    rows = await archive.fetchall("SELECT message_id FROM posts WHERE state = 'missing'")
    assert [r[0] for r in rows] == [35]
    assert len(await texts(archive)) == 45  # marked, never erased


async def test_album_items_are_not_taken_for_deletions(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 10))
    ch.add(FakePost(10, "album", T0 + timedelta(hours=10), album=(11, 12)))
    ch.add_texts(range(13, 16))
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    await archive_post_as_if_from_telethon(archive, 11)
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert await deleted(archive) == {}


async def test_loop_guard_stops_a_server_that_repeats_its_page(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    ch = tme.channel("vsaldo", stuck=True)
    ch.add_texts(range(1, 46))
    result = await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert tme.befores("vsaldo") == [None, 26]
    assert result.stopped == "loop_guard" and result.backfilled
    assert list(await texts(archive)) == list(range(26, 46))


async def test_first_pass_resumes_after_a_failure(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 46))
    # Two good pages, then t.me fails for good (max_retries=2: three tries).
    tme.fail(
        "vsaldo",
        httpx.Response(200, text=page_html(ch, None)),
        httpx.Response(200, text=page_html(ch, 26)),
        *(httpx.Response(502) for _ in range(3)),
    )
    with pytest.raises(SourceError, match=r"@vsaldo.*502"):
        await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    row = await get_channel(archive, "vsaldo")
    assert row is not None and not row.backfilled
    assert (row.high_water, row.backfill_low) == (45, 6)
    assert row.last_sync_status == "error" and "502" in (row.last_error or "")
    tme.requests.clear()
    ch.add_texts(range(46, 51))
    result = await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert tme.befores("vsaldo") == [None, 6]  # new posts down to 45, then below 6
    assert result.backfilled and result.stopped == "channel_start"
    assert list(await texts(archive)) == list(range(1, 51))


async def test_one_channel_failing_never_stops_the_others(
    archive: Archive, tme: FakeTme, clock: FakeClock
) -> None:
    tme.channel("first").add_texts(range(1, 4))
    tme.channel("nopreview", preview=False)
    tme.channel("flaky").add_texts(range(1, 4))
    tme.fail("flaky", *(httpx.Response(500) for _ in range(3)))
    tme.channel("last", bare_id=1922222222).add_texts(range(1, 4))
    channels = [web("first"), web("nopreview"), web("flaky"), web("last")]
    channels.append(ChannelConfig(ref=parse_ref("telethon_one"), source="telethon"))
    results = await sync_web_channels(
        archive, settings(), channels, now=NOW, transport=tme.transport, sleep=clock.sleep
    )
    by_name = {r.username: r for r in results}
    assert list(by_name) == ["first", "nopreview", "flaky", "last"]
    assert by_name["first"].status == "ok" and by_name["last"].status == "ok"
    assert by_name["nopreview"].status == "error"
    assert "@nopreview: t.me has no web preview" in (by_name["nopreview"].error or "")
    assert by_name["flaky"].status == "error" and "HTTP 500" in (by_name["flaky"].error or "")
    assert len(await texts(archive, marked_id(1922222222))) == 3


async def test_a_known_channel_failing_is_recorded_for_stats(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 4))
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    ch.preview = False
    with pytest.raises(SourceError):
        await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    row = await get_channel(archive, "vsaldo")
    assert row is not None and row.last_sync_status == "error"
    assert "no web preview" in (row.last_error or "")


async def test_channel_without_data_view_gets_a_derived_id(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    tme.channel("noid", bare_id=None).add_texts(range(1, 4))
    result = await sync_web_channel(archive, client, web("noid"), now=NOW)
    assert result.channel_id == derived_channel_id("noid")
    assert len(await texts(archive, derived_channel_id("noid"))) == 3


async def test_a_renamed_channel_stays_one_channel(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    tme.channel("old_name").add_texts(range(1, 4))
    await sync_web_channel(archive, client, web("old_name"), now=NOW)
    del tme.channels["old_name"]
    tme.channel("new_name").add_texts(range(1, 6))  # same data-view id
    result = await sync_web_channel(archive, client, web("new_name"), now=NOW)
    assert result.channel_id == CID and not result.first_pass
    row = await get_channel(archive, CID)
    assert row is not None and row.username == "new_name"
    assert list(await texts(archive)) == [1, 2, 3, 4, 5]


async def test_a_username_taken_by_another_channel_is_refused(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    tme.channel("vsaldo").add_texts(range(1, 4))
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    tme.channel("vsaldo", bare_id=1933333333).add_texts(range(1, 3))
    with pytest.raises(SourceError, match="now belongs to another channel"):
        await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert await get_channel(archive, marked_id(1933333333)) is None


# --- helpers --------------------------------------------------------------------------------


class EveryPost:
    """A matcher whose one rule matches every post: recipient 42, rule "all"."""

    def match(self, doc: Any, kind: str) -> dict[int, list[str]]:
        return {42: ["all"]}

    def wants(self, rule_name: str, kind: str) -> bool:
        return True


class WordRule:
    """A matcher with one rule, "word", matching posts that contain the word."""

    def __init__(self, word: str) -> None:
        self.word = word

    def match(self, doc: Any, kind: str) -> dict[int, list[str]]:
        return {42: ["word"]} if self.word in doc.words else {}

    def wants(self, rule_name: str, kind: str) -> bool:
        return True


def page_html(ch: FakeChannel, before: int | None) -> str:
    return render_page(ch, ch.window(before), before)


async def archive_post_as_if_from_telethon(archive: Archive, message_id: int) -> None:
    """An album item archived as its own post (Telethon sees each item as a message)."""
    post = Post(CID, message_id, T0 + timedelta(hours=message_id), "")
    await ingest(archive, [post], source="telethon", alerts=False)
