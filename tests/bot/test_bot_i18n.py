"""The bot's languages (issue 16): English, Ukrainian and Russian from the gettext catalogs in
bot/locales, a per-user /lang, defaulting to the Telegram client's language_code."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir, extract_python
from botkit import (
    ADMIN,
    MEMBER,
    OTHER_MEMBER,
    STRANGER,
    Harness,
    delete_post,
    fake_api,
    queue_alerts,
    running_bot,
    seed_channel,
)
from fakes.botapi import Call
from fakes.tghtml import parse_html

import bot as bot_package
from archiver.store.archive import Archive
from bot.i18n import HOOKED, LANGS, messages, pick, translator

BOT_DIR = Path(bot_package.__file__).parent
FIELD = re.compile(r"\{(\w*)\}")


def message_ids() -> list[str]:
    """Every ``_("...")`` in the bot's code, and in the archiver's texts the bot translates
    through a hook (:data:`bot.i18n.HOOKED`)."""
    found = extract_from_dir(str(BOT_DIR), method_map=[("**.py", "python")], keywords={"_": None})
    ids = {str(msg) for _, _, msg, _, _ in found}
    for path in HOOKED:
        with path.open("rb") as f:
            ids |= {str(m[2]) for m in extract_python(f, {"_": None}, [], {})}
    return sorted(ids)


def test_the_code_uses_translated_messages() -> None:
    assert len(message_ids()) >= 20


@pytest.mark.parametrize("lang", LANGS)
def test_every_message_has_a_translation_in_every_language(lang: str) -> None:
    ids = message_ids()
    table = messages(lang)
    missing = [i for i in ids if not table.get(i)]
    assert missing == [], f"{lang}: no translation for {missing}"
    stale = sorted(set(table) - set(ids))
    assert stale == [], f"{lang}: translations of ids the code no longer has: {stale}"
    for msgid, text in table.items():
        assert sorted(FIELD.findall(text)) == sorted(FIELD.findall(msgid)), (lang, msgid)
        sample = FIELD.sub("1", text)
        parse_html(sample)  # valid Telegram HTML (raises otherwise)


@pytest.mark.parametrize(
    ("chosen", "code", "lang"),
    [(None, "uk", "uk"), (None, "ru-RU", "ru"), (None, "de", "en"), (None, None, "en"),
     ("ru", "uk", "ru"), ("xx", "uk", "uk")],
)  # fmt: skip
def test_pick(chosen: str | None, code: str | None, lang: str) -> None:
    assert pick(chosen, code) == lang


def test_translator_falls_back_to_english() -> None:
    assert translator("uk")("Commands") == "Команди"
    assert translator("uk")("not a message id") == "not a message id"
    assert translator("de")("Commands") == "Commands"


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Harness]:
    db = tmp_path / "l.db"
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


async def test_the_bot_speaks_the_clients_language_until_lang_is_chosen(bot: Harness) -> None:
    assert "Вітаю" in text(await bot.send(MEMBER, "/start", language_code="uk"))
    assert "Hello" in text(await bot.send(MEMBER, "/start", language_code="de"))
    assert "Нічого не знайдено" in text(await bot.send(MEMBER, "/search вайна", language_code="uk"))
    chosen = text(await bot.send(MEMBER, "/lang ru", language_code="uk"))
    assert "Теперь бот говорит с вами: Русский" in chosen
    assert "Здравствуйте" in text(await bot.send(MEMBER, "/start", language_code="uk"))
    assert "Тихих часов нет" in text(await bot.send(MEMBER, "/quiet", language_code="uk"))
    assert "Язык: Русский" in text(await bot.send(MEMBER, "/lang"))
    assert "Неизвестный язык 'de'" in text(await bot.send(MEMBER, "/lang de"))
    assert "The bot speaks English" in text(await bot.send(MEMBER, "/lang en"))
    assert "Only admins" in text(await bot.send(MEMBER, "/follow @x", language_code="ru"))


async def test_a_stranger_is_answered_in_their_clients_language(bot: Harness) -> None:
    reply = text(await bot.send(STRANGER, "/start", language_code="ru"))
    assert "Это частный бот" in reply and str(STRANGER) in reply


def buttons(call: Call) -> list[str]:
    return [b["text"] for row in call.json("reply_markup")["inline_keyboard"] for b in row]


async def test_an_alert_to_a_user_with_lang_uk_arrives_in_ukrainian(bot: Harness) -> None:
    assert "Українська" in text(await bot.send(MEMBER, "/lang uk"))
    since = len(bot.api.calls)
    assert await queue_alerts(bot.archive, ["война пришла"], (MEMBER, OTHER_MEMBER)) == 2
    (uk,) = await bot.api.wait_for(chat_id=MEMBER, since=since)
    (en,) = await bot.api.wait_for(chat_id=OTHER_MEMBER, since=since)
    assert "<i>новий пост</i>" in uk.text and "<i>Правила:</i> war" in uk.text
    assert buttons(uk) == ["Повний текст", "Історія", "Вимкнути правило на 24 год"]
    assert "<i>new post</i>" in en.text and "<i>Rules:</i> war" in en.text
    assert buttons(en) == ["Full text", "History", "Mute rule 24 h"]

    since = len(bot.api.calls)
    assert await delete_post(bot.archive, 1)
    (gone,) = await bot.api.wait_for(chat_id=MEMBER, since=since)
    assert "<i>видалено</i>" in gone.text
    assert "Видалено з каналу (помічено" in gone.text and "Telegram повідомив" in gone.text
    assert "Текст був такий:" in gone.text and "<b>война</b> пришла" in gone.text


async def test_search_latest_and_history_speak_the_users_language(bot: Harness) -> None:
    await queue_alerts(bot.archive, ["война 1", "война 2", "война 3", "война 4", "война 5", "6"])
    page = text(await bot.send(MEMBER, "/search война", language_code="uk"))
    assert "Результати 1–5 із 5 за запитом <code>война</code>" in page
    page = text(await bot.send(MEMBER, "/search война OR 6", language_code="ru"))
    assert "Результаты 1–5 из 6 по запросу" in page and "страница 1/2" in page
    assert "Останні пости:" in text(await bot.send(MEMBER, "/latest", language_code="uk"))
    story = text(await bot.send(MEMBER, "/history https://t.me/saltpepper/1", language_code="uk"))
    assert "опубліковано" in story and "Версій: 1" in story and "<b>Версія 1</b>" in story
    channels = text(await bot.send(MEMBER, "/channels", language_code="uk"))
    assert "Каналів: 1" in channels and "постів: 6, правок: 0, видалень: 0" in channels


async def test_rule_commands_usage_lines_help_and_menus_are_translated(bot: Harness) -> None:
    saved = text(await bot.send(MEMBER, "/watch Херсон: эвакуация", language_code="uk"))
    assert "Правило <b>#1</b> <b>Херсон</b> збережено" in saved
    assert "надходитимуть вам сюди" in saved and "<code>/unwatch 1</code>" in saved
    assert "<b>Ваші правила</b> (1)" in text(await bot.send(MEMBER, "/rules", language_code="uk"))
    assert "Правило #1 удалено." in text(await bot.send(MEMBER, "/unwatch 1", language_code="ru"))
    usage = text(await bot.send(MEMBER, "/history", language_code="ru"))
    assert "Как пользоваться: <code>/history LINK</code> (все версии поста и его удаление)" in usage
    helped = text(await bot.send(MEMBER, "/help", language_code="uk"))
    assert "/latest [channel]: найновіші пости" in helped
    menus = {c.params.get("language_code"): c for c in bot.api.calls
             if c.method == "setMyCommands" and "scope" not in c.params}  # fmt: skip
    uk = {c["command"]: c["description"] for c in menus["uk"].json("commands")}
    assert uk["lang"] == "мова бота"
    en = {c["command"]: c["description"] for c in menus[None].json("commands")}
    assert en["lang"] == "the bot's language"


async def test_admin_replies_are_translated(bot: Harness) -> None:
    follow = text(await bot.send(ADMIN, "/follow @newsdesk web", language_code="uk"))
    assert "Стежимо за <b>newsdesk</b> (web)" in follow
    unfollow = text(await bot.send(ADMIN, "/unfollow @newsdesk", language_code="ru"))
    assert "Больше не следим за <b>newsdesk</b> из чата" in unfollow
    deny = text(await bot.send(ADMIN, f"/deny {OTHER_MEMBER}", language_code="uk"))
    assert f"Користувач <code>{OTHER_MEMBER}</code> більше не може" in deny
    assert "Як користуватися: <code>/allow USER_ID</code>" in text(
        await bot.send(ADMIN, "/allow", language_code="uk")
    )


async def test_status_is_in_the_admins_language(bot: Harness) -> None:
    status = text(await bot.send(ADMIN, "/status", language_code="ru"))
    assert "<b>Оповещения</b>: в очереди: 0" in status and "<b>Каналы</b> (1)" in status


async def test_an_error_reply_ends_in_the_users_language(bot: Harness) -> None:
    reply = text(await bot.send(MEMBER, "/latest @nosuchchannel", language_code="ru"))
    assert reply.startswith("⚠️") and reply.endswith("каналы в архиве: /channels.")


# A count right before a Cyrillic noun needs the noun's plural form for that count (uk and ru
# have three: 1 результат, 2 результати, 5 результатів); the catalogs have no plural entries,
# so a count is written after its noun ("Результатів: {n}"). Units and abbreviations agree
# with every count.
COUNT_THEN_WORD = re.compile(r"\{(n|cap|count|total)\}\s+([А-Яа-яІіЇїЄєҐґЁё]+\.?)")
UNITS = {"с", "хв", "год", "мин", "ч", "дн.", "із", "из", "за", "по"}  # and prepositions


@pytest.mark.parametrize("lang", ["uk", "ru"])
def test_no_count_stands_before_a_noun_whose_form_it_decides(lang: str) -> None:
    bad = [
        (msgid, text)
        for msgid, text in messages(lang).items()
        for _field, word in COUNT_THEN_WORD.findall(text)
        if word not in UNITS
    ]
    assert bad == [], bad
