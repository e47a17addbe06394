"""A web pass: every ``source = "web"`` channel through one client, one pacer, one budget.

:func:`sync_web_channels` is the pass ``telewatch sync`` makes (call it once per pass with all
the web channels). It opens one :class:`~archiver.sources.web.client.TmeClient`, so
``[web] delay_seconds`` holds between any two requests to t.me whichever channel makes them,
and spends ``[web] requests_per_pass`` in this order, taking turns between channels one
request at a time within each phase (:mod:`archiver.sources.web.pager` says what each does):

1. **new** posts (the newest page of every channel first, channels synced longest ago first);
2. **recent** re-reads, down to ``[recheck] recent_days``;
3. **confirm**: missing posts on their embed pages;
4. **rotation**: older posts, so each channel is re-read every ``[recheck] full_recheck_days``.

Phases 2-4 start with a different channel each pass, so a budget too small for all of them
serves each in turn. When the budget is spent the pass ends: what was done is kept, and the
next pass goes on. The pass returns a :class:`WebPass` (a list of :class:`WebSyncResult`, one
per channel, with the budget's figures) and records those figures in the archive for
``stats`` (:func:`last_pass`). One channel failing is logged, recorded for ``stats`` with
``record_sync``, and the others go on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from archiver.channels import parse_ref
from archiver.config import ChannelConfig, Settings, WebSettings
from archiver.errors import SourceError, TelewatchError
from archiver.evidence.capture import DEFAULT_MAX_BYTES
from archiver.models import IngestStats
from archiver.sources.web.client import PHASES, BudgetSpent, Clock, Sleep, TmeClient
from archiver.sources.web.pager import SOURCE, ChannelPass
from archiver.store.archive import Archive, iso_utc, utcnow
from archiver.store.channels import get_channel, record_sync

log = logging.getLogger(__name__)

_REPORT_KEY = "web_last_pass"
_SEQ_KEY = "web_pass_seq"
DEFAULT_RECENT = timedelta(days=7)
DEFAULT_PERIOD = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class WebSyncResult:
    """What one pass did for one web channel. ``status``: ok | error | skipped (the budget was
    spent before the channel's turn). ``stopped`` says why the new posts' paging ended:
    ``high_water`` (reached what was archived), ``backfill_limit``, ``channel_start``,
    ``loop_guard``, ``budget``. ``pending``: phases the budget left undone for it."""

    username: str
    channel_id: int | None = None
    status: str = "ok"
    error: str | None = None
    pages: int = 0
    stats: IngestStats = field(default_factory=IngestStats)
    deleted: int = 0  # deletions confirmed (the post's page said "Post not found")
    missing: int = 0  # posts the listing did not show: marked missing, not deleted
    present: int = 0  # missing posts the post's page showed
    unconfirmed: int = 0  # post pages that said neither (tried again next pass)
    first_pass: bool = False  # this pass was (part of) the channel's first pass
    backfilled: bool = False  # the first pass is complete (before or by this pass)
    stopped: str | None = None
    requests: int = 0
    pending: tuple[str, ...] = ()


class WebPass(list[WebSyncResult]):
    """The results of one pass, one per web channel, and the pass's request budget:
    ``budget`` (None: no limit), ``spent`` per phase, ``left``."""

    def __init__(
        self,
        results: Iterable[WebSyncResult] = (),
        *,
        budget: int | None = None,
        spent: dict[str, int] | None = None,
    ) -> None:
        super().__init__(results)
        self.budget = budget
        self.spent = dict(spent or dict.fromkeys(PHASES, 0))

    @property
    def left(self) -> int | None:
        return None if self.budget is None else max(self.budget - sum(self.spent.values()), 0)

    def report(self, at: datetime) -> dict[str, Any]:
        """The figures ``stats`` shows (JSON-ready)."""
        pending: dict[str, int] = {}
        for r in self:
            for phase in r.pending:
                pending[phase] = pending.get(phase, 0) + 1
        return {
            "at": iso_utc(at),
            "channels": len(self),
            "requests_per_pass": self.budget,
            "spent": self.spent,
            "left": self.left,
            "channels_pending": pending,  # channels each phase did not finish for lack of budget
        }


def _settings(settings: Settings | WebSettings) -> tuple[WebSettings, timedelta, timedelta]:
    """[web], and the re-read window and the rotation's period from [recheck]."""
    if isinstance(settings, WebSettings):
        return settings, DEFAULT_RECENT, DEFAULT_PERIOD
    recheck = settings.recheck
    return (
        settings.web,
        timedelta(days=recheck.recent_days),
        timedelta(days=recheck.full_recheck_days),
    )


def _config(channel: ChannelConfig | str) -> ChannelConfig:
    if isinstance(channel, ChannelConfig):
        return channel
    return ChannelConfig(ref=parse_ref(channel), source=SOURCE)


async def sync_web_channels(
    archive: Archive,
    settings: Settings | WebSettings,
    channels: Iterable[ChannelConfig],
    *,
    now: datetime | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
) -> WebPass:
    """One pass over every ``source = "web"`` channel of ``channels`` (others are skipped); see
    the module docstring. ``settings``: the whole :class:`Settings` (``[web]`` and
    ``[recheck]``), or only ``[web]`` (then ``[recheck]`` has its defaults)."""
    web, recent, period = _settings(settings)
    cfgs = [c for c in channels if c.source == SOURCE]
    if not cfgs:
        return WebPass(budget=web.requests_per_pass)
    cap = (
        settings.evidence.max_capture_bytes if isinstance(settings, Settings) else DEFAULT_MAX_BYTES
    )
    async with TmeClient(
        web, transport=transport, sleep=sleep, clock=clock, max_capture_bytes=cap
    ) as client:
        return await run_pass(
            archive, client, cfgs, now=now or utcnow(), recent=recent, period=period
        )


async def sync_web_channel(
    archive: Archive,
    client: TmeClient,
    channel: ChannelConfig | str,
    *,
    now: datetime | None = None,
    recent: timedelta = DEFAULT_RECENT,
    period: timedelta = DEFAULT_PERIOD,
) -> WebSyncResult:
    """A pass over one channel with an open client (its budget is the client's). ``channel``:
    its config entry, or a username (then the default backfill applies). A failure raises
    :class:`SourceError` naming the channel, after recording it and keeping every page
    already ingested."""
    cfg = _config(channel)
    results = await run_pass(
        archive, client, [cfg], now=now or utcnow(), recent=recent, period=period, record=False
    )
    result = results[0]
    if result.status == "error":
        raise SourceError(result.error or f"{cfg.ref}: failed")
    return result


async def run_pass(
    archive: Archive,
    client: TmeClient,
    cfgs: list[ChannelConfig],
    *,
    now: datetime,
    recent: timedelta,
    period: timedelta,
    record: bool = True,
) -> WebPass:
    """The pass itself, with an open client (see the module docstring). ``record``: keep the
    pass's figures in the archive for ``stats``."""
    started = time.monotonic()
    budget = client.budget
    passes: list[ChannelPass | None] = []
    failed: dict[int, str] = {}
    for i, cfg in enumerate(cfgs):
        row = await get_channel(archive, cfg.ref)
        username = cfg.ref.username or (row.username if row is not None else None)
        if username is None:
            passes.append(None)
            failed[i] = (
                f"{cfg.ref}: a web channel needs its public username "
                "(the preview is t.me/s/<username>)"
            )
            continue
        passes.append(
            ChannelPass(
                archive,
                client,
                username.lower(),
                row,
                cfg.backfill,
                now=now,
                recent=recent,
                period=period,
            )
        )
    live = [(i, p) for i, p in enumerate(passes) if p is not None]
    # New posts: the channels synced longest ago (or never) first, so a budget that runs out
    # serves the others first next time. The other phases start one channel further each pass.
    first = sorted(live, key=lambda ip: _synced_at(ip[1]))
    seq = await _next_seq(archive) if record else 0
    shift = seq % len(live) if live else 0
    rest = live[shift:] + live[:shift]
    spent_out = False
    for phase in PHASES:
        budget.phase = phase
        order = first if phase == "new" else rest
        spent_out = await _take_turns(phase, order, failed)
        if spent_out:
            break
    results = WebPass(budget=budget.total, spent=budget.spent)
    for i, cfg in enumerate(cfgs):
        p = passes[i]
        results.append(await _finish(archive, cfg, p, failed.get(i), spent_out))
    log.info(
        "web pass: %d channel(s), %d request(s) (%s)%s, %.1fs",
        len(cfgs),
        budget.used,
        ", ".join(f"{k} {v}" for k, v in budget.spent.items()),
        "; the request budget ([web] requests_per_pass) is spent" if spent_out else "",
        time.monotonic() - started,
    )
    if record:
        await _record(archive, results.report(now))
    return results


def _synced_at(p: ChannelPass) -> float:
    row = p.row
    return row.last_sync_at.timestamp() if row is not None and row.last_sync_at else 0.0


async def _take_turns(
    phase: str, order: list[tuple[int, ChannelPass]], failed: dict[int, str]
) -> bool:
    """One phase: each channel in turn makes one request, until all are done. Returns True
    when the budget ran out: then each channel goes on only as far as it can without another
    request (what it read is recorded: a walk that reached its end on its last page sets its
    high-water mark), and the phase ends."""
    turns: list[tuple[int, ChannelPass, AsyncGenerator[None, None]]] = [
        (i, p, p.phase(phase)) for i, p in order if i not in failed
    ]
    spent = False
    try:
        while turns:
            for entry in list(turns):
                i, p, steps = entry
                before = p.client.budget.used
                try:
                    await anext(steps)
                except StopAsyncIteration:
                    turns.remove(entry)
                except BudgetSpent:
                    spent = True
                    turns.remove(entry)
                except TelewatchError as exc:
                    failed[i] = str(exc)
                    p.status = "error"
                    turns.remove(entry)
                except sqlite3.OperationalError:
                    raise  # the archive cannot be written (locked, full): not this channel's
                except Exception as exc:  # the archiver's edge: log it, go on with the next
                    log.exception("web @%s: unexpected failure", p.username)
                    failed[i] = f"@{p.username}: unexpected {type(exc).__name__}; see the log"
                    p.status = "error"
                    turns.remove(entry)
                finally:
                    p.requests[phase] = p.requests.get(phase, 0) + (p.client.budget.used - before)
        return spent
    finally:
        for _, _, steps in turns:
            await steps.aclose()


async def _finish(
    archive: Archive,
    cfg: ChannelConfig,
    p: ChannelPass | None,
    error: str | None,
    spent_out: bool,
) -> WebSyncResult:
    name = cfg.ref.username or str(cfg.ref)
    if p is None or (error is not None and p.channel_id is None):
        row = await get_channel(archive, cfg.ref)
        if row is not None and error is not None:
            await record_sync(archive, row.id, status="error", error=error)
        if error is not None:
            log.warning("web %s: %s", cfg.ref, error)
        return WebSyncResult(
            username=p.username if p is not None else name,
            channel_id=row.id if row is not None else None,
            status="error",
            error=error,
            backfilled=row is not None and row.backfilled,
            requests=sum(p.requests.values()) if p is not None else 0,
        )
    pending = tuple(ph for ph in PHASES if ph not in p.done) if spent_out else ()
    if p.status == "pending":  # the budget was spent before its first request
        return WebSyncResult(
            username=p.username,
            channel_id=p.channel_id,
            status="skipped",
            error="the request budget of this pass ([web] requests_per_pass) was spent before "
            "this channel's turn; it goes first next pass",
            backfilled=p.backfilled,
            pending=pending,
        )
    stopped = p.stopped if "new" in p.done or error is not None else "budget"
    if error is not None:
        log.warning("web %s: %s", cfg.ref, error)
        await record_sync(archive, p._cid(), status="error", error=error)
    else:
        await record_sync(archive, p._cid(), status="ok")
    log.info(
        "web @%s: %d page(s), %d new, %d new version(s), %d missing, %d deletion(s) confirmed, "
        "%d request(s), stopped at %s",
        p.username,
        p.pages,
        p.stats.posts_added,
        p.stats.versions_added - p.stats.posts_added,
        p.missing,
        p.deleted,
        sum(p.requests.values()),
        stopped,
    )
    return WebSyncResult(
        username=p.username,
        channel_id=p.channel_id,
        status="error" if error is not None else "ok",
        error=error,
        pages=p.pages,
        stats=p.stats,
        deleted=p.deleted,
        missing=p.missing,
        present=p.present,
        unconfirmed=p.unknown,
        first_pass=not p.was_backfilled,
        backfilled=p.backfilled,
        stopped=stopped,
        requests=sum(p.requests.values()),
        pending=pending,
    )


async def _next_seq(archive: Archive) -> int:
    row = await archive.fetchone("SELECT value FROM meta WHERE key = ?", (_SEQ_KEY,))
    seq = int(row[0]) + 1 if row is not None and str(row[0]).isdigit() else 0
    async with archive.transaction() as db:
        await db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_SEQ_KEY, str(seq)),
        )
    return seq


async def _record(archive: Archive, report: dict[str, Any]) -> None:
    async with archive.transaction() as db:
        await db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_REPORT_KEY, json.dumps(report, sort_keys=True)),
        )


async def last_pass(archive: Archive) -> dict[str, Any] | None:
    """The figures of the last web pass, for ``stats``: ``at``, ``channels``,
    ``requests_per_pass``, ``spent`` (per phase: new, recent, confirm, rotation), ``left``,
    ``channels_pending`` (per phase, channels it could not finish for lack of budget)."""
    row = await archive.fetchone("SELECT value FROM meta WHERE key = ?", (_REPORT_KEY,))
    if row is None:
        return None
    value: dict[str, Any] = json.loads(row[0])
    return value


def pass_summary(report: dict[str, Any]) -> str:
    """One line for ``telewatch stats`` from :func:`last_pass`'s figures."""
    spent: dict[str, int] = report.get("spent") or {}
    used = sum(spent.values())
    budget = report.get("requests_per_pass")
    phases = ", ".join(f"{k} {spent.get(k, 0)}" for k in PHASES)
    line = (
        f"web: last pass at {report.get('at')}: {used} request(s)"
        + (f" of {budget}" if budget is not None else "")
        + f" ({phases}); left {report.get('left')}"
    )
    pending: dict[str, int] = report.get("channels_pending") or {}
    if pending:
        undone = ", ".join(f"{k} for {pending[k]} channel(s)" for k in PHASES if k in pending)
        line += (
            f"; not done for lack of budget: {undone} (see [web] requests_per_pass in "
            "docs/web-source.md)"
        )
    return line
