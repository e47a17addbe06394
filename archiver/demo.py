"""``telewatch demo``: the whole pipeline on the bundled sample channel, with no Telegram.

Import (the Telegram Desktop export path) -> search in three languages with word forms ->
rules backtested -> the channel switched to "live" -> a new post, an edit and a deletion go
through the same ingest path a live source uses -> the alerts queued in the outbox, shown as
the bot would word them -> the post's history. Everything lands in a demo archive that opens in
Datasette like a real one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

from archiver.errors import TelewatchError
from archiver.models import Post, Rule
from archiver.query import parse
from archiver.store import Archive
from archiver.store.archive import utcnow

DEMO_RULES = (
    Rule(
        name="evacuation",
        query="(эвакуация OR евакуація OR evacuation OR выезд) -учения",
        notify=(111111111,),
    ),
    Rule(name="shelling", query="обстріл OR обстрел OR shelling", notify=(111111111, 222222222)),
)
DEMO_SEARCHES = (
    "эвакуация",
    "обстріл",
    "evacuation",
    '"тревожный чемоданчик"',
    "(эвакуация OR евакуація OR evacuation) -учения",
    "is:edited",
)
_MARK = "telewatch-demo"

Echo = Callable[[str], None]


def sample_path() -> Path:
    return Path(str(resources.files("archiver") / "data" / "sample_channel.json"))


async def _fresh_archive(path: Path) -> Archive:
    """Open a new demo archive at ``path``; only a previous demo archive is replaced."""
    if path.exists():
        old = await Archive.open(path, create=False)
        try:
            mark = await old.get_meta("demo")
        finally:
            await old.close()
        if mark != _MARK:
            raise TelewatchError(
                f"{path}: is a real archive, not a demo; the demo will not replace it "
                "(use --db data/demo.db)"
            )
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    archive = await Archive.open(path)
    async with archive.transaction() as db:
        await db.execute("INSERT INTO meta (key, value) VALUES ('demo', ?)", (_MARK,))
    return archive


async def run_demo(path: Path, echo: Echo, *, tz_name: str = "Europe/Kyiv") -> None:
    from zoneinfo import ZoneInfo

    from archiver.backtest import backtest
    from archiver.display import history_lines, hit_lines, local
    from archiver.rules import RuleLoader
    from archiver.sources.export import import_file
    from archiver.store import outbox
    from archiver.store.channels import set_cursor
    from archiver.store.deletions import confirm_deleted, mark_missing
    from archiver.store.ingest import ingest
    from archiver.store.search import channel_stats, history, search

    tz = ZoneInfo(tz_name)
    archive = await _fresh_archive(path)
    try:
        echo(f"== 1. Import the bundled sample channel (a Telegram Desktop export) into {path}")
        results = await import_file(archive, sample_path(), username="kherson_admin_demo")
        for r in results:
            echo(f"   {r.username or r.title}: {r.posts_added} posts, {r.versions_added} versions")
        channel = results[0]
        for s in await channel_stats(archive):
            span = f"{local(s.first_post, tz)} .. {local(s.last_post, tz)}"
            echo(f"   {s.posts} posts, {s.edited_posts} edited, {s.deletions} deleted; {span}")

        echo("\n== 2. Search: a bare word finds every form of it, in Russian, Ukrainian, English")
        for q in DEMO_SEARCHES:
            hits = await search(archive, parse(q), limit=3)
            echo(f"\n$ telewatch search '{q}'   ({len(hits)} shown)")
            for h in hits:
                echo("   " + "\n   ".join(hit_lines(h, tz, color=False)))

        echo("\n== 3. Rules, in the same language; backtested over the archive first")
        for rule in DEMO_RULES:
            echo(f"   {rule.name}: {rule.query}  -> notify {', '.join(map(str, rule.notify))}")
        for res in await backtest(archive, DEMO_RULES, newest=2, tz=tz_name):
            echo(f"   {res.rule.name}: {res.matches} past post(s) would have matched")

        echo(
            "\n== 4. Live: the channel's backfill is done; what arrives now is checked by the rules"
        )
        RuleLoader(DEMO_RULES, tz_name).install(archive)
        await set_cursor(archive, channel.channel_id, backfilled=True)
        last = await archive.fetchone(
            "SELECT max(message_id) FROM posts WHERE channel_id = ?", (channel.channel_id,)
        )
        msg_id = int(last[0] if last and last[0] else 0) + 1
        now = utcnow()
        text = (
            "Уважаемые жители! Администрация просит помочь организовать выезд мирного населения "
            "с правого берега. Эвакуация начнётся завтра в 8:00."
        )
        new = Post(channel.channel_id, msg_id, now, text, views=120)
        stats = await ingest(archive, [new], source="demo", alerts=True)
        echo(f"   new post #{msg_id}: {stats.alerts_queued} alert(s) queued")
        edited = Post(
            channel.channel_id,
            msg_id,
            now,
            "Уважаемые жители! Информация о выезде не соответствует действительности.",
            edit_date=now + timedelta(minutes=7),
            views=480,
        )
        stats = await ingest(archive, [edited], source="demo", alerts=True)
        echo(f"   the post is edited:  {stats.alerts_queued} alert(s) queued (old against new)")
        n = await confirm_deleted(
            archive, channel.channel_id, [msg_id], how="live", alerts=True, source="demo",
            at=now + timedelta(minutes=20),
        )  # fmt: skip
        echo(
            f"   the post is deleted: {n} post marked deleted (confirmed by Telegram), never erased"
        )

        old = await archive.fetchone(
            "SELECT p.message_id, p.date, v.text FROM posts p JOIN versions v"
            " ON v.id = p.current_version_id WHERE p.channel_id = ? AND v.text LIKE ?"
            " ORDER BY p.message_id LIMIT 1",
            (channel.channel_id, "ЭВАКУАЦИЯ ЗАВЕРШЕНА%"),
        )
        if old is not None:
            date = datetime.fromisoformat(old[1]).replace(tzinfo=UTC)
            rewritten = Post(
                channel.channel_id, old[0], date,
                "Эвакуация не проводилась. Уровень воды в норме.", edit_date=now,
            )  # fmt: skip
            stats = await ingest(archive, [rewritten], source="telethon", alerts=True)
            echo(
                f"   an OLD post (#{old[0]}, {local(date, tz)}) is rewritten and found by the"
                f" re-read: {stats.versions_added} new version, {stats.alerts_queued} alert(s)"
                " (it matched a rule when it was imported)"
            )
        hidden = await mark_missing(archive, channel.channel_id, [msg_id - 2], source="web")
        echo(
            f"   a post the web listing leaves out: {hidden} marked missing, NOT deleted and no"
            " alert, until its own page confirms it"
        )

        echo("\n== 5. The outbox: what the bot delivers, exactly once, to each recipient")
        rows = await outbox.pending(archive, limit=50, now=datetime.now(UTC) + timedelta(days=1))
        for a in rows:
            echo(f"\n   -> to {a.recipient} [{a.kind}] rules: {', '.join(a.rules)}")
            echo(f"      {a.channel_name}, {a.post_date.astimezone(tz):%Y-%m-%d %H:%M}  {a.link}")
            if a.kind == "edited" and a.old_text is not None:
                echo(f"      was: {a.old_text}")
                echo(f"      now: {a.text}")
            elif a.kind == "deleted":
                echo(f"      deleted; the text was: {a.text}")
            else:
                echo(f"      {a.text}")

        echo(f"\n== 6. The post's history: $ telewatch history {channel.username} {msg_id}")
        story = await history(archive, channel.channel_id, msg_id)
        echo("   " + "\n   ".join(history_lines(story, tz)))
    finally:
        await archive.close()
    echo(closing(path, in_image=bool(os.environ.get(IMAGE_ENV))))


IMAGE_ENV = "TELEWATCH_IN_CONTAINER"  # set by the Dockerfile: the commands to suggest are compose's


def closing(path: Path, *, in_image: bool) -> str:
    """The demo's last lines: what to run next, as the user will type it (on the host, for
    the container: its paths are the host's ./data, its commands go through compose)."""
    if in_image:
        return (
            f"\nDone. Explore it: docker compose run --rm telewatch --db {path} search"
            " 'евакуація'\n"
            "Real use: cp config.example.toml data/config.toml; docker compose run --rm"
            " telewatch login; docker compose up -d"
        )
    return (
        f"\nDone. Explore it: telewatch --db {path} search 'евакуація'   |   telewatch --db"
        f" {path} serve\n"
        "Real use: cp config.example.toml config.toml; telewatch login; telewatch run"
    )
