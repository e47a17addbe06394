"""The no-login source: public channels read through their web preview ``t.me/s/<username>``.

Two parts:

- :class:`TmeClient` fetches pages politely (an honest User-Agent, ``[web] delay_seconds``
  between requests, a per-request timeout, retries with exponential backoff on 429 and 5xx that
  honour ``Retry-After``) and turns every failure into a one-line :class:`SourceError` naming
  the channel. ``sleep`` and ``clock`` are injectable so tests never wait.
- :func:`sync_web_channel` reads the newest page, pages back with ``?before=<oldest id seen>``
  down to the channel's high-water mark (on the first pass: down to the backfill limit), and
  writes through the one ingest path. Each sync re-reads ``[web] recent_pages`` pages: a changed
  text becomes a new version; an archived post whose id lies strictly between the smallest and
  largest id a page shows, and which that page does not show, is marked deleted. A page that
  does not move back ends the paging (the loop guard).

:func:`sync_web_channels` runs many channels with one HTTP client; one channel failing is
logged, recorded for ``stats``, and the others go on. The parsing is in
:mod:`archiver.sources.webpage`; docs/web-source.md describes the whole source.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from urllib.parse import urlsplit

import httpx

from archiver.channels import parse_ref
from archiver.config import Backfill, ChannelConfig, WebSettings
from archiver.errors import SourceError, TelewatchError
from archiver.models import IngestStats, Post
from archiver.sources.webpage import WebPage, is_derived_id, parse_page
from archiver.store.archive import Archive, utcnow
from archiver.store.channels import ChannelRow, get_channel, record_sync, set_cursor, upsert_channel
from archiver.store.deletions import mark_deleted
from archiver.store.ingest import ingest, known_ids

log = logging.getLogger(__name__)

SOURCE = "web"
_REDIRECTS = (301, 302, 303, 307, 308)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class TmeClient:
    """An open HTTP client for the web preview. ``async with TmeClient(settings) as client``.

    ``transport`` replaces the network (tests pass an ``httpx.MockTransport``); ``sleep`` and
    ``clock`` replace waiting; ``backoff_base`` (seconds, doubled per retry, capped at
    ``backoff_max``) is used when an answer carries no ``Retry-After``. A ``Retry-After`` above
    ``retry_after_ceiling`` seconds is not waited out: the channel fails for this sync.
    """

    def __init__(
        self,
        settings: WebSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        retry_after_ceiling: float = 300.0,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._clock = clock
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._ceiling = retry_after_ceiling
        self._last: float | None = None  # when the last answer arrived (one host: base_url)
        self.requests = 0
        self._http = httpx.AsyncClient(
            base_url=settings.base_url,
            headers={"User-Agent": settings.user_agent, "Accept": "text/html"},
            timeout=httpx.Timeout(settings.timeout_seconds),
            follow_redirects=False,
            transport=transport,
        )

    async def __aenter__(self) -> TmeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    async def fetch(self, username: str, before: int | None = None) -> WebPage:
        """One page of ``/s/<username>`` (``?before=<id>``: posts older than that id)."""
        name = username.lower().lstrip("@")
        html = await self._get(name, f"/s/{name}", {"before": str(before)} if before else None)
        page = parse_page(html, username=name)
        if not page.has_history and not page.posts:
            raise SourceError(
                f"@{name}: t.me shows no web preview for this channel (no messages on the page); "
                'follow it with source = "telethon"'
            )
        return page

    async def _pace(self) -> None:
        if self._last is None:
            return
        wait = self.settings.delay_seconds - (self._clock() - self._last)
        if wait > 0:
            await self._sleep(wait)

    def _backoff(self, attempt: int) -> float:
        return float(min(self._backoff_max, self._backoff_base * (2**attempt)))

    async def _get(self, name: str, path: str, params: dict[str, str] | None) -> str:
        attempt = 0
        redirects = 0
        while True:
            await self._pace()
            try:
                self.requests += 1
                resp = await self._http.get(path, params=params)
            except httpx.TransportError as exc:
                self._last = self._clock()
                if attempt >= self.settings.max_retries:
                    raise SourceError(
                        f"@{name}: {self.settings.base_url} did not answer after {attempt + 1} "
                        f"tries ({type(exc).__name__}); check the network or [web] base_url"
                    ) from None
                wait = self._backoff(attempt)
                log.warning(
                    "web @%s: %s, retry %d in %.1fs", name, type(exc).__name__, attempt + 1, wait
                )
                await self._sleep(wait)
                attempt += 1
                continue
            self._last = self._clock()
            status = resp.status_code
            if status == 200:
                return resp.text
            if status in _REDIRECTS:
                target = urlsplit(resp.headers.get("location", ""))
                segs = [s for s in target.path.split("/") if s]
                if len(segs) == 2 and segs[0] == "s" and segs[1].lower() == name and redirects < 3:
                    redirects += 1
                    path = target.path
                    params = dict(httpx.QueryParams(target.query)) or None
                    continue
                raise SourceError(
                    f"@{name}: t.me has no web preview for this channel (it redirects to "
                    f"{target.path or '/'}): it may be private, unknown, not a channel, or have "
                    "its preview turned off; check the username or follow it with "
                    'source = "telethon"'
                )
            if status == 429 or 500 <= status < 600:
                if attempt >= self.settings.max_retries:
                    raise SourceError(
                        f"@{name}: t.me answered HTTP {status} {attempt + 1} times in a row; "
                        "giving up on this channel for this sync (it is retried next sync)"
                    )
                hinted = _retry_after(resp, self._clock)
                wait = hinted if hinted is not None else self._backoff(attempt)
                if wait > self._ceiling:
                    raise SourceError(
                        f"@{name}: t.me asks to wait {wait:.0f}s (HTTP {status}), more than "
                        f"{self._ceiling:.0f}s; try again later"
                    )
                log.warning("web @%s: HTTP %d, retry %d in %.1fs", name, status, attempt + 1, wait)
                await self._sleep(wait)
                attempt += 1
                continue
            if status == 404:
                raise SourceError(f"@{name}: t.me has no such page (HTTP 404); check the username")
            raise SourceError(f"@{name}: t.me answered HTTP {status}; check [web] base_url")


def _retry_after(resp: httpx.Response, clock: Clock) -> float | None:
    """Seconds from a ``Retry-After`` header (a number or an HTTP date), if any."""
    value = resp.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True, slots=True)
class WebSyncResult:
    """What one sync of one web channel did. ``stopped`` says why paging ended: ``high_water``
    (reached what was archived), ``backfill_limit``, ``channel_start``, ``loop_guard``."""

    username: str
    channel_id: int | None = None
    status: str = "ok"  # ok | error
    error: str | None = None
    pages: int = 0
    stats: IngestStats = field(default_factory=IngestStats)
    deleted: int = 0
    first_pass: bool = False  # this sync was (part of) the channel's first pass
    backfilled: bool = False  # the first pass is complete (before or by this sync)
    stopped: str | None = None


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


class _Sync:
    """The state of one sync of one channel."""

    def __init__(
        self,
        archive: Archive,
        client: TmeClient,
        username: str,
        row: ChannelRow | None,
        backfill: Backfill,
        now: datetime,
    ) -> None:
        self.archive = archive
        self.client = client
        self.username = username
        self.row = row
        self.backfill = backfill
        self.now = now
        self.backfilled = row is not None and row.backfilled
        self.alerts = self.backfilled  # none from the first pass
        self.old_high = row.high_water if row is not None else 0
        self.resume_low = row.backfill_low if row is not None and not row.backfilled else None
        self.channel_id: int | None = row.id if row is not None else None
        self.pages = 0
        self.stats = IngestStats()
        self.deleted = 0
        self.max_seen = 0
        self.limit: _Limit | None = None

    async def run(self) -> WebSyncResult:
        newest = await self.client.fetch(self.username)
        cid = await self._resolve(newest)
        stopped: str
        if self.backfilled:
            stopped = await self._walk(
                newest, stop_at=self.old_high, min_pages=self.client.settings.recent_pages
            )
            if stopped in ("high_water", "channel_start"):
                await set_cursor(self.archive, cid, high_water=self.max_seen)
            else:
                raise SourceError(
                    f"@{self.username}: paging stopped ({stopped}) before reaching post "
                    f"{self.old_high}; posts in between may be missing until the next sync"
                )
        else:
            stopped = await self._first_pass(newest, cid)
        log.info(
            "web @%s: %d page(s), %d new, %d new version(s), %d deleted, stopped at %s",
            self.username,
            self.pages,
            self.stats.posts_added,
            self.stats.versions_added - self.stats.posts_added,
            self.deleted,
            stopped,
        )
        return WebSyncResult(
            username=self.username,
            channel_id=cid,
            pages=self.pages,
            stats=self.stats,
            deleted=self.deleted,
            first_pass=not self.alerts,
            backfilled=self.backfilled,
            stopped=stopped,
        )

    async def _first_pass(self, newest: WebPage, cid: int) -> str:
        """Down to the backfill limit. After a crash (``backfill_low`` set) read the new posts
        down to the high-water mark, then go on below ``backfill_low``."""
        low = self.resume_low
        resuming = low is not None and self.old_high > 0
        already = await self._archived_count(cid, low) if resuming else 0
        skip = (low or 0, self.old_high) if resuming else None
        self.limit = _Limit(self.backfill, self.now, already, skip)
        if low is not None and resuming:
            stopped = await self._walk(newest, stop_at=self.old_high, min_pages=1)
            await set_cursor(self.archive, cid, high_water=self.max_seen or None)
            if stopped == "high_water":
                if low > 1:
                    log.info("web @%s: resuming the first pass below post %d", self.username, low)
                    older = await self.client.fetch(self.username, before=low)
                    stopped = await self._walk(older, stop_at=0, min_pages=1, tail=True)
                else:
                    stopped = "channel_start"
        else:
            stopped = await self._walk(newest, stop_at=0, min_pages=1, tail=True)
        await set_cursor(self.archive, cid, backfilled=True)
        self.backfilled = True
        return stopped

    async def _resolve(self, page: WebPage) -> int:
        """The archive's id for the channel, and its header recorded (versioned by the store)."""
        info = page.channel
        assert info is not None  # fetch() was given the username
        row = self.row
        if row is None and not page.channel_id_derived:
            row = await get_channel(self.archive, info.id)  # the same channel, renamed
            if row is not None:
                self._adopt(row)
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
        stored = await upsert_channel(self.archive, info, source=SOURCE)
        self.channel_id = stored.id
        return stored.id

    def _adopt(self, row: ChannelRow) -> None:
        self.row = row
        self.backfilled = row.backfilled
        self.alerts = row.backfilled
        self.old_high = row.high_water
        self.resume_low = None if row.backfilled else row.backfill_low

    async def _archived_count(self, channel_id: int, low: int | None) -> int:
        """Posts a resumed first pass already took: those from ``backfill_low`` up."""
        row = await self.archive.fetchone(
            "SELECT count(*) FROM posts WHERE channel_id = ? AND message_id >= ?",
            (channel_id, low or 0),
        )
        return int(row[0]) if row is not None else 0

    async def _walk(
        self, page: WebPage, *, stop_at: int, min_pages: int, tail: bool = False
    ) -> str:
        """Ingest ``page`` and older pages until the oldest id shown is at or below ``stop_at``
        after at least ``min_pages`` pages, the backfill limit, the channel's first post, or a
        page that does not move back. ``tail``: the cursor's low end follows each page."""
        assert self.channel_id is not None
        cid = self.channel_id
        read = 0
        prev_low: int | None = None
        while True:
            low = page.min_id
            high = page.max_id
            if low is None or high is None:
                return "channel_start"
            if prev_low is not None and low >= prev_low:
                log.warning(
                    "web @%s: ?before=%d gave a page that does not move back (oldest %d): "
                    "paging stopped",
                    self.username,
                    prev_low,
                    low,
                )
                return "loop_guard"
            read += 1
            self.pages += 1
            posts = list(page.posts)
            done = False
            if self.limit is not None:
                posts, done = self.limit.take(posts)
            if posts:
                self.stats += await ingest(self.archive, posts, source=SOURCE, alerts=self.alerts)
            self.max_seen = max(self.max_seen, high)
            self.deleted += await self._deletions(cid, page)
            if tail:
                await set_cursor(self.archive, cid, high_water=self.max_seen, backfill_low=low)
            if done:
                return "backfill_limit"
            if low <= 1:
                return "channel_start"
            if low <= stop_at and read >= min_pages:
                return "high_water"
            prev_low = low
            page = await self.client.fetch(self.username, before=low)

    async def _deletions(self, channel_id: int, page: WebPage) -> int:
        """Mark deleted the archived posts strictly inside the page's id range that it does not
        show. Service posts are never inferred deleted (the preview hides some of them)."""
        low, high = page.min_id, page.max_id
        if low is None or high is None or high - low < 2:
            return 0
        known = await known_ids(self.archive, channel_id, low + 1, high - 1)
        gone = sorted(m for m in known if low < m < high and m not in page.shown_ids)
        if not gone:
            return 0
        service = {
            r[0]
            for r in await self.archive.fetchall(
                "SELECT message_id FROM posts WHERE channel_id = ? AND is_service = 1"
                " AND message_id BETWEEN ? AND ?",
                (channel_id, gone[0], gone[-1]),
            )
        }
        gone = [m for m in gone if m not in service]
        return await mark_deleted(self.archive, channel_id, gone, how="web", alerts=self.alerts)


def _config(channel: ChannelConfig | str) -> ChannelConfig:
    if isinstance(channel, ChannelConfig):
        return channel
    return ChannelConfig(ref=parse_ref(channel), source=SOURCE)


async def sync_web_channel(
    archive: Archive,
    client: TmeClient,
    channel: ChannelConfig | str,
    *,
    now: datetime | None = None,
) -> WebSyncResult:
    """Sync one channel from its web preview (see the module docstring). ``channel``: its
    config entry, or a username (then the default backfill applies). The outcome is recorded
    with ``record_sync``; a failure raises :class:`SourceError` naming the channel, after
    keeping every page already ingested."""
    cfg = _config(channel)
    row = await get_channel(archive, cfg.ref)
    username = cfg.ref.username or (row.username if row is not None else None)
    if username is None:
        raise SourceError(
            f"{cfg.ref}: a web channel needs its public username (the preview is t.me/s/<username>)"
        )
    sync = _Sync(archive, client, username.lower(), row, cfg.backfill, now or utcnow())
    try:
        result = await sync.run()
    except SourceError as exc:
        if sync.channel_id is not None:
            await record_sync(archive, sync.channel_id, status="error", error=str(exc))
        raise
    assert result.channel_id is not None
    await record_sync(archive, result.channel_id, status="ok")
    return result


async def sync_web_channels(
    archive: Archive,
    settings: WebSettings,
    channels: Iterable[ChannelConfig],
    *,
    now: datetime | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep = asyncio.sleep,
) -> list[WebSyncResult]:
    """Sync every ``source = "web"`` channel of ``channels`` (others are skipped) with one
    HTTP client. A channel that fails is logged and recorded, and the others go on."""
    results: list[WebSyncResult] = []
    async with TmeClient(settings, transport=transport, sleep=sleep) as client:
        for cfg in channels:
            if cfg.source != SOURCE:
                continue
            try:
                results.append(await sync_web_channel(archive, client, cfg, now=now))
            except TelewatchError as exc:
                log.warning("web %s: %s", cfg.ref, exc)
                results.append(await _failed(archive, cfg, str(exc)))
            except Exception as exc:  # the archiver's edge: log it, go on with the next
                log.exception("web %s: unexpected failure", cfg.ref)
                message = f"{cfg.ref}: unexpected {type(exc).__name__}; see the log"
                row = await get_channel(archive, cfg.ref)
                if row is not None:
                    await record_sync(archive, row.id, status="error", error=message)
                results.append(await _failed(archive, cfg, message))
    return results


async def _failed(archive: Archive, cfg: ChannelConfig, message: str) -> WebSyncResult:
    row = await get_channel(archive, cfg.ref)
    return WebSyncResult(
        username=cfg.ref.username or str(cfg.ref),
        channel_id=row.id if row is not None else None,
        status="error",
        error=message,
        backfilled=row is not None and row.backfilled,
    )
