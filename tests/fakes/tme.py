"""A fake t.me web preview behind an ``httpx.MockTransport``: no sockets, no network.

``FakeTme`` holds channels and serves what the web source reads, in the real markup (the
structure of ``../shared/samples/tme_s_*.html``):

- ``/s/<username>`` and ``/s/<username>?before=<id>``: the newest ``page_size`` messages with
  ids below ``before`` (album items count), in ascending order;
- ``/<username>/<id>?embed=1&mode=tme``: one post's embed page: the post's block, or
  ``<div class="tgme_widget_message_error">Post not found</div>`` inside a
  ``tgme_widget_message err_message`` block for a post that does not exist (deleted).

Each behaviour and where it comes from (TESTING = ../shared/TESTING.md, "The public web
preview"; samples = ../shared/samples/SOURCES.md):

- ``FakeChannel.hidden``: ids that take their place in the paging window but are not shown.
  For an id of a post that exists, the listing omits it while its embed page shows it
  (TESTING: "It can omit posts that still exist (restricted in the server's country, some
  media and service posts)"); for an id with no post, it is what a deleted post between two
  shown ones looks like. Removing an id from ``hidden`` makes the post reappear.
- A deleted post (``FakeChannel.delete(id)``): gone from the listing, and its embed page says
  "Post not found" (TESTING: "answers HTTP 200 with the one post, or with
  <div class="tgme_widget_message_error">Post not found</div> when it was deleted"; the same
  markup is what wpsocio/wptelegram-widget looks for to tell a deleted post).
- ``FakeChannel.private``: the embed page says "Channel is private" instead (TESTING: treat
  "channel is private" as unknown), and ``preview = False`` makes ``/s/<name>`` redirect to
  ``/<name>`` like a channel without a preview, a private or an unknown one.
- ``FakeChannel.post_name``: the spelling of the username in ``data-post`` (t.me keeps the
  channel's own case: ``data-post="Air_Alert_UA/501"`` in the real fragment
  ``tme_s_uk_air_alert_fragment.html``). ``FakeTme.alias(other, channel)``: another address
  of the channel: ``/s/<other>`` shows the same posts under the channel's own ``data-post``
  name (Telegram lets a channel have several usernames; a post link has one).
- Link-only and media-only edits: ``FakePost.html`` is the inner HTML of
  ``.tgme_widget_message_text`` as t.me writes it (links carry ``target``, ``rel`` and an
  ``onclick`` in the real pages), and ``FakePost.photo`` is the numeric class t.me puts on a
  photo (``tgme_widget_message_photo_wrap 5249090012068914481 ...`` in the real page
  ``tme_s_ru_prstnk.html``): change either and the words stay the same.
- ``FakeChannel.lies``: blocks every listing page adds although no such post exists (a page
  from a mirror, a forwarded or pinned post shown out of place: issue 15, "a listing page
  that shows a message id above the real newest"); their embed pages say "Post not found".
- ``FakeChannel.stuck = True``: ``?before=`` is ignored (the newest page every time).
- ``fail(username, response, ...)`` and ``fail_embed(username, response, ...)``: one-shot
  answers (429 with Retry-After, 5xx, a transport error, and the hostile pages below) served
  before the real page, in order.
- Hostile pages (issue 15, "a fake t.me that serves oversized, deeply nested and lying
  pages"): :func:`oversized` (with or without a Content-Length), :func:`nested` and
  :func:`trickle` (one byte at a time, each in time for a read timeout, never done).

It records every request (``requests``, ``befores()``, ``embeds()``).
"""

# ruff: noqa: E501  (the page templates keep Telegram's long lines of markup)
from __future__ import annotations

import asyncio
import base64
import html
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

T0 = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


@dataclass
class FakePost:
    id: int
    html: str  # the inner HTML of .tgme_widget_message_text (may be "")
    date: datetime
    views: str | None = "1"
    edited: bool = False
    service: bool = False
    media_html: str = ""  # blocks placed before the text (photo, video, forwarded ...)
    album: tuple[int, ...] = ()  # further ids shown as album items of this post
    photo: str | None = None  # a photo, by the numeric id t.me puts in its class


@dataclass
class FakeChannel:
    username: str
    title: str = "Fake channel"
    bare_id: int | None = 1811111111  # None: blocks carry no data-view (id unknown)
    description: str = "A channel for tests"
    subscribers: str = "1.2K"
    posts: dict[int, FakePost] = field(default_factory=dict)
    hidden: set[int] = field(default_factory=set)
    lies: dict[int, FakePost] = field(default_factory=dict)
    page_size: int = 20
    preview: bool = True
    private: bool = False
    stuck: bool = False
    post_name: str | None = None  # data-post spelling (default: username)

    @property
    def name(self) -> str:
        return self.post_name or self.username

    def add(self, *posts: FakePost) -> None:
        for p in posts:
            self.posts[p.id] = p

    def add_texts(self, ids: Iterable[int], text: str = "post {id}", **kw: object) -> None:
        """Posts ``ids`` with text ``text.format(id=...)``, dated one hour apart from T0."""
        for i in ids:
            self.add(
                FakePost(i, html.escape(text.format(id=i)), T0 + timedelta(hours=i), **kw)  # type: ignore[arg-type]
            )

    def delete(self, *ids: int) -> None:
        for i in ids:
            self.posts.pop(i, None)

    def window(self, before: int | None) -> list[FakePost]:
        """The posts a page shows: the newest ``page_size`` messages (album items and hidden
        ids count) below ``before``, and the lies."""
        slots: list[tuple[int, FakePost | None]] = []
        for p in self.posts.values():
            slots.append((p.id, p))
            slots.extend((a, None) for a in p.album)
        slots.extend((h, None) for h in self.hidden if h not in self.posts)
        slots.sort(key=lambda s: s[0])
        if before is not None and not self.stuck:
            slots = [s for s in slots if s[0] < before]
        chosen = slots[-self.page_size :]
        ids = {i for i, _ in chosen}
        shown = [
            p
            for i, p in chosen
            if p is not None and i not in self.hidden and (not p.album or p.id in ids)
        ]
        return sorted([*shown, *self.lies.values()], key=lambda p: p.id)


def data_view(bare_id: int, post_id: int) -> str:
    raw = json.dumps({"c": -bare_id, "p": post_id, "t": 1780180077, "h": "0" * 18})
    return base64.urlsafe_b64encode(raw.replace(" ", "").encode()).decode().rstrip("=")


def render_post(ch: FakeChannel, p: FakePost) -> str:
    u = ch.name
    view = f' data-view="{data_view(ch.bare_id, p.id)}"' if ch.bare_id is not None else ""
    classes = "tgme_widget_message text_not_supported_wrap js-widget_message"
    if p.service:
        classes += " service_message"
    album = ""
    if p.album:
        items = "".join(
            f'<a class="tgme_widget_message_photo_wrap grouped_media_wrap blured js-message_photo"'
            f" style=\"background-image:url('https://cdn4.telesco.pe/file/x.jpg')\""
            f' href="https://t.me/{u}/{i}?single"></a>'
            for i in (p.id, *p.album)
        )
        album = (
            '<div class="tgme_widget_message_grouped_wrap js-message_grouped_wrap">'
            '<div class="tgme_widget_message_grouped js-message_grouped">'
            f'<div class="tgme_widget_message_grouped_layer js-message_grouped_layer">{items}'
            "</div></div></div>"
        )
    photo = (
        f'<a class="tgme_widget_message_photo_wrap {p.photo} 1222149006_460006705" href="https://t.me/{u}/{p.id}"'
        f" style=\"width:600px;background-image:url('https://cdn4.telesco.pe/file/{p.photo}.jpg')\">"
        '<div class="tgme_widget_message_photo" style="padding-top:75%"></div></a>'
        if p.photo
        else ""
    )
    text = (
        f'<div class="tgme_widget_message_text js-message_text" dir="auto">{p.html}</div>'
        if p.html
        else ""
    )
    views = (
        f'<span class="tgme_widget_message_views">{p.views}</span>'
        '<span class="copyonly"> views</span>'
        if p.views is not None
        else ""
    )
    edited = "edited &nbsp;" if p.edited else ""
    when = p.date.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return f"""<div class="tgme_widget_message_wrap js-widget_message_wrap"><div class="{classes}" data-post="{u}/{p.id}"{view}>
  <div class="tgme_widget_message_user"><a href="https://t.me/{u}"><i class="tgme_widget_message_user_photo bgcolor6" data-content="F"></i></a></div>
  <div class="tgme_widget_message_bubble">
    <i class="tgme_widget_message_bubble_tail"><svg class="bubble_icon" width="9px" height="20px" viewBox="0 0 9 20"></svg></i>
    <div class="tgme_widget_message_author accent_color"><a class="tgme_widget_message_owner_name" href="https://t.me/{u}"><span dir="auto">{html.escape(ch.title)}</span></a></div>
{p.media_html}{photo}{album}{text}
<div class="tgme_widget_message_footer compact js-message_footer">
  <div class="tgme_widget_message_info short js-message_info">
    {views}<span class="tgme_widget_message_meta">{edited}<a class="tgme_widget_message_date" href="https://t.me/{u}/{p.id}"><time datetime="{when}" class="time">{p.date:%H:%M}</time></a></span>
  </div>
</div>
  </div>
</div></div>"""


def render_page(ch: FakeChannel, posts: list[FakePost], before: int | None) -> str:
    u = ch.username
    title = html.escape(ch.title)
    canonical = f"/s/{u}" + (f"?before={before}" if before else "")
    prev = (
        f'<link rel="prev" href="/s/{u}?before={posts[0].id}">' if posts and posts[0].id > 1 else ""
    )
    body = (
        "".join(render_post(ch, p) for p in posts)
        if posts
        else '<div class="tme_no_messages_found">No posts found</div>'
    )
    return f"""<!DOCTYPE html>
<html>
  <head>
    <meta charset="utf-8">
    <title>{title} – Telegram</title>
    <meta property="og:title" content="{title}">
    <link rel="canonical" href="{canonical}">
    {prev}
  </head>
  <body class="widget_frame_base tgme_webpreview emoji_image thin_box_shadow tme_mode no_transitions">
    <header class="tgme_header search_collapsed">
  <div class="tgme_container">
    <div class="tgme_header_right_column">
      <section class="tgme_right_column">
        <div class="tgme_channel_info">
          <div class="tgme_channel_info_header">
            <div class="tgme_channel_info_header_title_wrap">
              <div class="tgme_channel_info_header_title"><span dir="auto">{title}</span></div>
            </div>
            <div class="tgme_channel_info_header_username"><a href="https://t.me/{ch.name}">@{ch.name}</a></div>
          </div>
          <div class="tgme_channel_info_description">{html.escape(ch.description)}</div>
          <div class="tgme_channel_info_counters"><div class="tgme_channel_info_counter"><span class="counter_value">{ch.subscribers}</span> <span class="counter_type">subscribers</span></div></div>
        </div>
      </section>
    </div>
  </div>
</header>
<main class="tgme_main" data-url="/{u}">
  <div class="tgme_container">
    <section class="tgme_channel_history js-message_history">
      {body}
    </section>
  </div>
</main>
  </body>
</html>"""


def render_embed(ch: FakeChannel, message_id: int) -> str:
    """A post's embed page: ``body.body_widget_post`` with the post's block, or the error
    block (the page of Thrita/Telegtools' saved embeds, Thrita.Telegtools.Test/TestData.cs,
    in today's block markup)."""
    post = ch.posts.get(message_id)
    if ch.private:
        inner = '<div class="tgme_widget_message_error">Channel is private</div>'
    elif post is None:
        inner = (
            '<div class="tgme_widget_message text_not_supported_wrap err_message"><div class="tgme_widget_message_bubble">'
            '<div class="tgme_widget_message_error">Post not found</div></div></div>'
        )
    else:
        inner = render_post(ch, post)
    return f"""<!DOCTYPE html>
<html>
  <head>
    <meta charset="utf-8">
    <title>Telegram Widget</title>
    <base target="_blank">
  </head>
  <body class="widget_frame_base tgme_widget body_widget_post emoji_image nodesc">
    {inner}
  </body>
</html>"""


class Trickle(httpx.AsyncByteStream):
    """A body sent one byte every ``every`` seconds, for ``total`` bytes (a real wait)."""

    def __init__(self, total: int = 10_000, every: float = 0.05) -> None:
        self.total = total
        self.every = every

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.total):
            yield b"<"
            await asyncio.sleep(self.every)


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, size: int, chunk: int = 65536) -> None:
        self.size = size
        self.chunk = chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        while sent < self.size:
            n = min(self.chunk, self.size - sent)
            sent += n
            yield b" " * n


def oversized(size: int, *, declared: bool) -> httpx.Response:
    """A 200 of ``size`` bytes, with its Content-Length or streamed without one."""
    headers = {"Content-Type": "text/html; charset=utf-8"}
    if declared:
        headers["Content-Length"] = str(size)
    return httpx.Response(200, headers=headers, stream=_Chunks(size))


def nested(depth: int) -> httpx.Response:
    """A 200 whose post text nests ``depth`` ``<div>`` elements."""
    body = (
        '<html><body><section class="tgme_channel_history">'
        '<div class="tgme_widget_message" data-post="x/1"><div class="tgme_widget_message_text">'
        + "<div>" * depth
        + "deep"
        + "</div>" * depth
        + "</div></div></section></body></html>"
    )
    return httpx.Response(200, text=body, headers={"Content-Type": "text/html; charset=utf-8"})


def trickle(total: int = 10_000, every: float = 0.05) -> httpx.Response:
    return httpx.Response(200, headers={"Content-Type": "text/html"}, stream=Trickle(total, every))


class FakeTme:
    """The fake server. ``transport`` goes to ``TmeClient(settings, transport=...)``."""

    def __init__(self) -> None:
        self.channels: dict[str, FakeChannel] = {}
        self.requests: list[httpx.Request] = []
        self._faults: dict[str, list[httpx.Response | Exception]] = {}
        self._embed_faults: dict[str, list[httpx.Response | Exception]] = {}
        self.max_requests = 400  # a runaway pager fails the test instead of hanging it
        self.transport = httpx.MockTransport(self.handle)

    def channel(self, username: str, **kw: object) -> FakeChannel:
        ch = FakeChannel(username, **kw)  # type: ignore[arg-type]
        self.channels[username.lower()] = ch
        return ch

    def alias(self, other: str, channel: FakeChannel) -> None:
        """``/s/<other>`` and ``/<other>/<id>`` serve ``channel``."""
        self.channels[other.lower()] = channel

    def fail(self, username: str, *answers: httpx.Response | Exception) -> None:
        """Answer the next listing requests for ``username`` with these, in order."""
        self._faults.setdefault(username.lower(), []).extend(answers)

    def fail_embed(self, username: str, *answers: httpx.Response | Exception) -> None:
        """Answer the next embed requests for ``username`` with these, in order."""
        self._embed_faults.setdefault(username.lower(), []).extend(answers)

    def befores(self, username: str) -> list[int | None]:
        """The ``before`` of every listing request made for ``username``, in order."""
        out: list[int | None] = []
        for r in self.requests:
            if r.url.path.lower() == f"/s/{username.lower()}":
                b = r.url.params.get("before")
                out.append(int(b) if b else None)
        return out

    def embeds(self, username: str | None = None) -> list[int]:
        """The post id of every embed request (for ``username``), in order."""
        out: list[int] = []
        for r in self.requests:
            parts = [s for s in r.url.path.split("/") if s]
            embed = len(parts) == 2 and parts[0] != "s" and r.url.params.get("embed")
            if embed and (username is None or parts[0].lower() == username.lower()):
                out.append(int(parts[1]))
        return out

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.requests) > self.max_requests:
            raise RuntimeError(f"fake t.me: more than {self.max_requests} requests")
        parts = [s for s in request.url.path.split("/") if s]
        if len(parts) == 2 and parts[0] != "s" and parts[1].isdigit():
            return self._embed(parts[0], int(parts[1]), request)
        if len(parts) != 2 or parts[0] != "s":
            return httpx.Response(404, text="not found")
        name = parts[1].lower()
        faults = self._faults.get(name)
        if faults:
            return _answer(faults.pop(0))
        ch = self.channels.get(name)
        if ch is None or not ch.preview:
            return httpx.Response(302, headers={"Location": f"https://t.me/{parts[1]}"})
        b = request.url.params.get("before")
        before = int(b) if b and b.isdigit() else None
        page = render_page(ch, ch.window(before), before)
        return httpx.Response(200, text=page, headers={"Content-Type": "text/html; charset=utf-8"})

    def _embed(self, name: str, message_id: int, request: httpx.Request) -> httpx.Response:
        if request.url.params.get("embed") != "1":
            return httpx.Response(404, text="not found")  # the post's page in t.me's own frame
        faults = self._embed_faults.get(name.lower())
        if faults:
            return _answer(faults.pop(0))
        ch = self.channels.get(name.lower())
        if ch is None:
            page = render_embed(FakeChannel(name), message_id)  # no such channel: not found
        else:
            page = render_embed(ch, message_id)
        return httpx.Response(200, text=page, headers={"Content-Type": "text/html; charset=utf-8"})


def _answer(answer: httpx.Response | Exception) -> httpx.Response:
    if isinstance(answer, Exception):
        raise answer
    return answer


class FakeClock:
    """A clock that only moves when someone sleeps: ``sleep`` records and advances."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
