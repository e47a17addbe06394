"""Import speed, peak memory and archive size, beside a plain-SQLite baseline in the same run.

    .venv/bin/python bench/gen_export.py 1000000 -o bench/out/export.json
    .venv/bin/python bench/bench_import.py bench/out/export.json

Each measurement runs in its own child process (peak RSS is the child's ``ru_maxrss``):

- ``parse``: the streaming parser alone (``ExportReader``), posts built and dropped;
- ``baseline``: the same parser, the same rows written with plain ``sqlite3`` ``executemany``
  into one plain table (no FTS, no word forms, no versions), batches of 2,000;
- ``import``: ``archiver.sources.export.import_file`` into a fresh archive (FTS5 index, word
  forms, versions, provenance), batches of 2,000.

Then the archive's size on disk (after a WAL checkpoint) against the raw text: the UTF-8 bytes
of every post's text. ``--profile`` writes a cProfile of the import child to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH = 2000


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: robust to a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_parse(src: Path) -> dict[str, Any]:
    from archiver.models import Post
    from archiver.sources.export import ExportReader

    t0 = time.perf_counter()
    posts = text_bytes = 0
    for item in ExportReader(src):
        if isinstance(item, Post):
            posts += 1
            text_bytes += len(item.text.encode("utf-8"))
    return {"seconds": time.perf_counter() - t0, "posts": posts, "text_bytes": text_bytes}


def baseline_rows(src: Path) -> Iterator[tuple[object, ...]]:
    """The export's posts as the baselines' plain rows (channel, message, date, text, edit
    date, views, raw): what a bare table of posts would hold."""
    from archiver.models import Post
    from archiver.sources.export import ExportReader

    for item in ExportReader(src):
        if isinstance(item, Post):
            yield (
                item.channel_id,
                item.message_id,
                item.date.strftime("%Y-%m-%d %H:%M:%S"),
                item.text,
                item.edit_date.strftime("%Y-%m-%d %H:%M:%S") if item.edit_date else None,
                item.views,
                item.raw,
            )


def child_baseline(src: Path, db: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")
    con.execute(
        "CREATE TABLE posts (channel_id INTEGER, message_id INTEGER, date TEXT, text TEXT,"
        " edit_date TEXT, views INTEGER, raw TEXT, PRIMARY KEY (channel_id, message_id))"
    )
    rows: list[tuple[Any, ...]] = []
    posts = 0

    def flush() -> None:
        con.execute("BEGIN")
        con.executemany("INSERT OR REPLACE INTO posts VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        con.execute("COMMIT")
        rows.clear()

    for row in baseline_rows(src):
        rows.append(row)
        posts += 1
        if len(rows) >= BATCH:
            flush()
    flush()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return {"seconds": time.perf_counter() - t0, "posts": posts}


def child_import(src: Path, db: Path, profile: Path | None) -> dict[str, Any]:
    from archiver.sources.export import import_file
    from archiver.store.archive import Archive

    async def run() -> int:
        archive = await Archive.open(db)
        try:
            results = await import_file(archive, src, batch_size=BATCH)
            await archive.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            await archive.close()
        return sum(r.posts_added for r in results)

    t0 = time.perf_counter()
    if profile is not None:
        import cProfile

        prof = cProfile.Profile()
        posts = prof.runcall(asyncio.run, run())
        prof.dump_stats(profile)
    else:
        posts = asyncio.run(run())
    return {"seconds": time.perf_counter() - t0, "posts": posts}


def _child(argv: list[str]) -> None:
    mode, src = argv[0], Path(argv[1])
    cpu_start = _cpu_seconds()
    if mode == "parse":
        out = child_parse(src)
    elif mode == "baseline":
        out = child_baseline(src, Path(argv[2]))
    else:
        out = child_import(src, Path(argv[2]), Path(argv[3]) if len(argv) > 3 else None)
    out["peak_rss_mb"] = _peak_mb()
    out["cpu_seconds"] = _cpu_seconds() - cpu_start
    # The word-form worker process of a big import (archiver.pipeline), once it has exited.
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["worker_cpu_seconds"] = workers.ru_utime + workers.ru_stime
    out["worker_peak_rss_mb"] = workers.ru_maxrss / 1024
    print(json.dumps(out))


def _run(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _size(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("export", type=Path)
    ap.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--profile", type=Path, help="write a cProfile of the import here")
    ap.add_argument("--skip", action="append", default=[], choices=["parse", "baseline"])
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    base_db = args.workdir / "baseline.db"
    arch_db = args.workdir / "archive.db"
    for db in (base_db, arch_db):
        for p in db.parent.glob(db.name + "*"):
            p.unlink()

    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {platform.machine()},"
        f" {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}"
    )
    print(f"# export {args.export}: {args.export.stat().st_size:,} bytes")
    print(f"# load average at start: {os.getloadavg()[0]:.2f}")
    parse = None if "parse" in args.skip else _run("parse", str(args.export))
    base = None if "baseline" in args.skip else _run("baseline", str(args.export), str(base_db))
    imp_args = ["import", str(args.export), str(arch_db)]
    if args.profile:
        imp_args.append(str(args.profile))
    imp = _run(*imp_args)

    def line(name: str, r: dict[str, Any] | None) -> None:
        if r is None:
            return
        rate = r["posts"] / r["seconds"]
        cpu = r["cpu_seconds"] + r.get("worker_cpu_seconds", 0.0)
        cpu_rate = r["posts"] / cpu
        extra = ""
        if r.get("worker_cpu_seconds"):
            extra = (
                f" (worker process: {r['worker_cpu_seconds']:.1f} CPU s of it,"
                f" peak RSS {r['worker_peak_rss_mb']:.1f} MB)"
            )
        print(
            f"{name:<9} {r['posts']:>9,} posts {r['seconds']:>8.1f} s {rate:>9,.0f} posts/s"
            f"  {cpu:>8.1f} CPU s {cpu_rate:>9,.0f} posts/CPU s"
            f"  peak RSS {r['peak_rss_mb']:>6.1f} MB{extra}"
        )

    print(f"# load average at end: {os.getloadavg()[0]:.2f}")
    line("parse", parse)
    line("baseline", base)
    line("import", imp)
    if base is not None:
        ratio = (imp["posts"] / imp["seconds"]) / (base["posts"] / base["seconds"])
        imp_cpu = imp["cpu_seconds"] + imp.get("worker_cpu_seconds", 0.0)
        cpu_ratio = (imp["posts"] / imp_cpu) / (base["posts"] / base["cpu_seconds"])
        print(f"import / baseline: {ratio:.3f} in wall time, {cpu_ratio:.3f} in CPU time")
    if parse is not None:
        text = parse["text_bytes"]
        print(f"raw text: {text:,} bytes (UTF-8 of every post's text)")
        print(f"archive:  {_size(arch_db):,} bytes = {_size(arch_db) / text:.2f} x raw text")
        if base is not None:
            print(f"baseline: {_size(base_db):,} bytes = {_size(base_db) / text:.2f} x raw text")
        print(f"export:   {args.export.stat().st_size / text:.2f} x raw text")


if __name__ == "__main__":
    main()
