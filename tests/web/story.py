"""The web view's fixture: the demo archive (``telewatch demo``: one official's channel, a
post asking for help "organising the departure", edited to deny it, then deleted) and his
deputy's channel, which says there is no evacuation between the post and its edit."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from archiver.demo import run_demo
from archiver.models import ChannelInfo, Post
from archiver.store.archive import Archive, parse_ts
from archiver.store.channels import upsert_channel
from archiver.store.ingest import ingest

OFFICIAL = "kherson_admin_demo"
DEPUTY_ID = -1001822222222
DEPUTY = "deputy_demo"


async def build(path: Path) -> None:
    """Write the story's archive at ``path`` (a new file)."""
    await run_demo(path, lambda _line: None)
    archive = await Archive.open(path, create=False)
    try:
        row = await archive.fetchone(
            "SELECT p.date FROM posts p JOIN channels c ON c.id = p.channel_id"
            " WHERE c.username = ? AND p.message_id = 42",
            (OFFICIAL,),
        )
        assert row is not None
        t = parse_ts(row[0])
        assert t is not None
        await upsert_channel(
            archive,
            ChannelInfo(DEPUTY_ID, DEPUTY, "Заместитель главы района", None, 4200),
            source="telethon",
        )
        posts = [
            Post(DEPUTY_ID, 301, t - timedelta(days=1), "Работаем в штатном режиме. Рынок открыт."),
            Post(
                DEPUTY_ID,
                302,
                t + timedelta(minutes=3),
                "Никакой эвакуации не будет. Не верьте слухам о выезде, ситуация под контролем.",
                views=900,
            ),
            Post(DEPUTY_ID, 303, t + timedelta(minutes=40), "Эвакуация? Решений не принималось."),
        ]
        await ingest(archive, posts, source="telethon", alerts=False)
        edited = Post(
            DEPUTY_ID,
            303,
            t + timedelta(minutes=40),
            "Эвакуация отменена. Решений о выезде не принималось.",
            edit_date=t + timedelta(minutes=55),
        )
        await ingest(archive, [edited], source="telethon", alerts=False)
    finally:
        await archive.close()
