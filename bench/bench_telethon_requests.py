"""Requests telewatch sends to Telegram: an idle pass, a restart after an hour down, and a
mistyped username over a day. Counted, not timed.

    .venv/bin/python bench/bench_telethon_requests.py [--channels N] [--posts P]

Everything runs against the in-memory Telegram of ``tests/fakes/telethon_client.py`` behind a
real ``TelegramClient`` (Telethon's own connect, update loop and flood bookkeeping run), on
Telegram's clock of the fake, so the figures are exact counts of the MTProto requests that
would go out. The scenario: ``N`` followed channels, each with ``P`` posts spread over the
last 30 days (default 10 channels, 300 posts: ten a day), ``[recheck]`` defaults (recent
window 7 days, full rotation 7 days).

- **cron idle pass**: ``telewatch sync`` as cron runs it every 15 minutes, nothing new: a new
  process, a new client each time (connect and login check included).
- **live idle reconciliation**: what ``telewatch run`` sends every 2 minutes for its joined
  channels when nothing happens.
- **restart after an hour down**: ``telewatch run`` starting again after an hour in which each
  channel got 5 new posts, 1 edit and 1 deletion (all found: checked at the end).
- **a bad username for a day**: one mistyped username among the channels, 96 cron passes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _channels(tg: Any, n: int, posts: int) -> list[int]:
    now = tg.clock.now()
    bare = []
    for i in range(n):
        b = 1811111111 + i
        tg.add_channel(b, f"chan{i}", f"Channel {i}")
        for k in range(posts):
            tg.post(f"post {k}", bare_id=b, date=now - timedelta(days=30) + k * (
                timedelta(days=30) / posts), push=False)  # fmt: skip
        bare.append(b)
    return bare


def _diff(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in sorted(after) if after[k] - before[k]}


async def run(n: int, posts: int) -> dict[str, Any]:
    from fakes.telethon_client import FakeTelegram, Sleeper, connected, settings_for

    from archiver.channels import parse_ref
    from archiver.config import Backfill, ChannelConfig
    from archiver.sources.telethon_live import LiveListener
    from archiver.store.archive import Archive
    from archiver.sync import SyncOptions, sync_all

    out: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-requests-"))
    tg = FakeTelegram()
    tg.clock.at = tg.clock.at + timedelta(days=60)
    bare = _channels(tg, n, posts)
    polled = [ChannelConfig(parse_ref(f"chan{i}"), backfill=Backfill("all"), join=False)
              for i in range(n)]  # fmt: skip
    opts = SyncOptions(page_wait=0, sleeper=Sleeper(clock=tg.clock), now=tg.clock.now)

    def counts() -> Counter[str]:
        return Counter(tg.counts())

    # cron: the first pass (the backfill), then idle passes 15 minutes apart
    settings = settings_for(tmp, *polled)
    async with await Archive.open(tmp / "cron.db") as a:
        await sync_all(a, settings, client=await connected(tg), options=opts)
        idle = []
        for _ in range(4):
            tg.clock.advance(900)
            before = counts()
            client = await connected(tg)  # a new process
            await sync_all(a, settings, client=client, options=opts)
            await client.disconnect()
            idle.append(_diff(before, counts()))
        out["cron idle pass"] = idle[-1]

        # a mistyped username among them, a pass every 15 minutes for a day
        bad = settings_for(tmp, ChannelConfig(parse_ref("chan0_typo"), join=False), *polled)
        before = counts()
        for _ in range(96):
            await sync_all(a, bad, client=await connected(tg), options=opts)
            tg.clock.advance(900)
        day = _diff(before, counts())
        out["a bad username for a day"] = {
            "ResolveUsername for it": day.get("contacts.ResolveUsername", 0),
            "passes": 96,
        }

    # live: start, idle reconciliation, an hour down, restart
    joined = [ChannelConfig(parse_ref(f"chan{i}"), backfill=Backfill("all"), join=True)
              for i in range(n)]  # fmt: skip
    settings = settings_for(tmp, *joined)
    async with await Archive.open(tmp / "live.db") as a:
        client = await connected(tg, receive_updates=True)
        listener = LiveListener(a, client, settings, options=opts)
        await listener.start()
        tg.clock.advance(120)
        before = counts()
        await listener.catch_up(reread=False)
        out["live idle reconciliation"] = _diff(before, counts())
        listener.stop()
        await client.disconnect()

        tg.clock.advance(3600)  # an hour down
        for b in bare:
            for _ in range(5):
                tg.post("while down", bare_id=b, push=False)
            ids = tg.channel(b).ids
            tg.edit(ids[-20], "edited while down", bare_id=b, push=False)
            tg.delete(ids[-30], bare_id=b, push=False)
        before = counts()
        client = await connected(tg, receive_updates=True)
        listener = LiveListener(a, client, settings, options=opts)
        await listener.start()
        out["restart after an hour down"] = _diff(before, counts())
        missing = await a.fetchone(
            "SELECT count(*) FROM posts p JOIN versions v ON v.id = p.current_version_id"
            " WHERE v.text = 'edited while down'"
        )
        deleted = await a.fetchone("SELECT count(*) FROM posts WHERE deleted_at IS NOT NULL")
        out["found after the restart"] = {
            "edits": missing[0] if missing else 0,
            "deletions": deleted[0] if deleted else 0,
            "of": n,
        }
        listener.stop()
        await client.disconnect()
    out["sent during a flood wait (all of the above)"] = len(tg.sent_during_wait)

    # a flood wait of 20,000 s on ResolveUsername, four new channels, four cron runs
    from fakes.telethon_client import flood
    from telethon import functions

    fresh = FakeTelegram()
    names = [f"new{i}" for i in range(4)]
    for i, name in enumerate(names):
        fresh.add_channel(1911111111 + i, name)
    fresh.fail(functions.contacts.ResolveUsernameRequest, flood(20000))
    wopts = SyncOptions(page_wait=0, sleeper=Sleeper(clock=fresh.clock), now=fresh.clock.now)
    settings = settings_for(tmp, *(ChannelConfig(parse_ref(x), backfill=Backfill("all"),
                                                 join=False) for x in names))  # fmt: skip
    async with await Archive.open(tmp / "flood.db") as a:
        for _ in range(4):
            await sync_all(a, settings, client=await connected(fresh), options=wopts)
            fresh.clock.advance(900)
    out["a 20,000 s ResolveUsername wait, 4 new channels, 4 cron runs"] = {
        "ResolveUsername sent": fresh.count(functions.contacts.ResolveUsernameRequest),
        "sent during the wait": len(fresh.sent_during_wait),
    }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--channels", type=int, default=10)
    p.add_argument("--posts", type=int, default=300)
    args = p.parse_args()
    import logging

    logging.disable(logging.WARNING)
    result = asyncio.run(run(args.channels, args.posts))
    print(f"{args.channels} channels, {args.posts} posts each over 30 days")
    for k, v in result.items():
        if isinstance(v, dict):
            total = sum(x for key, x in v.items() if isinstance(x, int) and "." in key)
            extra = f" (total {total})" if total else ""
            print(f"{k}{extra}:")
            for key, x in v.items():
                print(f"  {key}: {x}")
        else:
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
