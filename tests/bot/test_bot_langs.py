"""Whose language an alert speaks when nobody chose one with /lang (issue 16): a user's
Telegram client language_code, kept when they first talk to the bot (and across restarts);
a group's: an admin's /lang in the group, else the language of the first user who used the
bot there. Through the real Application against the fake Bot API."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from botkit import (
    ADMIN,
    GROUP,
    MEMBER,
    OTHER_MEMBER,
    fake_api,
    queue_alerts,
    running_bot,
    seed_channel,
)
from fakes.botapi import Call

from archiver.store import archive as archive_module
from archiver.store.archive import Archive
from archiver.store.user_langs import all_seen_langs


def buttons(call: Call) -> list[str]:
    return [b["text"] for row in call.json("reply_markup")["inline_keyboard"] for b in row]


UK = ["Повний текст", "Історія", "Вимкнути правило на 24 год"]
RU = ["Полный текст", "История", "Заглушить правило на 24 ч"]
EN = ["Full text", "History", "Mute rule 24 h"]


async def test_alerts_follow_the_clients_language_and_the_groups(tmp_path: Path) -> None:
    db = tmp_path / "langs.db"
    async with fake_api() as api:
        archive = await Archive.open(db)
        try:
            await seed_channel(archive)
            async with running_bot(api, archive, db) as h:
                await h.send(MEMBER, "/start", language_code="uk")
                await h.send(OTHER_MEMBER, "/start")  # no language_code: English
                # the first user of the group speaks Russian: the group's alerts do too
                await h.send(OTHER_MEMBER, "/start", chat_id=GROUP, language_code="ru")
                await h.send(MEMBER, "/start", chat_id=GROUP, language_code="uk")
                since = len(api.calls)
                await queue_alerts(h.archive, ["война 1"], (MEMBER, OTHER_MEMBER, GROUP))
                (uk,) = await api.wait_for(chat_id=MEMBER, since=since)
                (en,) = await api.wait_for(chat_id=OTHER_MEMBER, since=since)
                (ru,) = await api.wait_for(chat_id=GROUP, since=since)
                assert buttons(uk) == UK and "<i>новий пост</i>" in uk.text
                assert buttons(en) == EN and "<i>new post</i>" in en.text
                assert buttons(ru) == RU and "<i>новый пост</i>" in ru.text

                # Only an admin sets a group's language; then its alerts follow it.
                refused = (await h.send(MEMBER, "/lang en", chat_id=GROUP))[0].text
                assert "Змінити мову групи може лише адміністратор бота" in refused
                shown = (await h.send(MEMBER, "/lang", chat_id=GROUP, language_code="uk"))[0]
                assert "Русский" in shown.text
                done = (await h.send(ADMIN, "/lang uk", chat_id=GROUP))[0].text
                assert "Тепер сповіщення в цій групі — мовою: Українська." in done
                # the client's language changes: the user's alerts follow
                await h.send(MEMBER, "/start", language_code="ru")
                since = len(api.calls)
                await queue_alerts(h.archive, ["война 2"], (MEMBER, GROUP), first_id=2)
                (ru2,) = await api.wait_for(chat_id=MEMBER, since=since)
                (uk2,) = await api.wait_for(chat_id=GROUP, since=since)
                assert buttons(ru2) == RU and buttons(uk2) == UK
            # kept in the archive: after a restart, before anyone talks
            async with running_bot(api, archive, db) as h2:
                since = len(api.calls)
                await queue_alerts(h2.archive, ["война 3"], (MEMBER, GROUP), first_id=3)
                (ru3,) = await api.wait_for(chat_id=MEMBER, since=since)
                (uk3,) = await api.wait_for(chat_id=GROUP, since=since)
                assert buttons(ru3) == RU and buttons(uk3) == UK
        finally:
            await archive.close()


async def test_a_locked_archive_does_not_refuse_a_command_for_the_language_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keeping the language seen is a side note: with the archive's write lock held elsewhere
    the command is still answered (in that language), and it is kept when the user talks next."""
    monkeypatch.setattr(archive_module, "BUSY_TIMEOUT_MS", 200)  # 30 s in production
    db = tmp_path / "locked.db"
    async with fake_api() as api:
        archive = await Archive.open(db)
        try:
            await seed_channel(archive)
            async with running_bot(api, archive, db) as h:
                lock = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
                try:
                    # in a thread: waiting here on the event loop would stop the bot's own
                    # transaction in the middle (its next statement needs the loop), so neither
                    # could finish and BEGIN failed after sqlite3's 5 s (2 runs in 10)
                    await asyncio.to_thread(lock.execute, "BEGIN IMMEDIATE")
                    reply = await h.send(MEMBER, "/start", language_code="uk")
                    assert "Вітаю" in reply[0].text
                finally:
                    lock.close()
                assert await all_seen_langs(h.archive) == {}
                await h.send(MEMBER, "/start", language_code="uk")  # the same: tried again
                assert await all_seen_langs(h.archive) == {MEMBER: "uk"}
        finally:
            await archive.close()
