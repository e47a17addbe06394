"""Web preview parsing speed: pages/s and posts/s on a 20-post page, beside a baseline.

    .venv/bin/python bench/bench_web_parse.py [--seconds 2] [--nesting]

The page: the hand-written fixture ``tests/fixtures/web/rich_channel.html`` (real t.me/s
markup: text with links and entities, album, video, voice, document, sticker, poll, link
preview, reply, forward) with its post blocks repeated and renumbered to 20 posts; then the
same page with the SVG bubble tail every block carries on t.me (a page of full size).

- ``archiver.sources.web.page.parse_page``: selectolax (Lexbor) -> ChannelInfo + Post objects
  with text, UTF-16 entities, media kinds, counters, forwards, raw JSON.
- baseline: the standard library's ``html.parser`` with a minimal handler that only collects
  each post's id, date, views and plain text (line breaks kept). It does far less than
  ``parse_page`` (no entities, media, forwards or header), so the ratio flatters the baseline.

``--nesting``: Lexbor's time against the nesting depth of ``<div>`` elements (quadratic), and
``parse_page``'s with its nesting guard on the same markup.

Each parser runs about ``--seconds`` in 7 rounds that alternate between the two; the best
round of each counts. Times are the process's CPU time (``time.process_time``), so other
processes on a shared machine disturb the figures less than they would wall-clock time.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archiver.sources.web.page import parse_page  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "web" / "rich_channel.html"
WRAP = '<div class="tgme_widget_message_wrap js-widget_message_wrap">'
USERNAME = "testograd_news"
POSTS = 20


def _tail() -> str:
    """A bubble tail like the one t.me puts in every post block: an SVG of four paths, about
    3 KB (the fixture leaves it out; a served page has one per post)."""
    pts = " ".join(
        f"C{i * 0.731:.3f},{i * 1.117:.3f} {i * 0.419:.3f},{i * 0.977:.3f}" for i in range(24)
    )
    paths = "".join(f'<path class="border_{k}x" d="M9,1 L2,1 {pts} Z"></path>' for k in range(4))
    return (
        '<i class="tgme_widget_message_bubble_tail"><svg class="bubble_icon" width="9px"'
        f' height="20px" viewBox="0 0 9 20"><g fill="none">{paths}</g></svg></i>'
    )


def twenty_post_page(full: bool = False) -> str:
    """The fixture with its own channel's post blocks repeated, renumbered 1..20; ``full``
    adds the bubble tail each block has on t.me."""
    html = FIXTURE.read_text(encoding="utf-8")
    head, _, rest = html.partition(WRAP)
    body, _, tail = (WRAP + rest).rpartition("</section>")
    blocks = [WRAP + b for b in body.split(WRAP) if f'data-post="{USERNAME}/' in b]
    out: list[str] = []
    for n in range(POSTS):
        block = blocks[n % len(blocks)]
        start = block.index(f'data-post="{USERNAME}/') + len(f'data-post="{USERNAME}/')
        end = block.index('"', start)
        old = block[start:end]
        block = block.replace(f"{USERNAME}/{old}", f"{USERNAME}/{n + 1}")
        if full:
            bubble = '<div class="tgme_widget_message_bubble">'
            block = block.replace(bubble, bubble + _tail(), 1)
        out.append(block)
    return head + "".join(out) + "\n</section>" + tail


class _Baseline(HTMLParser):
    """Post id, date, views and plain text per ``data-post`` block, nothing else."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.posts: list[dict[str, object]] = []
        self._in_text = 0
        self._in_views = False
        self._buf: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if "data-post" in a:
            self.posts.append({"id": a["data-post"], "text": "", "date": None, "views": None})
        elif self._in_text:
            if tag == "br":
                self._buf.append("\n")
            elif tag not in ("br", "img", "input", "meta", "link"):
                self._in_text += 1
        elif "tgme_widget_message_text" in cls and self.posts:
            self._in_text, self._buf = 1, []
        elif "tgme_widget_message_views" in cls:
            self._in_views = True
        elif tag == "time" and self.posts and a.get("datetime"):
            self.posts[-1]["date"] = a["datetime"]

    def handle_endtag(self, tag: str) -> None:
        if self._in_text:
            self._in_text -= 1
            if not self._in_text:
                self.posts[-1]["text"] = "".join(self._buf).strip()
        self._in_views = False

    def handle_data(self, data: str) -> None:
        if self._in_text:
            self._buf.append(data)
        elif self._in_views and self.posts:
            self.posts[-1]["views"] = data


def baseline(html: str) -> int:
    p = _Baseline()
    p.feed(html)
    p.close()
    return len(p.posts)


def ours(html: str) -> int:
    return len(parse_page(html, username=USERNAME).posts)


def rates(
    fns: list[Callable[[str], int]], html: str, seconds: float, rounds: int = 7
) -> list[float]:
    """Best pages/s of each function. Rounds alternate between the functions, so a change
    in machine load hits all of them alike."""
    counts = []
    for fn in fns:
        t0 = time.process_time()
        fn(html)
        counts.append(max(1, int(seconds / rounds / max(time.process_time() - t0, 1e-6))))
    best = [0.0] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = time.process_time()
            for _ in range(counts[i]):
                fn(html)
            best[i] = max(best[i], counts[i] / (time.process_time() - t0))
    return best


def nesting() -> None:
    """Lexbor's cost against the nesting of <div>s, and what the guard does with the same
    markup (check_markup refuses it before the parser sees it)."""
    from selectolax.lexbor import LexborHTMLParser

    from archiver.sources.web.page import PageRefused, parse_page

    print("| nested <div>s | bytes | Lexbor parse s | parse_page (guarded) s |")
    print("|---:|---:|---:|---:|")
    for n in (1_000, 2_000, 4_000, 8_000, 16_000, 32_000):
        html = "<html><body>" + "<div>" * n + "x" + "</div>" * n + "</body></html>"
        t0 = time.process_time()
        LexborHTMLParser(html)
        raw = time.process_time() - t0
        t0 = time.process_time()
        try:
            parse_page(html)
            outcome = ""
        except PageRefused:
            outcome = " (refused)"
        guarded = time.process_time() - t0
        print(f"| {n:,} | {len(html):,} | {raw:.3f} | {guarded:.4f}{outcome} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    ap.add_argument("--nesting", action="store_true", help="only the nesting figures")
    args = ap.parse_args()
    if args.nesting:
        nesting()
        return
    print(f"Python {platform.python_version()}, {platform.processor() or platform.machine()}")
    print("| page | parser | pages/s | posts/s | × baseline |")
    print("|---|---|---:|---:|---:|")
    for full in (False, True):
        html = twenty_post_page(full)
        assert baseline(html) == ours(html) == POSTS
        base_rate, our_rate = rates([baseline, ours], html, args.seconds)
        page = f"{POSTS} posts, {len(html.encode()) // 1024} KB" + (" (with tails)" if full else "")
        print(f"| {page} | html.parser, ids/dates/views/text only (baseline) | {base_rate:,.0f} |"
              f" {base_rate * POSTS:,.0f} | 1.00 |")  # fmt: skip
        print(f"| {page} | **selectolax: web.page.parse_page** | {our_rate:,.0f} |"
              f" {our_rate * POSTS:,.0f} | {our_rate / base_rate:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
