"""The archive's schema, as an append-only list of migrations keyed on ``PRAGMA user_version``.

Never edit a migration that has shipped: append a new one. Times are UTC text
``YYYY-MM-DD HH:MM:SS`` (sortable, readable in Datasette). Channel ids are marked ids.

New versions are indexed by ``archiver.store.ingest`` in the same transaction (migration 2);
updates and deletions are kept in step by triggers. The index holds each version's normalised
words (``versions.words``); word forms are expanded in queries (migration 3).

``versions.id`` is a sort key, not a counter: ``unix(post date) << 32 | sequence``. It is also
the rowid of the FTS5 index, so "newest first" is the index's own rowid order and a search
reads only as many index entries as it shows.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the archive
    """
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT
    );

    CREATE TABLE channels (
        id INTEGER PRIMARY KEY,              -- marked id: -100 followed by the bare id
        username TEXT,
        title TEXT,
        description TEXT,
        subscribers INTEGER,
        access_hash INTEGER,                 -- Telethon: lets later runs skip ResolveUsername
        source TEXT NOT NULL,                -- telethon | web | export
        created_at TEXT NOT NULL,
        backfilled_at TEXT,                  -- first sync finished; NULL while backfilling
        high_water INTEGER NOT NULL DEFAULT 0,  -- highest message id archived by sync
        backfill_low INTEGER,                -- lowest id reached by an unfinished backfill
        last_sync_at TEXT,
        last_sync_ok_at TEXT,
        last_sync_status TEXT,               -- ok | error | flood_wait | skipped
        last_error TEXT,
        flood_wait_until TEXT
    );
    CREATE INDEX channels_username ON channels(username COLLATE NOCASE);

    CREATE TABLE channel_versions (
        id INTEGER PRIMARY KEY,
        channel_id INTEGER NOT NULL REFERENCES channels(id),
        seen_at TEXT NOT NULL,
        username TEXT,
        title TEXT,
        description TEXT,
        subscribers INTEGER
    );
    CREATE INDEX channel_versions_channel ON channel_versions(channel_id, id);

    CREATE TABLE posts (
        id INTEGER PRIMARY KEY,
        channel_id INTEGER NOT NULL REFERENCES channels(id),
        message_id INTEGER NOT NULL,
        date TEXT NOT NULL,
        first_seen_at TEXT NOT NULL,
        source TEXT NOT NULL,
        current_version_id INTEGER,
        version_count INTEGER NOT NULL DEFAULT 1,
        edited INTEGER NOT NULL DEFAULT 0,   -- more than one version, or marked edited
        views INTEGER,
        forwards INTEGER,
        replies INTEGER,
        reactions INTEGER,
        reactions_json TEXT,
        counts_at TEXT,
        media_kind TEXT,
        media_json TEXT,
        has_link INTEGER NOT NULL DEFAULT 0,
        fwd_from_id INTEGER,
        fwd_from_title TEXT,
        fwd_from_message_id INTEGER,
        reply_to INTEGER,
        grouped_id INTEGER,
        is_service INTEGER NOT NULL DEFAULT 0,
        service_action TEXT,
        deleted_at TEXT,
        deleted_how TEXT,                    -- live | recheck | web | manual
        UNIQUE (channel_id, message_id)
    );
    CREATE INDEX posts_date ON posts(date);

    CREATE TABLE versions (
        id INTEGER PRIMARY KEY,              -- unix(post date) << 32 | sequence: the sort key
        post_id INTEGER NOT NULL REFERENCES posts(id),
        text TEXT NOT NULL,
        entities TEXT,                       -- JSON [{"type","offset","length","url"?}], UTF-16
        edit_date TEXT,
        seen_at TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        source TEXT NOT NULL,
        raw TEXT,                            -- the source object as JSON (provenance)
        words TEXT NOT NULL,                 -- normalised words (phrases, prefixes)
        lemmas TEXT NOT NULL                 -- dictionary forms (bare words)
    );
    CREATE INDEX versions_post ON versions(post_id);

    CREATE VIRTUAL TABLE versions_fts USING fts5(
        words, lemmas, content="versions", content_rowid="id",
        tokenize="unicode61 remove_diacritics 0"
    );
    CREATE TRIGGER versions_ai AFTER INSERT ON versions BEGIN
        INSERT INTO versions_fts (rowid, words, lemmas) VALUES (new.id, new.words, new.lemmas);
    END;
    CREATE TRIGGER versions_ad AFTER DELETE ON versions BEGIN
        INSERT INTO versions_fts (versions_fts, rowid, words, lemmas)
        VALUES ('delete', old.id, old.words, old.lemmas);
    END;
    CREATE TRIGGER versions_au AFTER UPDATE ON versions BEGIN
        INSERT INTO versions_fts (versions_fts, rowid, words, lemmas)
        VALUES ('delete', old.id, old.words, old.lemmas);
        INSERT INTO versions_fts (rowid, words, lemmas) VALUES (new.id, new.words, new.lemmas);
    END;

    CREATE TABLE media_files (
        sha256 TEXT PRIMARY KEY,
        path TEXT NOT NULL,                  -- relative to the media folder
        size INTEGER NOT NULL,
        mime_type TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE post_media (
        post_id INTEGER NOT NULL REFERENCES posts(id),
        idx INTEGER NOT NULL,
        sha256 TEXT NOT NULL REFERENCES media_files(sha256),
        PRIMARY KEY (post_id, idx)
    );

    CREATE TABLE rules (
        id INTEGER PRIMARY KEY,
        owner INTEGER NOT NULL,              -- Telegram user id of the journalist
        name TEXT NOT NULL,
        query TEXT NOT NULL,
        channels TEXT NOT NULL DEFAULT '[]', -- JSON list of channel references
        notify TEXT NOT NULL DEFAULT '[]',   -- JSON list of chat ids; empty = the owner
        kinds TEXT NOT NULL DEFAULT '["new","edited","deleted"]',
        created_at TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1
    );

    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        post_id INTEGER NOT NULL REFERENCES posts(id),
        version_id INTEGER NOT NULL REFERENCES versions(id),
        prev_version_id INTEGER REFERENCES versions(id),
        recipient INTEGER NOT NULL,
        kind TEXT NOT NULL,                  -- new | edited | deleted
        rules TEXT NOT NULL,                 -- JSON list of rule names
        created_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',  -- pending | sent | failed
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        last_error TEXT,
        sent_at TEXT,
        tg_message_id INTEGER,
        UNIQUE (post_id, version_id, recipient, kind)
    );
    CREATE INDEX alerts_status ON alerts(status, id);
    CREATE INDEX alerts_post ON alerts(post_id, recipient);

    CREATE TABLE recipients (
        chat_id INTEGER PRIMARY KEY,
        active INTEGER NOT NULL DEFAULT 1,
        inactive_reason TEXT,
        changed_at TEXT NOT NULL
    );

    CREATE TABLE access (
        user_id INTEGER PRIMARY KEY,
        allowed INTEGER NOT NULL,            -- 1 allowed, 0 denied (overrides the config)
        changed_by INTEGER,
        changed_at TEXT NOT NULL
    );

    CREATE TABLE heartbeats (
        process TEXT PRIMARY KEY,            -- run | bot | sync
        pid INTEGER,
        at TEXT NOT NULL
    );
    """,
    # 2: ingest indexes new versions itself, in one executemany per batch: measured twice as
    # fast as the per-row insert trigger. The delete and update triggers stay, so the index
    # follows any other change to versions (Datasette, sqlite-utils, a hand edit).
    """
    DROP TRIGGER versions_ai;
    """,
    # 3: word forms move to the query side (archiver.text.forms): a bare word is searched as
    # all its forms, so posts are indexed as their words alone. The lemmas column and its
    # half of the index go: imports no longer run the analysers, and the index is smaller.
    # (ALTER TABLE DROP COLUMN fails on the comment after the last column: the table is
    # rebuilt instead, with foreign keys off while it is, see Archive._migrate.)
    """
    DROP TRIGGER versions_ad;
    DROP TRIGGER versions_au;
    DROP TABLE versions_fts;
    CREATE TABLE versions_new (
        id INTEGER PRIMARY KEY,              -- unix(post date) << 32 | sequence: the sort key
        post_id INTEGER NOT NULL REFERENCES posts(id),
        text TEXT NOT NULL,
        entities TEXT,                       -- JSON [{"type","offset","length","url"?}], UTF-16
        edit_date TEXT,
        seen_at TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        source TEXT NOT NULL,
        raw TEXT,                            -- the source object as JSON (provenance)
        words TEXT NOT NULL                  -- normalised words: the index's one column
    );
    INSERT INTO versions_new (id, post_id, text, entities, edit_date, seen_at, sha256, source,
                              raw, words)
    SELECT id, post_id, text, entities, edit_date, seen_at, sha256, source, raw, words
    FROM versions ORDER BY id;
    DROP TABLE versions;
    ALTER TABLE versions_new RENAME TO versions;
    CREATE INDEX versions_post ON versions(post_id);
    CREATE VIRTUAL TABLE versions_fts USING fts5(
        words, content="versions", content_rowid="id",
        tokenize="unicode61 remove_diacritics 0"
    );
    INSERT INTO versions_fts (versions_fts) VALUES ('rebuild');
    CREATE TRIGGER versions_ad AFTER DELETE ON versions BEGIN
        INSERT INTO versions_fts (versions_fts, rowid, words) VALUES ('delete', old.id, old.words);
    END;
    CREATE TRIGGER versions_au AFTER UPDATE ON versions BEGIN
        INSERT INTO versions_fts (versions_fts, rowid, words) VALUES ('delete', old.id, old.words);
        INSERT INTO versions_fts (rowid, words) VALUES (new.id, new.words);
    END;
    """,
    # 4: the record (docs/record.md). A version is any change of the content (text, formatting,
    # link targets, media identity, the web preview's HTML): its parts are kept per version.
    # Deletion is a claim with evidence: posts.state is present | missing (a listing did not
    # show it: not confirmed) | deleted (confirmed) | restored (seen again); deleted_at stays
    # the time of the confirmed deletion only. Every change after a post was first seen is an
    # event (post_events); alerts name the event they tell of, so a second revert or a second
    # deletion after a restore alerts again. Past web "deletions" were only a post missing
    # from a listing: they become missing, unconfirmed, until re-checked.
    """
    ALTER TABLE versions ADD COLUMN content_sig TEXT;   -- links|fmt|media|html; NULL: text only
    ALTER TABLE versions ADD COLUMN content_sha TEXT;   -- SHA-256 over every part
    ALTER TABLE posts ADD COLUMN state TEXT NOT NULL DEFAULT 'present';
    ALTER TABLE posts ADD COLUMN state_at TEXT;         -- when the state was established
    ALTER TABLE posts ADD COLUMN deleted_evidence TEXT; -- how the deletion was confirmed, in words
    ALTER TABLE posts ADD COLUMN checked_at TEXT;       -- last check of a missing post's page
    CREATE INDEX posts_state ON posts(channel_id, state) WHERE state != 'present';

    DROP TRIGGER versions_au;
    CREATE TRIGGER versions_au AFTER UPDATE OF words ON versions BEGIN
        INSERT INTO versions_fts (versions_fts, rowid, words) VALUES ('delete', old.id, old.words);
        INSERT INTO versions_fts (rowid, words) VALUES (new.id, new.words);
    END;

    CREATE TABLE post_events (
        id INTEGER PRIMARY KEY,
        post_id INTEGER NOT NULL REFERENCES posts(id),
        kind TEXT NOT NULL,  -- edited | late | reverted | missing | deleted | restored | present
        version_id INTEGER REFERENCES versions(id),  -- current after it (late: the one added)
        prev_version_id INTEGER REFERENCES versions(id),
        at TEXT NOT NULL,                    -- when telewatch observed it (UTC)
        source TEXT NOT NULL,                -- export | telethon | web | manual
        edit_date TEXT,                      -- Telegram's edit time, when the source gives one
        how TEXT,                 -- deletions: live | recheck | web_embed | listing | manual
        evidence TEXT,                       -- in words: 'the post page said "Post not found"'
        parts TEXT                           -- what changed: text,links,fmt,media,html
    );
    CREATE INDEX post_events_post ON post_events(post_id, id);

    UPDATE posts SET state = 'missing', state_at = deleted_at, deleted_at = NULL,
                     deleted_how = NULL
     WHERE deleted_at IS NOT NULL AND deleted_how = 'web';
    UPDATE posts SET state = 'deleted', state_at = deleted_at,
                     deleted_evidence = CASE deleted_how
                         WHEN 'live' THEN 'Telegram reported the deletion'
                         WHEN 'recheck' THEN 'Telegram returned no message for this id'
                         ELSE NULL END
     WHERE deleted_at IS NOT NULL;
    INSERT INTO post_events (post_id, kind, version_id, prev_version_id, at, source, edit_date,
                             parts)
    SELECT v.post_id, 'edited', v.id,
           (SELECT max(w.id) FROM versions w WHERE w.post_id = v.post_id AND w.id < v.id),
           v.seen_at, v.source, v.edit_date, 'text'
      FROM versions v
     WHERE v.id > (SELECT min(w.id) FROM versions w WHERE w.post_id = v.post_id)
     ORDER BY v.seen_at, v.id;
    INSERT INTO post_events (post_id, kind, version_id, at, source, how, evidence)
    SELECT id, state, current_version_id, state_at,
           CASE WHEN state = 'missing' THEN 'web' ELSE coalesce(deleted_how, 'manual') END,
           CASE WHEN state = 'missing' THEN 'listing' ELSE deleted_how END, deleted_evidence
      FROM posts WHERE state IN ('missing', 'deleted') ORDER BY state_at, id;

    CREATE TABLE alerts_new (
        id INTEGER PRIMARY KEY,
        post_id INTEGER NOT NULL REFERENCES posts(id),
        version_id INTEGER NOT NULL REFERENCES versions(id),
        prev_version_id INTEGER REFERENCES versions(id),
        recipient INTEGER NOT NULL,
        kind TEXT NOT NULL,                  -- new | edited | reverted | deleted | restored
        rules TEXT NOT NULL,                 -- JSON list of rule names
        created_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',  -- pending | sent | failed
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        last_error TEXT,
        sent_at TEXT,
        tg_message_id INTEGER,
        event_id INTEGER NOT NULL DEFAULT 0, -- post_events.id; 0 for a new post
        UNIQUE (post_id, version_id, recipient, kind, event_id)
    );
    INSERT INTO alerts_new (id, post_id, version_id, prev_version_id, recipient, kind, rules,
                            created_at, status, attempts, next_attempt_at, last_error, sent_at,
                            tg_message_id)
    SELECT id, post_id, version_id, prev_version_id, recipient, kind, rules, created_at, status,
           attempts, next_attempt_at, last_error, sent_at, tg_message_id
      FROM alerts ORDER BY id;
    DROP TABLE alerts;
    ALTER TABLE alerts_new RENAME TO alerts;
    CREATE INDEX alerts_status ON alerts(status, id);
    CREATE INDEX alerts_post ON alerts(post_id, recipient);

    ALTER TABLE channels ADD COLUMN reread_cursor INTEGER;  -- the rotation reads at or below it
    ALTER TABLE channels ADD COLUMN reread_started_at TEXT; -- when the current round began
    ALTER TABLE channels ADD COLUMN last_full_check_at TEXT; -- last round that reached the oldest

    CREATE TABLE watch_spans (               -- coverage: while checks came close enough together
        id INTEGER PRIMARY KEY,
        channel_id INTEGER NOT NULL REFERENCES channels(id),
        source TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT NOT NULL
    );
    CREATE INDEX watch_spans_channel ON watch_spans(channel_id, ended_at);
    CREATE TABLE channel_faults (            -- coverage: why a check failed
        id INTEGER PRIMARY KEY,
        channel_id INTEGER NOT NULL REFERENCES channels(id),
        at TEXT NOT NULL,
        status TEXT NOT NULL,                -- error | flood_wait | ...
        reason TEXT
    );
    CREATE INDEX channel_faults_channel ON channel_faults(channel_id, at);
    """,
    # 5: the bot (issues 15 and 16). A personal rule can be paused: by its owner (/pause), or
    # because its owner or its chat lost access (/deny, or removed from the config), kept so
    # that /allow brings it back; paused rules do not match. Mutes: a rule's alerts in one chat
    # are dropped until a time. Alerts gain the statuses sending (recorded before the
    # sendMessage call), unknown (the call may or may not have reached Telegram: never resent
    # blindly) and dropped (not sent on purpose: the reason is in last_error).
    """
    ALTER TABLE rules ADD COLUMN paused TEXT;
    CREATE TABLE mutes (
        chat_id INTEGER NOT NULL,
        rule TEXT NOT NULL,
        until TEXT NOT NULL,
        PRIMARY KEY (chat_id, rule)
    );
    """,
    # 6 (Telethon, issue 14): following channels on Telegram survives failures and restarts.
    # channel_status: why a configured channel cannot be resolved, joined or read, keyed on
    # the config's reference (a mistyped username has no channel id), and when to try again.
    # flood_waits: the account's flood waits per method with Telegram's deadline, checked
    # before every request by every process. request_counts: requests per account, method
    # and UTC day (the ResolveUsername budget). channels: whose access hash it is, the newest
    # id when following began (above it posts are new and alert), joins, the last
    # GetFullChannel and ResolveUsername. posts.unreadable: why a message could not be read
    # (kept raw-only, never skipped). Joins recorded in meta by the first version move here.
    """
    CREATE TABLE channel_status (
        ref TEXT PRIMARY KEY,                -- the channel as [[channels]] names it, lower case
        source TEXT NOT NULL,
        channel_id INTEGER,                  -- marked id, once resolved
        status TEXT NOT NULL,                -- ok | not_found | private | banned |
                                             -- too_many_channels | flood_wait | invalid | error
        reason TEXT,                         -- one line for people: what happened, what to do
        since TEXT NOT NULL,                 -- when this status began
        checked_at TEXT NOT NULL,            -- the last attempt
        retry_at TEXT,                       -- no request for this channel before then
        attempts INTEGER NOT NULL DEFAULT 0  -- failures in a row (the backoff)
    );
    CREATE TABLE flood_waits (
        account INTEGER NOT NULL,            -- Telegram user id of the logged-in account
        method TEXT NOT NULL,                -- e.g. contacts.ResolveUsername
        until TEXT NOT NULL,
        seconds INTEGER NOT NULL,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (account, method)
    );
    CREATE TABLE request_counts (
        account INTEGER NOT NULL,
        method TEXT NOT NULL,
        day TEXT NOT NULL,                   -- UTC date
        count INTEGER NOT NULL,
        PRIMARY KEY (account, method, day)
    );
    ALTER TABLE channels ADD COLUMN hash_account INTEGER;
    ALTER TABLE channels ADD COLUMN follow_from INTEGER;
    ALTER TABLE channels ADD COLUMN joined_at TEXT;
    ALTER TABLE channels ADD COLUMN full_checked_at TEXT;
    ALTER TABLE channels ADD COLUMN resolved_at TEXT;
    ALTER TABLE posts ADD COLUMN unreadable TEXT;
    UPDATE channels SET joined_at = (
        SELECT value FROM meta WHERE key = 'telethon.joined.' || channels.id
    );
    DELETE FROM meta WHERE key LIKE 'telethon.joined.%';
    """,
    # 7: a heartbeat says how its process ended, so `telewatch health` tells a stopped or failed
    # process from a running one (archiver.health): state running | stopped | failed, and a
    # note: what is off and why while running, the error after a failure.
    """
    ALTER TABLE heartbeats ADD COLUMN state TEXT NOT NULL DEFAULT 'running';
    ALTER TABLE heartbeats ADD COLUMN note TEXT;
    """,
    # 8 (bot, issue 16): everyday controls. quiet_hours: a chat's alerts created between
    # starts and ends (times of day in the display time zone; ends < starts spans midnight)
    # stay pending, unclaimed, until the quiet hours end, and then go out as one summary.
    # personal_digests: a chat's daily digest at a time of day (display time zone); claimed
    # is the due time of the last digest taken for sending, written before the send, so a
    # digest is never sent twice.
    """
    CREATE TABLE quiet_hours (
        chat_id INTEGER PRIMARY KEY,
        starts TEXT NOT NULL,                -- HH:MM
        ends TEXT NOT NULL                   -- HH:MM
    );
    CREATE TABLE personal_digests (
        chat_id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,                    -- HH:MM
        claimed TEXT                         -- UTC due time of the last digest sent (or sending)
    );
    """,
    # 9 (bot, issue 16): channels admins follow from the chat (/follow), beside the config's
    # [[channels]] (the config wins for a channel in both); the running archiver's sync pass
    # reads them each time, so no restart is needed.
    """
    CREATE TABLE followed_channels (
        ref TEXT PRIMARY KEY,                -- as [[channels]] would name it: username or id
        source TEXT NOT NULL,                -- web | telethon
        added_by INTEGER,                    -- the admin's user id
        added_at TEXT NOT NULL
    );
    """,
    # 10 (bot, issue 16): the language each user chose for the bot (/lang: en, uk, ru);
    # without a row, the bot speaks their Telegram client's language when it can.
    """
    CREATE TABLE user_langs (
        user_id INTEGER PRIMARY KEY,
        lang TEXT NOT NULL
    );
    """,
    # 11 (bot, issue 16): the language of a chat that chose none with /lang: a user's
    # Telegram client language_code (en, uk or ru; else en) as last seen when they talked to
    # the bot; a group's, that of the first allowed user who used the bot there. A group's
    # /lang (an admin's) is a user_langs row under the group's chat id.
    """
    CREATE TABLE seen_langs (
        chat_id INTEGER PRIMARY KEY,
        lang TEXT NOT NULL
    );
    """,
    # 12 (evidence, issue 19; docs/evidence.md): raw captures (content-addressed, zlib), the
    # hash-chained observation log (one entry per observation that changed the record, written
    # in the same transaction as the change) and its daily roots. The log of an existing
    # archive is rebuilt from posts, versions and post_events by Python in this migration's
    # transaction (archiver.store.archive runs archiver.evidence.backfill on the marker below).
    """
    CREATE TABLE captures (
        sha256 TEXT PRIMARY KEY,             -- of the uncompressed bytes
        media_type TEXT NOT NULL,            -- application/http;msgtype=response | application/json
        size INTEGER NOT NULL,               -- uncompressed bytes
        body BLOB NOT NULL,                  -- zlib
        first_at TEXT NOT NULL
    );
    CREATE TABLE observations (
        seq INTEGER PRIMARY KEY,             -- 1, 2, 3 ... no gaps
        at TEXT NOT NULL,                    -- when telewatch observed it (UTC)
        post_id INTEGER NOT NULL,
        channel_id INTEGER NOT NULL,
        message_id INTEGER NOT NULL,
        kind TEXT NOT NULL,  -- seen | edited | late | reverted | missing | deleted | restored
                             -- | present
        event_id INTEGER,                    -- post_events.id (NULL for 'seen')
        version_id INTEGER,
        source TEXT NOT NULL,
        content TEXT NOT NULL,               -- canonical JSON of what was observed
        content_sha TEXT NOT NULL,           -- sha256 of content (UTF-8)
        capture_sha TEXT,                    -- captures.sha256 or NULL
        prev_hash TEXT NOT NULL,
        entry_hash TEXT NOT NULL
    );
    CREATE INDEX observations_post ON observations(post_id, seq);
    CREATE INDEX observations_at ON observations(at);        -- the daily roots
    CREATE TABLE log_roots (
        day TEXT PRIMARY KEY,                -- UTC day YYYY-MM-DD
        seq INTEGER NOT NULL,                -- the day's last entry
        root_hash TEXT NOT NULL,             -- that entry's entry_hash
        tsa_url TEXT,
        tsa_token BLOB,                      -- RFC 3161 TimeStampResp over root_hash, or NULL
        made_at TEXT NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('evidence.backfill', 'pending');
    """,
    # Many Telegram accounts (docs/operations.md, Many accounts): which account follows each
    # Telethon channel (the key is the channel's reference as [[channels]] writes it, lower
    # case, as channel_status), and whether that account joined it. account_full: an account
    # Telegram refused a join to (CHANNELS_TOO_MUCH) takes no more channels than it had joined.
    """
    CREATE TABLE channel_accounts (
        channel TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        joined INTEGER NOT NULL DEFAULT 0,
        assigned_at TEXT NOT NULL
    );
    CREATE INDEX channel_accounts_account ON channel_accounts(account);
    CREATE TABLE account_full (
        account TEXT PRIMARY KEY,
        channel_limit INTEGER NOT NULL,      -- the channels it had joined when refused
        refused_channel TEXT NOT NULL,
        refused_at TEXT NOT NULL
    );
    """,
    # 14: workers and their leases (issue 18, docs/operations.md "Several workers"): a unit
    # of work (``account:<name>``, ``web:<channel key>``) is followed by the worker holding
    # its lease until ``expires_at``; times are UTC text with milliseconds
    """
    CREATE TABLE workers (
        name TEXT PRIMARY KEY,
        host TEXT,
        pid INTEGER,
        started_at TEXT NOT NULL,
        seen_at TEXT NOT NULL
    );
    CREATE TABLE leases (
        unit TEXT PRIMARY KEY,
        worker TEXT NOT NULL,                -- the holder, or the last one once expired
        acquired_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    """,
    # 15 (search on PostgreSQL, issue 18): nothing changes on SQLite (FTS5 keeps its index
    # apart). On PostgreSQL a version's tsvector stays in its row (see POSTGRES_MIGRATIONS).
    """
    -- nothing on SQLite
    """,
    # 16 (import on PostgreSQL, issue 18): nothing on SQLite. On PostgreSQL the search counts
    # are kept from each version's tsvector (see POSTGRES_MIGRATIONS).
    """
    -- nothing on SQLite
    """,
]


# PostgreSQL (docs/postgresql.md, Schema): a new PostgreSQL archive starts at the schema of
# migration archiver.store.pg_schema.BASELINE_VERSION in one script (pg_schema.BASELINE);
# each migration appended above after it needs its PostgreSQL form here, keyed on its number
# (1-based, as the versions count). A PostgreSQL archive refuses to open, naming the
# migration, while one is missing (tests/store/test_postgres.py checks the keys). Text
# columns there are TEXT COLLATE "C": byte order, as SQLite's BINARY.
def _pg_count_words() -> str:
    from archiver.store.pg_search import COUNT_WORDS

    return COUNT_WORDS.strip() + ";"


POSTGRES_MIGRATIONS: dict[int, str] = {
    11: """
    CREATE TABLE seen_langs (
        chat_id BIGINT PRIMARY KEY,
        lang TEXT COLLATE "C" NOT NULL
    );
    """,
    12: """
    CREATE TABLE captures (
        sha256 TEXT COLLATE "C" PRIMARY KEY,
        media_type TEXT COLLATE "C" NOT NULL,
        size BIGINT NOT NULL,
        body BYTEA NOT NULL,
        first_at TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE observations (
        seq BIGINT PRIMARY KEY,
        at TEXT COLLATE "C" NOT NULL,
        post_id BIGINT NOT NULL,
        channel_id BIGINT NOT NULL,
        message_id BIGINT NOT NULL,
        kind TEXT COLLATE "C" NOT NULL,
        event_id BIGINT,
        version_id BIGINT,
        source TEXT COLLATE "C" NOT NULL,
        content TEXT COLLATE "C" NOT NULL,
        content_sha TEXT COLLATE "C" NOT NULL,
        capture_sha TEXT COLLATE "C",
        prev_hash TEXT COLLATE "C" NOT NULL,
        entry_hash TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX observations_post ON observations(post_id, seq);
    CREATE INDEX observations_at ON observations(at);
    CREATE TABLE log_roots (
        day TEXT COLLATE "C" PRIMARY KEY,
        seq BIGINT NOT NULL,
        root_hash TEXT COLLATE "C" NOT NULL,
        tsa_url TEXT COLLATE "C",
        tsa_token BYTEA,
        made_at TEXT COLLATE "C" NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('evidence.backfill', 'pending');
    """,
    13: """
    CREATE TABLE channel_accounts (
        channel TEXT COLLATE "C" PRIMARY KEY,
        account TEXT COLLATE "C" NOT NULL,
        joined INTEGER NOT NULL DEFAULT 0,
        assigned_at TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX channel_accounts_account ON channel_accounts(account);
    CREATE TABLE account_full (
        account TEXT COLLATE "C" PRIMARY KEY,
        channel_limit INTEGER NOT NULL,
        refused_channel TEXT COLLATE "C" NOT NULL,
        refused_at TEXT COLLATE "C" NOT NULL
    );
    """,
    14: """
    CREATE TABLE workers (
        name TEXT COLLATE "C" PRIMARY KEY,
        host TEXT COLLATE "C",
        pid BIGINT,
        started_at TEXT COLLATE "C" NOT NULL,
        seen_at TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE leases (
        unit TEXT COLLATE "C" PRIMARY KEY,
        worker TEXT COLLATE "C" NOT NULL,
        acquired_at TEXT COLLATE "C" NOT NULL,
        expires_at TEXT COLLATE "C" NOT NULL
    );
    """,
    # A search tests versions.tsv row by row (archiver.store.pg_search): at about 1 KB it was
    # the widest column of a 3 KB row and went out of line to TOAST first, a lookup in the
    # TOAST table for every version tested. MAIN keeps it in the row and moves the text, raw
    # JSON and words out instead: testing the newest 20,000 versions 94 -> 55 ms, counting a
    # common word's versions 721 -> 173 ms at 100,000 posts (docs/benchmarks.md, "Scale").
    # Rows written before keep their layout until `VACUUM FULL versions` (docs/postgresql.md).
    15: """
    ALTER TABLE versions ALTER COLUMN tsv SET STORAGE MAIN;
    """,
    # The search counts' trigger function (archiver.store.pg_search.COUNT_WORDS) reads a
    # version's distinct words from its tsvector instead of splitting and sorting every word
    # of every row: the same counts, 5 times less work a batch (docs/benchmarks.md, "Import
    # on PostgreSQL"). Nothing stored changes.
    16: _pg_count_words(),
}
