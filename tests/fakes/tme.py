"""A fake t.me web preview behind an ``httpx.MockTransport``: no sockets, no network.

``FakeTme`` holds channels and serves ``/s/<username>`` and ``/s/<username>?before=<id>`` the
way t.me does: the newest ``page_size`` messages with ids below ``before`` (album items count),
in ascending order, in the real markup (the structure of ``../shared/samples/tme_s_*.html``).
It records every request and can be told to misbehave:

- ``fail(username, response, ...)``: one-shot answers (429 with Retry-After, 5xx, a transport
  error) served before the real page, in order;
- ``FakeChannel.preview = False``: ``/s/<name>`` redirects to ``/<name>`` like a channel
  without a preview, a private or an unknown one;
- ``FakeChannel.stuck = True``: ``?before=`` is ignored (the newest page every time);
- ``FakeChannel.hidden``: ids that take their place in the paging window but are not shown
  (what a deleted post looks like between two shown ones).
"""

# ruff: noqa: E501  (the page templates keep Telegram's long lines of markup)
from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable
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


@dataclass
class FakeChannel:
    username: str
    title: str = "Fake channel"
    bare_id: int | None = 1811111111  # None: blocks carry no data-view (id unknown)
    description: str = "A channel for tests"
    subscribers: str = "1.2K"
    posts: dict[int, FakePost] = field(default_factory=dict)
    hidden: set[int] = field(default_factory=set)
    page_size: int = 20
    preview: bool = True
    stuck: bool = False

    def add(self, *posts: FakePost) -> None:
        for p in posts:
            self.posts[p.id] = p

    def add_texts(self, ids: Iterable[int], text: str = "post {id}", **kw: object) -> None:
        """Posts ``ids`` with text ``text.format(id=...)``, dated one hour apart from T0."""
        for i in ids:
            self.add(
                FakePost(i, html.escape(text.format(id=i)), T0 + timedelta(hours=i), **kw)  # type: ignore[arg-type]
            )

    def window(self, before: int | None) -> list[FakePost]:
        """The posts a page shows: the newest ``page_size`` messages (album items and hidden
        ids count) below ``before``."""
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
        return [
            p
            for i, p in chosen
            if p is not None and i not in self.hidden and (not p.album or p.id in ids)
        ]


def data_view(bare_id: int, post_id: int) -> str:
    raw = json.dumps({"c": -bare_id, "p": post_id, "t": 1780180077, "h": "0" * 18})
    return base64.urlsafe_b64encode(raw.replace(" ", "").encode()).decode().rstrip("=")


def render_post(ch: FakeChannel, p: FakePost) -> str:
    u = ch.username
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
{p.media_html}{album}{text}
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
            <div class="tgme_channel_info_header_username"><a href="https://t.me/{u}">@{u}</a></div>
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


class FakeTme:
    """The fake server. ``transport`` goes to ``TmeClient(settings, transport=...)``."""

    def __init__(self) -> None:
        self.channels: dict[str, FakeChannel] = {}
        self.requests: list[httpx.Request] = []
        self._faults: dict[str, list[httpx.Response | Exception]] = {}
        self.max_requests = 200  # a runaway pager fails the test instead of hanging it
        self.transport = httpx.MockTransport(self.handle)

    def channel(self, username: str, **kw: object) -> FakeChannel:
        ch = FakeChannel(username, **kw)  # type: ignore[arg-type]
        self.channels[username.lower()] = ch
        return ch

    def fail(self, username: str, *answers: httpx.Response | Exception) -> None:
        """Answer the next requests for ``username`` with these, in order."""
        self._faults.setdefault(username.lower(), []).extend(answers)

    def befores(self, username: str) -> list[int | None]:
        """The ``before`` of every request made for ``username``, in order."""
        out: list[int | None] = []
        for r in self.requests:
            if r.url.path.lower() == f"/s/{username.lower()}":
                b = r.url.params.get("before")
                out.append(int(b) if b else None)
        return out

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.requests) > self.max_requests:
            raise RuntimeError(f"fake t.me: more than {self.max_requests} requests")
        parts = [s for s in request.url.path.split("/") if s]
        if len(parts) != 2 or parts[0] != "s":
            return httpx.Response(404, text="not found")
        name = parts[1].lower()
        faults = self._faults.get(name)
        if faults:
            answer = faults.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        ch = self.channels.get(name)
        if ch is None or not ch.preview:
            return httpx.Response(302, headers={"Location": f"https://t.me/{parts[1]}"})
        b = request.url.params.get("before")
        before = int(b) if b and b.isdigit() else None
        page = render_page(ch, ch.window(before), before)
        return httpx.Response(200, text=page, headers={"Content-Type": "text/html; charset=utf-8"})


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
