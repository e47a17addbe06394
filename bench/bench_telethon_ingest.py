"""Telethon ingest speed beside the export import, and the requests an idle sync makes.

    .venv/bin/python bench/bench_telethon_ingest.py [N] [--seed S]

One synthetic channel of N posts (default 100,000) is written as a Telegram Desktop export by
``bench/gen_export.py``; the same posts are turned into real ``telethon.tl.types.Message``
objects (same texts, entities, dates, edits, forwards, photos, videos, reactions, service
messages) and served by the in-memory Telegram of ``tests/fakes/telethon_client.py`` behind a
real ``TelegramClient`` (only its sender is replaced; every page is serialised and parsed back
as a server's answer would be). Each measurement runs into a fresh archive, in this process,
one after the other:

- ``import`` (the baseline): ``archiver.sources.export.import_file`` on the export;
- ``telethon backfill``: ``sync_telethon_channel`` on a new channel: paging with
  ``iter_messages``, Telethon's parsing, conversion, the one ingest path (versions, FTS5, word
  forms), cursor moves; no alerts (a first pass never alerts);
- ``telethon, rules on``: the same, the channel marked backfilled beforehand so every batch
  goes through the rules (``archiver.rules.RuleLoader``, a few config rules) and queues alerts,
  as live posts of a followed channel do.

Speeds are posts per second of wall time and of CPU time (this process, all threads), and
the ratio to the baseline. Then the requests of an idle sync: ten channels synced once, then
synced again by a new client (a new process would be the same: only the archive remembers).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from telethon import functions, types  # noqa: E402

from archiver.channels import parse_ref  # noqa: E402
from archiver.config import Backfill, ChannelConfig  # noqa: E402
from archiver.models import Post, Rule, bare_id  # noqa: E402

RULES = (
    Rule("evacuation-ru", "эвакуация", notify=(100,)),
    Rule("evacuation-uk", "евакуація", notify=(100,)),
    Rule("evacuation-en", "evacuation", notify=(101,)),
    Rule("alarm", '"воздушной тревоги" OR "повітряна тривога"', notify=(100,)),
)

_ENTITIES: dict[str, Any] = {
    "bold": types.MessageEntityBold,
    "italic": types.MessageEntityItalic,
    "underline": types.MessageEntityUnderline,
    "strikethrough": types.MessageEntityStrike,
    "code": types.MessageEntityCode,
    "url": types.MessageEntityUrl,
    "mention": types.MessageEntityMention,
    "hashtag": types.MessageEntityHashtag,
    "email": types.MessageEntityEmail,
    "phone_number": types.MessageEntityPhone,
}


def cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def to_message(post: Post, bare: int, n: int) -> Any:
    """The Telethon message a server would send for this exported post."""
    peer = types.PeerChannel(bare)
    if post.is_service:
        return types.MessageService(
            id=post.message_id,
            peer_id=peer,
            date=post.date,
            action=types.MessageActionPinMessage(),
            post=True,
            reply_to=types.MessageReplyHeader(reply_to_msg_id=max(1, post.message_id - 1)),
        )
    entities = []
    for e in post.entities:
        if e.type == "text_link":
            entities.append(types.MessageEntityTextUrl(e.offset, e.length, e.url or ""))
        else:
            entities.append(_ENTITIES.get(e.type, types.MessageEntityUnknown)(e.offset, e.length))
    media = None
    if post.media:
        m = post.media[0]
        if m.kind == "photo":
            media = types.MessageMediaPhoto(
                photo=types.Photo(
                    id=n,
                    access_hash=n * 3,
                    file_reference=b"\x02\x00ref",
                    date=post.date,
                    sizes=[
                        types.PhotoStrippedSize(type="i", bytes=b"\x01" * 40),
                        types.PhotoSize(type="m", w=320, h=240, size=(m.size or 1) // 8),
                        types.PhotoSizeProgressive(
                            type="y",
                            w=m.width or 1280,
                            h=m.height or 720,
                            sizes=[(m.size or 1) // 4, m.size or 1],
                        ),
                    ],
                    dc_id=2,
                )
            )
        else:
            media = types.MessageMediaDocument(
                document=types.Document(
                    id=n,
                    access_hash=n * 3,
                    file_reference=b"\x02\x00ref",
                    date=post.date,
                    mime_type=m.mime_type or "video/mp4",
                    size=m.size or 1,
                    dc_id=2,
                    attributes=[
                        types.DocumentAttributeVideo(
                            duration=m.duration or 1, w=m.width or 1280, h=m.height or 720
                        ),
                        types.DocumentAttributeFilename(file_name=f"video_{n}.mp4"),
                    ],
                )
            )
    fwd = None
    if post.forward is not None and post.forward.from_id is not None:
        fwd = types.MessageFwdHeader(
            date=post.date,
            from_id=types.PeerChannel(bare_id(post.forward.from_id)),
            channel_post=n % 5000 + 1,
        )
    reactions = None
    if post.reactions:
        reactions = types.MessageReactions(
            results=[
                types.ReactionCount(reaction=types.ReactionEmoji(emoticon=e), count=c)
                for e, c in post.reactions
            ]
        )
    return types.Message(
        id=post.message_id,
        peer_id=peer,
        date=post.date,
        message=post.text,
        post=True,
        entities=entities or None,
        media=media,
        fwd_from=fwd,
        views=1000 + n % 9000,
        forwards=n % 40,
        edit_date=post.edit_date,
        reactions=reactions,
    )


def write_export(path: Path, n: int, seed: int) -> None:
    import gen_export

    with path.open("w", encoding="utf-8") as out:
        gen_export.write_export(out, n, seed)


async def child(which: str, tmp: Path) -> None:
    """One measurement in a fresh process (word-form caches cold, as for every path)."""
    import json

    from fakes.telethon_client import FakeTelegram, Sleeper, connected, settings_for

    from archiver.rules import RuleLoader
    from archiver.sources.export import ExportReader, import_file
    from archiver.sources.telethon import sync_telethon_channel
    from archiver.sources.telethon_convert import channel_info
    from archiver.store.archive import Archive
    from archiver.store.channels import set_cursor, upsert_channel
    from archiver.sync import SyncOptions

    export = tmp / "export.json"
    tg = FakeTelegram()
    fc = tg.add_channel(1811111111, "benchchannel", "Бенчмарк")
    count = 0
    if which != "import":
        for item in ExportReader(export):
            if isinstance(item, Post):
                count += 1
                tg._store(fc, to_message(item, fc.channel.id, count), False, True)
    cfg = ChannelConfig(parse_ref("benchchannel"), backfill=Backfill("all"))
    opts = SyncOptions(page_wait=0, sleeper=Sleeper(), batch_size=100)
    settings = settings_for(tmp, cfg)
    out: dict[str, Any] = {}
    async with await Archive.open(tmp / f"{which}.db") as a:
        if which == "rules":
            RuleLoader(RULES).install(a)
            row = await upsert_channel(a, channel_info(fc.channel), source="telethon")
            await set_cursor(a, row.id, backfill_low=0, backfilled=True)
        wall, cpu0 = time.perf_counter(), cpu()
        if which == "import":
            [res] = await import_file(a, export)
            count = res.posts_added
        else:
            r = await sync_telethon_channel(a, await connected(tg), cfg, settings, options=opts)
            assert r.new_posts == count, r
        out["wall"], out["cpu"] = time.perf_counter() - wall, cpu() - cpu0
        got = await a.fetchone("SELECT count(*) FROM alerts")
        out["alerts"] = int(got[0]) if got else 0
    out["posts"] = count
    out["history"] = tg.count(functions.messages.GetHistoryRequest)
    print(json.dumps(out))


LABELS = {
    "import": "import (export JSON, baseline)",
    "backfill": "telethon backfill (no alerts)",
    "rules": "telethon, rules on (alerts queued)",
}


def run_child(which: str, tmp: Path) -> dict[str, Any]:
    import json
    import subprocess

    cmd = [sys.executable, __file__, "--child", which, "--tmp", str(tmp)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    out["label"] = LABELS[which]
    print(f"  {out['label']}: {out['posts']:,} posts in {out['wall']:.1f}s wall,"
          f" {out['cpu']:.1f}s CPU", flush=True)  # fmt: skip
    return out


async def bench(n: int, seed: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="tw-bench-"))
    print(f"writing an export of {n:,} posts ...", flush=True)
    write_export(tmp / "export.json", n, seed)
    results = [run_child(w, tmp) for w in ("import", "backfill", "rules")]

    print()
    print(f"Python {platform.python_version()}, {platform.machine()}, {n:,} posts, seed {seed}")
    print(f"history requests for the backfill: {results[1]['history']:,}")
    print(f"alerts queued with rules on: {results[2]['alerts']:,}")
    print()
    base = results[0]
    print("| path | posts/s (wall) | × import | posts/s (CPU) | × import |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        w, c = r["posts"] / r["wall"], r["posts"] / r["cpu"]
        bw, bc = base["posts"] / base["wall"], base["posts"] / base["cpu"]
        print(f"| {r['label']} | {w:,.0f} | {w / bw:.2f} | {c:,.0f} | {c / bc:.2f} |")

    await idle_requests(tmp)


async def idle_requests(tmp: Path) -> None:
    from fakes.telethon_client import FakeTelegram, Sleeper, connected, settings_for

    from archiver.store.archive import Archive
    from archiver.sync import SyncOptions, sync_all

    tg = FakeTelegram()
    cfgs = []
    for i in range(10):
        tg.add_channel(1900000000 + i, f"channel{i}", f"Channel {i}")
        tg.posts(150, bare_id=1900000000 + i)
        cfgs.append(ChannelConfig(parse_ref(f"channel{i}"), backfill=Backfill("all")))
    opts = SyncOptions(page_wait=0, sleeper=Sleeper())
    settings = settings_for(tmp, *cfgs)
    async with await Archive.open(tmp / "idle.db") as a:
        runs = []
        for label in ("first sync (resolve + backfill)", "idle sync, new client", "idle again"):
            tg.requests.clear()
            await sync_all(a, settings, client=await connected(tg), options=opts)
            runs.append((label, Counter(type(r).__name__ for r in tg.requests)))
    print()
    print("Requests for 10 channels (150 posts each):")
    print()
    print("| run | GetHistory | ResolveUsername | GetFullChannel | total | per channel |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, c in runs:
        total = sum(c.values())
        print(
            f"| {label} | {c['GetHistoryRequest']} | {c['ResolveUsernameRequest']} |"
            f" {c['GetFullChannelRequest']} | {total} | {total / 10:g} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("n", nargs="?", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--child", choices=sorted(LABELS), help=argparse.SUPPRESS)
    p.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        asyncio.run(child(args.child, args.tmp))
    else:
        asyncio.run(bench(args.n, args.seed))


if __name__ == "__main__":
    main()
