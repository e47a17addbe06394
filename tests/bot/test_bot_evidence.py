"""/evidence LINK (issue 19): the post's evidence bundle sent as a document to allowed users,
through the real PTB Application against the fake Bot API; strangers get nothing from the
archive; a bundle over the Bot API's 50 MB upload limit is refused with a message."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from botkit import (
    MEMBER,
    STRANGER,
    Harness,
    delete_post,
    edit_post,
    fake_api,
    queue_alerts,
    running_bot,
    seed_channel,
)
from fakes.botapi import MAX_UPLOAD, TOKEN, Call

import bot.handlers.evidence as evidence_handler
from archiver.evidence.bundle_check import verify_bundle
from archiver.evidence.roots import make_day_root
from archiver.store.archive import Archive, utcnow


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Harness]:
    db = tmp_path / "e.db"
    async with fake_api() as api:
        archive = await Archive.open(db)
        try:
            await seed_channel(archive)
            await queue_alerts(archive, ["война пришла", "мир"], ())
            await edit_post(archive, 1, "война ушла")
            await delete_post(archive, 1)
            await make_day_root(archive, utcnow().date(), tsa=None)
            async with running_bot(api, archive, db) as h:
                yield h
        finally:
            await archive.close()


def documents(calls: list[Call]) -> list[Call]:
    return [c for c in calls if c.method == "sendDocument"]


async def test_a_member_gets_a_bundle_that_verifies(bot: Harness, tmp_path: Path) -> None:
    (doc,) = documents(await bot.send(MEMBER, "/evidence https://t.me/saltpepper/1"))
    filename, data = doc.files["document"]
    assert filename == "telewatch-evidence-saltpepper-1.zip"
    assert "Evidence bundle of https://t.me/saltpepper/1: 3 log entries chained to the root" in (
        doc.text
    )
    assert "<code>telewatch evidence verify FILE</code>" in doc.text
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        md = zf.read("report.md").decode()
    assert "война пришла" in md and "война ушла" in md and "Deleted: confirmed" in md
    saved = tmp_path / "got.zip"
    saved.write_bytes(data)
    assert verify_bundle(saved).ok


async def test_the_caption_speaks_the_users_language(bot: Harness) -> None:
    (doc,) = documents(await bot.send(MEMBER, "/evidence @saltpepper/2", language_code="uk"))
    assert "Доказовий пакет @saltpepper/2: записів журналу: 1" in doc.text
    assert "Перевірити офлайн" in doc.text


async def test_a_stranger_gets_nothing(bot: Harness) -> None:
    replies = await bot.send(STRANGER, "/evidence https://t.me/saltpepper/1")
    assert documents(replies) == []
    assert [c.method for c in replies] == ["sendMessage"]
    assert "This bot is private" in replies[0].text
    assert "война" not in replies[0].text


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/evidence", "Usage: <code>/evidence LINK</code>"),
        ("/evidence a b", "Usage: <code>/evidence LINK</code>"),
        ("/evidence t.me/saltpepper", "The link must name a post, like t.me/vsaldo/123."),
        ("/evidence t.me/c/0/5", "is not a channel id"),
        ("/evidence t.me/saltpepper/77", "t.me/saltpepper/77: no such post in the archive"),
    ],
)
async def test_bad_requests_get_one_reply(bot: Harness, text: str, says: str) -> None:
    replies = await bot.send(MEMBER, text)
    assert documents(replies) == []
    assert len(replies) == 1 and says in replies[0].text, [c.text for c in replies]


async def test_a_bundle_over_the_upload_limit_is_refused(
    bot: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evidence_handler, "MAX_DOCUMENT_BYTES", 1000)  # a test bundle is ~5 KB
    replies = await bot.send(MEMBER, "/evidence https://t.me/saltpepper/1")
    assert documents(replies) == []
    assert len(replies) == 1
    assert "MB, more than the 0 MB a bot may send" in replies[0].text
    assert "<code>telewatch evidence</code>" in replies[0].text
    assert bot.api.attempts("sendDocument") == []


async def test_the_fake_refuses_uploads_over_50_mb_as_telegram_does() -> None:
    async with fake_api() as api, httpx.AsyncClient() as http:
        url = f"{api.base_url}/bot{TOKEN}/sendDocument"
        ok = await http.post(url, data={"chat_id": "1"}, files={"document": ("a.zip", b"x")})
        assert ok.status_code == 200
        big = await http.post(
            url, data={"chat_id": "1"}, files={"document": ("b.zip", b"\0" * (MAX_UPLOAD + 1))}
        )
        assert big.status_code == 413
        assert big.json() == {
            "ok": False, "error_code": 413, "description": "Request Entity Too Large",
        }  # fmt: skip
