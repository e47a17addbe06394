"""Where an import's CPU goes, stage by stage, and what SQLite alone costs to write a post.

    .venv/bin/python bench/bench_import_parts.py bench/out/export_1m.json --posts 200000

Two parts, each in its own child process (CPU = user + system time of that process):

- *reader stages*, per post, over the first ``--posts`` messages of the export: splitting and
  decoding the JSON (the orjson fast path and ijson's C backend), building ``Post`` objects
  (``message_to_post``), ``ingest.prepare`` and its largest part (the index words), and
  pickling the rows for the writer process.
- *writer floor*: the same posts, prepared ahead, written into a fresh archive with plain
  ``sqlite3`` in batches of 2,000 (the SQL of ``archiver.store.ingest``; row tuples built in
  Python, nothing else in the process), under several settings. Baseline: the posts and
  versions rows without the FTS5 index, in the same run.

Figures and what they mean for the import speed goal: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH = 2000


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _messages(src: Path, n: int) -> list[bytes]:
    """The first ``n`` messages of a single chat's export, as their JSON bytes."""
    from archiver.sources.export import _framed_messages, _Reader

    out: list[bytes] = []
    with src.open("rb") as f:
        for m in _framed_messages(_Reader(f, None)):
            out.append(json.dumps(m, ensure_ascii=False).encode())
            if len(out) >= n:
                break
    return out


def _each(fn: Any, items: list[Any]) -> list[Any]:
    return [fn(x) for x in items]


def _ijson_list(ijson: Any, body: bytes) -> list[Any]:
    return list(ijson.items(body, "item", use_float=True))


def _to_post(m: Any) -> Any:
    from archiver.sources.export import message_to_post

    return message_to_post(-1, m, "")


def child_reader(src: Path, n: int) -> dict[str, float]:
    """Each stage's CPU a post, batch by batch as an import runs (nothing kept: keeping
    200,000 posts alive would make the garbage collector's passes the largest cost)."""
    import ijson
    import orjson

    from archiver.store.ingest import prepare
    from archiver.text import words_text

    blobs = _messages(src, n)
    spent: dict[str, float] = {}

    def timed(name: str, fn: Any, *args: Any) -> Any:
        c0 = _cpu()
        result = fn(*args)
        spent[name] = spent.get(name, 0.0) + _cpu() - c0
        return result

    for i in range(0, len(blobs), BATCH):
        batch = blobs[i : i + BATCH]
        timed("JSON, orjson (the fast path)", _each, orjson.loads, batch)
        body = b"[" + b",".join(batch) + b"]"
        dicts = timed("JSON, ijson C backend (the fallback)", _ijson_list, ijson, body)
        built = timed("Post objects (message_to_post)", _each, _to_post, dicts)
        posts = [p for p in built if p is not None]
        timed("  of prepare: the index words", _each, words_text, [p.text for p in posts])
        rows = timed("ingest.prepare, all of it", prepare, posts)
        pickled = timed("pickle, rows to the writer", pickle.dumps, [tuple(r) for r in rows], 5)
        timed("unpickle, in the writer", pickle.loads, pickled)
    return {name: seconds / len(blobs) * 1e6 for name, seconds in spent.items()}


WRITER_VARIANTS = {
    "posts and versions, no FTS5, 4 KB pages (baseline)": {"fts": False, "page_size": 4096},
    "the archive before: 4 KB pages": {"page_size": 4096},
    "the archive now: 16 KB pages": {},
    "16 KB pages, foreign keys off": {"fk": False},
    "16 KB pages, FTS5 automerge 0, one merge at the end": {"automerge": 0},
    "16 KB pages, FTS5 built in one pass after the rows": {"fts": "after"},
    "32 KB pages": {"page_size": 32768},
}


def child_writer(rows_file: Path, variant: str) -> dict[str, float]:
    from archiver.store.archive import Archive
    from archiver.store.ingest import version_key

    opts = WRITER_VARIANTS[variant]
    rows = pickle.loads(rows_file.read_bytes())
    with tempfile.TemporaryDirectory(dir=rows_file.parent) as tmp:
        path = Path(tmp) / "archive.db"
        if "page_size" in opts:
            con = sqlite3.connect(path)
            con.execute(f"PRAGMA page_size = {int(opts['page_size'])}")
            con.execute("CREATE TABLE probe (x)")  # the first write fixes the page size
            con.execute("DROP TABLE probe")
            con.close()

        async def create() -> None:
            await (await Archive.open(path)).close()

        asyncio.run(create())
        db = sqlite3.connect(path, isolation_level=None)
        for pragma in (
            "journal_mode = WAL",
            "synchronous = NORMAL",
            "cache_size = -32000",
            "wal_autocheckpoint = 10000",
            f"foreign_keys = {'OFF' if opts.get('fk') is False else 'ON'}",
        ):
            db.execute(f"PRAGMA {pragma}")
        db.execute(
            "INSERT INTO channels (id, source, created_at) VALUES (?, 'export', 'now')",
            (rows[0][0],),
        )
        if "automerge" in opts:
            db.execute("INSERT INTO versions_fts (versions_fts, rank) VALUES ('automerge', 0)")
        now = "2026-01-01 00:00:00"
        c0 = _cpu()
        post_id = 0
        for i in range(0, len(rows), BATCH):
            posts, versions = [], []
            for r in rows[i : i + BATCH]:
                post_id += 1
                vid = version_key(r[2], post_id)
                posts.append(
                    (post_id, r[0], r[1], r[3], now, "export", vid, int(r[5]), *r[14], now, *r[15])
                )
                versions.append((vid, post_id, r[7], r[8], r[4], now, r[6], "export", r[9], r[10]))
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO posts (id, channel_id, message_id, date, first_seen_at, source,"
                " current_version_id, edited, views, forwards, replies, reactions,"
                " reactions_json, counts_at, media_kind, media_json, has_link, fwd_from_id,"
                " fwd_from_title, fwd_from_message_id, reply_to, grouped_id, is_service,"
                " service_action) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                posts,
            )
            db.executemany(
                "INSERT INTO versions (id, post_id, text, entities, edit_date, seen_at, sha256,"
                " source, raw, words) VALUES (?,?,?,?,?,?,?,?,?,?)",
                versions,
            )
            if opts.get("fts", True) is True:
                db.executemany(
                    "INSERT INTO versions_fts (rowid, words) VALUES (?, ?)",
                    [(v[0], v[9]) for v in versions if v[9]],
                )
            db.execute("COMMIT")
        if opts.get("fts") == "after":
            db.execute("INSERT INTO versions_fts (versions_fts) VALUES ('rebuild')")
        if "automerge" in opts:
            db.execute("INSERT INTO versions_fts (versions_fts, rank) VALUES ('automerge', 4)")
            db.execute("INSERT INTO versions_fts (versions_fts) VALUES ('optimize')")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        spent = _cpu() - c0
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        db.close()
    return {"us": spent / len(rows) * 1e6, "page_size": page_size}


def _run_child(export: Path, posts: int, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, str(export), "--posts", str(posts), "--child", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("export", type=Path, help="a single chat's export (bench/gen_export.py)")
    ap.add_argument("--posts", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode = args.child[0]
        if mode == "reader":
            print(json.dumps(child_reader(args.export, args.posts)))
        elif mode == "rows":
            import orjson

            from archiver.sources.export import message_to_post
            from archiver.store.ingest import prepare

            posts = [
                message_to_post(-1001811111111, orjson.loads(b), "")
                for b in _messages(args.export, args.posts)
            ]
            rows = [tuple(r) for r in prepare([p for p in posts if p is not None])]
            Path(args.child[1]).write_bytes(pickle.dumps(rows, protocol=5))
            print("{}")
        else:
            print(json.dumps(child_writer(Path(args.child[1]), args.child[2])))
        return

    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs,")
    print(f"# Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, {args.posts} posts")
    print("\nreader stages, CPU-us a post")
    for name, us in _run_child(args.export, args.posts, "reader").items():
        print(f"  {name:55s} {us:6.1f}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows_file = args.workdir / "parts_rows.pickle"
    _run_child(args.export, args.posts, "rows", str(rows_file))
    try:
        print(f"\nwriter floor: SQLite and row tuples only, CPU-us a post, {args.rounds} rounds")
        runs: dict[str, list[float]] = {v: [] for v in WRITER_VARIANTS}
        for _ in range(args.rounds):  # interleaved: the machine's speed drifts
            for variant in WRITER_VARIANTS:
                out = _run_child(args.export, args.posts, "writer", str(rows_file), variant)
                assert out["page_size"] == WRITER_VARIANTS[variant].get("page_size", 16384)
                runs[variant].append(out["us"])
        base = statistics.median(next(iter(runs.values())))
        for variant, values in runs.items():
            mid = statistics.median(values)
            spread = f"{min(values):.1f}-{max(values):.1f}"
            print(f"  {variant:55s} {mid:6.1f} ({spread:>11s})  x baseline {mid / base:5.2f}")
    finally:
        rows_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
