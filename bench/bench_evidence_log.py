"""What the observation log costs an ingest: the same prepared posts ingested into a fresh
archive with the log written (as shipped) and with its append switched off, alternating,
each run in its own child process; CPU is the process's (all its threads).

    .venv/bin/python bench/bench_evidence_log.py [--posts 40000] [--runs 3]

The posts are Cyrillic news-like text of about 500 characters with one entity, batches of
2,000 (what an export import writes). Without the log the entries' objects are still built
(ingest gathers them before writing): the difference is a little below the log's whole cost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEXT = "Администрация сообщает: выезд не планируется. Эвакуация начнётся завтра утром. " * 6
CID = -1001811111111


async def _child(mode: str, n: int) -> float:
    import archiver.store.ingest as ingest_mod
    from archiver.models import Entity, Post
    from archiver.store.archive import Archive

    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    posts = [
        Post(channel_id=CID, message_id=i, date=t0 + timedelta(seconds=i), text=f"{TEXT}{i}",
             entities=(Entity("bold", 0, 5),))
        for i in range(1, n + 1)
    ]  # fmt: skip
    prepared = ingest_mod.prepare(posts)
    if mode == "off":

        async def nothing(db: object, observations: object, **kw: object) -> int:
            return 0

        ingest_mod.log_append = nothing  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as d:
        archive = await Archive.open(Path(d) / "a.db")
        await archive.write(
            "INSERT INTO channels (id, username, source, created_at)"
            " VALUES (?, 'bench', 'export', '2024-01-01 00:00:00')",
            (CID,),
        )
        started = time.process_time()
        for i in range(0, len(prepared), 2000):
            await ingest_mod.ingest(archive, prepared[i : i + 2000], source="export", alerts=False)
        spent = time.process_time() - started
        await archive.close()
    return spent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=40_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--child", choices=("on", "off"))
    args = ap.parse_args()
    if args.child:
        print(asyncio.run(_child(args.child, args.posts)))
        return
    times: dict[str, list[float]] = {"off": [], "on": []}
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.2f}")
    for _ in range(args.runs):
        for mode in ("off", "on"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--posts", str(args.posts)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            times[mode].append(float(out.stdout.strip()))
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    print(f"log off: {times['off']} CPU s, median {off:.2f}")
    print(f"log on:  {times['on']} CPU s, median {on:.2f}")
    print(f"the log: {(on - off) / args.posts * 1e6:.1f} µs a post ({args.posts:,} posts)")
    print(f"# load at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
