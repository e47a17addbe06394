"""Alert delivery: latency from commit to sendMessage, and throughput under Telegram's limits.

    .venv/bin/python bench/bench_bot.py            # the full run (about 1.5 minutes)
    .venv/bin/python bench/bench_bot.py --quick    # fewer alerts, for a smoke test

Everything talks HTTP to the fake Bot API of the tests (``tests/fakes/botapi.py``) on
127.0.0.1, which stamps each request with this process's monotonic clock when it arrives.

- ``in-process``: the bot runs in this event loop with ``archive.on_alerts`` set to its wake
  event, as ``telewatch run`` wires it. Latency = arrival of sendMessage - end of the commit.
- ``separate process``: ``run_bot`` in a child process with ``poll_seconds = 1`` (the
  default); this process ingests into the same archive file. The bot finds alerts by polling.
- Baselines in the same run: a bare ``Bot.send_message`` from the call to its arrival at
  the same fake server (the floor for in-process latency); ``poll_seconds`` (a poll finds an
  alert on average half a period after it lands, at worst a whole period).
- ``throughput``: 1,000 alerts queued for 50 private chats (20 each), delivered under the
  real limits (30 msg/s overall, 1 msg/s per chat); compared with the least time those limits
  allow, and with the same delivery with the limits switched off. It also checks the limits
  held: the most messages seen in any 1 s window, and the shortest gap within one chat.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
warnings.simplefilter("ignore")

from fakes.botapi import TOKEN, Call, FakeBotApi  # noqa: E402
from telegram import Bot  # noqa: E402

from archiver.config import BotSettings, Settings, StorageSettings  # noqa: E402
from archiver.models import ChannelInfo, Post  # noqa: E402
from archiver.query import Doc, matches, parse  # noqa: E402
from archiver.store.archive import Archive  # noqa: E402
from archiver.store.channels import upsert_channel  # noqa: E402
from archiver.store.ingest import ingest  # noqa: E402
from bot.app import BotOptions, BotRunner  # noqa: E402
from bot.delivery import Limits  # noqa: E402

CHANNEL = -1001811111111
T0 = datetime(2024, 5, 1, tzinfo=UTC)
WAR = parse("война")
BENCH_USERS = frozenset(range(10_000, 40_000))  # every recipient below


class Recipients:
    """A matcher that sends every post about war to ``self.chats``."""

    def __init__(self, chats: list[int]) -> None:
        self.chats = chats

    def match(self, doc: Doc, kind: str) -> dict[int, list[str]]:
        return {c: ["war"] for c in self.chats} if matches(WAR.root, doc) else {}

    def wants(self, rule_name: str, kind: str) -> bool:
        return True


def settings_for(db: Path, api: FakeBotApi, poll: float) -> Settings:
    return Settings(
        storage=StorageSettings(path=db),
        bot=BotSettings(
            token=TOKEN,
            api_base_url=api.api_base_url,
            poll_seconds=poll,
            allowed_users=BENCH_USERS,  # alerts go only to users the bot may talk to
        ),
    )


async def new_archive(db: Path) -> Archive:
    archive = await Archive.open(db)
    await upsert_channel(archive, ChannelInfo(CHANNEL, "bench", "Bench"), source="telethon")
    return archive


def post(i: int) -> Post:
    return Post(CHANNEL, i, T0 + timedelta(seconds=i), f"Сводка {i}: война, обстрел, фронт")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def send_one(api: FakeBotApi, chat: int, seen: int) -> Call:
    (call,) = await api.wait_for(chat_id=chat, since=seen, timeout=30)
    return call


async def baseline_sends(api: FakeBotApi, n: int) -> list[float]:
    """A bare ``send_message``: from the call to the request's arrival at the server."""
    out = []
    async with Bot(TOKEN, base_url=api.api_base_url) as bot:
        for i in range(n):
            t = time.monotonic()
            await bot.send_message(900_000 + i, "ping")
            out.append(api.calls[-1].at - t)
    return out


async def latency_in_process(api: FakeBotApi, db: Path, n: int) -> list[float]:
    archive = await new_archive(db)
    wake, stop = asyncio.Event(), asyncio.Event()
    archive.on_alerts = wake.set  # as `telewatch run` wires it: every commit with alerts
    runner = BotRunner(
        settings_for(db, api, poll=1.0), archive=archive, wake=wake, options=BotOptions()
    )
    task = asyncio.create_task(runner.run(stop))
    await asyncio.wait_for(runner.started.wait(), 30)
    out = []
    try:
        for i in range(n):
            chat = 10_000 + i
            archive.matcher = Recipients([chat])
            seen = len(api.calls)
            await ingest(archive, [post(i + 1)], source="bench", alerts=True)
            t = time.monotonic()  # just after the commit (which already set the wake event)
            call = await send_one(api, chat, seen)
            out.append(call.at - t)
            await asyncio.sleep(0.05)  # 20 alerts/s: under the overall limit
    finally:
        stop.set()
        await task
        await archive.close()
    return out


CHILD = """
import asyncio, sys, warnings
warnings.simplefilter("ignore")
from pathlib import Path
from archiver.config import load_settings
from bot.app import run_bot
asyncio.run(run_bot(load_settings(Path(sys.argv[1]))))
"""


async def latency_separate_process(api: FakeBotApi, db: Path, n: int) -> list[float]:
    archive = await new_archive(db)
    cfg = db.with_suffix(".toml")
    cfg.write_text(
        f'[storage]\npath = "{db}"\n[bot]\ntoken = "{TOKEN}"\n'
        f'api_base_url = "{api.api_base_url}"\npoll_seconds = 1.0\n'
        f"allowed_users = [{', '.join(str(u) for u in range(20_000, 20_000 + n))}]\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, str(cfg), env=env)
    out = []
    try:
        while not api.received.get("getUpdates"):
            await asyncio.sleep(0.05)
        rnd = random.Random(7)
        for i in range(n):
            chat = 20_000 + i
            archive.matcher = Recipients([chat])
            seen = len(api.calls)
            await ingest(archive, [post(1000 + i)], source="bench", alerts=True)
            t = time.monotonic()
            call = await send_one(api, chat, seen)
            out.append(call.at - t)
            await asyncio.sleep(rnd.uniform(0.0, 1.0))  # land anywhere in the poll period
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
        await archive.close()
    return out


async def throughput(
    api: FakeBotApi, db: Path, chats: int, per_chat: int, limits: Limits
) -> tuple[float, list[Call]]:
    archive = await new_archive(db)
    recipients = [30_000 + c for c in range(chats)]
    archive.matcher = Recipients(recipients)
    posts = [post(5000 + i) for i in range(per_chat)]
    queued = (await ingest(archive, posts, source="bench", alerts=True)).alerts_queued
    assert queued == chats * per_chat, queued
    stop = asyncio.Event()
    seen = len(api.calls)
    runner = BotRunner(
        settings_for(db, api, poll=1.0), archive=archive, options=BotOptions(limits=limits)
    )
    t = time.monotonic()
    task = asyncio.create_task(runner.run(stop))
    try:
        calls = await api.wait_for(count=queued, since=seen, timeout=600)
        calls = [c for c in calls if c.chat_id in set(recipients)]
        elapsed = calls[-1].at - t
    finally:
        stop.set()
        await task
        await archive.close()
    return elapsed, calls


def window_max(times: list[float], width: float = 1.0) -> int:
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


def min_gap_per_chat(calls: list[Call]) -> float:
    by_chat: dict[int | None, list[float]] = {}
    for c in calls:
        by_chat.setdefault(c.chat_id, []).append(c.at)
    gaps = [b - a for ts in by_chat.values() for a, b in itertools.pairwise(ts)]
    return min(gaps) if gaps else float("nan")


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    n_in, n_sep = (40, 10) if args.quick else (200, 40)
    chats, per_chat = (10, 5) if args.quick else (50, 20)
    api = FakeBotApi()
    await api.start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-bot-"))
    try:
        base = await baseline_sends(api, 100)
        inproc = await latency_in_process(api, tmp / "in.db", n_in)
        sep = await latency_separate_process(api, tmp / "sep.db", n_sep)
        unthrottled, _ = await throughput(
            api,
            tmp / "free.db",
            chats,
            per_chat,
            replace(Limits(), overall_per_second=1e9, chat_interval=0.0),
        )
        limited, calls = await throughput(api, tmp / "lim.db", chats, per_chat, Limits())
    finally:
        await api.close()
    times = sorted(c.at for c in calls)
    minimum = Limits().minimum_seconds([per_chat] * chats)
    base_p50 = statistics.median(base)
    result = {
        "baseline_p50_ms": ms(base_p50),
        "baseline_p99_ms": ms(pct(base, 0.99)),
        "inproc": (ms(statistics.median(inproc)), ms(pct(inproc, 0.99)), len(inproc)),
        "inproc_ratio": statistics.median(inproc) / base_p50,
        "sep": (ms(statistics.median(sep)), ms(pct(sep, 0.99)), len(sep)),
        "throughput": (chats * per_chat, chats, limited, minimum, unthrottled),
        "max_per_second": window_max(times),
        "min_gap_chat": min_gap_per_chat(calls),
    }
    return result


def report(r: dict[str, Any]) -> None:
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"baseline (a bare send_message reaching the server): p50 {r['baseline_p50_ms']} ms, "
          f"p99 {r['baseline_p99_ms']} ms")  # fmt: skip
    p50, p99, n = r["inproc"]
    print(f"in-process latency ({n} alerts): p50 {p50} ms, p99 {p99} ms "
          f"(p50 = {r['inproc_ratio']:.1f} x baseline; goal p99 < 200 ms)")  # fmt: skip
    p50, p99, n = r["sep"]
    print(f"separate process latency ({n} alerts, poll 1 s): p50 {p50} ms, p99 {p99} ms "
          "(goal p99 < 2000 ms)")  # fmt: skip
    total, chats, limited, minimum, free = r["throughput"]
    print(f"throughput: {total} alerts to {chats} chats in {limited:.1f} s under the limits; "
          f"the limits' own minimum {minimum:.1f} s ({limited / minimum:.3f} x); "
          f"limits off {free:.2f} s")  # fmt: skip
    print(f"limits held: at most {r['max_per_second']} messages in any 1 s window (limit 30), "
          f"shortest gap within a chat {r['min_gap_chat']:.3f} s (limit 1 s)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer alerts")
    report(asyncio.run(main(parser.parse_args())))
