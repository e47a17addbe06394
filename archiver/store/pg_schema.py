"""The PostgreSQL archive's schema at migration 10 of :data:`archiver.store.schema.MIGRATIONS`,
in one script (docs/postgresql.md, Schema).

SQLite's schema grew by ten migrations; a new PostgreSQL archive is created at the schema they
end with, and from there follows :data:`~archiver.store.schema.POSTGRES_MIGRATIONS`. The tables
and columns are SQLite's, with the same names and the same values: integers are ``BIGINT``
(channel ids are marked ids, version ids ``unix << 32 | seq``), times stay UTC text
``YYYY-MM-DD HH:MM:SS`` so that comparisons and orderings are the same on both. SQLite's FTS5
index is not here: search on PostgreSQL is its own migration.

Text columns compare and sort byte by byte (``COLLATE "C"``), as SQLite's ``BINARY`` does,
whatever the database's own collation: ``ORDER BY`` a name, ``<`` on times, ``lower()`` and
``ILIKE`` (ASCII only, as SQLite's ``NOCASE`` and ``LIKE``) give the same rows on both.

A row inserted without an id gets ``max(id) + 1``, as SQLite gives a rowid (the trigger
``telewatch_rowid``): ingest assigns post and event ids itself the same way, so both kinds of
insert can follow each other, and a migrated archive keeps its ids.
"""

from __future__ import annotations

from archiver.store import pg_search

BASELINE_VERSION = 10

# Tables whose rows may be inserted without an id.
ROWID_TABLES = (
    "channel_versions", "posts", "rules", "alerts", "post_events", "watch_spans",
    "channel_faults",
)  # fmt: skip

BASELINE = """
    CREATE TABLE meta (
        key TEXT COLLATE "C" PRIMARY KEY,
        value TEXT COLLATE "C"
    );
    CREATE TABLE channels (
        id BIGINT PRIMARY KEY,              -- marked id: -100 followed by the bare id
        username TEXT COLLATE "C",
        title TEXT COLLATE "C",
        description TEXT COLLATE "C",
        subscribers BIGINT,
        access_hash BIGINT,                 -- Telethon: lets later runs skip ResolveUsername
        source TEXT COLLATE "C" NOT NULL,                -- telethon | web | export
        created_at TEXT COLLATE "C" NOT NULL,
        backfilled_at TEXT COLLATE "C",  -- first sync finished; NULL while backfilling
        high_water BIGINT NOT NULL DEFAULT 0,  -- highest message id archived by sync
        backfill_low BIGINT,                -- lowest id reached by an unfinished backfill
        last_sync_at TEXT COLLATE "C",
        last_sync_ok_at TEXT COLLATE "C",
        last_sync_status TEXT COLLATE "C",               -- ok | error | flood_wait | skipped
        last_error TEXT COLLATE "C",
        flood_wait_until TEXT COLLATE "C",
        reread_cursor BIGINT,
        reread_started_at TEXT COLLATE "C",
        last_full_check_at TEXT COLLATE "C",
        hash_account BIGINT,
        follow_from BIGINT,
        joined_at TEXT COLLATE "C",
        full_checked_at TEXT COLLATE "C",
        resolved_at TEXT COLLATE "C"
    );
    CREATE INDEX channels_username ON channels (lower(username));
    CREATE TABLE channel_versions (
        id BIGINT PRIMARY KEY,
        channel_id BIGINT NOT NULL REFERENCES channels(id),
        seen_at TEXT COLLATE "C" NOT NULL,
        username TEXT COLLATE "C",
        title TEXT COLLATE "C",
        description TEXT COLLATE "C",
        subscribers BIGINT
    );
    CREATE INDEX channel_versions_channel ON channel_versions(channel_id, id);
    CREATE TABLE posts (
        id BIGINT PRIMARY KEY,
        channel_id BIGINT NOT NULL REFERENCES channels(id),
        message_id BIGINT NOT NULL,
        date TEXT COLLATE "C" NOT NULL,
        first_seen_at TEXT COLLATE "C" NOT NULL,
        source TEXT COLLATE "C" NOT NULL,
        current_version_id BIGINT,
        version_count BIGINT NOT NULL DEFAULT 1,
        edited BIGINT NOT NULL DEFAULT 0,   -- more than one version, or marked edited
        views BIGINT,
        forwards BIGINT,
        replies BIGINT,
        reactions BIGINT,
        reactions_json TEXT COLLATE "C",
        counts_at TEXT COLLATE "C",
        media_kind TEXT COLLATE "C",
        media_json TEXT COLLATE "C",
        has_link BIGINT NOT NULL DEFAULT 0,
        fwd_from_id BIGINT,
        fwd_from_title TEXT COLLATE "C",
        fwd_from_message_id BIGINT,
        reply_to BIGINT,
        grouped_id BIGINT,
        is_service BIGINT NOT NULL DEFAULT 0,
        service_action TEXT COLLATE "C",
        deleted_at TEXT COLLATE "C",
        deleted_how TEXT COLLATE "C",                    -- live | recheck | web | manual
        state TEXT COLLATE "C" NOT NULL DEFAULT 'present',
        state_at TEXT COLLATE "C",
        deleted_evidence TEXT COLLATE "C",
        checked_at TEXT COLLATE "C",
        unreadable TEXT COLLATE "C",
        UNIQUE (channel_id, message_id)
    );
    CREATE INDEX posts_date ON posts(date);
    CREATE TABLE media_files (
        sha256 TEXT COLLATE "C" PRIMARY KEY,
        path TEXT COLLATE "C" NOT NULL,                  -- relative to the media folder
        size BIGINT NOT NULL,
        mime_type TEXT COLLATE "C",
        created_at TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE post_media (
        post_id BIGINT NOT NULL REFERENCES posts(id),
        idx BIGINT NOT NULL,
        sha256 TEXT COLLATE "C" NOT NULL REFERENCES media_files(sha256),
        PRIMARY KEY (post_id, idx)
    );
    CREATE TABLE rules (
        id BIGINT PRIMARY KEY,
        owner BIGINT NOT NULL,              -- Telegram user id of the journalist
        name TEXT COLLATE "C" NOT NULL,
        query TEXT COLLATE "C" NOT NULL,
        channels TEXT COLLATE "C" NOT NULL DEFAULT '[]', -- JSON list of channel references
        notify TEXT COLLATE "C" NOT NULL DEFAULT '[]',   -- JSON list of chat ids; empty = the owner
        kinds TEXT COLLATE "C" NOT NULL DEFAULT '["new","edited","deleted"]',
        created_at TEXT COLLATE "C" NOT NULL,
        active BIGINT NOT NULL DEFAULT 1,
        paused TEXT COLLATE "C"
    );
    CREATE TABLE recipients (
        chat_id BIGINT PRIMARY KEY,
        active BIGINT NOT NULL DEFAULT 1,
        inactive_reason TEXT COLLATE "C",
        changed_at TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE access (
        user_id BIGINT PRIMARY KEY,
        allowed BIGINT NOT NULL,            -- 1 allowed, 0 denied (overrides the config)
        changed_by BIGINT,
        changed_at TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE heartbeats (
        process TEXT COLLATE "C" PRIMARY KEY,            -- run | bot | sync
        pid BIGINT,
        at TEXT COLLATE "C" NOT NULL,
        state TEXT COLLATE "C" NOT NULL DEFAULT 'running',
        note TEXT COLLATE "C"
    );
    CREATE TABLE versions (
        id BIGINT PRIMARY KEY,              -- unix(post date) << 32 | sequence: the sort key
        post_id BIGINT NOT NULL REFERENCES posts(id),
        text TEXT COLLATE "C" NOT NULL,
        entities TEXT COLLATE "C",  -- JSON [{"type","offset","length","url"?}], UTF-16
        edit_date TEXT COLLATE "C",
        seen_at TEXT COLLATE "C" NOT NULL,
        sha256 TEXT COLLATE "C" NOT NULL,
        source TEXT COLLATE "C" NOT NULL,
        raw TEXT COLLATE "C",                            -- the source object as JSON (provenance)
        words TEXT COLLATE "C" NOT NULL,                 -- normalised words: the index's one column
        content_sig TEXT COLLATE "C",                    -- links|fmt|media|html; NULL: text only
        content_sha TEXT COLLATE "C"                     -- SHA-256 over every part
    );
    CREATE INDEX versions_post ON versions(post_id);
    CREATE INDEX posts_state ON posts(channel_id, state) WHERE state != 'present';
    CREATE TABLE post_events (
        id BIGINT PRIMARY KEY,
        post_id BIGINT NOT NULL REFERENCES posts(id),
        -- edited | late | reverted | missing | deleted | restored | present
        kind TEXT COLLATE "C" NOT NULL,
        version_id BIGINT REFERENCES versions(id),  -- current after it (late: the one added)
        prev_version_id BIGINT REFERENCES versions(id),
        at TEXT COLLATE "C" NOT NULL,                    -- when telewatch observed it (UTC)
        source TEXT COLLATE "C" NOT NULL,                -- export | telethon | web | manual
        edit_date TEXT COLLATE "C",  -- Telegram's edit time, when the source gives one
        how TEXT COLLATE "C",  -- deletions: live | recheck | web_embed | listing | manual
        evidence TEXT COLLATE "C",  -- in words: 'the post page said "Post not found"'
        parts TEXT COLLATE "C"                           -- what changed: text,links,fmt,media,html
    );
    CREATE INDEX post_events_post ON post_events(post_id, id);
    CREATE TABLE alerts (
        id BIGINT PRIMARY KEY,
        post_id BIGINT NOT NULL REFERENCES posts(id),
        version_id BIGINT NOT NULL REFERENCES versions(id),
        prev_version_id BIGINT REFERENCES versions(id),
        recipient BIGINT NOT NULL,
        kind TEXT COLLATE "C" NOT NULL,  -- new | edited | reverted | deleted | restored
        rules TEXT COLLATE "C" NOT NULL,                 -- JSON list of rule names
        created_at TEXT COLLATE "C" NOT NULL,
        status TEXT COLLATE "C" NOT NULL DEFAULT 'pending',  -- pending | sent | failed
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_at TEXT COLLATE "C",
        last_error TEXT COLLATE "C",
        sent_at TEXT COLLATE "C",
        tg_message_id BIGINT,
        event_id BIGINT NOT NULL DEFAULT 0, -- post_events.id; 0 for a new post
        UNIQUE (post_id, version_id, recipient, kind, event_id)
    );
    CREATE INDEX alerts_status ON alerts(status, id);
    CREATE INDEX alerts_post ON alerts(post_id, recipient);
    CREATE TABLE watch_spans (               -- coverage: while checks came close enough together
        id BIGINT PRIMARY KEY,
        channel_id BIGINT NOT NULL REFERENCES channels(id),
        source TEXT COLLATE "C" NOT NULL,
        started_at TEXT COLLATE "C" NOT NULL,
        ended_at TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX watch_spans_channel ON watch_spans(channel_id, ended_at);
    CREATE TABLE channel_faults (            -- coverage: why a check failed
        id BIGINT PRIMARY KEY,
        channel_id BIGINT NOT NULL REFERENCES channels(id),
        at TEXT COLLATE "C" NOT NULL,
        status TEXT COLLATE "C" NOT NULL,                -- error | flood_wait | ...
        reason TEXT COLLATE "C"
    );
    CREATE INDEX channel_faults_channel ON channel_faults(channel_id, at);
    CREATE TABLE mutes (
        chat_id BIGINT NOT NULL,
        rule TEXT COLLATE "C" NOT NULL,
        until TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (chat_id, rule)
    );
    CREATE TABLE channel_status (
        ref TEXT COLLATE "C" PRIMARY KEY,  -- the channel as [[channels]] names it, lower case
        source TEXT COLLATE "C" NOT NULL,
        channel_id BIGINT,                  -- marked id, once resolved
        status TEXT COLLATE "C" NOT NULL,                -- ok | not_found | private | banned |
                                             -- too_many_channels | flood_wait | invalid | error
        reason TEXT COLLATE "C",  -- one line for people: what happened, what to do
        since TEXT COLLATE "C" NOT NULL,                 -- when this status began
        checked_at TEXT COLLATE "C" NOT NULL,            -- the last attempt
        retry_at TEXT COLLATE "C",                       -- no request for this channel before then
        attempts BIGINT NOT NULL DEFAULT 0  -- failures in a row (the backoff)
    );
    CREATE TABLE flood_waits (
        account BIGINT NOT NULL,            -- Telegram user id of the logged-in account
        method TEXT COLLATE "C" NOT NULL,                -- e.g. contacts.ResolveUsername
        until TEXT COLLATE "C" NOT NULL,
        seconds BIGINT NOT NULL,
        recorded_at TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (account, method)
    );
    CREATE TABLE request_counts (
        account BIGINT NOT NULL,
        method TEXT COLLATE "C" NOT NULL,
        day TEXT COLLATE "C" NOT NULL,                   -- UTC date
        count BIGINT NOT NULL,
        PRIMARY KEY (account, method, day)
    );
    CREATE TABLE quiet_hours (
        chat_id BIGINT PRIMARY KEY,
        starts TEXT COLLATE "C" NOT NULL,                -- HH:MM
        ends TEXT COLLATE "C" NOT NULL                   -- HH:MM
    );
    CREATE TABLE personal_digests (
        chat_id BIGINT PRIMARY KEY,
        at TEXT COLLATE "C" NOT NULL,                    -- HH:MM
        claimed TEXT COLLATE "C"  -- UTC due time of the last digest sent (or sending)
    );
    CREATE TABLE followed_channels (
        ref TEXT COLLATE "C" PRIMARY KEY,  -- as [[channels]] would name it: username or id
        source TEXT COLLATE "C" NOT NULL,                -- web | telethon
        added_by BIGINT,                    -- the admin's user id
        added_at TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE user_langs (
        user_id BIGINT PRIMARY KEY,
        lang TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE telewatch_schema (
        version BIGINT NOT NULL
    );
    CREATE FUNCTION telewatch_rowid() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.id IS NULL THEN
            EXECUTE format('SELECT coalesce(max(id), 0) + 1 FROM %I', TG_TABLE_NAME) INTO NEW.id;
        END IF;
        RETURN NEW;
    END
    $$;
    """ + "".join(
    f"CREATE TRIGGER {t}_rowid BEFORE INSERT ON {t}"
    " FOR EACH ROW EXECUTE FUNCTION telewatch_rowid();\n"
    for t in ROWID_TABLES
)
# search (archiver/store/pg_search.py): versions.tsv with its GIN index, and the vocabulary
BASELINE += pg_search.SEARCH_SCHEMA
