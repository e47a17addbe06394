"""The language each user chose for the bot (``/lang``)."""

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
