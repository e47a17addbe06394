"""The PostgreSQL archive's schema at migration 10 of :data:`archiver.store.schema.MIGRATIONS`,
in one script (docs/postgresql.md, Schema).

SQLite's schema grew by ten migrations; a new PostgreSQL archive is created at the schema they
end with, and from there follows :data:`~archiver.store.schema.POSTGRES_MIGRATIONS`. The tables
and columns are SQLite's, with the same names and the same values: integers are ``BIGINT``
(channel ids are marked ids, version ids ``unix << 32 | seq``), times stay UTC text
``YYYY-MM-DD HH:MM:SS`` so that comparisons and orderings are the same on both. SQLite's FTS5
index is not here: search on PostgreSQL is its own migration.

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
        key TEXT PRIMARY KEY,
        value TEXT
    );
    CREATE TABLE channels (
        id BIGINT PRIMARY KEY,              -- marked id: -100 followed by the bare id
        username TEXT,
        title TEXT,
        description TEXT,
        subscribers BIGINT,
        access_hash BIGINT,                 -- Telethon: lets later runs skip ResolveUsername
        source TEXT NOT NULL,                -- telethon | web | export
        created_at TEXT NOT NULL,
        backfilled_at TEXT,                  -- first sync finished; NULL while backfilling
        high_water BIGINT NOT NULL DEFAULT 0,  -- highest message id archived by sync
        backfill_low BIGINT,                -- lowest id reached by an unfinished backfill
        last_sync_at TEXT,
        last_sync_ok_at TEXT,
        last_sync_status TEXT,               -- ok | error | flood_wait | skipped
        last_error TEXT,
        flood_wait_until TEXT,
        reread_cursor BIGINT,
        reread_started_at TEXT,
        last_full_check_at TEXT,
        hash_account BIGINT,
        follow_from BIGINT,
        joined_at TEXT,
        full_checked_at TEXT,
        resolved_at TEXT
    );
    CREATE INDEX channels_username ON channels (lower(username));
    CREATE TABLE channel_versions (
        id BIGINT PRIMARY KEY,
        channel_id BIGINT NOT NULL REFERENCES channels(id),
        seen_at TEXT NOT NULL,
        username TEXT,
        title TEXT,
        description TEXT,
        subscribers BIGINT
    );
    CREATE INDEX channel_versions_channel ON channel_versions(channel_id, id);
    CREATE TABLE posts (
        id BIGINT PRIMARY KEY,
        channel_id BIGINT NOT NULL REFERENCES channels(id),
        message_id BIGINT NOT NULL,
        date TEXT NOT NULL,
        first_seen_at TEXT NOT NULL,
        source TEXT NOT NULL,
        current_version_id BIGINT,
        version_count BIGINT NOT NULL DEFAULT 1,
        edited BIGINT NOT NULL DEFAULT 0,   -- more than one version, or marked edited
        views BIGINT,
        forwards BIGINT,
        replies BIGINT,
        reactions BIGINT,
        reactions_json TEXT,
        counts_at TEXT,
        media_kind TEXT,
        media_json TEXT,
        has_link BIGINT NOT NULL DEFAULT 0,
        fwd_from_id BIGINT,
        fwd_from_title TEXT,
        fwd_from_message_id BIGINT,
        reply_to BIGINT,
        grouped_id BIGINT,
        is_service BIGINT NOT NULL DEFAULT 0,
        service_action TEXT,
        deleted_at TEXT,
        deleted_how TEXT,                    -- live | recheck | web | manual
        state TEXT NOT NULL DEFAULT 'present',
        state_at TEXT,
        deleted_evidence TEXT,
        checked_at TEXT,
        unreadable TEXT,
        UNIQUE (channel_id, message_id)
    );
    CREATE INDEX posts_date ON posts(date);
    CREATE TABLE media_files (
        sha256 TEXT PRIMARY KEY,
        path TEXT NOT NULL,                  -- relative to the media folder
        size BIGINT NOT NULL,
        mime_type TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE post_media (
        post_id BIGINT NOT NULL REFERENCES posts(id),
        idx BIGINT NOT NULL,
        sha256 TEXT NOT NULL REFERENCES media_files(sha256),
        PRIMARY KEY (post_id, idx)
    );
    CREATE TABLE rules (
        id BIGINT PRIMARY KEY,
        owner BIGINT NOT NULL,              -- Telegram user id of the journalist
        name TEXT NOT NULL,
        query TEXT NOT NULL,
        channels TEXT NOT NULL DEFAULT '[]', -- JSON list of channel references
        notify TEXT NOT NULL DEFAULT '[]',   -- JSON list of chat ids; empty = the owner
        kinds TEXT NOT NULL DEFAULT '["new","edited","deleted"]',
        created_at TEXT NOT NULL,
        active BIGINT NOT NULL DEFAULT 1,
        paused TEXT
    );
    CREATE TABLE recipients (
        chat_id BIGINT PRIMARY KEY,
        active BIGINT NOT NULL DEFAULT 1,
        inactive_reason TEXT,
        changed_at TEXT NOT NULL
    );
    CREATE TABLE access (
        user_id BIGINT PRIMARY KEY,
        allowed BIGINT NOT NULL,            -- 1 allowed, 0 denied (overrides the config)
        changed_by BIGINT,
        changed_at TEXT NOT NULL
    );
    CREATE TABLE heartbeats (
        process TEXT PRIMARY KEY,            -- run | bot | sync
        pid BIGINT,
        at TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'running',
        note TEXT
    );
    CREATE TABLE versions (
        id BIGINT PRIMARY KEY,              -- unix(post date) << 32 | sequence: the sort key
        post_id BIGINT NOT NULL REFERENCES posts(id),
        text TEXT NOT NULL,
        entities TEXT,                       -- JSON [{"type","offset","length","url"?}], UTF-16
        edit_date TEXT,
        seen_at TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        source TEXT NOT NULL,
        raw TEXT,                            -- the source object as JSON (provenance)
        words TEXT NOT NULL,                 -- normalised words: the index's one column
        content_sig TEXT,                    -- links|fmt|media|html; NULL: text only
        content_sha TEXT                     -- SHA-256 over every part
    );
    CREATE INDEX versions_post ON versions(post_id);
    CREATE INDEX posts_state ON posts(channel_id, state) WHERE state != 'present';
    CREATE TABLE post_events (
        id BIGINT PRIMARY KEY,
        post_id BIGINT NOT NULL REFERENCES posts(id),
        kind TEXT NOT NULL,  -- edited | late | reverted | missing | deleted | restored | present
        version_id BIGINT REFERENCES versions(id),  -- current after it (late: the one added)
        prev_version_id BIGINT REFERENCES versions(id),
        at TEXT NOT NULL,                    -- when telewatch observed it (UTC)
        source TEXT NOT NULL,                -- export | telethon | web | manual
        edit_date TEXT,                      -- Telegram's edit time, when the source gives one
        how TEXT,                 -- deletions: live | recheck | web_embed | listing | manual
        evidence TEXT,                       -- in words: 'the post page said "Post not found"'
        parts TEXT                           -- what changed: text,links,fmt,media,html
    );
    CREATE INDEX post_events_post ON post_events(post_id, id);
    CREATE TABLE alerts (
        id BIGINT PRIMARY KEY,
        post_id BIGINT NOT NULL REFERENCES posts(id),
        version_id BIGINT NOT NULL REFERENCES versions(id),
        prev_version_id BIGINT REFERENCES versions(id),
        recipient BIGINT NOT NULL,
        kind TEXT NOT NULL,                  -- new | edited | reverted | deleted | restored
        rules TEXT NOT NULL,                 -- JSON list of rule names
        created_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',  -- pending | sent | failed
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        last_error TEXT,
        sent_at TEXT,
        tg_message_id BIGINT,
        event_id BIGINT NOT NULL DEFAULT 0, -- post_events.id; 0 for a new post
        UNIQUE (post_id, version_id, recipient, kind, event_id)
    );
    CREATE INDEX alerts_status ON alerts(status, id);
    CREATE INDEX alerts_post ON alerts(post_id, recipient);
    CREATE TABLE watch_spans (               -- coverage: while checks came close enough together
        id BIGINT PRIMARY KEY,
        channel_id BIGINT NOT NULL REFERENCES channels(id),
        source TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT NOT NULL
    );
    CREATE INDEX watch_spans_channel ON watch_spans(channel_id, ended_at);
    CREATE TABLE channel_faults (            -- coverage: why a check failed
        id BIGINT PRIMARY KEY,
        channel_id BIGINT NOT NULL REFERENCES channels(id),
        at TEXT NOT NULL,
        status TEXT NOT NULL,                -- error | flood_wait | ...
        reason TEXT
    );
    CREATE INDEX channel_faults_channel ON channel_faults(channel_id, at);
    CREATE TABLE mutes (
        chat_id BIGINT NOT NULL,
        rule TEXT NOT NULL,
        until TEXT NOT NULL,
        PRIMARY KEY (chat_id, rule)
    );
    CREATE TABLE channel_status (
        ref TEXT PRIMARY KEY,                -- the channel as [[channels]] names it, lower case
        source TEXT NOT NULL,
        channel_id BIGINT,                  -- marked id, once resolved
        status TEXT NOT NULL,                -- ok | not_found | private | banned |
                                             -- too_many_channels | flood_wait | invalid | error
        reason TEXT,                         -- one line for people: what happened, what to do
        since TEXT NOT NULL,                 -- when this status began
        checked_at TEXT NOT NULL,            -- the last attempt
        retry_at TEXT,                       -- no request for this channel before then
        attempts BIGINT NOT NULL DEFAULT 0  -- failures in a row (the backoff)
    );
    CREATE TABLE flood_waits (
        account BIGINT NOT NULL,            -- Telegram user id of the logged-in account
        method TEXT NOT NULL,                -- e.g. contacts.ResolveUsername
        until TEXT NOT NULL,
        seconds BIGINT NOT NULL,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (account, method)
    );
    CREATE TABLE request_counts (
        account BIGINT NOT NULL,
        method TEXT NOT NULL,
        day TEXT NOT NULL,                   -- UTC date
        count BIGINT NOT NULL,
        PRIMARY KEY (account, method, day)
    );
    CREATE TABLE quiet_hours (
        chat_id BIGINT PRIMARY KEY,
        starts TEXT NOT NULL,                -- HH:MM
        ends TEXT NOT NULL                   -- HH:MM
    );
    CREATE TABLE personal_digests (
        chat_id BIGINT PRIMARY KEY,
        at TEXT NOT NULL,                    -- HH:MM
        claimed TEXT                         -- UTC due time of the last digest sent (or sending)
    );
    CREATE TABLE followed_channels (
        ref TEXT PRIMARY KEY,                -- as [[channels]] would name it: username or id
        source TEXT NOT NULL,                -- web | telethon
        added_by BIGINT,                    -- the admin's user id
        added_at TEXT NOT NULL
    );
    CREATE TABLE user_langs (
        user_id BIGINT PRIMARY KEY,
        lang TEXT NOT NULL
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
