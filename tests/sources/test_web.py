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
from fakes.tme import T0, FakeChannel, FakeClock, FakePost, FakeTme, render_embed, render_post
from pg import archive_both  # noqa: F401  (these tests run on SQLite and PostgreSQL)

from archiver.channels import parse_ref
from archiver.config import Backfill, ChannelConfig
from archiver.errors import SourceError
from archiver.models import Post, marked_id
from archiver.sources.web import TmeClient, sync_web_channel, sync_web_channels
from archiver.sources.web.page import (
    DERIVED_BASE,
    derived_channel_id,
    is_derived_id,
    parse_count,
    parse_embed,
    parse_page,
)
from archiver.store.archive import Archive
from archiver.store.channels import get_channel
from archiver.store.ingest import ingest
from sources.webkit import (
    CID,
    NOW,
    EveryPost,
    WordRule,
    alert_kinds,
    deleted,
    page_html,
    settings,
    texts,
    web,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "web"
SAMPLES = next(
    (p / "shared" / "samples" for p in Path(__file__).resolve().parents if (p / "shared").is_dir()),
    Path("/nonexistent"),
)  # ../shared/samples beside the checkout, however deep the checkout is


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


def test_raw_keeps_the_posts_own_html_without_t_me_page_code(rich: Any) -> None:
    p = {p.message_id: p for p in rich.posts}
    html = json.loads(p[101].raw or "{}")["html"]
    assert html == (
        "🔴 <b>Увага!</b> Перекрито вулицю Шевченка.<br><br>Деталі у "
        '<a href="https://example.org/report?id=7">звіті міськради</a>, джерело: '
        '<a href="https://example.com/">https://example.com/</a><br>'
        '<a href="?q=%23%D0%B4%D0%BE%D1%80%D0%BE%D0%B3%D0%B8">#дороги</a> '
        '<a href="https://t.me/city_council">@city_council</a> <i>оновлено</i>'
    )  # no target, rel, onclick, nor the emoji picture's URL
    code = json.loads(p[113].raw or "{}")["html"]
    assert '<pre><code class="language-python">print(1)</code></pre>' in code
    assert "<tg-spoiler>таємниця</tg-spoiler>" in code


def test_the_same_post_read_twice_has_the_same_raw(rich: Any) -> None:
    html = (FIXTURES / "rich_channel.html").read_text(encoding="utf-8")
    again = parse_page(html.replace('target="_blank"', 'target="_top"'), username="testograd_news")
    assert [p.raw for p in again.posts] == [p.raw for p in rich.posts]


def test_data_post_in_another_case_and_another_address() -> None:
    ch = FakeChannel("vsaldo_main", post_name="VSaldo_Main")
    ch.add_texts(range(1, 4))
    html = page_html(ch, None)
    page = parse_page(html, username="vsaldo_main")
    assert [p.message_id for p in page.posts] == [1, 2, 3]
    aliased = parse_page(html, username="vsaldo")  # the page of another address
    assert aliased.username == "vsaldo_main"
    assert [p.message_id for p in aliased.posts] == [1, 2, 3]
    other = FakeChannel("someone_else")
    other.add_texts(range(1, 3))
    mixed = parse_page(
        html.replace("</section>", render_post(other, other.posts[1]) + "</section>"),
        username="vsaldo",
    )
    assert mixed.posts == ()  # two other names: not taken for the channel's


@pytest.mark.samples
def test_conformance_real_page_photo_identity() -> None:
    path = SAMPLES / "tme_s_ru_prstnk.html"
    if not path.exists():
        pytest.skip("../shared/samples not present")
    page = parse_page(path.read_text(encoding="utf-8"), username="prstnk_eprst")
    assert page.posts[1].media[0].file_unique_id == "tme:5249090012068914481"
    html = json.loads(page.posts[1].raw or "{}")["html"]
    assert html.startswith("Как Штапаков травит цинк в Смольном<br>")


# --- a post's own page ------------------------------------------------------------------------


def embed_of(ch: FakeChannel, message_id: int) -> Any:
    return parse_embed(
        render_embed(ch, message_id), username=ch.username, message_id=message_id, channel_id=CID
    )


def test_embed_page_of_a_post_gives_the_post_as_the_listing_does() -> None:
    ch = FakeChannel("vsaldo")
    ch.add_texts(range(1, 4), text='see <a href="https://example.org/{id}">the report</a>')
    found = embed_of(ch, 2)
    assert found.status == "found" and found.post is not None
    listed = {p.message_id: p for p in parse_page(page_html(ch, None), username="vsaldo").posts}
    assert found.post == listed[2]


def test_embed_page_of_a_deleted_post_says_post_not_found() -> None:
    ch = FakeChannel("vsaldo")
    ch.add_texts(range(1, 4))
    assert embed_of(ch, 7).status == "not_found"
    old_style = '<div class="tgme_widget_message_error" dir="auto">  Post not found </div>'
    assert parse_embed(old_style, username="vsaldo", message_id=7, channel_id=CID).status == (
        "not_found"
    )


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        ('<div class="tgme_widget_message_error">Channel is private</div>', "Channel is private"),
        ("<html><body>Telegram: Contact @vsaldo</body></html>", "neither the post nor an error"),
        (
            '<div class="tgme_widget_message" data-post="vsaldo/8"><time datetime="2026-09-01T08:00'
            ':00+00:00"></time></div>',
            "shows post vsaldo/8",
        ),
        (
            '<div class="tgme_widget_message" data-post="other_one/7"><time datetime="2026-09-01T0'
            '8:00:00+00:00"></time></div>',
            "shows post other_one/7",
        ),
        ('<div class="tgme_widget_message" data-post="vsaldo/7"></div>', "without its date"),
    ],
    ids=["private", "no widget", "another post", "another channel", "no date"],
)
def test_embed_page_that_is_not_an_answer_is_unknown(html: str, reason: str) -> None:
    page = parse_embed(html, username="vsaldo", message_id=7, channel_id=CID)
    assert page.status == "unknown" and reason in (page.reason or "")


def test_embed_page_without_data_post_is_read_by_its_links() -> None:
    """Embed pages of 2018 carry no data-post; the post is named by its date's and its
    footer's links (Thrita/Telegtools, Thrita.Telegtools.Test/TestData.cs)."""
    html = (FIXTURES / "embed_2018.html").read_text(encoding="utf-8")
    page = parse_embed(html, username="k1inusa", message_id=5340, channel_id=CID)
    assert page.status == "found" and page.post is not None
    assert page.post.text == "Part 1 of 3\n@K1inUSA" and page.post.views == 10300


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
    # 51..70, then 31..50 reaches 45; then the rotation re-reads on below what the pass read
    # (11..30): at least one page a pass while the channel is not fully re-read.
    assert tme.befores("vsaldo") == [None, 51, 31]
    assert result.stopped == "high_water" and not result.first_pass
    assert result.stats.posts_added == 25
    assert len(await texts(archive)) == 70
    assert (await get_channel(archive, "vsaldo")).high_water == 70  # type: ignore[union-attr]
    assert sorted(await alert_kinds(archive)) == [(i, "new") for i in range(46, 71)]


async def test_posts_up_to_recent_days_old_are_reread_on_every_pass(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 101))  # post i is dated T0 + i hours
    now = T0 + timedelta(hours=100)
    await sync_web_channel(archive, client, web("vsaldo"), now=now)
    tme.requests.clear()
    ch.posts[45].html = "post 45, corrected"  # 55 hours old: on the third page
    result = await sync_web_channel(
        archive, client, web("vsaldo"), now=now, recent=timedelta(hours=60)
    )
    # 81..100 (nothing new), then back while the oldest post read is under 60 hours old:
    # 61..80 (oldest 39 h), 41..60 (oldest 59 h), 21..40 (oldest 79 h: the window's end).
    # Then the rotation goes on below: 1..20.
    assert tme.befores("vsaldo") == [None, 81, 61, 41, 21]
    assert result.stats.posts_added == 0 and result.stats.versions_added == 1
    assert (await texts(archive))[45] == "post 45, corrected"


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


async def test_posts_the_listing_omits_are_missing_not_deleted(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    """The listing leaves out posts that still exist. Before, an id inside a page's range that
    the page did not show was marked deleted at once; now it is missing until its own page
    says "Post not found", and here the post's page shows it."""
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 46))
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    ch.hidden |= {45, 26, 35}  # the newest page covers 26..45; all three still exist
    tme.requests.clear()
    result = await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert await deleted(archive) == {}
    # 45 and 35 by the newest page (27..44 shown), 26 by the rotation's page below it.
    assert result.deleted == 0 and result.missing == 3
    assert sorted(tme.embeds("vsaldo")) == [35, 45]  # confirmed on their own pages: they exist
    assert result.present == 2
    tme.requests.clear()
    again = await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    # 35 and 45 are not marked again: their pages showed them within the rotation's period.
    assert tme.embeds("vsaldo") == [26] and again.deleted == 0 and again.missing == 0
    assert await deleted(archive) == {}
    assert len(await texts(archive)) == 45


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


async def archive_post_as_if_from_telethon(archive: Archive, message_id: int) -> None:
    """An album item archived as its own post (Telethon sees each item as a message)."""
    post = Post(CID, message_id, T0 + timedelta(hours=message_id), "")
    await ingest(archive, [post], source="telethon", alerts=False)
