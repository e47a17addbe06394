"""One channel's share of a web pass: its pages, re-reads, confirmations and rotation.

A :class:`ChannelPass` holds what one pass knows about one channel. Its four phases
(:meth:`ChannelPass.phase`) are async generators that yield after every request, so the pass
(:mod:`archiver.sources.web.sync`) can take turns between channels, one request each, in the
order of the budget: new posts, recent re-reads, confirmations, rotation.

- **new**: the newest page, then ``?before=<oldest id seen>`` down to the high-water mark
  (on the first pass: down to the backfill limit, resumable through ``backfill_low``);
- **recent**: on, down to the posts ``[recheck] recent_days`` old;
- **confirm**: the channel's ``missing`` posts, the longest-unchecked first, each on its own
  embed page: "Post not found" confirms the deletion, the post itself is ingested, anything
  else leaves it missing for a later pass;
- **rotation**: from the channel's re-read cursor down, ``rotation_quota`` posts a pass, so
  the whole channel is re-read every ``[recheck] full_recheck_days``.

Every listing page goes through :meth:`ChannelPass._trust` first: ids at or above the
``before`` asked for, and runs of ids far from the rest of the page (:data:`JUMP`), are not
believed until the post's embed page shows the post. The high-water mark moves only over ids
read in order, and a page with anything unbelieved marks nothing missing. A first pass marks
nothing missing at all.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from archiver.config import Backfill
from archiver.errors import SourceError
from archiver.evidence.capture import Raw
from archiver.models import ChannelInfo, IngestStats, Post
from archiver.record.reread import pass_interval, rotation_quota
from archiver.sources.web.client import TmeClient
from archiver.sources.web.page import EmbedPage, WebPage, is_derived_id
from archiver.store.archive import Archive
from archiver.store.channels import (
    ChannelRow,
    advance_reread,
    get_reread,
    rotation_counts,
    set_cursor,
    upsert_channel,
)
from archiver.store.deletions import (
    confirm_deleted,
    confirm_present,
    mark_missing,
    missing_ids,
    note_checked,
)
from archiver.store.ingest import ingest

log = logging.getLogger(__name__)

SOURCE = "web"
# Ids further apart than this on one page split it into runs; a run away from the page's
# median is checked on its embed page before it is believed. A t.me/s page shows about 20
# consecutive messages (album items count), so a gap this wide means 50 posts deleted in a
# row, or an id that does not belong there (a mirror, a forwarded or pinned post).
JUMP = 50
PAGE_POSTS = 20  # posts a listing page shows
CONFIRM_PER_PASS = 100  # missing posts of one channel looked at per pass (the budget decides)
EVIDENCE = 'the post page said "Post not found"'
EMBED = "web_embed"  # how a deletion or a presence was established: the post's own page


@dataclass(frozen=True, slots=True)
class _Trusted:
    """What of a page is believed."""

    posts: tuple[Post, ...]  # to ingest
    shown: frozenset[int]  # believed shown ids
    low: int | None  # the lowest id of the page's contiguous body: where paging goes on
    high: int | None  # the highest believed id
    consistent: bool  # nothing on the page was disbelieved
    lies: int = 0  # ids at or above the ``before`` asked for
    capture: Raw | None = None  # the page's raw answer (the log's evidence of what it showed)

    @property
    def oldest(self) -> datetime | None:
        return min((p.date for p in self.posts), default=None)


class _Limit:
    """The backfill limit of a first pass: the newest N posts, or posts since a date."""

    def __init__(
        self, backfill: Backfill, now: datetime, already: int, skip: tuple[int, int] | None
    ) -> None:
        self.count = backfill.count if backfill.kind == "count" else None
        age = backfill.age if backfill.kind == "age" else None
        self.cutoff = now - age if age is not None else None
        self.taken = already
        self.skip = skip  # ids counted in ``already`` (a resumed pass re-reads a few)

    def take(self, posts: list[Post]) -> tuple[list[Post], bool]:
        """The posts of a page (ascending) within the limit, and whether the limit is reached."""
        done = False
        if self.cutoff is not None:
            kept = [p for p in posts if p.date >= self.cutoff]
            done = len(kept) < len(posts)
            posts = kept
        if self.count is not None:
            room = max(self.count - self.taken, 0)
            if len(posts) >= room:
                posts = posts[len(posts) - room :] if room else []
                done = True
        lo, hi = self.skip or (1, 0)
        self.taken += sum(1 for p in posts if not lo <= p.message_id <= hi)
        return posts, done


class ChannelPass:
    """One channel in one pass. ``username``: the address the config gives (lower case)."""

    def __init__(
        self,
        archive: Archive,
        client: TmeClient,
        username: str,
        row: ChannelRow | None,
        backfill: Backfill,
        *,
        now: datetime,
        recent: timedelta,
        period: timedelta,
    ) -> None:
        self.archive = archive
        self.client = client
        self.username = username
        self.post_name = username  # the name in data-post (another address may show another)
        self.row = row
        self.backfill = backfill
        self.now = now
        self.recent = recent
        self.period = period
        self.channel_id: int | None = row.id if row is not None else None
        self._adopt(row)
        self.status = "pending"  # pending | ok | error
        self.error: str | None = None
        self.stopped: str | None = None
        self.pages = 0
        self.stats = IngestStats()
        self.missing = 0  # marked missing from the listing this pass
        self.deleted = 0  # deletions confirmed by the embed page
        self.present = 0  # missing posts the embed page showed
        self.unknown = 0  # embed pages that said neither
        self.requests: dict[str, int] = {}
        self.done: set[str] = set()  # phases finished
        self.chain_low: int | None = None  # lowest believed id of newest -> older pages
        self.chain_oldest: datetime | None = None  # date of the oldest post on the last of them
        self.floor: int | None = None  # the channel's oldest archived id
        self.max_seen = 0
        self._probed: dict[int, EmbedPage] = {}

    def _adopt(self, row: ChannelRow | None) -> None:
        self.row = row
        self.backfilled = row is not None and row.backfilled
        self.was_backfilled = self.backfilled  # at the start of this pass
        self.alerts = self.backfilled  # none from the first pass
        self.old_high = row.high_water if row is not None else 0
        self.resume_low = row.backfill_low if row is not None and not self.backfilled else None

    # --- the phases ----------------------------------------------------------------------

    def phase(self, name: str) -> AsyncGenerator[None, None]:
        if name == "new":
            return self._new()
        if self.status != "ok" or not self.was_backfilled or "new" not in self.done:
            return _nothing()
        return {"recent": self._recent, "confirm": self._confirm, "rotation": self._rotation}[
            name
        ]()

    async def _new(self) -> AsyncGenerator[None, None]:
        newest = await self.client.fetch(self.username)
        cid = await self._resolve(newest)
        self.status = "ok"
        if not self.was_backfilled:
            async for _ in self._first_pass(newest, cid):
                yield
        else:
            async for _ in self._walk(newest, stop_at=self.old_high):
                yield
            if self.stopped not in ("high_water", "channel_start"):
                raise SourceError(
                    f"@{self.username}: paging stopped ({self.stopped}) before reaching post "
                    f"{self.old_high}; posts in between may be missing until the next pass"
                )
            await set_cursor(self.archive, cid, high_water=self.max_seen or None)
        self.done.add("new")

    async def _first_pass(self, newest: WebPage, cid: int) -> AsyncGenerator[None, None]:
        """Down to the backfill limit. After an interruption (``backfill_low`` set), the new
        posts down to the high-water mark first, then on below ``backfill_low``."""
        low = self.resume_low
        resuming = low is not None and self.old_high > 0
        already = await self._archived_count(cid, low) if resuming else 0
        skip = (low or 0, self.old_high) if resuming else None
        limit = _Limit(self.backfill, self.now, already, skip)
        if low is not None and resuming:
            async for _ in self._walk(newest, stop_at=self.old_high, limit=limit):
                yield
            await set_cursor(self.archive, cid, high_water=self.max_seen or None)
            if self.stopped == "high_water":
                if low > 1:
                    log.info("web @%s: resuming the first pass below post %d", self.username, low)
                    older = await self.client.fetch(self.username, before=low)
                    async for _ in self._walk(older, stop_at=0, limit=limit, before=low, tail=True):
                        yield
                else:
                    self.stopped = "channel_start"
        else:
            async for _ in self._walk(newest, stop_at=0, limit=limit, tail=True):
                yield
        await set_cursor(self.archive, cid, backfilled=True)
        self.backfilled = True

    async def _walk(
        self,
        page: WebPage,
        *,
        stop_at: int,
        limit: _Limit | None = None,
        before: int | None = None,
        tail: bool = False,
    ) -> AsyncGenerator[None, None]:
        """``page`` and older pages until the body's oldest id is at or below ``stop_at``, the
        backfill limit, the channel's first post, or a page that does not move back.
        ``tail``: the first pass's cursor follows each page."""
        cid = self._cid()
        while True:
            trusted = await self._trust(page, before)
            low = trusted.low
            if low is None and trusted.lies:
                log.warning(
                    "web @%s: ?before=%d gave a page that does not move back: paging stopped",
                    self.username,
                    before,
                )
                self.stopped = "loop_guard"
                return
            if low is None:
                self.stopped = "channel_start"
                return
            done = await self._take(trusted, before, limit=limit)
            self.chain_low, self.chain_oldest = low, trusted.oldest
            if tail:
                await set_cursor(self.archive, cid, high_water=self.max_seen, backfill_low=low)
            yield
            if done:
                self.stopped = "backfill_limit"
                return
            if low <= 1:
                self.stopped = "channel_start"
                return
            if low <= stop_at:
                self.stopped = "high_water"
                return
            before = low
            page = await self.client.fetch(self.username, before=before)

    async def _recent(self) -> AsyncGenerator[None, None]:
        """On from where the new posts stopped, down to posts ``recent_days`` old."""
        cutoff = self.now - self.recent
        floor = await self._floor()
        low, oldest = self.chain_low, self.chain_oldest
        while low is not None and low > max(floor, 1) and (oldest is None or oldest >= cutoff):
            page = await self.client.fetch(self.username, before=low)
            trusted = await self._trust(page, low)
            if trusted.low is None:
                break  # the start of the channel, or a page that does not move back
            await self._take(trusted, low, floor=floor)
            low, oldest = trusted.low, trusted.oldest
            self.chain_low, self.chain_oldest = low, oldest
            yield
        self.done.add("recent")

    async def _confirm(self) -> AsyncGenerator[None, None]:
        """Each missing post on its own embed page (see the module docstring)."""
        cid = self._cid()
        for message_id in await missing_ids(self.archive, cid, limit=CONFIRM_PER_PASS):
            embed = await self._embed(message_id)
            await self._apply(message_id, embed)
            yield
        self.done.add("confirm")

    async def _rotation(self) -> AsyncGenerator[None, None]:
        """From the re-read cursor down, ``rotation_quota`` posts this pass. What this pass has
        already re-read (newest pages, recent pages) counts: the rotation goes on below it."""
        cid = self._cid()
        state = await get_reread(self.archive, cid)
        floor = await self._floor()
        top = state.cursor
        if self.chain_low is not None and (top is None or self.chain_low <= top):
            top = self.chain_low - 1  # this pass has just re-read everything above
        if top is None or top < max(floor, 1):  # the round reached the oldest post
            await advance_reread(self.archive, cid, cursor=None, now=self.now)
            self.done.add("rotation")
            return
        total, remaining = await rotation_counts(self.archive, cid, top)
        quota = rotation_quota(
            total=total,
            remaining=remaining,
            started_at=state.started_at,
            now=self.now,
            period=self.period,
            interval=pass_interval(
                self.row.last_sync_at if self.row is not None else None, self.now, self.period
            ),
        )
        if state.started_at is not None and quota < min(PAGE_POSTS, remaining):
            # On schedule: rotation_quota asks for at least one post a pass, and a page holds
            # about 20. Reading one every pass would run the round far ahead of its period (a
            # page per channel every 15 minutes); wait until a page's worth is due.
            self.done.add("rotation")
            return
        cursor = top
        read = 0
        while read < quota:
            before = cursor + 1
            page = await self.client.fetch(self.username, before=before)
            trusted = await self._trust(page, before)
            if trusted.low is None and trusted.lies:
                break  # a page that does not move back: the cursor stays
            if trusted.low is None or trusted.low <= floor:
                if trusted.low is not None:
                    await self._take(trusted, before, floor=floor)
                await advance_reread(self.archive, cid, cursor=None, now=self.now)
                yield
                break
            await self._take(trusted, before, floor=floor)
            read += len(trusted.posts)
            cursor = trusted.low - 1
            await advance_reread(self.archive, cid, cursor=cursor, now=self.now)
            yield
        self.done.add("rotation")

    # --- pages ---------------------------------------------------------------------------

    async def _trust(self, page: WebPage, before: int | None) -> _Trusted:
        """What of ``page`` to believe (see the module docstring)."""
        self.pages += 1
        ids = sorted(page.shown_ids)
        lies = [i for i in ids if before is not None and i >= before]
        if lies:
            log.warning(
                "web @%s: a page asked for posts below %d shows %d post(s) at or above it; "
                "not believed",
                self.username,
                before,
                len(lies),
            )
            ids = [i for i in ids if i not in lies]
        if not ids:
            return _Trusted((), frozenset(), None, None, not lies, len(lies))
        runs: list[list[int]] = [[ids[0]]]
        for i in ids[1:]:
            if i - runs[-1][-1] > JUMP:
                runs.append([])
            runs[-1].append(i)
        median = ids[len(ids) // 2]
        body = next(r for r in runs if r[0] <= median <= r[-1])
        dropped: set[int] = set()
        for run in runs:
            if run is body:
                continue
            probe = run[-1] if run[0] > body[-1] else run[0]
            embed = await self._embed(probe)
            if embed.status != "found":
                log.warning(
                    "web @%s: the page shows post(s) %d-%d far from the rest (%d-%d); post %d's "
                    "own page does not show it, so they are not believed",
                    self.username,
                    run[0],
                    run[-1],
                    body[0],
                    body[-1],
                    probe,
                )
                dropped.update(run)
        kept = frozenset(i for i in ids if i not in dropped)
        return _Trusted(
            posts=tuple(p for p in page.posts if p.message_id in kept),
            shown=kept,
            low=body[0],
            high=max(kept),
            consistent=not lies and not dropped,
            lies=len(lies),
            capture=page.capture,
        )

    async def _take(
        self,
        trusted: _Trusted,
        before: int | None,
        *,
        limit: _Limit | None = None,
        floor: int | None = None,
    ) -> bool:
        """Ingest what a page shows and mark missing what it should show and does not.
        Returns whether the backfill limit is reached."""
        cid = self._cid()
        posts = list(trusted.posts)
        done = False
        if limit is not None:
            posts, done = limit.take(posts)
        if floor is not None:
            posts = [p for p in posts if p.message_id >= floor]
        if posts:
            self.stats += await ingest(
                self.archive, posts, source=SOURCE, alerts=self.alerts, capture=trusted.capture
            )
        if trusted.high is not None:
            self.max_seen = max(self.max_seen, trusted.high)
        if self.was_backfilled and trusted.consistent and trusted.low is not None:
            self.missing += await self._mark_missing(cid, trusted, before)
        return done

    async def _mark_missing(self, cid: int, trusted: _Trusted, before: int | None) -> int:
        """Archived posts the page should show and does not: above its lowest id and below
        ``before`` (the newest page: any above its lowest id). Service posts are left alone
        (the preview hides some of them); so is a post whose own page showed it lately
        (``mark_missing`` skips it: the preview hides some posts for good)."""
        assert trusted.low is not None
        sql = (
            "SELECT message_id FROM posts WHERE channel_id = ? AND message_id > ?"
            " AND is_service = 0 AND state IN ('present', 'restored')"
        )
        params: tuple[int, ...] = (cid, trusted.low)
        if before is not None:
            sql += " AND message_id < ?"
            params += (before,)
        rows = await self.archive.fetchall(sql, params)
        gone = [r[0] for r in rows if r[0] not in trusted.shown]
        if not gone:
            return 0
        return await mark_missing(
            self.archive, cid, gone, source=SOURCE, at=self.now, capture=trusted.capture
        )

    # --- embed pages ---------------------------------------------------------------------

    async def _embed(self, message_id: int) -> EmbedPage:
        found = self._probed.get(message_id)
        if found is None:
            found = await self.client.fetch_embed(self.post_name, message_id, self._cid())
            self._probed[message_id] = found
        return found

    async def _apply(self, message_id: int, embed: EmbedPage) -> None:
        cid = self._cid()
        if embed.status == "not_found":
            self.deleted += await confirm_deleted(
                self.archive,
                cid,
                [message_id],
                how=EMBED,
                evidence=EVIDENCE,
                alerts=self.alerts,
                at=self.now,
                capture=embed.capture,
            )
        elif embed.status == "found" and embed.post is not None:
            # The state first (its event says the post's page showed it, which the next
            # listings' absences are judged against), then the content, for edits.
            post = embed.post
            self.present += await confirm_present(
                self.archive, cid, [message_id], how=EMBED, alerts=self.alerts, at=self.now,
                capture=embed.capture,
            )  # fmt: skip
            if not post.is_service and not any(m.kind == "other" for m in post.media):
                # (a placeholder for what the embed page cannot render proves the post exists,
                # not what it says)
                self.stats += await ingest(
                    self.archive, [post], source=SOURCE, alerts=self.alerts, capture=embed.capture
                )
        else:
            self.unknown += 1
            await note_checked(self.archive, cid, [message_id], at=self.now)
            log.info(
                "web @%s: post %d is still unconfirmed: %s", self.username, message_id, embed.reason
            )

    # --- the channel ---------------------------------------------------------------------

    def _cid(self) -> int:
        assert self.channel_id is not None
        return self.channel_id

    async def _resolve(self, page: WebPage) -> int:
        """The archive's id for the channel, and its header recorded (versioned by the store)."""
        info = page.channel
        assert info is not None  # fetch() was given the username
        if page.username:
            self.post_name = page.username
        row = self.row
        if row is None:
            found = await self.archive.fetchone("SELECT * FROM channels WHERE id = ?", (info.id,))
            row = ChannelRow.from_row(found) if found is not None else None  # renamed, or an alias
            if row is not None and (not page.channel_id_derived or is_derived_id(row.id)):
                self._adopt(row)
            else:
                row = None
        if row is not None and row.id != info.id:
            if page.channel_id_derived or is_derived_id(row.id):
                if not page.channel_id_derived:
                    log.warning(
                        "web @%s: the page gives id %d; the archive keeps its id %d",
                        self.username,
                        info.id,
                        row.id,
                    )
                info = replace(info, id=row.id)
            else:
                raise SourceError(
                    f"@{self.username}: this username now belongs to another channel (id "
                    f"{info.id}); the archive has it as channel {row.id}: check the channel "
                    "and update the config"
                )
        if row is not None and _unchanged(row, info):
            self.channel_id = row.id  # the header as archived: no write
            return row.id
        stored = await upsert_channel(self.archive, info, source=SOURCE)
        self.channel_id = stored.id
        return stored.id

    async def _archived_count(self, channel_id: int, low: int | None) -> int:
        """Posts a resumed first pass already took: those from ``backfill_low`` up."""
        row = await self.archive.fetchone(
            "SELECT count(*) FROM posts WHERE channel_id = ? AND message_id >= ?",
            (channel_id, low or 0),
        )
        return int(row[0]) if row is not None else 0

    async def _floor(self) -> int:
        if self.floor is None:
            row = await self.archive.fetchone(
                "SELECT min(message_id) FROM posts WHERE channel_id = ?", (self._cid(),)
            )
            self.floor = int(row[0]) if row is not None and row[0] is not None else 1
        return self.floor


def _unchanged(row: ChannelRow, info: ChannelInfo) -> bool:
    """Whether the page's header says what the archive holds (upsert_channel would write
    nothing: a None never overwrites a known value)."""
    return (
        row.id == info.id
        and (info.username is None or info.username.lower() == row.username)
        and info.title in (None, row.title)
        and info.description in (None, row.description)
        and info.subscribers in (None, row.subscribers)
    )


async def _nothing() -> AsyncGenerator[None, None]:
    return
    yield  # an async generator that ends at once
