"""Everyday controls (issue 16, items 4-6 and 8): /watch checks its channels and takes a
name, unique names, a rule list that a button can always edit, search with totals, plain
text as a search, admin commands only in admins' menus. Real Application, fake Bot API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from botkit import ADMIN, CHANNEL, MEMBER, Harness, fake_api, running_bot, seed_channel
from botkit import post as make_post
from fakes.botapi import Call

from archiver.store.archive import Archive
from archiver.store.ingest import ingest
from archiver.store.personal_rules import list_rules


@pytest.fixture
async def bot(tmp_path: Path, any_archive: Archive) -> AsyncIterator[Harness]:
    db = tmp_path / "e.db"
    async with fake_api() as api:
        archive = any_archive  # SQLite and PostgreSQL (tests/pg.py)
        try:
            await seed_channel(archive)
            posts = [make_post(i, f"Эвакуация, день {i}") for i in range(1, 13)]
            await ingest(archive, posts, source="telethon", alerts=False)
            async with running_bot(api, archive, db) as h:
                yield h
        finally:
            await archive.close()


def one(calls: list[Call]) -> Call:
    assert len(calls) == 1, [(c.method, c.text[:80]) for c in calls]
    return calls[0]


async def test_watch_refuses_a_channel_that_does_not_exist(bot: Harness) -> None:
    reply = one(await bot.send(MEMBER, "/watch channel:nosuchchan обстрел")).text
    assert "channel:nosuchchan" in reply and "could never fire" in reply and "/channels" in reply
    assert await list_rules(bot.archive) == []
    assert "saved" in one(await bot.send(MEMBER, "/watch channel:saltpepper обстрел")).text
    assert "saved" in one(await bot.send(MEMBER, f"/watch channel:{CHANNEL} взрыв")).text


@pytest.mark.search
async def test_an_unknown_channel_in_search_points_to_channels_not_a_shell(bot: Harness) -> None:
    reply = one(await bot.send(MEMBER, "/search channel:nosuch обстрел")).text
    assert "no archived channel matches 'nosuch'" in reply and "/channels" in reply
    assert "`" not in reply and "telewatch" not in reply


async def test_named_rules_and_unique_names(bot: Harness) -> None:
    saved = one(await bot.send(MEMBER, "/watch Херсон: эвакуация -учения")).text
    assert "<b>Херсон</b>" in saved and "<code>эвакуация -учения</code>" in saved
    refused = one(await bot.send(MEMBER, "/watch Херсон: обстрел")).text
    assert "already have a rule named 'Херсон'" in refused
    # Two long queries that share their first 64 characters are two rules.
    common = "эвакуация OR евакуація OR evacuation OR эвакуационный OR автобусы OR "
    for tail in ("Каховка", "Алешки"):
        assert "saved" in one(await bot.send(MEMBER, f"/watch {common}{tail}")).text
    names = [r.name for r in await list_rules(bot.archive, owner=MEMBER)]
    assert names[0] == "Херсон" and len(set(names)) == 3 and names[2].endswith("(2)")
    assert all(len(n) <= 64 for n in names)
    # Rename and pause.
    assert "now called <b>Юг</b>" in one(await bot.send(MEMBER, "/rename 1 Юг")).text
    assert "already have a rule named" in one(await bot.send(MEMBER, f"/rename 2 {names[2]}")).text
    assert "paused" in one(await bot.send(MEMBER, "/pause 1")).text
    assert [r.id for r in await list_rules(bot.archive)] == [2, 3]
    assert "(paused: /resume 1)" in one(await bot.send(MEMBER, "/rules")).text
    assert "active again" in one(await bot.send(MEMBER, "/resume 1")).text


async def test_a_long_rule_list_is_one_valid_message_a_button_can_edit(bot: Harness) -> None:
    long_query = " OR ".join(f'<слово{i}> & "фраза {i}"' for i in range(12))
    for i in range(60):
        await bot.send(MEMBER, f"/watch r{i}: ({long_query}) OR x{i}")
    listing = one(await bot.send(MEMBER, "/rules"))  # the fake refuses invalid HTML
    assert "more rule(s) not shown" in listing.text
    data = listing.json("reply_markup")["inline_keyboard"][0][0]["callback_data"]
    message = {"message_id": listing.result["message_id"], "date": 0, "text": "...",
               "chat": {"id": MEMBER, "type": "private"}}  # fmt: skip
    calls = await bot.press(MEMBER, data, message)
    edit = one([c for c in calls if c.method == "editMessageText"])
    assert edit.ok and f"<b>#{data.split(':')[1]}</b>" not in edit.text  # the list is fresh
    answer = one([c for c in calls if c.method == "answerCallbackQuery"])
    assert answer.params["text"] == f"Rule #{data.split(':')[1]} deleted."


@pytest.mark.search
async def test_plain_text_in_a_private_chat_is_a_search_with_totals(bot: Harness) -> None:
    reply = one(await bot.send(MEMBER, "эвакуация"))
    assert "Results 1–5 of 12 for <code>эвакуация</code> · page 1/3" in reply.text
    assert "<b>Эвакуация</b>" in reply.text
    (row,) = reply.json("reply_markup")["inline_keyboard"]
    assert [b["text"] for b in row] == ["▶"]


async def test_admin_commands_are_only_in_admins_menus(bot: Harness) -> None:
    menus = [c for c in bot.api.calls if c.method == "setMyCommands"]
    for lang in (None, "uk", "ru"):  # the default menu, and one per translated language
        here = [m for m in menus if m.params.get("language_code") == lang]
        (default,) = [m for m in here if "scope" not in m.params]
        names = [c["command"] for c in default.json("commands")]
        assert "search" in names and not {"status", "allow", "deny"} & set(names)
        (admin,) = [m for m in here if "scope" in m.params]
        assert admin.json("scope") == {"type": "chat", "chat_id": ADMIN}
        assert {"status", "allow", "deny"} <= {c["command"] for c in admin.json("commands")}
