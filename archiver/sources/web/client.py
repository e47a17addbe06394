"""Fetching from t.me politely and within bounds: one client, one pacer, one budget per pass.

- :class:`Pacer`: ``[web] delay_seconds`` between the end of one answer and the next request
  to the same host, whichever channel asks (one lock per host, so concurrent callers queue).
- :class:`Budget`: ``[web] requests_per_pass``; every request (retries included) takes one,
  booked to the phase of the pass that made it. An empty budget raises :class:`BudgetSpent`
  before the request is sent.
- :class:`TmeClient`: a listing page (``/s/<username>[?before=<id>]``) or a post's embed
  page (``/<username>/<id>?embed=1&mode=tme``). Each answer is read as a stream, refused
  beyond ``[web] max_page_bytes`` (counted after its ``Content-Encoding`` is undone, which
  :class:`_Body` does here, within the cap), and each try has an overall deadline of
  ``[web] timeout_seconds`` (a server trickling one byte at a time never resets httpx's read
  timeout). 429 and 5xx are retried with backoff honouring ``Retry-After``; every failure of
  a listing page is a one-line :class:`SourceError` naming the channel. An embed page never
  raises for what t.me answers: whatever is not the post or "Post not found" is ``unknown``.

``sleep`` and ``clock`` are injectable, so tests never wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from urllib.parse import urlsplit

import httpx

from archiver.config import WebSettings
from archiver.errors import SourceError
from archiver.evidence.capture import DEFAULT_MAX_BYTES, Raw, http_response
from archiver.sources.web.page import (
    EmbedPage,
    PageRefused,
    WebPage,
    parse_embed,
    parse_page,
)

log = logging.getLogger(__name__)

_REDIRECTS = (301, 302, 303, 307, 308)
PHASES = ("new", "recent", "confirm", "rotation")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class BudgetSpent(Exception):
    """The pass's request budget is spent; no request was sent (a signal: the pass goes on to
    its end with what it has)."""


class Budget:
    """``total`` requests for one pass (None: no limit), booked per phase (:data:`PHASES`)."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.phase = PHASES[0]
        self.spent: dict[str, int] = dict.fromkeys(PHASES, 0)

    @property
    def used(self) -> int:
        return sum(self.spent.values())

    @property
    def left(self) -> int | None:
        return None if self.total is None else max(self.total - self.used, 0)

    @property
    def exhausted(self) -> bool:
        return self.total is not None and self.used >= self.total

    def take(self) -> None:
        if self.exhausted:
            raise BudgetSpent
        self.spent[self.phase] += 1


class Pacer:
    """The pause between two requests to one host, across every channel of the pass."""

    def __init__(self, delay: float, *, sleep: Sleep, clock: Clock) -> None:
        self.delay = delay
        self._sleep = sleep
        self._clock = clock
        self._ready: dict[str, float] = {}  # host -> earliest time of its next request
        self._locks: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        """Hold the host for one request: wait out its pause first, start the next pause when
        the answer is in (or the request failed)."""
        lock = self._locks.setdefault(host, asyncio.Lock())
        async with lock:
            ready = self._ready.get(host)
            if ready is not None:
                wait = ready - self._clock()
                if wait > 0:
                    await self._sleep(wait)
            try:
                yield
            finally:
                self._ready[host] = max(self._ready.get(host, 0.0), self._clock() + self.delay)

    def hold_off(self, host: str, seconds: float) -> None:
        """No request to ``host`` for ``seconds`` from now (a 429's Retry-After)."""
        until = self._clock() + seconds
        self._ready[host] = max(self._ready.get(host, 0.0), until)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: httpx.Headers
    text: str | None  # the body, for a 200
    capture: Raw | None = None  # the raw answer, for a 200 (archiver.evidence.capture)


class _TooBig(Exception):
    pass


class _Undecodable(Exception):
    """The body is not in the ``Content-Encoding`` it claims, or in one not asked for."""


# Content codings read here, and the zlib window of each (gzip; deflate with a zlib header).
_CODINGS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}


class _Body:
    """A body read from its raw bytes, its ``Content-Encoding`` undone here within ``cap``.

    httpx would inflate each raw chunk in full before the reader sees a byte, and decodes
    chains of codings (``gzip, gzip``): a body of a few hundred bytes becomes hundreds of MB
    at once. Here zlib is never asked for more than the room left under the cap, one coding
    at most is accepted, and the raw bytes count against the cap as well."""

    def __init__(self, content_encoding: str, cap: int) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in _CODINGS):
            raise _Undecodable(f"Content-Encoding {content_encoding.strip()!r}")
        self._z = zlib.decompressobj(_CODINGS[codings[0]]) if codings else None
        self._coding = codings[0] if codings else ""
        self.cap = cap
        self.raw = 0
        self.size = 0
        self.chunks: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self.raw += len(data)
        if self.raw > self.cap:
            raise _TooBig
        self._keep(self._inflate(data) if self._z is not None else data)

    def _inflate(self, data: bytes) -> bytes:
        assert self._z is not None
        try:
            return self._z.decompress(data, self.cap - self.size + 1)  # never more than fits
        except zlib.error as exc:
            if self._coding == "deflate" and not self.size and not self.chunks:
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, without a header
                self._coding = "raw deflate"
                return self._inflate(data)
            raise _Undecodable(f"not valid {self._coding} ({exc})") from None

    def _keep(self, out: bytes) -> None:
        self.size += len(out)
        if self.size > self.cap:
            raise _TooBig
        self.chunks.append(out)

    def done(self) -> bytes:
        if self._z is not None:
            try:
                self._keep(self._z.flush())
            except zlib.error as exc:
                raise _Undecodable(f"not valid {self._coding} ({exc})") from None
        return b"".join(self.chunks)


class TmeClient:
    """An open HTTP client for the web preview. ``async with TmeClient(settings) as client``.

    ``transport`` replaces the network (tests pass an ``httpx.MockTransport``); ``sleep`` and
    ``clock`` replace waiting; ``backoff_base`` (seconds, doubled per retry, capped at
    ``backoff_max``) is used when an answer carries no ``Retry-After``. A ``Retry-After`` above
    ``retry_after_ceiling`` seconds is not waited out: the channel fails for this pass.
    ``budget``: the pass's request budget (default: ``settings.requests_per_pass``).
    ``max_capture_bytes``: the body kept in each answer's raw capture (``[evidence]``).
    """

    def __init__(
        self,
        settings: WebSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        retry_after_ceiling: float = 300.0,
        budget: Budget | None = None,
        max_capture_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.settings = settings
        self.max_capture_bytes = max_capture_bytes
        self._sleep = sleep
        self._clock = clock
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._ceiling = retry_after_ceiling
        self.host = urlsplit(settings.base_url).netloc.lower()
        self.pacer = Pacer(settings.delay_seconds, sleep=sleep, clock=clock)
        self.budget = budget if budget is not None else Budget(settings.requests_per_pass)
        self.requests = 0
        self._http = httpx.AsyncClient(
            base_url=settings.base_url,
            headers={
                "User-Agent": settings.user_agent,
                "Accept": "text/html",
                "Accept-Encoding": "gzip",
            },
            timeout=httpx.Timeout(settings.timeout_seconds),
            follow_redirects=False,
            transport=transport,
        )

    async def __aenter__(self) -> TmeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    # --- listing pages -------------------------------------------------------------------

    async def fetch(self, username: str, before: int | None = None) -> WebPage:
        """One page of ``/s/<username>`` (``?before=<id>``: posts older than that id)."""
        name = username.lower().lstrip("@")
        html, capture = await self._get(
            name, f"/s/{name}", {"before": str(before)} if before else None
        )
        try:
            page = replace(parse_page(html, username=name), capture=capture)
        except PageRefused as exc:
            raise SourceError(f"@{name}: {exc}; the page was not read") from None
        if not page.has_history and not page.posts:
            raise SourceError(
                f"@{name}: t.me shows no web preview for this channel (no messages on the page); "
                'follow it with source = "telethon"'
            )
        return page

    # --- a post's own page ---------------------------------------------------------------

    async def fetch_embed(self, username: str, message_id: int, channel_id: int) -> EmbedPage:
        """The embed page of one post, tried once (a failure is ``unknown``, retried by a later
        pass). Raises only :class:`BudgetSpent`."""
        name = username.lower().lstrip("@")
        path = f"/{name}/{message_id}"
        try:
            answer = await self._send(name, path, {"embed": "1", "mode": "tme"})
        except (httpx.TransportError, TimeoutError, _TooBig, _Undecodable) as exc:
            return EmbedPage("unknown", reason=f"the post page did not load ({_why(exc)})")
        if answer.status == 429:
            hinted = _retry_after(answer.headers)
            self.pacer.hold_off(self.host, min(hinted or self._backoff_base, self._ceiling))
        if answer.status != 200 or answer.text is None:
            return EmbedPage("unknown", reason=f"t.me answered HTTP {answer.status}")
        try:
            page = parse_embed(
                answer.text, username=name, message_id=message_id, channel_id=channel_id
            )
            return replace(page, capture=answer.capture)
        except PageRefused as exc:
            return EmbedPage("unknown", reason=str(exc))

    # --- one request ---------------------------------------------------------------------

    async def _send(self, name: str, path: str, params: dict[str, str] | None) -> _Answer:
        """One try: paced, counted against the budget, streamed within the size cap and the
        deadline. Raises httpx.TransportError, TimeoutError (the deadline), _TooBig,
        _Undecodable."""
        self.budget.take()
        cap = self.settings.max_page_bytes
        async with self.pacer.slot(self.host):
            self.requests += 1
            async with asyncio.timeout(self.settings.timeout_seconds):
                async with self._http.stream("GET", path, params=params) as resp:
                    if resp.status_code != 200:
                        return _Answer(resp.status_code, resp.headers, None)
                    declared = resp.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > cap:
                        raise _TooBig
                    if resp.is_stream_consumed:  # answered from memory (a MockTransport)
                        reader = _Body("", cap)
                        reader.feed(resp.content)
                    else:
                        reader = _Body(resp.headers.get("content-encoding", ""), cap)
                        async for chunk in resp.aiter_raw():
                            reader.feed(chunk)
                    body = reader.done()
                    capture = http_response(
                        url=str(resp.url),
                        fetched_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                        http_version=resp.http_version,
                        status=resp.status_code,
                        reason=resp.reason_phrase,
                        headers=[
                            (k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.headers.raw
                        ],
                        body=body,
                        max_bytes=self.max_capture_bytes,
                    )
                    return _Answer(
                        200,
                        resp.headers,
                        body.decode(resp.encoding or "utf-8", "replace"),
                        capture,
                    )

    def _backoff(self, attempt: int) -> float:
        return float(min(self._backoff_max, self._backoff_base * (2**attempt)))

    async def _get(
        self, name: str, path: str, params: dict[str, str] | None
    ) -> tuple[str, Raw | None]:
        """A listing page's HTML and its raw capture, with retries; every failure is a
        SourceError naming ``name``."""
        attempt = 0
        redirects = 0
        while True:
            try:
                answer = await self._send(name, path, params)
            except TimeoutError:
                raise SourceError(
                    f"@{name}: t.me did not send the page within "
                    f"{self.settings.timeout_seconds:g}s ([web] timeout_seconds); giving up on "
                    "this channel for this pass"
                ) from None
            except _TooBig:
                raise SourceError(
                    f"@{name}: the page is larger than [web] max_page_bytes "
                    f"({self.settings.max_page_bytes:,} bytes); it was not read"
                ) from None
            except _Undecodable as exc:
                raise SourceError(
                    f"@{name}: {self.settings.base_url} sent a page that does not decode ({exc});"
                    " check [web] base_url, or a proxy in between"
                ) from None
            except httpx.TransportError as exc:
                if attempt >= self.settings.max_retries:
                    raise SourceError(
                        f"@{name}: {self.settings.base_url} did not answer after {attempt + 1} "
                        f"tries ({type(exc).__name__}); check the network or [web] base_url"
                    ) from None
                wait = self._backoff(attempt)
                log.warning(
                    "web @%s: %s, retry %d in %.1fs", name, type(exc).__name__, attempt + 1, wait
                )
                await self._sleep(wait)
                attempt += 1
                continue
            status = answer.status
            if status == 200 and answer.text is not None:
                return answer.text, answer.capture
            if status in _REDIRECTS:
                target = urlsplit(answer.headers.get("location", ""))
                segs = [s for s in target.path.split("/") if s]
                if len(segs) == 2 and segs[0] == "s" and segs[1].lower() == name and redirects < 3:
                    redirects += 1
                    path = target.path
                    params = dict(httpx.QueryParams(target.query)) or None
                    continue
                raise SourceError(
                    f"@{name}: t.me has no web preview for this channel (it redirects to "
                    f"{target.path or '/'}): it may be private, unknown, not a channel, or have "
                    "its preview turned off; check the username or follow it with "
                    'source = "telethon"'
                )
            if status == 429 or 500 <= status < 600:
                if attempt >= self.settings.max_retries:
                    raise SourceError(
                        f"@{name}: t.me answered HTTP {status} {attempt + 1} times in a row; "
                        "giving up on this channel for this pass (it is retried next pass)"
                    )
                hinted = _retry_after(answer.headers)
                wait = hinted if hinted is not None else self._backoff(attempt)
                if wait > self._ceiling:
                    raise SourceError(
                        f"@{name}: t.me asks to wait {wait:.0f}s (HTTP {status}), more than "
                        f"{self._ceiling:.0f}s; try again later"
                    )
                log.warning("web @%s: HTTP %d, retry %d in %.1fs", name, status, attempt + 1, wait)
                await self._sleep(wait)
                attempt += 1
                continue
            if status == 404:
                raise SourceError(f"@{name}: t.me has no such page (HTTP 404); check the username")
            raise SourceError(f"@{name}: t.me answered HTTP {status}; check [web] base_url")


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "deadline"
    if isinstance(exc, _TooBig):
        return "too large"
    if isinstance(exc, _Undecodable):
        return f"does not decode: {exc}"
    return type(exc).__name__


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds from a ``Retry-After`` header (a number or an HTTP date), if any."""
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
