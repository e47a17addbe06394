"""The record through the real store (issue 13): deletion is a claim with evidence (missing,
deleted, restored), and follow-ups reach a rule's recipients whether or not the post was
ever alerted. Real SQLite, the real rules engine, search, history and stats."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CHANNEL_ID, T0, MakeChannel
from pg import archive_both  # noqa: F401  (these tests run on SQLite and PostgreSQL)

from archiver.config import load_settings
from archiver.errors import ConfigError
from archiver.models import Post, Rule
from archiver.query import parse
from archiver.rules import RuleLoader
from archiver.store.archive import Archive
from archiver.store.deletions import confirm_deleted, confirm_present, mark_missing
from archiver.store.ingest import ingest
from archiver.store.search import channel_stats, history, search
from store.recordkit import at, current_index, events, kinds, outbox, post_state, told

EVAC = "Объявлена эвакуация из Каменки"


def post(text: str = EVAC, *, edited: int | None = None) -> Post:
    return Post(CHANNEL_ID, 7, T0, text, edit_date=at(edited) if edited is not None else None)


async def rules(archive: Archive, make_channel: MakeChannel, *rules: Rule) -> None:
    await make_channel()
    RuleLoader(list(rules)).install(archive)


async def deleted_ids(archive: Archive) -> list[int]:
    if archive.dialect == "postgresql":  # search there is not yet supported: the same rows
        rows = await archive.fetchall(
            "SELECT message_id FROM posts WHERE state = 'deleted' ORDER BY date DESC"
        )
        return [r[0] for r in rows]
    return [h.message_id for h in await search(archive, parse("is:deleted"))]


async def stats(archive: Archive) -> tuple[int, int]:
    (s,) = await channel_stats(archive)
    return s.deletions, s.missing


# ---------------------------------------------------------------------------- deletion states

DELETION_RULES = (
    Rule("evac", "эвакуация", notify=(1, 2)),
    Rule("evac-new", "эвакуация", notify=(3,), kinds=frozenset({"new"})),
)


async def test_missing_from_a_listing_is_not_a_deletion(
    archive: Archive, make_channel: MakeChannel
) -> None:
    await rules(archive, make_channel, *DELETION_RULES)
    await ingest(archive, [post()], source="web", alerts=True)
    before = await outbox(archive)
    assert await mark_missing(archive, CHANNEL_ID, [7], source="web") == 1
    assert await outbox(archive) == before  # nobody is told
    assert await deleted_ids(archive) == []
    h = await history(archive, "vsaldo", 7)
    assert (h.deleted, h.state, h.deleted_at) == (False, "missing", None)
    assert await stats(archive) == (0, 1)
    (ev,) = await events(archive, 7)
    assert (ev[1], ev[4], ev[5]) == ("missing", "listing", "not shown in the channel's listing")


async def test_a_confirmed_deletion_alerts_with_its_evidence(
    archive: Archive, make_channel: MakeChannel
) -> None:
    await rules(archive, make_channel, *DELETION_RULES)
    await ingest(archive, [post()], source="web", alerts=True)
    await mark_missing(archive, CHANNEL_ID, [7], source="web")
    assert await confirm_deleted(archive, CHANNEL_ID, [7], how="web_embed", alerts=True) == 1
    deleted = [a for a in await outbox(archive) if a[1] == "deleted"]
    assert [a[2] for a in deleted] == [1, 2]  # not 3: that rule wants new posts only
    (event_id,) = {a[4] for a in deleted}
    row = await archive.fetchone(
        "SELECT kind, how, evidence, source FROM post_events WHERE id = ?", (event_id,)
    )
    assert row is not None
    assert tuple(row) == ("deleted", "web_embed", 'the post page said "Post not found"', "web")
    state = await post_state(archive, 7)
    assert (state["state"], state["deleted_how"]) == ("deleted", "web_embed")
    assert state["deleted_evidence"] == 'the post page said "Post not found"'
    assert state["deleted_at"] is not None
    assert await deleted_ids(archive) == [7]
    h = await history(archive, "vsaldo", 7)
    assert (h.deleted, h.state, h.deleted_evidence) == (True, "deleted", state["deleted_evidence"])
    assert await stats(archive) == (1, 0)


@pytest.mark.parametrize("source", ["web", "telethon"])
async def test_a_deleted_post_read_again_is_restored_and_the_told_are_corrected(
    archive: Archive, make_channel: MakeChannel, source: str
) -> None:
    await rules(archive, make_channel, *DELETION_RULES)
    await ingest(archive, [post()], source="telethon", alerts=True)
    await confirm_deleted(archive, CHANNEL_ID, [7], how="recheck", alerts=True)
    # An export is a copy made in the past: it says nothing about the post existing now.
    await ingest(archive, [post()], source="export", alerts=True)
    assert (await post_state(archive, 7))["state"] == "deleted"
    assert await told(archive, "restored") == []

    stats_ = await ingest(archive, [post()], source=source, alerts=True)
    assert stats_.versions_added == 0
    state = await post_state(archive, 7)
    assert (state["state"], state["deleted_at"], state["deleted_how"]) == ("restored", None, None)
    assert await told(archive, "restored") == [1, 2]  # exactly those told of the deletion
    assert await kinds(archive, 7) == ["deleted", "restored"]
    assert await deleted_ids(archive) == []
    h = await history(archive, "vsaldo", 7)
    assert (h.deleted, h.state) == (False, "restored")
    assert [e.kind for e in h.events] == ["deleted", "restored"]  # the deletion stays in it
    assert await stats(archive) == (0, 0)

    # Deleted again after the restore: a new event, a new alert; restored again: again.
    assert await confirm_deleted(archive, CHANNEL_ID, [7], how="live", alerts=True) == 1
    await ingest(archive, [post()], source=source, alerts=True)
    assert await told(archive, "deleted") == [1, 2, 1, 2]
    assert await told(archive, "restored") == [1, 2, 1, 2]
    assert await kinds(archive, 7) == ["deleted", "restored", "deleted", "restored"]
    ids = [a[4] for a in await outbox(archive) if a[1] in ("deleted", "restored")]
    assert len(set(ids)) == 4  # each alert names its own event


async def test_a_page_that_shows_the_post_restores_it_too(
    archive: Archive, make_channel: MakeChannel
) -> None:
    await rules(archive, make_channel, *DELETION_RULES)
    await ingest(archive, [post()], source="web", alerts=True)
    await confirm_deleted(archive, CHANNEL_ID, [7], how="web_embed", alerts=True)
    assert await confirm_present(archive, CHANNEL_ID, [7], how="web_embed", alerts=True) == 1
    assert (await post_state(archive, 7))["state"] == "restored"
    assert await told(archive, "restored") == [1, 2]


# ---------------------------------------------------------------------------- follow-ups


@pytest.mark.parametrize(
    ("follow_ups", "told_of_edit", "told_of_deletion"),
    [("all", [1, 2], [1, 2]), ("alerted", [], []), ("none", [], [])],
)
async def test_a_backfilled_matching_post_edited_later(
    archive: Archive,
    make_channel: MakeChannel,
    follow_ups: str,
    told_of_edit: list[int],
    told_of_deletion: list[int],
) -> None:
    """It arrived in the backfill (no alert); its edit, seen live, is a follow-up of the rule
    that matches it: everyone with "all", only the already alerted with "alerted"."""
    await rules(archive, make_channel, Rule("evac", "эвакуация", (1, 2), follow_ups=follow_ups))
    await ingest(archive, [post()], source="telethon", alerts=False)
    await ingest(archive, [post(EVAC + ": автобусы", edited=10)], source="telethon", alerts=True)
    assert await told(archive, "edited") == told_of_edit
    await confirm_deleted(archive, CHANNEL_ID, [7], how="live", alerts=True)
    assert await told(archive, "deleted") == told_of_deletion


async def test_alerted_follow_ups_reach_those_alerted_before(
    archive: Archive, make_channel: MakeChannel
) -> None:
    await rules(archive, make_channel, Rule("evac", "эвакуация", (1, 2), follow_ups="alerted"))
    await ingest(archive, [post()], source="telethon", alerts=True)
    await ingest(archive, [post(EVAC + ": автобусы", edited=10)], source="telethon", alerts=True)
    assert await told(archive, "edited") == [1, 2]


async def test_none_alerts_only_a_new_match(archive: Archive, make_channel: MakeChannel) -> None:
    await rules(archive, make_channel, Rule("evac", "эвакуация", (1, 2), follow_ups="none"))
    await ingest(archive, [post("Погода в Каменке")], source="telethon", alerts=False)
    await ingest(archive, [post(EVAC, edited=10)], source="telethon", alerts=True)
    assert await told(archive, "edited") == [1, 2]  # it matches now, and did not before
    await ingest(archive, [post(EVAC + "!", edited=20)], source="telethon", alerts=True)
    await ingest(archive, [post(EVAC, edited=30)], source="telethon", alerts=True)
    assert await told(archive, "edited") == [1, 2]  # edits of a matching post: nothing more
    assert await told(archive, "reverted") == []


async def test_a_post_that_matched_only_in_its_first_version_is_followed(
    archive: Archive, make_channel: MakeChannel
) -> None:
    await rules(archive, make_channel, Rule("evac", "эвакуация", notify=(1, 2)))
    await ingest(archive, [post()], source="telethon", alerts=False)
    await ingest(archive, [post("Всё спокойно", edited=10)], source="telethon", alerts=True)
    await ingest(archive, [post("Всё спокойно, тишина", edited=20)], source="telethon", alerts=True)
    assert await told(archive, "edited") == [1, 2, 1, 2]
    await ingest(archive, [post("Всё спокойно", edited=30)], source="telethon", alerts=True)
    assert await told(archive, "reverted") == [1, 2]
    assert await current_index(archive, 7) == 2


def test_follow_ups_is_validated_with_the_key_named(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[[rules]]\nname = "evac"\nquery = "эвакуация"\nfollow_ups = "alerted"\n'
        '[[rules]]\nname = "bus"\nquery = "автобус"\n',
        encoding="utf-8",
    )
    evac, bus = load_settings(path, env={}).rules
    assert (evac.follow_ups, bus.follow_ups) == ("alerted", "all")
    path.write_text(
        '[[rules]]\nname = "evac"\nquery = "эвакуация"\nfollow_ups = "sometimes"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    message = str(err.value)
    assert "rules[0] (evac).follow_ups" in message and "'sometimes'" in message
    assert "all, alerted, none" in message and "\n" not in message
