"""Where a PostgreSQL import's time goes, batch by batch (docs/benchmarks.md, "Scale", Import).

    .venv/bin/python bench/bench_pg_import_parts.py bench/out/export_100k.json [--posts N]

The export's posts are read and prepared in this process, one batch of 2,000 at a time (the
import does this in its reader process, beside the writer: timed here apart, not overlapped),
then each batch goes through ``archiver.store.ingest.ingest`` into a new PostgreSQL archive
on the bench server of bench/bench_scale.py (``--url`` names another). Every call the store
makes on its connection is timed on the client (wall time: the server's work, the round trip,
psycopg adapting the parameters) and labelled by its statement; the rest of ``ingest`` is
Python. When the server has ``pg_stat_statements`` loaded (``shared_preload_libraries``,
``pg_stat_statements.track = all``) its figures give the server's share of each statement,
the statements the triggers run included; the trigger functions' own time comes from
``pg_stat_user_functions`` (the bench's connections set ``track_functions = all``). At the
end, ``EXPLAIN (ANALYZE, BUFFERS)`` of one 500-row ``INSERT`` into versions (rolled back)
shows each trigger's time.

Prints a table of milliseconds per batch (mean over the batches) and writes the figures to
``bench/out/pg_import_parts.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

BATCH = 2000
_TABLE = re.compile(r"(?is)^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM|SELECT|COPY)\s+(.*)")


def label(sql: str) -> str:
    """A short name for a statement: its verb and table (SELECTs by what they read)."""
    s = " ".join(sql.split())
    word = s.split(" ", 1)[0].upper()
    if word in ("BEGIN", "COMMIT", "ROLLBACK"):
        return word
    if word == "INSERT":
        return "INSERT " + s.split()[2]
    if word == "UPDATE":
        return "UPDATE " + s.split()[1]
    if word == "COPY":
        return "COPY " + s.split()[1]
    if word == "SELECT":
        m = re.search(r"(?i)\bFROM\s+(\w+)", s)
        return "SELECT " + (m.group(1) if m else s[:30])
    return s[:40]


class Timer:
    """Wall time of each database call of the store, by label."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def add(self, name: str, seconds: float, n: int = 1) -> None:
        self.ms[name] += seconds * 1000
        self.calls[name] += n


def instrument(timer: Timer) -> None:
    """Wrap the PostgreSQL connection's calls (statements, BEGIN/COMMIT, COPY) in timers."""
    from archiver.store import postgres

    run = postgres.PgConnection._run
    control = postgres.PgConnection._control
    copy_rows = postgres.PgConnection.copy_rows

    async def timed_run(self: Any, cursor: Any) -> None:
        t = time.perf_counter()
        try:
            await run(self, cursor)
        finally:
            timer.add(label(cursor._sql), time.perf_counter() - t)

    async def timed_control(self: Any, word: str) -> None:
        t = time.perf_counter()
        try:
            await control(self, word)
        finally:
            timer.add(word, time.perf_counter() - t)

    async def timed_copy(self: Any, table: str, columns: Any, rows: Any) -> None:
        t = time.perf_counter()
        try:
            await copy_rows(self, table, columns, rows)
        finally:
            timer.add(f"COPY {table}", time.perf_counter() - t)

    postgres.PgConnection._run = timed_run  # type: ignore[method-assign]
    postgres.PgConnection._control = timed_control  # type: ignore[method-assign]
    postgres.PgConnection.copy_rows = timed_copy  # type: ignore[method-assign]
    copier = getattr(postgres.PgConnection, "copy_batch", None)
    if copier is not None:

        async def timed_copy_batch(self: Any, *args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return await copier(self, *args, **kwargs)
            finally:
                timer.add("COPY batch", time.perf_counter() - t)

        postgres.PgConnection.copy_batch = timed_copy_batch  # type: ignore[attr-defined]


def stat_statements(base: str, db: str) -> list[dict[str, Any]] | None:
    """The statements' server time in database ``db``, read through the server's first
    database (the extension's view there: an archive holds telewatch's tables only)."""
    import psycopg

    with psycopg.connect(base, autocommit=True) as c:
        try:
            rows = c.execute(
                "SELECT query, calls, total_exec_time, rows, toplevel,"
                " shared_blks_hit + shared_blks_read + shared_blks_dirtied, wal_bytes"
                " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
                " WHERE datname = %s) ORDER BY total_exec_time DESC LIMIT 25",
                (db,),
            ).fetchall()
        except psycopg.Error:
            return None
    return [
        {
            "query": " ".join(q.split())[:110],
            "calls": calls,
            "ms": round(ms, 1),
            "rows": n,
            "toplevel": top,
            "blocks": blocks,
            "wal_mb": round(float(wal) / 1e6, 1),
        }
        for q, calls, ms, n, top, blocks, wal in rows
    ]


def functions(url: str) -> list[dict[str, Any]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        rows = c.execute(
            "SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions"
            " ORDER BY total_time DESC"
        ).fetchall()
    return [
        {"function": f, "calls": n, "ms": round(t, 1), "self_ms": round(s, 1)}
        for f, n, t, s in rows
    ]


def explain_versions(url: str, rows: list[tuple[Any, ...]]) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of one multi-row INSERT of ``rows`` into versions, rolled
    back (their ids moved past the archive's so that they do not collide)."""
    import psycopg

    with psycopg.connect(url) as c:
        top = c.execute("SELECT max(id) FROM versions").fetchone()
        assert top is not None
        shift = int(top[0]) + 1 - min(r[0] for r in rows)
        values = ", ".join(["(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"] * len(rows))
        params = [v for r in rows for v in ((r[0] + shift), *r[1:])]
        plan = c.execute(
            "EXPLAIN (ANALYZE, BUFFERS, WAL) INSERT INTO versions (id, post_id, text, entities,"
            " edit_date, seen_at, sha256, source, raw, words, content_sig, content_sha)"
            f" VALUES {values}",
            params,
        ).fetchall()
        c.rollback()
    return "\n".join(r[0] for r in plan if not r[0].lstrip().startswith("->  Values"))


async def run(src: Path, url: str, posts: int) -> dict[str, Any]:
    from archiver.evidence import log as evlog
    from archiver.models import Post
    from archiver.sources.export import ExportReader, _batches
    from archiver.store import ingest as ingest_mod
    from archiver.store.archive import Archive
    from archiver.store.channels import upsert_channel

    timer = Timer()
    instrument(timer)
    # the log's Python (canonical JSON, hashes) apart from its statements
    append = evlog.append
    log_ms = [0.0]

    async def timed_append(db: Any, observations: Any, **kw: Any) -> int:
        t = time.perf_counter()
        try:
            return await append(db, observations, **kw)
        finally:
            log_ms[0] += (time.perf_counter() - t) * 1000

    ingest_mod.log_append = timed_append  # type: ignore[assignment]

    # the trigger functions' own time (pg_stat_user_functions), for this connection's
    # statements, whatever the server's setting
    archive = await Archive.open(url + "&options=-c%20track_functions%3Dall")
    parse_s = prepare_s = ingest_s = 0.0
    n = batches = 0
    last_versions: list[tuple[Any, ...]] = []
    per_batch: list[float] = []
    write = ingest_mod._Batch.write

    async def keep_write(self: Any) -> None:
        last_versions[:] = self.new_versions[:500]
        await write(self)

    ingest_mod._Batch.write = keep_write  # type: ignore[method-assign]
    try:
        reader = iter(_batches(ExportReader(src), BATCH))
        while n < posts:
            t = time.perf_counter()
            try:
                kind, value, _ = next(reader)
            except StopIteration:
                break
            parse_s += time.perf_counter() - t
            if kind == "channel":
                await upsert_channel(archive, value, source="export")
                continue
            batch: list[Post] = value
            t = time.perf_counter()
            prepared = ingest_mod.prepare(batch)
            prepare_s += time.perf_counter() - t
            t = time.perf_counter()
            await ingest_mod.ingest(archive, prepared, source="export", alerts=False)
            per_batch.append(time.perf_counter() - t)
            ingest_s += per_batch[-1]
            n += len(batch)
            batches += 1
    finally:
        await archive.close()
    db_ms = sum(timer.ms.values())
    log_db = sum(v for k, v in timer.ms.items() if "observations" in k or "captures" in k)
    return {
        "posts": n,
        "batches": batches,
        "parse_ms": parse_s * 1000,
        "prepare_ms": prepare_s * 1000,
        "ingest_ms": ingest_s * 1000,
        "db_ms": db_ms,
        "python_ms": ingest_s * 1000 - db_ms - (log_ms[0] - log_db),
        "log_python_ms": log_ms[0] - log_db,
        "statements": {k: (timer.ms[k], timer.calls[k]) for k in timer.ms},
        "first_last_batch_ms": (per_batch[0] * 1000, per_batch[-1] * 1000),
        "last_versions": last_versions,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("export", type=Path)
    ap.add_argument("--posts", type=int, default=100_000)
    ap.add_argument("--url", help="a PostgreSQL server (its telewatch_parts database is replaced)")
    ap.add_argument("--db", default="telewatch_parts")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import psycopg
    from bench_scale import new_database, server_url

    base = server_url(args.url)
    url = new_database(base, args.db)
    with psycopg.connect(base, autocommit=True) as c:
        try:
            c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            c.execute("SELECT pg_stat_statements_reset()")
        except psycopg.Error:
            pass
    load = os.getloadavg()[0]
    r = asyncio.run(run(args.export, url, args.posts))
    b = r["batches"]
    print(f"# {r['posts']:,} posts, {b} batches of {BATCH}, load {load:.1f} -> "
          f"{os.getloadavg()[0]:.1f}; ms per batch (mean)")  # fmt: skip
    print("| part | ms per batch | calls per batch |\n|---|---:|---:|")
    print(f"| parse (ExportReader) | {r['parse_ms'] / b:.0f} | |")
    print(f"| prepare (ingest.prepare) | {r['prepare_ms'] / b:.0f} | |")
    print(f"| **ingest, all** | **{r['ingest_ms'] / b:.0f}** | |")
    print(f"| ingest: Python (events, rows) | {r['python_ms'] / b:.0f} | |")
    print(f"| ingest: the log's Python (JSON, hashes) | {r['log_python_ms'] / b:.0f} | |")
    for k, (ms, calls) in sorted(r["statements"].items(), key=lambda kv: -kv[1][0]):
        print(f"| {k} | {ms / b:.1f} | {calls / b:.1f} |")
    print(
        f"first batch {r['first_last_batch_ms'][0]:.0f} ms, last {r['first_last_batch_ms'][1]:.0f}"
    )
    stmts = stat_statements(base, args.db)
    funcs = functions(url)
    if stmts:
        print("\n# pg_stat_statements (server time, ms per batch; nested = run by a trigger)")
        for s in stmts:
            print(f"{s['ms'] / b:8.1f} ms {s['calls'] / b:6.1f} calls"
                  f" {'top ' if s['toplevel'] else 'nest'} {s['wal_mb'] / b:6.2f} MB WAL"
                  f"  {s['query']}")  # fmt: skip
    if funcs:
        print("\n# pg_stat_user_functions (ms per batch)")
        for f in funcs:
            print(f"{f['ms'] / b:8.1f} ms (self {f['self_ms'] / b:.1f}) {f['calls'] / b:6.1f}"
                  f" calls  {f['function']}")  # fmt: skip
    plan = explain_versions(url, r.pop("last_versions"))
    print("\n# EXPLAIN (ANALYZE, BUFFERS, WAL): 500 versions in one INSERT\n" + plan)
    out = ROOT / "bench" / "out" / "pg_import_parts.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    r.update(load=load, statements_server=stmts, functions=funcs, explain=plan)
    r["statements"] = {k: list(v) for k, v in r["statements"].items()}
    out.write_text(json.dumps(r, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
