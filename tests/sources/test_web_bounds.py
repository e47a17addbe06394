"""Hostile and broken answers from t.me (issue 15 item 5): oversized pages, deeply nested
markup, a server that trickles one byte at a time (through the fake, and through a real
socket on 127.0.0.1), and the same on a post's embed page. Each ends in one line naming the
channel, and nothing archived is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from fakes.tme import FakeClock, FakeTme, nested, oversized, trickle

from archiver.errors import SourceError
from archiver.sources.web import TmeClient, sync_web_channel
from archiver.sources.web.page import (
    MAX_DEPTH,
    SCAN_ABOVE,
    PageRefused,
    check_markup,
    parse_page,
)
from archiver.store.archive import Archive
from sources.webkit import NOW, settings, texts, web


@pytest.fixture
def tme() -> FakeTme:
    return FakeTme()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(tme: FakeTme, clock: FakeClock) -> AsyncIterator[TmeClient]:
    s = settings(max_page_bytes=50_000, timeout_seconds=0.3)
    async with TmeClient(s, transport=tme.transport, sleep=clock.sleep, clock=clock) as c:
        yield c


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
async def test_an_oversized_page_is_refused(
    tme: FakeTme, client: TmeClient, declared: bool
) -> None:
    tme.channel("vsaldo").add_texts(range(1, 4))
    tme.fail("vsaldo", oversized(200_000, declared=declared))
    with pytest.raises(SourceError) as err:
        await client.fetch("vsaldo")
    assert str(err.value) == (
        "@vsaldo: the page is larger than [web] max_page_bytes (50,000 bytes); it was not read"
    )
    assert len(tme.requests) == 1  # not retried: the same page would come again


async def test_a_deeply_nested_page_is_refused_before_parsing(
    tme: FakeTme, client: TmeClient
) -> None:
    tme.channel("vsaldo").add_texts(range(1, 4))
    tme.fail("vsaldo", nested(3_000))
    with pytest.raises(SourceError) as err:
        await client.fetch("vsaldo")
    assert str(err.value) == (
        f"@vsaldo: the page nests its elements more than {MAX_DEPTH} deep; the page was not read"
    )


async def test_a_trickling_server_meets_the_deadline(tme: FakeTme, client: TmeClient) -> None:
    """One byte every 50 ms never lets httpx's read timeout (0.3 s) fire; the deadline of the
    whole request (the same 0.3 s) does."""
    tme.channel("vsaldo").add_texts(range(1, 4))
    tme.fail("vsaldo", trickle(total=400, every=0.05))
    with pytest.raises(SourceError, match=r"^@vsaldo: t\.me did not send the page within 0\.3s"):
        await client.fetch("vsaldo")


async def test_a_real_trickling_socket_meets_the_deadline(archive: Archive) -> None:
    """The same against httpx's own transport and a server on 127.0.0.1 that sends its
    headers, then one byte every 0.1 s (each read succeeds well within the read timeout)."""
    stop = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100000\r\n\r\n"
        )
        try:
            while not stop.is_set():
                writer.write(b"<")
                await writer.drain()
                await asyncio.sleep(0.1)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    s = settings(base_url=f"http://127.0.0.1:{port}", timeout_seconds=0.5, max_retries=0)
    started = time.monotonic()
    try:
        async with TmeClient(s) as c:
            with pytest.raises(SourceError, match=r"^@vsaldo: t\.me did not send the page"):
                await c.fetch("vsaldo")
    finally:
        stop.set()
        server.close()
        await server.wait_closed()
    assert time.monotonic() - started < 100  # the body would take 10,000 s at that pace


async def test_a_hostile_page_fails_the_channel_and_keeps_the_archive(
    archive: Archive, tme: FakeTme, client: TmeClient
) -> None:
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 46))
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    tme.fail("vsaldo", nested(3_000))
    with pytest.raises(SourceError, match=r"^@vsaldo: the page nests"):
        await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert list(await texts(archive)) == list(range(1, 46))


@pytest.mark.parametrize(
    "answer",
    [oversized(200_000, declared=False), nested(3_000), trickle(total=400, every=0.05)],
    ids=["oversized", "nested", "trickle"],
)
async def test_a_hostile_post_page_is_unknown(
    archive: Archive, tme: FakeTme, client: TmeClient, answer: object
) -> None:
    ch = tme.channel("vsaldo")
    ch.add_texts(range(1, 46))
    await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    ch.delete(35)
    tme.fail_embed("vsaldo", answer)  # type: ignore[arg-type]
    result = await sync_web_channel(archive, client, web("vsaldo"), now=NOW)
    assert result.status == "ok" and result.unconfirmed == 1 and result.deleted == 0


def test_check_markup_passes_real_pages_and_refuses_deep_ones() -> None:
    page = "<html><body>" + "<div><p>x</p><br><img src=x></div>" * 3_000 + "</body></html>"
    check_markup(page)  # wide, not deep
    deep = SCAN_ABOVE + 1
    check_markup("<div>" * MAX_DEPTH + "</div>" * MAX_DEPTH + "<br>" * deep)
    with pytest.raises(PageRefused):
        check_markup("<div>" * deep)
    with pytest.raises(PageRefused):
        parse_page("<section>" * 50_000)  # refused before Lexbor's quadratic walk
    check_markup("<svg>" + '<path d="M0"/>' * deep + "</svg>")  # self-closing tags


def test_the_text_walker_does_not_recurse() -> None:
    """Below SCAN_ABOVE tags nothing is refused, so the text walker must not depend on the
    nesting: it keeps its own stack (before, it recursed once per level, and nesting deeper
    than Python's recursion limit ended in RecursionError). The guard is lifted here to show
    it with 5,000 levels."""
    text = "<b>" * 5_000 + "deep" + "</b>" * 5_000
    html = (
        '<section class="tgme_channel_history"><div class="tgme_widget_message" '
        'data-post="vsaldo/7"><div class="tgme_widget_message_text">'
        f'{text}</div><time datetime="2026-09-01T08:00:00+00:00"></time></div></section>'
    )
    page = parse_page(html, username="vsaldo", max_depth=10**6)
    assert page.posts[0].text == "deep"
    assert page.posts[0].entities[0].type == "bold"
