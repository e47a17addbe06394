"""A fake Telegram Bot API server on 127.0.0.1 for a real python-telegram-bot Application.

One catch-all route ``/bot{token}/{method}`` (and ``/file/bot{token}/...``). It records every
call with its decoded parameters, queues updates for ``getUpdates`` (long polling honours
``offset`` and ``timeout``), answers ``sendMessage``/``sendDocument``/``editMessageText`` with
real-looking Message objects (message ids count up per chat), and injects one-shot errors::

    api = FakeBotApi()
    base = await api.start()                 # "http://127.0.0.1:PORT"
    api.fail("sendMessage", status=429, retry_after=1)
    api.fail("sendMessage", status=502)
    api.fail("sendMessage", status=403, chat_id=42)
    api.fail("sendMessage", delay=5.0)       # delivers, answers late: the client times out
    api.push_message(user_id=1, text="/search war")
    call = await api.wait_for("sendMessage", chat_id=1)
    await api.close()

Only calls that Telegram carried out count as ``delivered`` (``sent()``): those answered with
success, and those whose answer came too late for the client (``fail(delay=...)``): Telegram
does the work before it answers, and the Bot API has no idempotency key, so a client that
times out has no way to know the message went out.

Flood control as the Bot API answers it (https://core.telegram.org/bots/api#making-requests:
an unsuccessful answer has ``ok`` false, ``error_code``, a ``description`` and optional
``parameters``, a ResponseParameters object whose ``retry_after`` is "the number of seconds
left to wait before the request can be repeated"): ``fail(method, 429, retry_after=N)``
answers HTTP 429 with ``{"ok": false, "error_code": 429, "description": "Too Many Requests:
retry after N", "parameters": {"retry_after": N}}``, the body real bots receive; PTB turns it
into ``RetryAfter`` (``telegram/request/_baserequest.py``).

Each call is stamped (``Call.at``) by ``clock`` (``time.monotonic`` unless a test gives its
own) the moment its request arrives, before its body is read.

Like Telegram, it refuses text that is not valid HTML of its parse mode ("Bad Request: can't
parse entities: ...") and text longer than 4,096 characters after parsing ("Bad Request:
message is too long"), checked by :mod:`fakes.tghtml`, and, like the Bot API, documents
over 50 MB (https://core.telegram.org/bots/api#senddocument: "Bots can currently send files
of any type of up to 50 MB in size"; the server answers HTTP 413 "Request Entity Too Large").
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from fakes.tghtml import (
    CAPTION_LIMIT,
    MESSAGE_LIMIT,
    TelegramHtmlError,
    nesting_errors,
    parse_html,
    utf16_len,
)

TOKEN = "123456:TEST-token"
MAX_UPLOAD = 50 * 1024 * 1024  # a bot's upload limit (sendDocument)
BOT_ID = 123456
BOT_USERNAME = "telewatch_test_bot"


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float  # the fake's clock (time.monotonic() by default) when it arrived
    ok: bool = True  # answered with success
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # name -> (filename, data)
    result: Any = None

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return None if value is None else int(value)

    @property
    def text(self) -> str:
        return str(self.params.get("text", self.params.get("caption", "")))

    def json(self, key: str) -> Any:
        value = self.params.get(key)
        return None if value is None else json.loads(value)


@dataclass
class Injected:
    status: int = 500
    retry_after: int | None = None
    delay: float = 0.0
    chat_id: int | None = None
    description: str = ""


class FakeBotApi:
    def __init__(self, token: str = TOKEN, clock: Callable[[], float] = time.monotonic) -> None:
        self.token = token
        self.clock = clock  # stamps Call.at
        self.calls: list[Call] = []
        self.updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self.misnested: list[tuple[str, list[str], str]] = []  # see _check_nesting
        self.deleted: set[tuple[int, int]] = set()  # (chat, message) no longer there
        # (chat, message) -> (text, keyboard) of the bot's messages, for editMessageText
        self._content: dict[tuple[int, int], tuple[str, Any]] = {}
        self._errors: dict[str, deque[Injected]] = {}
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.received: dict[str, int] = {}  # requests that arrived, per method (even unanswered)
        self.fetched = 0  # the highest update id the bot confirmed (getUpdates offset - 1)
        # Called with each successful call before it is answered (a fault can be injected
        # there: the client gets its answer only once an awaitable it returns is done).
        self.on_call: Callable[[Call], Awaitable[None] | None] | None = None

    # ------------------------------------------------------------------ server

    async def start(self) -> str:
        app = web.Application(client_max_size=MAX_UPLOAD + 1024 * 1024)  # form fields beside
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/file/bot{token}/{path:.*}", self._file)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=0.1
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    @property
    def api_base_url(self) -> str:
        """What ``[bot] api_base_url`` should say to use this server."""
        return f"{self.base_url}/bot"

    async def close(self) -> None:
        async with self._changed:
            self._changed.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ test controls

    def fail(
        self,
        method: str,
        status: int = 500,
        *,
        retry_after: int | None = None,
        delay: float = 0.0,
        chat_id: int | None = None,
        times: int = 1,
        description: str = "",
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (to ``chat_id``, if given) with an
        error: an HTTP ``status`` (429 with ``retry_after``), or, with ``delay``, carry the
        call out (the message is delivered) and answer ``delay`` seconds late, so that a
        client with a shorter time-out never learns it went out."""
        for _ in range(times):
            self._errors.setdefault(method, deque()).append(
                Injected(status, retry_after, delay, chat_id, description)
            )

    def slow(self, method: str, delay: float, *, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` normally, but ``delay`` seconds late."""
        for _ in range(times):
            self._errors.setdefault(method, deque()).append(Injected(200, None, delay))

    def push_update(self, update: dict[str, Any]) -> int:
        update_id = next(self._update_ids)
        self.updates.append({"update_id": update_id, **update})
        asyncio.get_running_loop().create_task(self._notify())
        return update_id

    def push_message(
        self,
        user_id: int,
        text: str,
        *,
        chat_id: int | None = None,
        chat_type: str | None = None,
        first_name: str = "Reporter",
        language_code: str | None = None,
        deleted: bool = False,
    ) -> int:
        """A text message from ``user_id`` in a private chat (or in ``chat_id``); a leading
        ``/command`` gets its bot_command entity. ``language_code``: the sender's client
        language (the User object's optional IETF tag, https://core.telegram.org/bots/api#user)."""
        chat = chat_id if chat_id is not None else user_id
        kind = chat_type or ("private" if chat == user_id else "supergroup")
        message: dict[str, Any] = {
            "message_id": next(self._counter(chat)),
            "date": int(time.time()),
            "chat": {"id": chat, "type": kind, **({"title": "Newsroom"} if chat < 0 else {})},
            "from": {"id": user_id, "is_bot": False, "first_name": first_name},
            "text": text,
        }
        if language_code is not None:
            message["from"]["language_code"] = language_code
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        if deleted:  # deleted by its sender (or a group's cleaner bot) before the bot answers
            self.deleted.add((chat, int(message["message_id"])))
        return self.push_update({"message": message})

    def push_callback(self, user_id: int, data: str, message: dict[str, Any] | None = None) -> int:
        """A button press by ``user_id`` on ``message`` (default: a bot message in their chat)."""
        msg = message or {
            "message_id": 1,
            "date": int(time.time()),
            "chat": {"id": user_id, "type": "private"},
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "telewatch"},
            "text": "...",
        }
        return self.push_update(
            {
                "callback_query": {
                    "id": str(next(self._update_ids)),
                    "from": {"id": user_id, "is_bot": False, "first_name": "Reporter"},
                    "chat_instance": "1",
                    "data": data,
                    "message": msg,
                }
            }
        )

    def sent(self, method: str = "sendMessage", chat_id: int | None = None) -> list[Call]:
        """Successful calls of ``method`` (to ``chat_id``)."""
        return [
            c
            for c in self.calls
            if c.method == method and c.ok and (chat_id is None or c.chat_id == chat_id)
        ]

    def attempts(self, method: str = "sendMessage") -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(
        self,
        method: str = "sendMessage",
        *,
        chat_id: int | None = None,
        count: int = 1,
        timeout: float = 10.0,
        since: int = 0,
    ) -> list[Call]:
        """Wait until ``count`` successful calls of ``method`` (after the first ``since``
        calls) were recorded; returns them. Raises TimeoutError with what did arrive."""

        def found() -> list[Call]:
            return [
                c
                for c in self.calls[since:]
                if c.method == method and c.ok and (chat_id is None or c.chat_id == chat_id)
            ]

        async def wait() -> list[Call]:
            async with self._changed:
                await self._changed.wait_for(lambda: len(found()) >= count)
            return found()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            got = [(c.method, c.chat_id, c.ok) for c in self.calls[since:]]
            raise TimeoutError(f"waited for {count} x {method} to {chat_id}; got {got}") from None

    async def wait_fetched(self, update_id: int, timeout: float = 10.0) -> None:
        """Wait until the bot fetched update ``update_id`` and put it in its update queue
        (it then asks getUpdates for what comes after)."""

        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: self.fetched >= update_id)

        await asyncio.wait_for(wait(), timeout)

    # ------------------------------------------------------------------ handlers

    def _counter(self, chat_id: int) -> itertools.count[int]:
        return self._message_ids.setdefault(chat_id, itertools.count(1))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _file(self, request: web.Request) -> web.Response:
        return web.Response(body=b"")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        at = self.clock()  # on arrival (then counted: a test clock may watch ``received``)
        self.received[method] = self.received.get(method, 0) + 1
        params: dict[str, Any] = {}
        files: dict[str, tuple[str, bytes]] = {}
        if request.can_read_body:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    params[key] = value
                else:
                    files[key] = (value.filename, value.file.read())
        call = Call(method, params, at, files=files)
        if any(len(data) > MAX_UPLOAD for _, data in files.values()):
            call.ok = False
            self.calls.append(call)
            await self._notify()
            return _error(413, "Request Entity Too Large")
        injected = self._take_error(method, call.chat_id)
        if injected is not None and injected.status == 200:
            await asyncio.sleep(injected.delay)
            injected = None
        if injected is not None and injected.delay:  # done now, answered late
            refused = _refusal(method, params)
            call.ok = refused is None
            call.result = self._answer(method, params, files) if call.ok else None
            self.calls.append(call)
            await self._notify()
            await asyncio.sleep(injected.delay)
            return _ok(call.result) if refused is None else _error(400, refused)
        if injected is not None:
            call.ok = False
            self.calls.append(call)
            await self._notify()
            return _error(
                injected.status,
                injected.description or _DESCRIPTIONS.get(injected.status, "Internal Server Error"),
                retry_after=injected.retry_after,
            )
        refused = (
            _refusal(method, params)
            or self._unmodified(method, params)
            or self._reply_missing(method, params)
        )
        if refused is None:
            self._check_nesting(method, params)
        if refused is not None:
            call.ok = False
            self.calls.append(call)
            await self._notify()
            return _error(400, refused)
        if method == "getUpdates":
            result: Any = await self._get_updates(params)
            if result is None:  # the server is closing
                return _ok([])
        else:
            result = self._answer(method, params, files)
        call.result = result
        self.calls.append(call)
        if self.on_call is not None:
            pending = self.on_call(call)
            if pending is not None:
                await pending
        await self._notify()
        return _ok(result)

    def _check_nesting(self, method: str, params: dict[str, Any]) -> None:
        """Telegram takes markup that breaks its nesting rules but drops the entities that
        break them (see fakes.tghtml): noted in ``misnested`` for the tests to assert on."""
        text = params.get("caption" if method == "sendDocument" else "text")
        if params.get("parse_mode") == "HTML" and isinstance(text, str):
            errors = nesting_errors(text)
            if errors:
                self.misnested.append((method, errors, text))

    def _reply_missing(self, method: str, params: dict[str, Any]) -> str | None:
        """A reply to a message that is gone is refused unless the call allows sending without
        it (Bot API, ReplyParameters.allow_sending_without_reply: "Pass True if the message
        should be sent even if the specified message to be replied to is not found")."""
        if method not in ("sendMessage", "sendDocument") or "chat_id" not in params:
            return None
        raw = params.get("reply_parameters")
        reply = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(reply, dict) or "message_id" not in reply:
            return None
        chat = int(reply.get("chat_id", params["chat_id"]))
        if (chat, int(reply["message_id"])) not in self.deleted:
            return None
        if reply.get("allow_sending_without_reply"):
            return None
        return "Bad Request: message to be replied not found"

    def _unmodified(self, method: str, params: dict[str, Any]) -> str | None:
        """Telegram refuses an edit that changes nothing (TDLib's MESSAGE_NOT_MODIFIED, which
        the Bot API answers as below; e.g. a button pressed twice before the first edit
        arrived). Messages the fake did not send are not checked."""
        if method != "editMessageText" or "message_id" not in params:
            return None
        key = (int(params["chat_id"]), int(params["message_id"]))
        if self._content.get(key) != (params.get("text", ""), _markup(params)):
            return None
        return (
            "Bad Request: message is not modified: specified new message content and reply "
            "markup are exactly the same as a current content and reply markup of the message"
        )

    def _take_error(self, method: str, chat_id: int | None) -> Injected | None:
        queue = self._errors.get(method)
        if not queue:
            return None
        for i, inj in enumerate(queue):
            if inj.chat_id is None or inj.chat_id == chat_id:
                del queue[i]
                return inj
        return None

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]] | None:
        offset = int(params.get("offset", 0) or 0)
        timeout = float(params.get("timeout", 0) or 0)
        if offset:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
            if offset - 1 > self.fetched:
                self.fetched = offset - 1  # the bot queued everything before ``offset``
                await self._notify()
        if not self.updates and timeout > 0:
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: bool(self.updates)), timeout
                    )
        return list(self.updates)

    def _answer(
        self, method: str, params: dict[str, Any], files: dict[str, tuple[str, bytes]]
    ) -> Any:
        if method == "getMe":
            return {
                "id": BOT_ID,
                "is_bot": True,
                "first_name": "telewatch",
                "username": BOT_USERNAME,
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }
        if method in ("sendMessage", "sendDocument", "editMessageText"):
            chat_id = int(params["chat_id"])
            message: dict[str, Any] = {
                "message_id": (
                    int(params["message_id"])
                    if method == "editMessageText"
                    else next(self._counter(chat_id))
                ),
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "telewatch"},
            }
            if method == "sendDocument":
                filename, data = files.get("document", ("document", b""))
                message["document"] = {
                    "file_id": f"doc{message['message_id']}",
                    "file_unique_id": f"u{message['message_id']}",
                    "file_name": filename,
                    "file_size": len(data),
                }
                if "caption" in params:
                    message["caption"] = params["caption"]
            else:
                message["text"] = params.get("text", "")
                key = (chat_id, int(message["message_id"]))
                self._content[key] = (message["text"], _markup(params))
            return message
        return True


def _markup(params: dict[str, Any]) -> Any:
    value = params.get("reply_markup")
    return json.loads(value) if isinstance(value, str) else value


def _refusal(method: str, params: dict[str, Any]) -> str | None:
    """Telegram's "Bad Request" description for text it would not send, or None."""
    if method not in ("sendMessage", "editMessageText", "sendDocument"):
        return None
    bad_markup = _keyboard_refusal(params.get("reply_markup"))
    if bad_markup is not None:
        return bad_markup
    key = "caption" if method == "sendDocument" else "text"
    text = params.get(key)
    if text is None:
        return None
    limit = CAPTION_LIMIT if key == "caption" else MESSAGE_LIMIT
    mode = params.get("parse_mode")
    if mode == "HTML":
        try:
            visible = parse_html(text)
        except TelegramHtmlError as exc:
            return f"Bad Request: can't parse entities: {exc}"
    else:
        visible = text
    if not visible.strip():
        return "Bad Request: message text is empty"
    if utf16_len(visible) > limit:
        return (
            "Bad Request: message is too long"
            if key == "text"
            else ("Bad Request: message caption is too long")
        )
    return None


BUTTONS_LIMIT = 100  # buttons of one inline keyboard (Telegram's BUTTONS_TOO_MUCH beyond)
CALLBACK_DATA_LIMIT = 64  # bytes: Bot API, InlineKeyboardButton.callback_data "1-64 bytes"


def _keyboard_refusal(markup: Any) -> str | None:
    """Telegram's refusal of an inline keyboard, or None. The limits: Bot API docs,
    InlineKeyboardButton (``callback_data`` 1-64 bytes); the errors are the MTProto ones the
    Bot API passes on (core.telegram.org/method/messages.sendMessage: BUTTON_DATA_INVALID,
    BUTTONS_TOO_MUCH, BUTTON_TEXT_INVALID)."""
    if markup is None:
        return None
    value = json.loads(markup) if isinstance(markup, str) else markup
    rows = value.get("inline_keyboard") if isinstance(value, dict) else None
    if rows is None:
        return None
    buttons = [b for row in rows for b in row]
    if len(buttons) > BUTTONS_LIMIT:
        return "Bad Request: BUTTONS_TOO_MUCH"
    for b in buttons:
        if not str(b.get("text", "")).strip():
            return "Bad Request: BUTTON_TEXT_INVALID"
        data = b.get("callback_data")
        if data is not None and not 1 <= len(str(data).encode()) <= CALLBACK_DATA_LIMIT:
            return "Bad Request: BUTTON_DATA_INVALID"
    return None


_DESCRIPTIONS = {
    400: "Bad Request: something is wrong",
    403: "Forbidden: bot was blocked by the user",
    429: "Too Many Requests: retry later",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(status: int, description: str, *, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
        body["description"] = f"Too Many Requests: retry after {retry_after}"
    return web.json_response(body, status=status)
