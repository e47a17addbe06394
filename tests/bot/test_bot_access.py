"""Access that really ends (issue 16, item 1): a denied user, a user removed from the config
and a group removed from the config get no alert and no digest; their rules are paused, not
lost, and come back with /allow. Through the real PTB Application and the fake Bot API."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from botkit import (
    ADMIN,
    FAST,
    GROUP,
    MEMBER,
    STRANGER,
    Harness,
    alert_rows,
    fake_api,
    running_bot,
    seed_channel,
)
from botkit import post as make_post
from fakes.botapi import Call, FakeBotApi

from archiver.rules import RuleLoader
from archiver.store import outbox
from archiver.store.archive import Archive
from archiver.store.ingest import ingest
from archiver.store.personal_rules import list_rules, owned_rules

USER = 777

POLL_ONLY = replace(FAST, watch=False)


async def new_post(h: Harness, message_id: int, text: str) -> int:
    """A post arrives through the real ingest path and the rules engine; returns how many
    alerts it queued (delivery is woken as `telewatch run` would)."""
    stats = await ingest(h.archive, [make_post(message_id, text)], source="telethon", alerts=True)
    h.wake.set()
    return stats.alerts_queued


def alerts_to(api: FakeBotApi, chat_id: int) -> list[Call]:
    return [c for c in api.sent(chat_id=chat_id) if "Rules:" in c.text]


async def quiet(h: Harness) -> None:
    """Let delivery look at the outbox a few times (a send would happen in that time)."""
    delivery = h.runner.delivery
    assert delivery is not None
    for _ in range(3):
        await delivery.dispatch()
        await delivery.idle()
        await asyncio.sleep(0.05)


@pytest.fixture
async def env(tmp_path: Path, any_archive: Archive) -> tuple[Path, Archive]:
    db = tmp_path / "acc.db"
    archive = any_archive  # SQLite and PostgreSQL (tests/pg.py)
    await seed_channel(archive)
    return db, archive


async def test_deny_ends_alerts_and_allow_brings_the_rules_back(
    env: tuple[Path, Archive],
) -> None:
    db, archive = env
    async with fake_api() as api:
        try:
            # No wake-ups (archiver/store/wakeup.py) and no poll: an alert can be left waiting
            async with running_bot(api, archive, db, options=POLL_ONLY, poll_seconds=3600) as h:
                RuleLoader(h.settings.rules).install(h.archive)
                await h.send(ADMIN, f"/allow {USER}")
                assert "Rule <b>#1</b>" in (await h.send(USER, "/watch обстрел"))[0].text
                assert await new_post(h, 1, "Ночной обстрел города") == 1
                await api.wait_for(chat_id=USER, count=3)  # "you may", "saved", the alert
                assert len(alerts_to(api, USER)) == 1
                # An alert is waiting when the admin denies the user ...
                h.wake.clear()
                stats = await ingest(
                    h.archive, [make_post(2, "Снова обстрел")], source="telethon", alerts=True
                )
                assert stats.alerts_queued == 1
                reply = (await h.send(ADMIN, f"/deny {USER}"))[0].text
                assert "1 of their rule(s) paused" in reply
                assert "1 waiting alert(s) dropped" in reply
                # ... it is dropped with the reason, and new posts queue nothing for them.
                assert await new_post(h, 3, "Обстрел продолжается") == 0
                await quiet(h)
                assert len(alerts_to(api, USER)) == 1
                rows = await alert_rows(h.archive)
                assert [r["status"] for r in rows] == ["sent", "dropped"]
                assert rows[1]["last_error"] == f"user {USER} was denied access by an admin"
                (entry,) = await owned_rules(h.archive, USER)
                assert entry.paused == "access" and await list_rules(h.archive) == []
                # The user cannot use the bot; their commands get the stranger's reply.
                assert str(USER) in (await h.send(USER, "/rules"))[0].text
                # /allow: the rule is active again and alerts come back.
                reply = (await h.send(ADMIN, f"/allow {USER}"))[-1].text
                assert "1 of their rule(s) are active again" in reply
                assert [r.id for r in await list_rules(h.archive)] == [1]
                assert await new_post(h, 4, "Вечерний обстрел") == 1
                await api.wait_for(chat_id=USER, count=6)  # + /rules, "you may", the alert
                assert len(alerts_to(api, USER)) == 2
                assert "Вечерний" in alerts_to(api, USER)[-1].text
        finally:
            await archive.close()


async def test_a_user_removed_from_the_config_gets_nothing(env: tuple[Path, Archive]) -> None:
    db, archive = env
    async with fake_api() as api:
        try:
            async with running_bot(api, archive, db) as h:
                RuleLoader(h.settings.rules).install(h.archive)
                await h.send(MEMBER, "/watch обстрел")
            # While the bot is down an alert lands for MEMBER (their rule, and the config's
            # rule "war" that names them); then the operator removes them from allowed_users.
            loader = RuleLoader(h.settings.rules).install(archive)
            stats = await ingest(
                archive, [make_post(1, "война и обстрел")], source="telethon", alerts=True
            )
            assert stats.alerts_queued == 1
            async with running_bot(api, archive, db, allowed_users=frozenset({STRANGER})) as h2:
                await quiet(h2)
                (row,) = await alert_rows(h2.archive)
                assert row["status"] == "dropped"
                assert row["last_error"] == f"user {MEMBER} is not in [bot] admins or allowed_users"
                (entry,) = await owned_rules(h2.archive, MEMBER)
                assert entry.paused == "access"
                # The config rule still names MEMBER: its new alerts are dropped at send time.
                loader.install(h2.archive)
                assert await new_post(h2, 2, "война") == 1
                await quiet(h2)
                assert [r["status"] for r in await alert_rows(h2.archive)] == ["dropped"] * 2
            assert alerts_to(api, MEMBER) == []
            # Back in the config: the rule resumes at start, alerts flow again.
            async with running_bot(api, archive, db) as h3:
                loader.install(h3.archive)
                (entry,) = await owned_rules(h3.archive, MEMBER)
                assert entry.paused is None
                assert await new_post(h3, 3, "обстрел") == 1
                (alert,) = await api.wait_for(chat_id=MEMBER, timeout=5)
                assert "<b>обстрел</b>" in alert.text
        finally:
            await archive.close()


async def test_a_group_removed_from_the_config_gets_nothing(env: tuple[Path, Archive]) -> None:
    db, archive = env
    async with fake_api() as api:
        try:
            async with running_bot(api, archive, db, poll_seconds=3600) as h:
                loader = RuleLoader(h.settings.rules).install(h.archive)
                await h.send(STRANGER, "/watch обстрел", chat_id=GROUP)
                assert await new_post(h, 1, "обстрел") == 1
                await api.wait_for(chat_id=GROUP, count=2)  # "Rule saved", the alert
            # queued while no bot runs (a running one would be woken and send it)
            await ingest(archive, [make_post(2, "обстрел 2")], source="telethon", alerts=True)
            async with running_bot(api, archive, db, allowed_chats=frozenset()) as h2:
                loader.install(h2.archive)
                await quiet(h2)
                rows = await alert_rows(h2.archive)
                assert [r["status"] for r in rows] == ["sent", "dropped"]
                assert rows[1]["last_error"] == f"chat {GROUP} is not in [bot] allowed_chats"
                (entry,) = await owned_rules(h2.archive, STRANGER)
                assert entry.paused == "access"
                assert await new_post(h2, 3, "обстрел 3") == 0
                # Nobody there can use the bot either.
                reply = (await h2.send(STRANGER, "/rules", chat_id=GROUP))[0].text
                assert "does not work in this chat" in reply
            assert len(alerts_to(api, GROUP)) == 1
            counts = await outbox.counts(archive)
            assert (counts.sent, counts.dropped, counts.pending) == (1, 1, 0)
        finally:
            await archive.close()
