"""The record through the real store (issue 13): what makes a version, reverts, and versions in
the order they were observed. Real SQLite, real Telethon messages, the real export reader; the
pure rules themselves are tabled in tests/record/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import CHANNEL_ID, T0, MakeChannel
from pg import archive_both  # noqa: F401  (these tests run on SQLite and PostgreSQL)
from telethon.tl import types

from archiver.models import Post, Rule
from archiver.rules import RuleLoader
from archiver.sources.export import import_file
from archiver.store.archive import Archive
from archiver.store.ingest import ingest
from archiver.store.search import history
from store.recordkit import (
    at,
    current_index,
    events,
    export_message,
    kinds,
    outbox,
    photo,
    raws,
    tl,
    told,
    unixtime,
    versions,
    write_export,
)

RULES = [Rule("evac", "эвакуация", notify=(1, 2))]


@pytest.fixture(autouse=True)
async def channel(archive: Archive, make_channel: MakeChannel) -> None:
    await make_channel()
    RuleLoader(RULES).install(archive)


def post(text: str, *, edited: int | None = None, mid: int = 7, **fields: Any) -> Post:
    """Post 7 of the default channel; ``edited``: the edit time, minutes after T0."""
    when = at(edited) if edited is not None else None
    return Post(CHANNEL_ID, mid, T0, text, edit_date=when, **fields)


async def live(archive: Archive, *posts: Post, source: str = "telethon") -> int:
    stats = await ingest(archive, list(posts), source=source, alerts=True)
    return stats.versions_added


# ---------------------------------------------------------------------------- what a version is

TEXT = "Объявлена эвакуация. Карта укрытий"
LINK = [types.MessageEntityTextUrl(offset=21, length=13, url="https://example.org/map-v1")]

EDITS = [
    pytest.param(
        {"entities": LINK},
        {"entities": [types.MessageEntityTextUrl(offset=21, length=13, url="https://x.example/")]},
        "links",
        "https://x.example/",
        id="link-only",
    ),
    pytest.param(
        {"entities": LINK},
        {"entities": [types.MessageEntityBold(offset=0, length=9), *LINK]},
        "fmt",
        '"MessageEntityBold"',
        id="formatting-only",
    ),
    pytest.param(
        {"media": photo(55)},
        {"media": photo(56)},
        "media",
        '"id":56',
        id="media-only",
    ),
]


@pytest.mark.parametrize(("before", "after", "part", "in_new_raw"), EDITS)
async def test_an_edit_with_the_same_words_is_a_new_version_with_its_raw(
    archive: Archive, before: dict[str, Any], after: dict[str, Any], part: str, in_new_raw: str
) -> None:
    await live(archive, tl(7, TEXT, **before))
    added = await live(archive, tl(7, TEXT, edit_date=at(30), **after))
    assert added == 1
    assert await versions(archive, 7) == [(TEXT, "telethon"), (TEXT, "telethon")]
    assert await current_index(archive, 7) == 2
    old_raw, new_raw = await raws(archive, 7)
    assert new_raw is not None and in_new_raw in new_raw  # the new raw object is kept
    assert old_raw is not None and in_new_raw not in old_raw  # and the old one too
    (event,) = await events(archive, 7)
    assert (event[1], event[2], event[6]) == ("edited", 2, part)
    assert await told(archive, "edited") == [1, 2]  # a follow-up of the matching rule
    # Seen again unchanged: nothing more.
    assert await live(archive, tl(7, TEXT, edit_date=at(30), **after)) == 0


async def test_a_reactions_only_edit_changes_counters_not_versions(archive: Archive) -> None:
    """Telegram moves edit_date and sets edit_hide when only the reactions change."""
    await live(archive, tl(7, TEXT, entities=LINK, media=photo(55), views=100, forwards=1))
    reacted = tl(
        7, TEXT, entities=LINK, media=photo(55), views=250, forwards=1, edit_date=at(45),
        edit_hide=True,
        reactions=types.MessageReactions(
            results=[types.ReactionCount(reaction=types.ReactionEmoji(emoticon="👍"), count=9)]
        ),
    )  # fmt: skip
    stats = await ingest(archive, [reacted], source="telethon", alerts=True)
    assert (stats.versions_added, stats.posts_updated, stats.alerts_queued) == (0, 1, 0)
    assert len(await versions(archive, 7)) == 1
    assert await events(archive, 7) == []
    row = await archive.fetchone("SELECT views, reactions FROM posts WHERE message_id = 7")
    assert row is not None and tuple(row) == (250, 9)


async def test_an_exported_post_read_again_by_telethon_is_not_a_new_version(
    archive: Archive, tmp_path: Path
) -> None:
    """The export names the photo by a file path, Telethon by its id: a part only one source
    knows is not a difference. Once Telethon has read it, a new photo is."""
    exported = export_message(
        7,
        ["Объявлена эвакуация. ", {"type": "text_link", "text": "Карта укрытий",
                                   "href": "https://example.org/map-v1"}],
        photo="(File not included. Change data exporting settings to download.)",
        photo_file_size=123456, width=1280, height=720,
        edited=at(5).strftime("%Y-%m-%dT%H:%M:%S"), edited_unixtime=unixtime(at(5)),
    )  # fmt: skip
    await import_file(archive, write_export(tmp_path / "result.json", [exported]))
    assert await versions(archive, 7) == [(TEXT, "export")]

    again = tl(7, TEXT, entities=LINK, media=photo(55), edit_date=at(5))
    stats = await ingest(archive, [again], source="telethon", alerts=True)
    assert (stats.versions_added, stats.alerts_queued) == (0, 0)
    assert await events(archive, 7) == []

    assert await live(archive, tl(7, TEXT, entities=LINK, media=photo(56), edit_date=at(9))) == 1
    assert [e[6] for e in await events(archive, 7)] == ["media"]


# ---------------------------------------------------------------------------- reverts

A, B = "Объявлена эвакуация из Каменки", "Эвакуация из Каменки отменена"


async def test_a_revert_is_an_event_with_an_alert(archive: Archive) -> None:
    await live(archive, post(A))
    await live(archive, post(B, edited=10))
    added = await live(archive, post(A, edited=20))
    assert added == 0  # the earlier version is current again: no copy of it
    assert await versions(archive, 7) == [(A, "telethon"), (B, "telethon")]
    assert await current_index(archive, 7) == 1
    assert await kinds(archive, 7) == ["edited", "reverted"]
    revert = (await events(archive, 7))[1]
    assert revert[2] == 1  # back to version 1
    assert [(k, r, e) for _, k, r, _, e in await outbox(archive) if k == "reverted"] == [
        ("reverted", 1, revert[0]),
        ("reverted", 2, revert[0]),
    ]
    h = await history(archive, "vsaldo", 7)
    assert h.current == 1 and [e.kind for e in h.events] == ["edited", "reverted"]


@pytest.mark.parametrize("source", ["telethon", "web"])
async def test_every_revert_alerts_again(archive: Archive, source: str) -> None:
    """A -> B -> A -> B -> A: each return is its own event and alert. The web preview gives no
    edit times: it observes in time order."""
    dated = source == "telethon"
    for i, text in enumerate([A, B, A, B, A]):
        await live(archive, post(text, edited=10 * i if dated and i else None), source=source)
    assert await versions(archive, 7) == [(A, source), (B, source)]
    assert await current_index(archive, 7) == 1
    assert await kinds(archive, 7) == ["edited", "reverted", "reverted", "reverted"]
    ev = await events(archive, 7)
    assert [e[2] for e in ev] == [2, 1, 2, 1]
    reverted = [(r, e) for _, k, r, _, e in await outbox(archive) if k == "reverted"]
    assert reverted == [(1, ev[1][0]), (2, ev[1][0]), (1, ev[2][0]), (2, ev[2][0]),
                        (1, ev[3][0]), (2, ev[3][0])]  # fmt: skip


async def test_an_older_export_text_arriving_late_stays_history(archive: Archive) -> None:
    await live(archive, post(A))
    await live(archive, post("Эвакуация из Каменки завершена", edited=30))
    # An export made between the two: an intermediate edit, and the original.
    late = await ingest(archive, [post(B, edited=10)], source="export", alerts=True)
    again = await ingest(archive, [post(A)], source="export", alerts=True)
    assert (late.versions_added, late.alerts_queued) == (1, 0)
    assert (again.versions_added, again.alerts_queued) == (0, 0)
    assert [t for t, _ in await versions(archive, 7)] == [A, "Эвакуация из Каменки завершена", B]
    assert await current_index(archive, 7) == 2
    assert await kinds(archive, 7) == ["edited", "late"]
    assert await told(archive, "reverted") == []


# ---------------------------------------------------------------------------- observed order


async def test_history_lists_an_undated_web_edit_after_a_dated_import(archive: Archive) -> None:
    """Found by the review (issue 13): versions sorted by coalesce(edit_date, '') put the web
    text (no edit date) first, as "Version 1 (original)"."""
    await ingest(archive, [post(A, edited=5)], source="export", alerts=False)
    await live(archive, post(B), source="web")
    h = await history(archive, "vsaldo", 7)
    assert [(v.text, v.source) for v in h.versions] == [(A, "export"), (B, "web")]
    assert h.versions[1].edit_date is None
    assert h.current == 2


async def test_a_first_reading_with_reactions_only_does_not_mark_the_post_edited(
    archive: Archive,
) -> None:
    """Found by review: a never-edited post whose first reading carries reactions comes with
    edit_date moved and edit_hide set; it was stored as edited (is:edited, CSV, stats)."""
    reacted = tl(7, TEXT, views=10, forwards=0, edit_date=at(45), edit_hide=True)
    await ingest(archive, [reacted], source="telethon", alerts=False)
    row = await archive.fetchone("SELECT edited FROM posts WHERE message_id = 7")
    assert row is not None and row[0] == 0
