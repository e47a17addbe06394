"""The web source's cost per pass: CPU per channel and requests, against a local fake t.me.

    .venv/bin/python bench/bench_web_sync.py [--channels 500] [--posts 240] [--hours 3]

A fake t.me (``tests/fakes/tme.py``, the real page markup with the bubble tail t.me puts in
every post) runs in a child process behind aiohttp on 127.0.0.1, so its CPU is not counted;
the web source talks to it over real HTTP with httpx's own transport, as it talks to t.me.
Each of ``--channels`` channels has ``--posts`` posts, one every ``--hours`` hours up to now,
about 300 characters each. This process archives them all once (the first pass, not
measured), then makes *idle passes* (nothing new since the last pass) and measures them:

- ``per channel`` (before): ``sync_web_channels`` called once per channel, as
  ``archiver/sync.py`` did before this round: a new HTTP client for every channel;
- ``one pass``: one call for all channels: one client, one pacer, one request budget.

CPU is the process's user+system time (all threads: aiosqlite writes from its own thread),
per channel. Requests are counted by the server. ``delay_seconds`` is 0 here: the pauses
cost no CPU, and what they cost in time is computed from the request counts (see
docs/benchmarks.md). The code under test is whatever ``archiver`` is importable: run the
script at an older commit for "before" figures of the older code.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
WORDS = [
    "Обстріл",
    "громади",
    "тривога",
    "евакуація",
    "мешканців",
    "укриття",
    "відновлено",
    "рух",
    "транспорту",
    "оголошено",
    "комендантська",
    "година",
    "вибухи",
    "чути",
    "місті",
    "енергетики",
    "працюють",
    "over",
    "the",
    "city",
]


def cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


# --- the server (child process) -------------------------------------------------------------


def serve(channels: int, posts: int, hours: float) -> None:
    import html as html_mod

    import httpx
    from aiohttp import web
    from fakes.tme import FakePost, FakeTme

    tme = FakeTme()
    tme.max_requests = 10**9
    for c in range(channels):
        ch = tme.channel(f"chan{c:04d}", bare_id=1_700_000_000 + c, title=f"Channel {c}")
        for i in range(1, posts + 1):
            words = " ".join(WORDS[(i * 7 + c + k) % len(WORDS)] for k in range(36))
            date = NOW - timedelta(hours=hours * (posts - i)) - timedelta(minutes=5)
            ch.add(FakePost(i, html_mod.escape(f"{c}/{i} {words}"), date, views="1.2K"))
    count = 0

    async def handle(request: web.Request) -> web.StreamResponse:
        nonlocal count
        if request.path == "/_requests":
            return web.json_response({"requests": count})
        count += 1
        tme.requests.clear()  # the fake keeps every request; the bench does not need them
        answer = tme.handle(httpx.Request("GET", str(request.url)))
        headers = {k: v for k, v in answer.headers.items() if k.lower() in ("location",)}
        return web.Response(
            status=answer.status_code,
            body=answer.content,
            headers=headers,
            content_type="text/html",
            charset="utf-8",
        )

    async def main() -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# --- the client (this process) --------------------------------------------------------------


async def served(base: str) -> int:
    import httpx

    async with httpx.AsyncClient() as c:
        return int((await c.get(f"{base}/_requests")).json()["requests"])


async def measure(args: argparse.Namespace, base: str) -> list[dict[str, Any]]:
    from archiver.channels import parse_ref
    from archiver.config import Backfill, ChannelConfig, WebSettings
    from archiver.sources import web
    from archiver.store.archive import Archive

    new_api = "clock" in inspect.signature(web.sync_web_channels).parameters
    settings = WebSettings(base_url=base, delay_seconds=0.0)
    unlimited = settings
    if new_api:  # this round's code: a request budget per pass
        unlimited = WebSettings(  # type: ignore[call-arg]
            base_url=base, delay_seconds=0.0, requests_per_pass=10**9
        )
    cfgs = [
        ChannelConfig(ref=parse_ref(f"chan{c:04d}"), source="web", backfill=Backfill("all"))
        for c in range(args.channels)
    ]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        archive = await Archive.open(Path(tmp) / "bench.db")

        async def per_channel() -> None:
            for cfg in cfgs:
                await web.sync_web_channels(archive, settings, [cfg], now=NOW)

        passes: dict[str, Callable[[], Awaitable[Any]]] = {
            "idle pass, per channel (sync.py before)": per_channel,
            "idle pass, one pass (default budget)": lambda: web.sync_web_channels(
                archive, settings, cfgs, now=NOW
            ),
        }
        if new_api:
            passes["idle pass, one pass, no budget limit"] = lambda: web.sync_web_channels(
                archive, unlimited, cfgs, now=NOW
            )
        try:
            first = await _one(
                "first pass (backfill)",
                base,
                lambda: web.sync_web_channels(archive, unlimited, cfgs, now=NOW),
            )
            rows.append(first)
            for rnd in range(args.rounds):
                for what, run in passes.items():
                    rows.append(await _one(what, base, run) | {"round": rnd})
        finally:
            await archive.close()
    return rows


async def _one(what: str, base: str, run: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    r0 = await served(base)
    t0, w0 = cpu(), time.perf_counter()
    result = await run()
    return {
        "what": what,
        "cpu": cpu() - t0,
        "wall": time.perf_counter() - w0,
        "requests": await served(base) - r0,
        "spent": getattr(result, "spent", None),  # per phase (this round's code)
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--channels", type=int, default=500)
    ap.add_argument("--posts", type=int, default=240, help="posts per channel")
    ap.add_argument("--hours", type=float, default=3.0, help="hours between two posts")
    ap.add_argument("--rounds", type=int, default=3, help="idle passes of each kind")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.channels, args.posts, args.hours)
        return
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost")
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--channels", str(args.channels),
         "--posts", str(args.posts), "--hours", str(args.hours)],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        os.environ["NO_PROXY"] = "127.0.0.1,localhost"
        rows = asyncio.run(measure(args, f"http://127.0.0.1:{port}"))
    finally:
        server.terminate()
        server.wait()
    print(f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores;"
          f" {args.channels} channels x {args.posts} posts, one every {args.hours} h")  # fmt: skip
    print("| pass | requests | CPU s | CPU ms per channel | CPU ms per request | wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['what']} | {r['requests']:,} | {r['cpu']:.2f} |"
              f" {1000 * r['cpu'] / args.channels:.1f} |"
              f" {1000 * r['cpu'] / max(r['requests'], 1):.1f} | {r['wall']:.1f} |")  # fmt: skip
    for r in rows:
        if r.get("spent"):
            print(f"{r['what']}: requests per phase {r['spent']}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
