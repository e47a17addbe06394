"""Schema 4 (the record) on an archive made by the previous telewatch: versions and deletion
marks kept; past web "deletions" (a post a listing did not show) become missing, unconfirmed;
every later version gets its event; alerts keep their rows; and the archive works on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conftest import CHANNEL_ID

from archiver.models import Post
from archiver.query import parse
from archiver.record.content import text_sha as sha
from archiver.store.archive import Archive
from archiver.store.ingest import ingest
from archiver.store.schema import MIGRATIONS
from archiver.store.search import channel_stats, history, search
from archiver.text import words_text

D = "2024-05-01 12:00:00"
VERSIONS = [  # id, post, text, edit date, seen at, source
    (9, 1, "Объявлена эвакуация", None, D, "export"),
    (10, 1, "Эвакуация перенесена", "2024-05-01 13:00:00", "2024-05-01 13:05:00", "telethon"),
    (11, 1, "Эвакуация отменена", None, "2024-05-01 14:05:00", "web"),
    (20, 2, "Пост из листинга", None, D, "web"),
    (30, 3, "Удалён в эфире", None, D, "telethon"),
    (40, 4, "Удалён, проверено", None, D, "telethon"),
]


def _schema_3_archive(path: Path) -> None:
    """An archive as telewatch wrote it with schema 3: deletions as deleted_at/deleted_how
    (web included), versions by text, alerts unique per (post, version, recipient, kind)."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode = WAL")
    for script in MIGRATIONS[:3]:
        con.executescript(script)
    con.executescript(
        f"""
        PRAGMA user_version = 3;
        INSERT INTO channels (id, username, title, source, created_at)
        VALUES ({CHANNEL_ID}, 'vsaldo', 'Сальдо', 'web', '{D}');
        INSERT INTO posts (id, channel_id, message_id, date, first_seen_at, source,
                           current_version_id, version_count, edited, deleted_at, deleted_how)
        VALUES (1, {CHANNEL_ID}, 1, '{D}', '{D}', 'web', 11, 3, 1, NULL, NULL),
               (2, {CHANNEL_ID}, 2, '{D}', '{D}', 'web', 20, 1, 0,
                '2024-05-02 09:00:00', 'web'),
               (3, {CHANNEL_ID}, 3, '{D}', '{D}', 'telethon', 30, 1, 0,
                '2024-05-02 10:00:00', 'live'),
               (4, {CHANNEL_ID}, 4, '{D}', '{D}', 'telethon', 40, 1, 0,
                '2024-05-02 11:00:00', 'recheck');
        INSERT INTO alerts (id, post_id, version_id, prev_version_id, recipient, kind, rules,
                            created_at, status, sent_at, tg_message_id)
        VALUES (1, 1, 9, NULL, 42, 'new', '["evac"]', '{D}', 'sent', '{D}', 501),
               (2, 1, 10, 9, 42, 'edited', '["evac"]', '2024-05-01 13:05:00', 'pending',
                NULL, NULL),
               (3, 2, 20, NULL, 42, 'deleted', '["evac"]', '2024-05-02 09:00:00', 'sent',
                '2024-05-02 09:00:05', 502);
        """
    )
    con.executemany(
        "INSERT INTO versions (id, post_id, text, edit_date, seen_at, sha256, source, words)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(vid, pid, text, edit, seen, sha(text), source, words_text(text))
         for vid, pid, text, edit, seen, source in VERSIONS],
    )  # fmt: skip
    con.execute("INSERT INTO versions_fts (rowid, words) SELECT id, words FROM versions")
    con.commit()
    con.close()


async def test_migration_4_keeps_the_record_and_takes_back_web_deletions(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _schema_3_archive(path)
    archive = await Archive.open(path)
    try:
        assert await archive.fetchall("PRAGMA foreign_key_check") == []
        rows = await archive.fetchall(
            "SELECT message_id, state, state_at, deleted_at, deleted_how, deleted_evidence"
            " FROM posts ORDER BY message_id"
        )
        assert [tuple(r) for r in rows] == [
            (1, "present", None, None, None, None),
            (2, "missing", "2024-05-02 09:00:00", None, None, None),  # the web only hid it
            (3, "deleted", "2024-05-02 10:00:00", "2024-05-02 10:00:00", "live",
             "Telegram reported the deletion"),
            (4, "deleted", "2024-05-02 11:00:00", "2024-05-02 11:00:00", "recheck",
             "Telegram returned no message for this id"),
        ]  # fmt: skip
        versions = await archive.fetchall(
            "SELECT id, post_id, text, content_sig FROM versions ORDER BY id"
        )
        assert [(r[0], r[1], r[3]) for r in versions] == [
            (9, 1, None), (10, 1, None), (11, 1, None), (20, 2, None), (30, 3, None),
            (40, 4, None),
        ]  # fmt: skip
        events = await archive.fetchall(
            "SELECT post_id, kind, version_id, prev_version_id, at, source, how, evidence"
            " FROM post_events ORDER BY id"
        )
        assert [tuple(r) for r in events] == [
            (1, "edited", 10, 9, "2024-05-01 13:05:00", "telethon", None, None),
            (1, "edited", 11, 10, "2024-05-01 14:05:00", "web", None, None),
            (2, "missing", 20, None, "2024-05-02 09:00:00", "web", "listing", None),
            (3, "deleted", 30, None, "2024-05-02 10:00:00", "live", "live",
             "Telegram reported the deletion"),
            (4, "deleted", 40, None, "2024-05-02 11:00:00", "recheck", "recheck",
             "Telegram returned no message for this id"),
        ]  # fmt: skip
        alerts = await archive.fetchall(
            "SELECT id, post_id, version_id, prev_version_id, recipient, kind, status,"
            " tg_message_id, event_id FROM alerts ORDER BY id"
        )
        assert [tuple(r) for r in alerts] == [
            (1, 1, 9, None, 42, "new", "sent", 501, 0),
            (2, 1, 10, 9, 42, "edited", "pending", None, 0),
            (3, 2, 20, None, 42, "deleted", "sent", 502, 0),
        ]

        # Users see the migrated record: only confirmed deletions are deletions.
        assert [h.message_id for h in await search(archive, parse("is:deleted"))] == [4, 3]
        (s,) = await channel_stats(archive)
        assert (s.deletions, s.missing, s.edits) == (2, 1, 2)
        h = await history(archive, "vsaldo", 2)
        assert (h.deleted, h.state) == (False, "missing")
        h = await history(archive, "vsaldo", 1)
        assert [v.text for v in h.versions] == [
            "Объявлена эвакуация", "Эвакуация перенесена", "Эвакуация отменена",
        ]  # fmt: skip
        assert h.current == 3

        # And it works on: the web shows the missing post again; the current text read
        # again is no version; an older text read again is a revert.
        date = h.date
        await ingest(archive, [Post(CHANNEL_ID, 2, date, "Пост из листинга")], source="web",
                     alerts=True)  # fmt: skip
        await ingest(archive, [Post(CHANNEL_ID, 1, date, "Эвакуация отменена")], source="web",
                     alerts=True)  # fmt: skip
        state = await archive.fetchone("SELECT state FROM posts WHERE message_id = 2")
        assert state is not None and state[0] == "present"
        count = await archive.fetchone("SELECT count(*) FROM versions")
        assert count is not None and count[0] == 6
        await ingest(archive, [Post(CHANNEL_ID, 1, date, "Объявлена эвакуация")], source="web",
                     alerts=True)  # fmt: skip
        h = await history(archive, "vsaldo", 1)
        assert h.current == 1 and [e.kind for e in h.events][-1] == "reverted"
    finally:
        await archive.close()
