"""Three ``telewatch run --worker wN`` processes on one PostgreSQL archive (issue 18), web
channels served by a fake t.me over loopback HTTP. One worker is killed with SIGKILL in the
middle of its pass: every post is archived exactly once (one version, one entry of the
observation log, one alert per recipient), every unit was held by one worker at a time, and
the dead worker's units are taken over once its leases expire.

The passes are held in the middle deterministically: the fake t.me answers the first page of
each channel at once and holds every older page until the test opens the gate, so each
worker has archived a page and waits for the next when one is killed. Nothing is timed:
every wait is for a condition, with a generous bound.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fakes.tme import FakeTme
from fakes.tme_http import serve_tme
from test_ops_run import START_WITHIN, Proc, env, spawn, start  # noqa: F401

from archiver.store import leases as L
from archiver.store.archive import Archive

LEASE = 2.0  # [workers] lease_seconds
CHANNELS = [f"chan{i}" for i in range(6)]
SEEDED = 5  # posts archived before the workers start (the backfill: no alerts)
TOTAL = 40  # posts per channel at the end
WAIT = 180.0  # the generous bound of every wait (seconds)


class GatedTme(FakeTme):
    """The fake t.me, with every listing page but the newest held until ``gate`` is set (in
    the server's threads; the held request is answered as soon as it opens)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.max_requests = 100_000

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.params.get("before") and not self.gate.is_set():
            self.gate.wait(WAIT)
        return super().handle(request)


@pytest.fixture
def tme() -> Iterator[tuple[GatedTme, str]]:
    fake = GatedTme()
    fake.gate.set()
    with serve_tme(fake) as base:
        yield fake, base


def config(tmp_path: Path, base: str) -> Path:
    path = tmp_path / "config.toml"
    channels = "".join(
        f'[[channels]]\nusername = "{c}"\nsource = "web"\nbackfill = "all"\n' for c in CHANNELS
    )
    path.write_text(
        f'[storage]\npath = "data/t.db"\n'
        f'[schedule]\nheartbeat_seconds = 1\nsync = "* * * * *"\nrecheck = ""\n'
        f'backup = ""\nmaintenance = ""\n'
        f"[workers]\nlease_seconds = {LEASE}\n"
        f'[web]\nbase_url = "{base}"\ndelay_seconds = 0\ntimeout_seconds = {WAIT}\n'
        f'[[rules]]\nname = "evac"\nquery = "эвакуация"\nnotify = [111, 222]\n{channels}',
        encoding="utf-8",
    )
    return path


async def until(what: str, check: object, timeout: float = WAIT) -> object:
    """Wait for the coroutine function ``check`` to return something true; its value."""
    deadline = time.monotonic() + timeout
    while True:
        got = await check()  # type: ignore[operator]
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.05)


async def held(a: Archive) -> dict[str, str]:
    """unit -> the worker holding it now."""
    now = await L.db_now(a)
    return {u: r.worker for u, r in (await L.leases(a)).items() if r.held_at(now)}


async def one(a: Archive, sql: str, *args: object) -> list[tuple[object, ...]]:
    return [tuple(r) for r in await a.fetchall(sql, args)]


def events(proc: Proc) -> list[tuple[datetime, str, str, list[str]]]:
    """(time, worker, took|giving back|lost|stopping, units) from a worker's JSON log
    ("stopping": it could not renew its leases before they expire, and let go of them)."""
    out = []
    for line in proc.stderr.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        msg: str = record["message"].replace(
            ": cannot renew its leases before they expire; stopping ", ": stopping "
        )
        for verb in ("took", "giving back", "lost", "stopping"):
            head, sep, rest = msg.partition(f": {verb} ")
            if sep and head.startswith("worker "):
                units = rest.split(" (")[0].split(";")[0].split(", ")
                at = datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
                out.append((at, head.removeprefix("worker "), verb, units))
    return out


async def test_three_workers_share_the_channels_and_survive_a_kill(
    spawn: list[Proc],  # noqa: F811
    tmp_path: Path,
    pg_url: str,
    tme: tuple[GatedTme, str],
) -> None:
    try:
        await _three_workers(spawn, tmp_path, pg_url, tme)
    except BaseException:
        for p in spawn:  # what each worker said, for the failure's report
            if p.proc.returncode is None:
                p.proc.kill()
            assert p.proc.stderr is not None
            p.lines.append((await p.proc.stderr.read()).decode())
            print("=" * 30, p.proc.pid, "\n", p.stderr)
        raise


async def _three_workers(
    procs: list[Proc], tmp_path: Path, pg_url: str, tme: tuple[GatedTme, str]
) -> None:
    fake, base = tme
    for i, name in enumerate(CHANNELS):
        ch = fake.channel(name, page_size=5, bare_id=1811111111 + i)
        ch.add_texts(range(1, SEEDED + 1), "эвакуация {id}")
    cfg = config(tmp_path, base)
    environ = env(TELEWATCH_DATABASE_URL=pg_url)

    # The archive before: every channel backfilled by one plain `sync` (no alerts for it).
    seed = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "archiver", "--config", str(cfg), "sync", cwd=tmp_path,
        env=environ, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(seed.communicate(), WAIT)
    assert seed.returncode == 0, err.decode()

    async with await Archive.open(pg_url) as a:  # every grant and renewal, for the end
        await a.db.script(AUDIT)  # type: ignore[attr-defined]
    for name in CHANNELS:  # what the workers find: 35 new posts a channel, each alerts twice
        fake.channels[name].add_texts(range(SEEDED + 1, TOTAL + 1), "эвакуация {id}")
    fake.gate.clear()
    workers = {}
    for n in ("w1", "w2", "w3"):
        workers[n] = await start(procs, tmp_path, "--config", str(cfg), "--log-format", "json",
                                 "run", "--no-bot", "--worker", n, environ=environ)  # fmt: skip
    for p in workers.values():
        await p.wait_for_line("telewatch run: started")

    async with await Archive.open(pg_url) as a:
        units = {L.web_unit(c) for c in CHANNELS}

        async def balanced() -> dict[str, str] | None:
            h = await held(a)
            by = {w: sum(1 for x in h.values() if x == w) for w in workers}
            return h if set(h) == units and set(by.values()) == {2} else None

        async def partial() -> list[object]:
            """A worker holding a channel whose pass is half done (its newest page in)."""
            h = await held(a)
            rows = await one(a, "SELECT c.username, count(p.id) FROM channels c JOIN posts p"
                             " ON p.channel_id = c.id GROUP BY c.username")  # fmt: skip
            return [h[L.web_unit(str(u))] for u, n in rows
                    if SEEDED < int(str(n)) < TOTAL and L.web_unit(str(u)) in h]  # fmt: skip

        await until("the six channels split 2/2/2", balanced)
        victim = str((await until("a pass half done", partial))[0])  # type: ignore[index]
        workers[victim].proc.send_signal(signal.SIGKILL)
        await workers[victim].proc.wait()
        killed_at = datetime.now(UTC)
        assert workers[victim].proc.stderr is not None
        workers[victim].lines.append((await workers[victim].proc.stderr.read()).decode())
        rows = await L.leases(a)
        orphans = {u: r.expires_at for u, r in rows.items() if r.worker == victim}
        assert len(orphans) == 2  # it died holding its two channels
        fake.gate.set()  # the survivors' passes go on

        survivors = [w for w in workers if w != victim]

        async def taken_over() -> dict[str, str] | None:
            h = await held(a)
            return h if set(h) == units and set(h.values()) == set(survivors) else None

        await until("the dead worker's channels taken over", taken_over)

        async def complete() -> bool:
            got = await one(a, "SELECT count(*) FROM posts")
            return got == [(len(CHANNELS) * TOTAL,)]

        await until("every post archived", complete)
        # and the passes at work meanwhile have finished (their alerts queued)
        await until("every alert queued", lambda: _alerts_done(a))

        # exactly once: a post per id, a version per post, a 'seen' log entry per post
        assert await one(a, "SELECT count(*), count(DISTINCT (channel_id, message_id))"
                         " FROM posts") == [(240, 240)]  # fmt: skip
        assert await one(a, "SELECT count(*) FROM versions") == [(240,)]
        assert await one(a, "SELECT kind, count(*), count(DISTINCT post_id) FROM observations"
                         " GROUP BY kind") == [("seen", 240, 240)]  # fmt: skip
        # one alert per new post and recipient, none for the seeded backfill
        assert await one(a, "SELECT count(*), count(DISTINCT (post_id, recipient, kind))"
                         " FROM alerts") == [(2 * 6 * (TOTAL - SEEDED),) * 2]  # fmt: skip
        seeded = await one(a, "SELECT count(*) FROM alerts a JOIN posts p ON p.id = a.post_id"
                           " WHERE p.message_id <= ?", SEEDED)  # fmt: skip
        assert seeded == [(0,)]
        _one_holder_at_a_time(await one(a, "SELECT unit, worker, acquired_at, expires_at"
                                        " FROM lease_audit ORDER BY id"))  # fmt: skip
        # taken over once the dead worker's leases had expired (how soon after is a figure,
        # printed here, not asserted: a loaded machine delays the survivors' ticks)
        final = await L.leases(a)
        for unit, expired in orphans.items():
            took = L.parse(final[unit].acquired_at)
            assert final[unit].worker in survivors
            assert took >= L.parse(expired)  # never while the dead worker still held it
            print(f"figure: {unit} taken {(took - L.parse(expired)).total_seconds():.2f} s"
                  f" after the dead worker's lease expired (lease {LEASE:g} s)")  # fmt: skip

    for w in survivors:
        assert await workers[w].stop(signal.SIGTERM) == 0
    _said_one_holder_at_a_time(workers, victim, killed_at)
    async with await Archive.open(pg_url) as a:
        assert await held(a) == {}  # a clean stop gives everything back
        assert {w.name for w in await L.workers(a)} == {victim}  # the dead one stays, stale

    verify = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "archiver", "--config", str(cfg), "log", "verify", cwd=tmp_path,
        env=environ, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(verify.communicate(), WAIT)
    assert verify.returncode == 0, out.decode()


async def _alerts_done(a: Archive) -> bool:
    got = await one(a, "SELECT count(*) FROM alerts")
    return got == [(2 * 6 * (TOTAL - SEEDED),)]


AUDIT = """
CREATE TABLE lease_audit (id BIGSERIAL PRIMARY KEY, unit TEXT, worker TEXT, acquired_at TEXT,
                          expires_at TEXT);
CREATE FUNCTION lease_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO lease_audit (unit, worker, acquired_at, expires_at)
  VALUES (NEW.unit, NEW.worker, NEW.acquired_at, NEW.expires_at); RETURN NEW; END $$;
CREATE TRIGGER lease_audit AFTER INSERT OR UPDATE ON leases
  FOR EACH ROW EXECUTE FUNCTION lease_audit();
"""


def _one_holder_at_a_time(rows: list[tuple[object, ...]]) -> None:
    """From every write of the leases (the database's own record, in commit order): a unit
    is granted to a worker only at or after the end of the previous grant (its last
    expiry, or its release)."""
    grants: dict[str, list[list[str]]] = {}  # unit -> [worker, acquired_at, last expires_at]
    for unit, worker, acquired, expires in rows:
        g = grants.setdefault(str(unit), [])
        if g and (g[-1][0], g[-1][1]) == (worker, acquired):
            g[-1][2] = str(expires)  # a renewal or a release of the same grant
        else:
            g.append([str(worker), str(acquired), str(expires)])
    assert set(grants) == {L.web_unit(c) for c in CHANNELS}
    for unit, g in grants.items():
        for before, after in itertools.pairwise(g):
            if before[0] == "":  # the free row that ensure() made
                continue
            assert after[1] >= before[2], f"{unit}: {after} granted while {before} held it"
    assert sum(len(g) for g in grants.values()) > len(CHANNELS)  # units did change hands


def _said_one_holder_at_a_time(workers: dict[str, Proc], victim: str, killed_at: datetime) -> None:
    """From the workers' own logs: a unit is taken only after the worker before it gave it
    back (the line is written before the release), let go of it (it could not renew its
    leases before they expired), was killed, or lost it (a worker whose
    pass held its event loop past the expiry: its writes were fenced off meanwhile)."""
    timeline = sorted(
        (at, w, verb, unit)
        for p in workers.values()
        for at, w, verb, us in events(p)
        for unit in us
    )
    holder: dict[str, str] = {}
    lost = {(w, unit) for _, w, verb, unit in timeline if verb == "lost"}
    for at, w, verb, unit in timeline:
        if verb == "took":
            before = holder.get(unit)
            if (before == victim and at > killed_at) or (before, unit) in lost:
                before = None
            assert before is None, f"{unit}: {w} took it at {at} while {before} held it"
            holder[unit] = w
        elif verb == "giving back":
            assert holder.get(unit) == w, (unit, w, verb, holder.get(unit))
            del holder[unit]
        elif verb == "stopping" and holder.get(unit) == w:  # let go before its lease ran out
            del holder[unit]
    assert any(verb == "took" and at > killed_at for at, _, verb, _ in timeline)
