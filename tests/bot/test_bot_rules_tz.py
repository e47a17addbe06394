"""``since:``/``until:`` in rules name days of the display time zone (issue 16, item 7), as in
search: a personal rule saved with ``/watch`` and a config rule, matched by the same
:class:`~archiver.rules.RuleLoader` the archiver runs, through the real Application against
the fake Bot API. Kyiv is UTC+2 in December: 2026-11-30 22:30 UTC is 2026-12-01 00:30 there."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from botkit import CHANNEL, KYIV, MEMBER, fake_api, running_bot, seed_channel

from archiver.models import Post, Rule
from archiver.rules import RuleLoader, RuleSet, compile_rule
from archiver.store.archive import Archive
from archiver.store.ingest import ingest

LATE = datetime(2026, 11, 30, 22, 30, tzinfo=UTC)  # 2026-12-01 00:30 in Kyiv
EARLY = datetime(2026, 11, 30, 21, 30, tzinfo=UTC)  # 2026-11-30 23:30 in Kyiv


def late_post(message_id: int, text: str, date: datetime = LATE) -> Post:
    return Post(channel_id=CHANNEL, message_id=message_id, date=date, text=text)


async def test_a_watch_since_day_is_a_day_of_the_display_time_zone(tmp_path: Path) -> None:
    db = tmp_path / "tz.db"
    async with fake_api() as api:
        archive = await Archive.open(db)
        try:
            await seed_channel(archive)
            async with running_bot(api, archive, db, allowed_users=frozenset({MEMBER})) as h:
                assert h.settings.display.timezone == KYIV
                loader = RuleLoader.for_settings(h.settings).install(h.archive)
                assert loader.tz == "Europe/Kyiv"
                await h.send(MEMBER, "/watch dec: since:2026-12-01 обстрел")
                await h.send(MEMBER, "/watch nov: until:2026-11-30 обстрел")
                before = len(api.sent(chat_id=MEMBER))
                # 00:30 on 1 December in Kyiv: "dec" matches, "nov" does not
                stats = await ingest(
                    h.archive, [late_post(1, "Ночной обстрел")], source="telethon", alerts=True
                )
                assert stats.alerts_queued == 1
                alert = (await api.wait_for(chat_id=MEMBER, count=before + 1))[-1]
                assert "Ночной" in alert.text and "dec" in alert.text and "nov" not in alert.text
                # 23:30 on 30 November in Kyiv: only "nov"
                await ingest(
                    h.archive,
                    [late_post(2, "Вечерний обстрел", EARLY)],
                    source="telethon",
                    alerts=True,
                )
                calls = await api.wait_for(chat_id=MEMBER, count=before + 2)
                assert "Вечерний" in calls[-1].text and "nov" in calls[-1].text
                assert "dec" not in calls[-1].text
                assert len(api.sent(chat_id=MEMBER)) == before + 2
        finally:
            await archive.close()


@pytest.mark.parametrize(("tz", "matches"), [("Europe/Kyiv", True), ("UTC", False)])
def test_a_rule_since_day_follows_the_time_zone_it_is_compiled_with(tz: str, matches: bool) -> None:
    from archiver.query import Doc

    doc = Doc(("обстрел",), frozenset({"обстрел"}), CHANNEL, None, "2026-11-30 22:30:00")
    rule = Rule(name="dec", query="since:2026-12-01 обстрел", notify=(MEMBER,))
    assert compile_rule(rule, tz).matches(doc) is matches
    assert bool(RuleSet.compile([rule], tz=tz).matching(doc, "new")) is matches
    assert bool(RuleLoader([rule], tz).config[0].matches(doc)) is matches
