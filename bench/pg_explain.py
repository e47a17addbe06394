"""EXPLAIN (ANALYZE, BUFFERS) of the SQL a search runs on PostgreSQL (a look at one query).

    .venv/bin/python bench/pg_explain.py URL 'that false' [--sort relevance] [--limit 64]

Prints the first page's statement as ``archiver.store.pg_search.plan`` writes it (the
newest-first read of ``iter_matches``; with ``--sort relevance`` the ranked window) and
PostgreSQL's plan with its timings and buffers.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archiver.query import parse  # noqa: E402
from archiver.store import pg_search  # noqa: E402
from archiver.store.archive import Archive  # noqa: E402
from archiver.store.postgres import translate  # noqa: E402
from archiver.store.search import RELEVANCE_WINDOW, _channel_ids, _key  # noqa: E402


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("url")
    ap.add_argument("query")
    ap.add_argument("--sort", default="newest")
    ap.add_argument("--limit", type=int, default=pg_search._FIRST_BATCH)
    args = ap.parse_args()
    import psycopg

    archive = await Archive.open(args.url, create=False)
    try:
        q = parse(args.query)
        ids = await _channel_ids(archive, q)
    finally:
        await archive.close()
    relevance = args.sort == "relevance"
    p = pg_search.plan(
        q, ids, limit=RELEVANCE_WINDOW if relevance else args.limit, since_key=_key,
        words=relevance,
    )  # fmt: skip
    t = translate(p.sql)
    with psycopg.ClientCursor(psycopg.connect(args.url)) as cur:
        sql = cur.mogrify(t.sql, list(p.params))
        print(sql if len(sql) < 2000 else sql[:2000] + " ...")
        for row in cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + t.sql, list(p.params)):
            print(row[0])


if __name__ == "__main__":
    asyncio.run(main())
