"""The daily digest: per recipient, what their rules matched in the window; sent once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import httpx
import pytest

from archiver.config import BotSettings, DisplaySettings, Settings
from archiver.digest import META_KEY, build_digests, send_digests
from archiver.errors import ConfigError
from archiver.models import ChannelInfo, Post, Rule
from archiver.rules import RuleLoader
from archiver.store.access import set_access
from archiver.store.archive import Archive, utcnow
from archiver.store.channels import upsert_channel
from archiver.store.ingest import ingest
from archiver.store.outbox import set_recipient_active

CH = -1001811111111
KYIV = ZoneInfo("Europe/Kyiv")
TOKEN = "123456:TEST-digest-token"
RULES = [
    Rule("evac", "эвакуация OR евакуація", notify=(1, 2)),
    Rule("bus", "автобус", notify=(1,)),
]


@pytest.fixture
async def archive(any_archive: Archive) -> Archive:
    """On SQLite and on PostgreSQL (tests/pg.py)."""
    a = any_archive
    await upsert_channel(a, ChannelInfo(id=CH, username="vsaldo", title="Сальдо"), source="web")
    RuleLoader(RULES).install(a)
    return a


def post(mid: int, text: str, minute: int = 0) -> Post:
    return Post(CH, mid, datetime(2024, 5, 1, 9, minute, tzinfo=UTC), text)


async def fill(archive: Archive) -> None:
    await ingest(
        archive,
        [
            post(1, "Объявлена эвакуация, выделены автобусы", 1),
            post(2, "эвакуацию продлили", 2),
            post(3, "погода", 3),
        ],
        source="web",
        alerts=True,
    )
    # an edit of post 2 alerts again; the digest still lists the post once
    await ingest(archive, [post(2, "эвакуацию продлили до пятницы", 2)], source="web", alerts=True)


async def test_one_digest_per_recipient_with_their_rules(archive: Archive) -> None:
    await fill(archive)
    now = utcnow()
    digests = await build_digests(
        archive, since=now - timedelta(hours=1), until=now + timedelta(seconds=1), tz=KYIV
    )
    assert [(d.recipient, d.matches) for d in digests] == [(1, 2), (2, 2)]
    one = digests[0].text.splitlines()
    assert one[0].startswith("telewatch daily digest: 2 post(s) matched your rules since ")
    assert one[0].endswith("(Europe/Kyiv)")
    assert one[1:] == [
        "",
        "evac: 2",
        "  Сальдо, 01.05 12:02 (edited): https://t.me/vsaldo/2",
        "  Сальдо, 01.05 12:01: https://t.me/vsaldo/1",
        "",
        "bus: 1",
        "  Сальдо, 01.05 12:01: https://t.me/vsaldo/1",
    ]
    assert "bus" not in digests[1].text


async def test_the_window_is_respected_and_links_are_capped(archive: Archive) -> None:
    await fill(archive)
    now = utcnow()
    later = await build_digests(
        archive, since=now + timedelta(seconds=1), until=now + timedelta(hours=1), tz=UTC
    )
    assert later == []
    capped = await build_digests(
        archive, since=now - timedelta(hours=1), until=now + timedelta(seconds=1), tz=UTC,
        max_links=1,
    )  # fmt: skip
    assert "  and 1 more" in capped[0].text


def bot_api(seen: list[dict[str, list[str]]], fail_for: int | None = None) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/bot{TOKEN}/sendMessage"
        form = parse_qs(request.content.decode())
        seen.append(form)
        if fail_for is not None and form["chat_id"] == [str(fail_for)]:
            body = {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked"}
            return httpx.Response(403, json=body)
        return httpx.Response(200, json={"ok": True, "result": {"message_id": 1}})

    return httpx.MockTransport(handler)


def settings(allowed: frozenset[int] = frozenset({1, 2})) -> Settings:
    return Settings(
        bot=BotSettings(token=TOKEN, api_base_url="http://127.0.0.1:9/bot", allowed_users=allowed),
        display=DisplaySettings(KYIV),
    )


async def test_send_once_per_window_and_skip_inactive_recipients(archive: Archive) -> None:
    await fill(archive)
    await set_recipient_active(archive, 2, False, "blocked the bot")
    seen: list[dict[str, list[str]]] = []
    now = utcnow() + timedelta(seconds=1)
    sent = await send_digests(archive, settings(), now=now, transport=bot_api(seen))
    assert sent == 1
    assert [f["chat_id"] for f in seen] == [["1"]]
    assert json.loads(seen[0]["link_preview_options"][0]) == {"is_disabled": True}
    assert await archive.get_meta(META_KEY) is not None
    # the same window again (a restart, a manual run): nothing is sent twice
    again = await send_digests(archive, settings(), now=now, transport=bot_api(seen))
    assert again == 0
    assert len(seen) == 1


async def test_a_failed_send_is_logged_and_the_rest_go_out(
    archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    await fill(archive)
    seen: list[dict[str, list[str]]] = []
    sent = await send_digests(
        archive, settings(), now=utcnow() + timedelta(seconds=1), transport=bot_api(seen, 1)
    )
    assert sent == 1
    assert len(seen) == 2
    assert "digest: recipient 1: HTTP 403 Forbidden: bot was blocked" in caplog.text
    assert TOKEN not in caplog.text


async def test_no_digest_for_a_user_denied_or_removed_from_the_config(archive: Archive) -> None:
    """Access is checked when the digest is sent, as it is for alerts (issue 16)."""
    await fill(archive)
    await set_access(archive, 1, False, by=99)  # an admin denied user 1
    seen: list[dict[str, list[str]]] = []
    now = utcnow() + timedelta(seconds=1)
    assert await send_digests(archive, settings(), now=now, transport=bot_api(seen)) == 1
    assert [f["chat_id"] for f in seen] == [["2"]]
    # user 2 is no longer in allowed_users: nothing for them either
    await archive.db.execute("DELETE FROM meta WHERE key = ?", (META_KEY,))
    seen.clear()
    removed = settings(allowed=frozenset({1}))
    assert await send_digests(archive, removed, now=now, transport=bot_api(seen)) == 0
    assert seen == []


async def test_needs_a_bot_token(archive: Archive) -> None:
    with pytest.raises(ConfigError, match=r"bot\.token: not set"):
        await send_digests(archive, Settings())


async def test_the_scheduled_digest_speaks_each_recipients_language(archive: Archive) -> None:
    """`run`'s digest job: user 1 chose Ukrainian (/lang), user 2 never did but their client
    is Russian (seen); each digest is in that language (it was English for everyone)."""
    from archiver.runner import digest_languages
    from archiver.store.user_langs import set_lang, set_seen_lang
    from bot.i18n import translator

    await fill(archive)
    await set_lang(archive, 1, "uk")
    await set_seen_lang(archive, 2, "ru", replace=True)
    seen: list[dict[str, list[str]]] = []
    now = utcnow() + timedelta(seconds=1)
    translate_for = await digest_languages(archive)
    sent = await send_digests(
        archive, settings(), now=now, transport=bot_api(seen), translate_for=translate_for
    )
    assert sent == 2
    head = "telewatch daily digest: {n} post(s) matched your rules since {since} ({tz})"
    texts = {f["chat_id"][0]: f["text"][0] for f in seen}
    for chat, lang in (("1", "uk"), ("2", "ru")):
        words = translator(lang)(head).split("{")[0]
        assert words != head.split("{")[0]  # the catalog has it
        assert texts[chat].startswith(words), texts[chat]
