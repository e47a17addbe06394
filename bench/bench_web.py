"""The web view's search page beside the CLI's search, in the same run, on a large archive.

    .venv/bin/python bench/bench_web.py [--db bench/out/b1m.db] [--rounds 3] [--json FILE]

The archive is one ``bench/gen_export.py`` + ``telewatch import`` made (docs/benchmarks.md,
"Web view"). The 100 queries are bench/bench_search.py's (drawn from the archive: one word of
each frequency band, base forms, two words, phrases, prefixes, OR, NOT, filters).

- **CLI**: ``archiver.store.search.search(archive, parse(q), limit=20)`` in this process, on
  an archive opened as ``telewatch search`` opens it: the MATCH, hydration and snippets of one
  page (the process's start-up is left out).
- **web page**: ``GET /-/telewatch/search?q=...`` over HTTP (httpx, keep-alive) from
  ``telewatch --db DB serve --port 0`` running in its own process, the page complete: the same
  search, the total (counted up to 2,000 posts, on a second connection at the same time), the
  channel list, the HTML.

Both in shuffled order, interleaved query by query, after one untimed warm-up pass; a query's
time is its median over ``--rounds``. Then relevance (``sort=relevance``, bm25 over the newest
1,000 matching versions): the issue's queries (``въезде``, ``работает``, ``часть остается``)
and every one- and two-word query of the common band, through both paths (the bot calls the
same store function as the CLI). Exit status 1 when a goal is missed: the web page p95 under
100 ms; relevance p95 under 50 ms, CLI and web page, for the common words.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_search import Q, build_queries, pct, vocabulary  # noqa: E402

from archiver.query import parse, to_fts  # noqa: E402
from archiver.store import Archive  # noqa: E402
from archiver.store.search import search  # noqa: E402

PAGE_GOAL_MS = 100.0
RELEVANCE_GOAL_MS = 50.0
ISSUE_QUERIES = ("въезде", "работает", "часть остается")


def start_server(db: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "TELEWATCH_CONFIG": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "archiver", "--db", str(db), "serve", "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
    if m is None:
        proc.kill()
        raise SystemExit(f"telewatch serve did not start: {line}")
    return proc, m.group(1)


def page_ms(client: httpx.Client, base: str, text: str, sort: str = "newest") -> tuple[float, int]:
    params = {"q": text} if sort == "newest" else {"q": text, "sort": sort}
    t0 = time.perf_counter()
    resp = client.get(f"{base}/-/telewatch/search?{urlencode(params)}")
    dt = time.perf_counter() - t0
    if resp.status_code != 200:
        raise SystemExit(f"{text!r}: HTTP {resp.status_code}: {resp.text[:300]}")
    return dt * 1000, resp.text.count("data-post=")


async def global_bm25_ms(archive: Archive, text: str) -> float:
    """The relevance order before the window: bm25 over every match, the first 20 rows only
    (no hydration, no snippets: this flatters it)."""
    match = to_fts(parse(text).root)
    t0 = time.perf_counter()
    await archive.fetchall(
        "SELECT v.id, v.post_id FROM versions_fts JOIN versions v ON v.id = versions_fts.rowid"
        " JOIN posts p ON p.id = v.post_id WHERE versions_fts MATCH ? AND p.is_service = 0"
        " ORDER BY bm25(versions_fts) LIMIT 20",
        (match,),
    )
    return (time.perf_counter() - t0) * 1000


async def cli_ms(archive: Archive, text: str, sort: str = "newest") -> tuple[float, int]:
    t0 = time.perf_counter()
    hits = await search(archive, parse(text), limit=20, sort=sort)
    return (time.perf_counter() - t0) * 1000, len(hits)


def row(name: str, xs: list[float], goal: float | None = None) -> str:
    p95 = pct(xs, 95)
    verdict = "" if goal is None else ("met" if p95 < goal else "**missed**")
    return (
        f"| {name} | {len(xs)} | {statistics.median(xs):.1f} | {p95:.1f} | {max(xs):.1f} |"
        f" {verdict} |"
    )


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", type=Path, default=ROOT / "bench/out/b1m.db")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sample", type=int, default=2000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    load0 = os.getloadavg()
    started = time.perf_counter()

    archive = await Archive.open(args.db, create=False)  # as `telewatch search` opens it
    proc, base = start_server(args.db)
    client = httpx.Client(trust_env=False, timeout=60)
    try:
        row0 = await archive.fetchone("SELECT id FROM channels ORDER BY id LIMIT 1")
        n_posts = (await archive.fetchone("SELECT count(*) FROM posts"))[0]  # type: ignore[index]
        assert row0 is not None
        days = []
        for share in (0.5, 0.9, 0.99):
            r = await archive.fetchone(
                "SELECT substr(date, 1, 10) FROM posts ORDER BY date LIMIT 1 OFFSET ?",
                (int(n_posts * share),),
            )
            assert r is not None
            days.append(str(r[0]))
        vocab = await vocabulary(archive, rng, args.sample)
        qs: list[Q] = build_queries(vocab, rng, int(row0[0]), days)
        print(f"# {n_posts:,} posts, {len(qs)} queries; warm-up", file=sys.stderr)
        for q in qs:
            await cli_ms(archive, q.text)
            page_ms(client, base, q.text)
        web: dict[str, list[float]] = {q.text: [] for q in qs}
        cli: dict[str, list[float]] = {q.text: [] for q in qs}
        agree = 0
        for r_i in range(args.rounds):
            order = qs[:]
            rng.shuffle(order)
            for q in order:
                ms, n_cli = await cli_ms(archive, q.text)
                cli[q.text].append(ms)
                ms, n_web = page_ms(client, base, q.text)
                web[q.text].append(ms)
                agree += n_cli == n_web
            print(f"# round {r_i + 1}/{args.rounds}", file=sys.stderr)

        rel_qs = list(ISSUE_QUERIES) + [
            q.text for q in qs if q.kind in ("common", "common + common", "common + common, apart")
        ]
        rel_cli: dict[str, list[float]] = {t: [] for t in rel_qs}
        rel_web: dict[str, list[float]] = {t: [] for t in rel_qs}
        for t in rel_qs:  # warm-up
            await cli_ms(archive, t, "relevance")
            page_ms(client, base, t, "relevance")
        before: dict[str, list[float]] = {t: [] for t in ISSUE_QUERIES}
        for _ in range(args.rounds):
            order = rel_qs[:]
            rng.shuffle(order)
            for t in order:
                rel_cli[t].append((await cli_ms(archive, t, "relevance"))[0])
                rel_web[t].append(page_ms(client, base, t, "relevance")[0])
                if t in before:
                    before[t].append(await global_bm25_ms(archive, t))
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()
        await archive.close()

    classes = ("one-word", "two-word", "other")
    med = {t: statistics.median(v) for t, v in web.items()}
    cmed = {t: statistics.median(v) for t, v in cli.items()}
    size = args.db.stat().st_size / 1e9
    load1 = os.getloadavg()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, Python"
        f" {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {n_posts:,} posts,"
        f" {size:.2f} GB, load {load0[0]:.1f} at the start and {load1[0]:.1f} at the end,"
        f" {time.perf_counter() - started:.0f} s; {args.rounds} rounds, medians per query.\n"
    )
    print("| path, class | queries | p50 ms | p95 ms | max ms | goal |")
    print("|---|---:|---:|---:|---:|---|")
    for c in classes:
        ts = [q.text for q in qs if q.cls == c]
        print(row(f"CLI search, {c}", [cmed[t] for t in ts]))
        print(row(f"web page, {c}", [med[t] for t in ts], PAGE_GOAL_MS))
    all_web = list(med.values())
    print(row("CLI search, all", list(cmed.values())))
    print(row("**web page, all**", all_web, PAGE_GOAL_MS))
    n = len(qs) * args.rounds
    print(f"\nSame number of results on the page and from the CLI: {agree} of {n}.")
    slow = sorted(med.items(), key=lambda kv: -kv[1])[:5]
    print("Slowest pages: " + ", ".join(f"`{t}` {ms:.0f} ms" for t, ms in slow) + ".\n")
    print("| relevance | queries | p50 ms | p95 ms | max ms | goal |")
    print("|---|---:|---:|---:|---:|---|")
    rc = {t: statistics.median(v) for t, v in rel_cli.items()}
    rw = {t: statistics.median(v) for t, v in rel_web.items()}
    print(row("CLI `--sort relevance` (and the bot)", list(rc.values()), RELEVANCE_GOAL_MS))
    print(row("web page `sort=relevance`", list(rw.values()), RELEVANCE_GOAL_MS))
    print()
    for t in ISSUE_QUERIES:
        old = statistics.median(before[t])
        print(
            f"- `{t}`: CLI {rc[t]:.1f} ms, web page {rw[t]:.1f} ms; bm25 over every match"
            f" (before, first 20 rows only) {old:.0f} ms"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        out: dict[str, Any] = {
            "posts": n_posts,
            "queries": [
                {"text": q.text, "class": q.cls, "kind": q.kind, "cli": cli[q.text],
                 "web": web[q.text]}
                for q in qs
            ],
            "relevance": {t: {"cli": rel_cli[t], "web": rel_web[t]} for t in rel_qs},
        }  # fmt: skip
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=1))
    missed = (
        pct(all_web, 95) >= PAGE_GOAL_MS
        or pct(list(rc.values()), 95) >= RELEVANCE_GOAL_MS
        or pct(list(rw.values()), 95) >= RELEVANCE_GOAL_MS
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
