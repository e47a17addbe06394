"""Texts that came from the archiver in English, in the user's language (issue 16): query
errors (by the reason's pattern, keeping its fields and position), the "Observed" lines of
/history, and the personal daily digest. Through the real Application against the fake Bot
API where a user sees them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from botkit import (
    KYIV,
    MEMBER,
    Harness,
    delete_post,
    edit_post,
    fake_api,
    queue_alerts,
    running_bot,
    seed_channel,
)
from fakes.botapi import Call

from archiver.channels import BadChannelRef, parse_ref
from archiver.errors import QueryError
from archiver.query import parse
from archiver.store.archive import Archive
from archiver.store.personal_digests import last_due
from bot.i18n import translator
from bot.query_errors import REASONS, channel_ref_reason, reason

BAD_QUERIES = [
    '"unclosed', " ".join(["w"] * 101), "—", ")", "(a", "a OR", "OR a", "a AND OR b", "(",
    "(" * 21 + "a", "NOT", "x -OR y", "()", '"…"', "foo:bar", "а-б*", "а*", "since:",
    "since:2026-13-01", "is:new", "has:sound", "channel:@@",
]  # fmt: skip


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_every_reason_of_the_parser_is_translated(query: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(query)
    for lang in ("uk", "ru"):
        said = reason(info.value, translator(lang))
        assert said is not None, (query, info.value.reason)


def test_every_pattern_is_a_reason_the_parser_writes() -> None:
    """No pattern is dead: each is reached by one of the queries above (which reach every
    ``raise`` of archiver/query.py)."""
    reasons = []
    for query in BAD_QUERIES:
        with pytest.raises(QueryError) as info:
            parse(query)
        reasons.append(info.value.reason)
    for pattern, _template in REASONS:
        assert any(pattern.fullmatch(r) for r in reasons), pattern.pattern


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Harness]:
    db = tmp_path / "t.db"
    async with fake_api() as api:
        archive = await Archive.open(db)
        try:
            await seed_channel(archive)
            async with running_bot(api, archive, db) as h:
                yield h
        finally:
            await archive.close()


def text(calls: list[Call]) -> str:
    return "\n".join(c.text for c in calls)


async def test_a_query_error_speaks_the_users_language(bot: Harness) -> None:
    uk = text(await bot.send(MEMBER, '/search обстрел "unclosed', language_code="uk"))
    assert uk.startswith("⚠️ лапку не закрито (позиція 9)")
    assert '<code>обстрел "unclosed</code>\n<code>        ^</code>' in uk.replace("&quot;", '"')
    ru = text(await bot.send(MEMBER, "/watch since:2026-13-01 обстрел", language_code="ru"))
    assert "since: нужна дата в формате YYYY-MM-DD, а не '2026-13-01' (позиция 1)" in ru
    en = text(await bot.send(MEMBER, "/search a OR", language_code="en"))
    assert en.startswith("⚠️ OR needs a term on both sides at 3")


async def test_the_observed_lines_of_history_speak_the_users_language(bot: Harness) -> None:
    await queue_alerts(bot.archive, ["война началась"], ())  # the posts only: no alerts
    await edit_post(bot.archive, 1, "война закончилась")
    await delete_post(bot.archive, 1)
    uk = text(await bot.send(MEMBER, "/history https://t.me/saltpepper/1", language_code="uk"))
    observed = uk[uk.index("<b>Що помічено</b>") :]
    assert "нова версія 2" in observed
    assert "ВИДАЛЕНО: Telegram повідомив" in observed
    for english in ("new version", "DELETED", "Telegram reported"):
        assert english not in observed
    en = text(await bot.send(MEMBER, "/history https://t.me/saltpepper/1", language_code="en"))
    assert "new version 2" in en and "DELETED: Telegram reported the deletion" in en


async def test_a_personal_digest_speaks_the_users_language(bot: Harness) -> None:
    await bot.send(MEMBER, "/digest daily 08:30", language_code="uk")
    await queue_alerts(bot.archive, ["война 1"])
    await edit_post(bot.archive, 1, "война 1, уточнено")
    await bot.api.wait_for(chat_id=MEMBER, count=3)  # /digest's reply and the two alerts
    digests = bot.runner.app.bot_data["telewatch"].digests
    due = last_due(time(8, 30), datetime.now(UTC), KYIV) + timedelta(days=1)
    since = len(bot.api.calls)
    assert await digests.run_once(due + timedelta(seconds=5)) == 1
    (digest,) = [c for c in bot.api.calls[since:] if c.method == "sendMessage"]
    assert digest.text.startswith(
        "Щоденний дайджест telewatch: постів, що відповідають вашим правилам, з "
    )
    assert "(Europe/Kyiv): 1" in digest.text and "(змінено)" in digest.text
    # nothing matched the next day: said in Ukrainian too
    since = len(bot.api.calls)
    assert await digests.run_once(due + timedelta(days=1, seconds=5)) == 1
    (empty,) = [c for c in bot.api.calls[since:] if c.method == "sendMessage"]
    assert "жоден пост не відповідав вашим правилам" in empty.text


async def test_search_pages_stay_in_the_users_language(bot: Harness) -> None:
    """The ◀ ▶ presses (the fake's callback sender has no language_code) keep the language
    the first page was shown in: "Results 6–6 of 6" is translated like "1–5 of 6"."""
    await queue_alerts(bot.archive, [f"война {n}" for n in range(1, 7)], ())  # no alerts
    (first,) = await bot.send(MEMBER, "/search война", language_code="uk")
    assert "Результати 1–5 із 6 за запитом <code>война</code> · сторінка 1/2" in first.text
    keyboard = first.json("reply_markup")["inline_keyboard"]
    (forward,) = [b["callback_data"] for row in keyboard for b in row if b["text"] == "▶"]
    message = {"message_id": first.result["message_id"], "date": 0,
               "chat": {"id": MEMBER, "type": "private"}, "text": "…"}  # fmt: skip
    calls = await bot.press(MEMBER, forward, message)
    (second,) = [c for c in calls if c.method == "editMessageText"]
    assert "Результати 6–6 із 6 за запитом <code>война</code> · сторінка 2/2" in second.text


@pytest.mark.parametrize(
    "ref", ["0", "https://t.me/vsaldo/99999999999", "https://t.me/c/0/5", "t.me/"]
)
def test_every_bad_channel_reference_is_translated(ref: str) -> None:
    with pytest.raises(BadChannelRef) as info:
        parse_ref(ref)
    for lang in ("uk", "ru"):
        said = channel_ref_reason(str(info.value), translator(lang))
        assert said != str(info.value) and f"'{ref}'" in said


async def test_channel_errors_of_watch_speak_the_users_language(bot: Harness) -> None:
    unknown = text(await bot.send(MEMBER, "/watch channel:nosuchchan обстрел", language_code="uk"))
    assert unknown.startswith("⚠️ channel:nosuchchan: в архіві й конфігурації немає каналу")
    bad = text(await bot.send(MEMBER, "/watch channel:0 обстрел", language_code="ru"))
    assert "channel: '0' — не идентификатор канала: укажите id без пометки" in bad
    assert "(позиция 1)" in bad
