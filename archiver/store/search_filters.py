"""The query language's filters as SQL over ``posts p``: one text for both backends (the
PostgreSQL connection translates ``IS ?``), used by the SQLite and the PostgreSQL search."""

from __future__ import annotations

from typing import Any

from archiver.query import Filter


def filter_sql(f: Filter, channel_ids: dict[str, int], params: list[Any]) -> str:
    """The condition for ``f``; its parameters are appended to ``params``."""
    if f.field == "channel":
        params.append(channel_ids[f.value])
        return "p.channel_id = ?"
    if f.field == "since":
        params.append(f.bound)
        return "p.date >= ?"
    if f.field == "until":
        params.append(f.bound)
        return "p.date < ?"
    if f.field == "is":
        return "p.edited = 1" if f.value == "edited" else "p.deleted_at IS NOT NULL"
    if f.value == "media":
        return "p.media_kind IS NOT NULL"
    if f.value == "link":
        return "p.has_link = 1"
    params.append(f.value)
    return "p.media_kind IS ?"  # IS, not =: NOT (NULL = x) would drop posts without media
