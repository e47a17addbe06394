"""Evidence bundles: time and peak Python memory of `make` and `verify` (docs/benchmarks.md).

    .venv/bin/python bench/bench_bundle.py [--posts 20000] [--bundle 500]

An archive of ``--posts`` posts (each with its Telethon JSON, so each entry has a capture) is
written through the real ingest path; then a bundle of the newest ``--bundle`` posts of a
query (spread through the log: every 40th post), and its verification. Baseline: the JSON
lines export of the same posts (archiver.store.search.export_rows), the nearest existing
operation. Peak memory is tracemalloc's (Python allocations), wall time is best of 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from archiver.evidence.bundle_check import verify_bundle
from archiver.evidence.bundles import bundle_from_archive
from archiver.evidence.roots import make_day_root
from archiver.models import ChannelInfo, Post
from archiver.query import parse
from archiver.store.archive import Archive, utcnow
from archiver.store.channels import upsert_channel
from archiver.store.ingest import ingest
from archiver.store.search import export_rows, iter_hits

CH = -1001811111111
T0 = datetime(2024, 5, 1, tzinfo=UTC)


async def populate(path: Path, n: int) -> None:
    async with await Archive.open(path) as a:
        await upsert_channel(a, ChannelInfo(CH, "vsaldo", "Сальдо"), source="telethon")
        for start in range(0, n, 1000):
            posts = []
            for i in range(start + 1, min(n, start + 1000) + 1):
                word = "евакуація" if i % 40 == 0 else "новини"
                text = f"Пост {i}: {word} " + "текст " * 60
                raw = json.dumps({"_": "Message", "id": i, "message": text}, ensure_ascii=False)
                posts.append(Post(CH, i, T0 + timedelta(minutes=i), text, raw=raw))
            await ingest(a, posts, source="telethon", alerts=False)
        await make_day_root(a, utcnow().date(), tsa=None)


async def measure(fn: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    best = float("inf")
    peak = 0
    for _ in range(2):
        tracemalloc.start()
        t = time.perf_counter()
        await fn()
        best = min(best, time.perf_counter() - t)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return best, peak / 2**20


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=20_000)
    ap.add_argument("--bundle", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "a.db"
        t = time.perf_counter()
        await populate(db, args.posts)
        print(f"archive of {args.posts} posts written in {time.perf_counter() - t:.1f} s")
        out = Path(tmp) / "b.zip"
        query = parse("евакуація")
        async with await Archive.open(db) as a:

            async def baseline() -> None:
                hits = [h async for h in iter_hits(a, query, limit=args.bundle)]
                rows = await export_rows(a, hits)
                (Path(tmp) / "x.jsonl").write_text(
                    "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
                )

            async def bundle() -> None:
                await bundle_from_archive(
                    a, out, query=query, request={"query": "евакуація"}, max_posts=args.bundle
                )

            base_s, base_mb = await measure(baseline)
            make_s, make_mb = await measure(bundle)

        async def verify() -> None:
            assert verify_bundle(out).ok

        ver_s, ver_mb = await measure(verify)
        size = out.stat().st_size / 2**20
        print("| operation | seconds | × baseline | peak MB (Python) |")
        print("|---|---:|---:|---:|")
        print(f"| export of the same posts, JSON lines (baseline) | {base_s:.2f} | 1.00 |"
              f" {base_mb:.1f} |")  # fmt: skip
        print(f"| `evidence make` ({size:.1f} MB zip) | {make_s:.2f} | {make_s / base_s:.2f} |"
              f" {make_mb:.1f} |")  # fmt: skip
        print(f"| `evidence verify` | {ver_s:.2f} | {ver_s / base_s:.2f} | {ver_mb:.1f} |")


if __name__ == "__main__":
    asyncio.run(main())
