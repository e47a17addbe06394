"""The language each user (or group, under its chat id) chose for the bot (``/lang``), and
the one seen for a chat that chose none (``seen_langs``: a user's Telegram client language,
a group's first user's)."""

from __future__ import annotations

from archiver.store.archive import Archive


async def get_lang(archive: Archive, user_id: int) -> str | None:
    row = await archive.fetchone("SELECT lang FROM user_langs WHERE user_id = ?", (user_id,))
    return None if row is None else str(row[0])


async def all_langs(archive: Archive) -> dict[int, str]:
    """Every user's chosen language (the bot keeps them for the alerts it sends)."""
    rows = await archive.fetchall("SELECT user_id, lang FROM user_langs")
    return {int(r[0]): str(r[1]) for r in rows}


async def set_lang(archive: Archive, user_id: int, lang: str) -> None:
    await archive.write(
        "INSERT INTO user_langs (user_id, lang) VALUES (?, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET lang = excluded.lang",
        (user_id, lang),
    )


async def all_seen_langs(archive: Archive) -> dict[int, str]:
    """Chat id -> the language seen for it (used when it chose none)."""
    rows = await archive.fetchall("SELECT chat_id, lang FROM seen_langs")
    return {int(r[0]): str(r[1]) for r in rows}


async def set_seen_lang(archive: Archive, chat_id: int, lang: str, *, replace: bool) -> None:
    """Record the language seen for a chat; ``replace=False`` keeps one already there (a
    group keeps its first user's)."""
    conflict = "DO UPDATE SET lang = excluded.lang" if replace else "DO NOTHING"
    await archive.write(
        f"INSERT INTO seen_langs (chat_id, lang) VALUES (?, ?) ON CONFLICT (chat_id) {conflict}",
        (chat_id, lang),
    )
