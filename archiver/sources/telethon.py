"""The Telethon source: channel resolution, the forward read, and each channel's isolation.

The only module (with its ``telethon_*`` siblings) that imports Telethon; everything read goes
through :func:`archiver.store.ingest.ingest` and the deletion claims of
:mod:`archiver.store.deletions`. Siblings: ``telethon_session`` (the client, ``login``,
``connect_client``), ``telethon_network`` (deadlines, bounded reconnects), ``telethon_ledger``
(the account's flood ledger), ``telethon_flood`` (flood waits, in one place),
``telethon_status`` (why a channel cannot be followed), ``telethon_resolve`` (access hashes
per account), ``telethon_convert`` (Message -> Post), ``telethon_ingest`` (posts, raw-only
unreadable ones, media), ``telethon_reread`` (the recent window, the rotation, the newest
page), ``telethon_live`` (the live listener). This module re-exports the public names of
the first ones.

- **Resolution, rarely.** A username is resolved with ``ResolveUsername`` (the request
  Telegram punishes most) only when the archive holds no access hash *of the logged-in
  account* for it: hashes are per account, so each is stored with the user id it belongs to.
  A ``CHANNEL_INVALID``/``PEER_ID_INVALID`` drops the hash and resolves once more (at most
  once a day per channel). Every resolution counts against the account's daily budget
  (:data:`~archiver.sources.telethon_ledger.RESOLVE_PER_DAY`). ``GetFullChannel`` (the
  description and subscriber count) is asked at most once a day per channel.
- **Forward read.** Each channel is read forward from its high-water mark
  (``iter_messages(min_id=high_water, reverse=True)``) in batches; each batch is one ingest
  transaction, and the cursor moves only after it commits, so a crash resumes with no
  duplicates and no holes. The first pass is the backfill: for ``count``/``age`` it starts at
  the matching lower bound (kept in ``backfill_low`` so a resumed first pass keeps it).
- **New and backfill.** When a channel is first followed, the id of its newest message is
  kept (``follow_from``): posts above it are new and alert at once, live or read, even while a
  days-long backfill of older history goes on; only history at or below it is backfill.
- **Unreadable messages** are stored raw-only (the source object kept, the post marked
  unreadable, counted in ``stats``), never skipped with the cursor past them.
- **Isolation.** Whatever Telegram answers for one channel (a mistyped username, a private
  channel, a ban, a long flood wait) becomes that channel's status with a reason and a time
  to try again (:mod:`archiver.sources.telethon_status`); nothing is sent for it before then,
  and the other channels go on. Only a lost login stops a pass.
- **Flood waits.** Every request passes the account's flood ledger first (also across
  processes); a wait up to ``[telegram] flood_wait_ceiling`` is slept and the read resumes
  from the committed cursor; a longer one makes the channel wait.
- **Media.** Metadata always; the ``[media] download`` kinds are fetched after their post is
  ingested and stored by :mod:`archiver.sources.media`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from telethon import errors, types

from archiver.config import Backfill, ChannelConfig, Settings
from archiver.errors import NotLoggedIn, SourceError
from archiver.models import IngestStats
from archiver.sources.result import ChannelSyncResult, SyncOptions
from archiver.sources.telethon_convert import channel_info
from archiver.sources.telethon_flood import FloodPolicy, FloodWaitTooLong
from archiver.sources.telethon_ingest import ingest_messages, store_media
from archiver.sources.telethon_ledger import FloodLedger
from archiver.sources.telethon_resolve import Resolver, resolve_channel
from archiver.sources.telethon_session import (
    LOGIN_LOST,
    NOT_LOGGED_IN,
    REVOKED,
    LoginPrompts,
    connect_client,
    ensure_ledger,
    login,
    make_client,
    session_path,
)
from archiver.sources.telethon_status import (
    DAY,
    JOIN_STATUSES,
    ChannelProblem,
    classify,
    translate,
)
from archiver.store.archive import Archive
from archiver.store.channels import ChannelRow, get_channel, record_sync, set_cursor, upsert_channel
from archiver.store.following import (
    ChannelStatus,
    Following,
    get_following,
    get_status,
    set_status,
    update_following,
)

__all__ = [
    "NOT_LOGGED_IN",
    "REVOKED",
    "SOURCE",
    "FloodPolicy",
    "FloodWaitTooLong",
    "LoginPrompts",
    "backfill_floor",
    "connect_client",
    "login",
    "make_client",
    "recheck_channel",
    "resolve_channel",
    "session_path",
    "store_media",
    "sync_telethon_channel",
]

log = logging.getLogger(__name__)

SOURCE = "telethon"
RESOLVE_AGAIN_AFTER = DAY  # a hash Telegram refused is resolved again at most this often

# ------------------------------------------------------------------------------------ sync


@dataclass
class _Pass:
    """One pass over one channel: what it needs and what it counts."""

    archive: Archive
    client: Any
    settings: Settings
    options: SyncOptions
    policy: FloodPolicy
    resolver: Resolver
    cfg: ChannelConfig
    row: ChannelRow
    peer: Any
    follow_from: int | None
    high_water: int  # committed: everything up to here is archived
    stats: IngestStats = field(default_factory=IngestStats)
    fetched: int = 0
    poison: int = 0
    media_stored: int = 0
    deleted: int = 0
    reread: int = 0

    @property
    def name(self) -> str:
        return str(self.cfg.ref)

    def is_new(self, message_id: int) -> bool:
        """A post published after following began: it alerts, backfill or not."""
        if self.row.backfilled and self.follow_from is None:
            return True  # followed before follow_from existed: everything since alerts
        return self.follow_from is not None and message_id > self.follow_from


async def _refresh_metadata(p: _Pass, messages: Sequence[Any]) -> None:
    """Title/username changes seen in the channel object that came with a page; a channel
    object that says this account left is noted for the live listener's join check."""
    chat = getattr(messages[-1], "chat", None)
    if not isinstance(chat, types.Channel):
        return
    info = channel_info(chat)
    if (info.title, info.username) != (p.row.title, p.row.username):
        p.row = await upsert_channel(p.archive, info, source=SOURCE)
    if chat.left and p.cfg.join:
        f = await get_following(p.archive, p.row.id)
        if f is not None and f.joined_at is not None:
            log.warning("channel %s: this account is no longer a member; joining again", p.name)
            await update_following(p.archive, p.row.id, joined_at=None)


async def _commit(p: _Pass, messages: list[Any]) -> None:
    """Ingest one batch (one transaction per kind), store its media, then move the cursor."""
    p.fetched += len(messages)
    stats, pairs, bad = await ingest_messages(
        p.archive, p.row.id, messages, is_new=p.is_new, now=p.options.now()
    )
    p.stats += stats
    p.poison += bad
    if pairs:
        p.media_stored += await store_media(
            p.archive, p.client, p.settings, p.options, p.policy, pairs
        )
    await _refresh_metadata(p, messages)
    top = max(m.id for m in messages)
    await set_cursor(p.archive, p.row.id, high_water=top)
    p.high_water = max(p.high_water, top)
    p.policy.progress()


async def _read_forward(p: _Pass) -> None:
    """Read from the committed cursor to the newest message. Restartable: a flood wait or a
    crash loses at most the uncommitted batch, which the next read fetches again."""
    batch: list[Any] = []
    async for msg in p.client.iter_messages(
        p.peer, min_id=p.high_water, reverse=True, wait_time=p.options.page_wait
    ):
        batch.append(msg)
        if len(batch) >= p.options.batch_size:
            await _commit(p, batch)
            batch = []
    if batch:
        await _commit(p, batch)


async def backfill_floor(client: Any, peer: Any, backfill: Backfill, now: datetime) -> int:
    """The id a first pass starts above: 0 for ``all``; below the N-th newest message for a
    count; the newest message older than the age limit for an age. One request at most."""
    if backfill.kind == "count":
        n = backfill.count or 0
        found = await client.get_messages(peer, limit=1, add_offset=max(n - 1, 0))
        if not found:
            return 0
        return int(found[0].id) if n == 0 else int(found[0].id) - 1
    if backfill.kind == "age":
        assert backfill.age is not None
        found = await client.get_messages(peer, limit=1, offset_date=now - backfill.age)
        return int(found[0].id) if found else 0
    return 0


async def start_following(p: _Pass) -> None:
    """The first time a channel is read: keep the id of its newest message (one request).
    Posts above it are new; at or below it, backfill."""
    if p.follow_from is not None or p.row.backfilled:
        return
    found = await p.policy.call(p.name, lambda: p.client.get_messages(p.peer, limit=1))
    p.follow_from = int(found[0].id) if found else 0
    await update_following(p.archive, p.row.id, follow_from=p.follow_from)
    log.info("channel %s: following from message %d (newer posts alert)", p.name, p.follow_from)


def _result(p: _Pass, started: float, **kw: Any) -> ChannelSyncResult:
    values: dict[str, Any] = {
        "channel": p.name,
        "source": SOURCE,
        "channel_id": p.row.id,
        "new_posts": p.stats.posts_added,
        "edits": p.stats.versions_added - p.stats.posts_added,
        "deletions": p.deleted,
        "fetched": p.fetched,
        "skipped_messages": p.poison,
        "media_stored": p.media_stored,
        "backfilled": p.row.backfilled,
        "high_water": p.high_water,
        "duration": time.monotonic() - started,
        "reread": p.reread,
    }
    values.update(kw)
    return ChannelSyncResult(**values)


def _waiting(name: str, row: ChannelRow | None, st: ChannelStatus) -> ChannelSyncResult:
    log.info("channel %s: %s, next try %s; no request sent", name, st.status, st.retry_at)
    return ChannelSyncResult(
        name,
        SOURCE,
        row.id if row is not None else st.channel_id,
        status=st.status,
        error=st.reason,
        backfilled=row is not None and row.backfilled,
        high_water=row.high_water if row is not None else 0,
        flood_wait_until=st.retry_at if st.status == "flood_wait" else None,
    )


async def open_pass(
    archive: Archive,
    client: Any,
    cfg: ChannelConfig,
    settings: Settings,
    opts: SyncOptions,
) -> tuple[_Pass | None, ChannelStatus | None]:
    """Everything a pass needs before its first read, or the status that says to wait."""
    ledger = await ensure_ledger(archive, client, opts.now)
    st = await get_status(archive, cfg.ref)
    if st is not None and not st.ok and st.status not in JOIN_STATUSES and st.waiting(opts.now()):
        return None, st
    policy = FloodPolicy(
        settings.telegram.flood_wait_ceiling, opts.sleeper, opts.max_flood_waits, opts.now
    )
    resolver = Resolver(archive, client, policy, ledger, opts.now)
    row, peer = await resolver.channel(cfg)
    f = await get_following(archive, row.id)
    p = _Pass(
        archive, client, settings, opts, policy, resolver, cfg, row, peer,
        f.follow_from if f is not None else None, row.high_water,
    )  # fmt: skip
    return p, st


async def _hash_refused(p: _Pass, f: Following | None) -> bool:
    """Telegram refused the stored access hash: drop it and resolve once more, unless this
    channel was resolved within a day (then the channel waits; see ``invalid``)."""
    await update_following(p.archive, p.row.id, access_hash=None, hash_account=None)
    now = p.options.now()
    if f is not None and f.resolved_at is not None and now - f.resolved_at < RESOLVE_AGAIN_AFTER:
        return False
    log.warning("channel %s: access hash refused; resolving again", p.name)
    row = await get_channel(p.archive, p.row.id)
    p.row, p.peer = await p.resolver.resolve(p.cfg, row)
    return True


async def run_channel(
    archive: Archive,
    client: Any,
    cfg: ChannelConfig,
    settings: Settings,
    options: SyncOptions | None,
    body: Callable[[_Pass], Awaitable[None]],
) -> ChannelSyncResult:
    """Resolve, honour the channel's status, run ``body``; a problem becomes the channel's
    status (and its result), never an exception: only a lost login raises."""
    opts = options or SyncOptions()
    started = time.monotonic()
    name = str(cfg.ref)
    now = opts.now()
    st: ChannelStatus | None = None
    p: _Pass | None = None
    row = await get_channel(archive, cfg.ref)
    try:
        p, st = await open_pass(archive, client, cfg, settings, opts)
        if p is None:
            assert st is not None
            return _waiting(name, row, st)
        row = p.row
        try:
            await body(p)
        except (errors.ChannelInvalidError, errors.PeerIdInvalidError):
            if not await _hash_refused(p, await get_following(archive, p.row.id)):
                raise
            await body(p)
    except NotLoggedIn:
        raise
    except LOGIN_LOST as exc:
        raise translate(name, exc) from None
    except OSError as exc:  # the connection dropped and Telethon's reconnects gave up
        hw = p.high_water if p is not None else (row.high_water if row else 0)
        err = SourceError(f"{name}: connection to Telegram lost ({exc}); resumes after {hw}")
        if row is not None:
            await record_sync(archive, row.id, status="error", error=str(err))
        raise err from None
    except (ChannelProblem, FloodWaitTooLong, errors.RPCError, SourceError) as exc:
        return await _failed(archive, cfg, row, p, st, exc, started, now)
    ledger: FloodLedger = client.ledger
    await set_status(
        archive, cfg.ref, source=SOURCE, status="ok", now=opts.now(), channel_id=p.row.id,
        keep=JOIN_STATUSES if cfg.join else (),
    )  # fmt: skip
    f = await get_following(archive, p.row.id)
    if f is not None and f.hash_account is None:
        await update_following(archive, p.row.id, hash_account=ledger.account)
    await record_sync(archive, p.row.id, status="ok")
    return _result(p, started)


async def _failed(
    archive: Archive,
    cfg: ChannelConfig,
    row: ChannelRow | None,
    p: _Pass | None,
    st: ChannelStatus | None,
    exc: BaseException,
    started: float,
    now: datetime,
) -> ChannelSyncResult:
    name = str(cfg.ref)
    if p is not None:
        row = p.row
    readable = row is not None and row.last_sync_ok_at is not None
    problem = classify(exc, now=now, attempts=st.attempts if st and not st.ok else 0,
                       was_readable=readable)  # fmt: skip
    new = await set_status(
        archive, cfg.ref, source=SOURCE, status=problem.status, reason=problem.reason,
        retry_at=problem.retry_at, now=now, channel_id=row.id if row is not None else None,
    )  # fmt: skip
    until = problem.retry_at if problem.status == "flood_wait" else None
    if row is not None:
        await record_sync(archive, row.id, status=problem.status, error=new.line(),
                          flood_wait_until=until)  # fmt: skip
    log.warning("channel %s", new.line())
    if p is not None:
        return _result(p, started, status=problem.status, error=problem.reason,
                       flood_wait_until=until)  # fmt: skip
    return ChannelSyncResult(
        name,
        SOURCE,
        row.id if row is not None else None,
        status=problem.status,
        error=problem.reason,
        backfilled=row is not None and row.backfilled,
        high_water=row.high_water if row is not None else 0,
        duration=time.monotonic() - started,
        flood_wait_until=until,
    )


async def read_new(p: _Pass) -> None:
    """From the high-water mark to the newest post; the first pass is the backfill."""
    first = not p.row.backfilled
    await start_following(p)
    if first:
        low = p.row.backfill_low
        if low is None:
            low = await p.policy.call(
                p.name,
                lambda: backfill_floor(p.client, p.peer, p.cfg.backfill, p.options.now()),
            )
            await set_cursor(p.archive, p.row.id, backfill_low=low)
            log.info("channel %s: backfill (%s) starts above message %d", p.name,
                     p.cfg.backfill, low)  # fmt: skip
        p.high_water = max(p.high_water, low)
    await p.policy.call(p.name, lambda: _read_forward(p))
    if first:
        await set_cursor(p.archive, p.row.id, high_water=p.high_water, backfilled=True)
        p.row = await get_channel(p.archive, p.row.id) or p.row
        log.info("channel %s: backfill complete at message %d", p.name, p.high_water)


async def sync_telethon_channel(
    archive: Archive,
    client: Any,
    cfg: ChannelConfig,
    settings: Settings,
    *,
    options: SyncOptions | None = None,
    reread: bool = True,
) -> ChannelSyncResult:
    """One sync of one channel: from its high-water mark to its newest post (the first pass
    is its backfill), then, with ``reread``, the recent window and the rotation's share
    (:mod:`archiver.sources.telethon_reread`), so that cron mode notices edits and deletions
    too. A channel that cannot be read is a result with its status, never an exception
    (only a lost login raises)."""
    from archiver.sources.telethon_reread import reread_channel

    async def body(p: _Pass) -> None:
        await read_new(p)
        if reread:
            await reread_channel(p)

    return await run_channel(archive, client, cfg, settings, options, body)


async def recheck_channel(
    archive: Archive,
    client: Any,
    cfg: ChannelConfig,
    settings: Settings,
    *,
    options: SyncOptions | None = None,
) -> ChannelSyncResult:
    """Re-read one channel's recent window and the rotation's share, by id (100 per
    request), and refresh its description at most daily (see
    :mod:`archiver.sources.telethon_reread`)."""
    from archiver.sources.telethon_reread import reread_channel

    async def body(p: _Pass) -> None:
        p.row = await p.resolver.full(p.row, p.peer)
        await reread_channel(p)

    return await run_channel(archive, client, cfg, settings, options, body)
