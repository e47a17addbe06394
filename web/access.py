"""Who may see the web view: everyone on this machine, or whoever knows the password.

With no password configured the pages are open (``telewatch serve`` then listens on the
loopback only). With ``[web_view] password_hash`` every page, Datasette's own included, asks
for the password first (a signed cookie, Datasette's ``ds_actor``, for seven days) and the
server answers reads only: GET and HEAD, and the login form's POST. Passwords are checked
one at a time; a wrong one is answered after a second, without holding the others. The
server's shutdown closes the archive.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote, urlsplit

from datasette.utils import baseconv
from datasette.utils.asgi import Request, Response
from itsdangerous import BadSignature

from archiver.password import verify_password
from web.site import PREFIX, Site, site_of

log = logging.getLogger(__name__)

LOGIN = f"{PREFIX}/login"
LOGOUT = f"{PREFIX}/logout"
STYLE = f"{PREFIX}/style.css"
COOKIE = "ds_actor"
SESSION_SECONDS = 7 * 24 * 3600
WRONG_PASSWORD_DELAY = 1.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_local(host: str) -> bool:
    """Whether listening on ``host`` reaches this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def signed_in(datasette: Any, request: Request) -> bool:
    value = request.cookies.get(COOKIE)
    if not value:
        return False
    try:
        decoded = datasette.unsign(value, "actor")
    except BadSignature:
        return False
    if not isinstance(decoded, dict) or not isinstance(decoded.get("a"), dict):
        return False
    expires = decoded.get("e")
    if expires:
        return time.time() <= int(baseconv.base62.decode(expires))
    return False  # our cookies always carry an expiry


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site only."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return f"{PREFIX}/search"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return f"{PREFIX}/search"
    return target


def wrapper(datasette: Any) -> Callable[[ASGIApp], ASGIApp]:
    """The ``asgi_wrapper`` hook: the password gate and the archive's closing."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
            site = site_of(datasette)
            if scope["type"] == "lifespan":

                async def closing() -> Message:
                    message = await receive()
                    if message["type"] == "lifespan.shutdown":
                        await site.close()
                    return message

                await app(scope, closing, send)
                return
            if scope["type"] != "http" or site.options.password_hash is None:
                await app(scope, receive, send)
                return
            refused = _refusal(datasette, Request(scope, receive))
            if refused is not None:
                await refused.asgi_send(send)
                return
            await app(scope, receive, send)

        return asgi

    return wrap


def _refusal(datasette: Any, request: Request) -> Response | None:
    path = request.path
    if path in (LOGIN, STYLE):
        return None
    if not signed_in(datasette, request):
        if request.method in ("GET", "HEAD"):
            target = request.full_path
            return Response.redirect(f"{LOGIN}?next={quote(target, safe='')}")
        return Response.text("Log in first.", status=401)
    if request.method not in ("GET", "HEAD") and path != LOGOUT:
        return Response.text("This server is read-only.", status=405, headers={"Allow": "GET"})
    return None


async def check_password(site: Site, password: str) -> bool:
    """The password against the hash (scrypt, in a thread, one check at a time: guesses cannot
    run in parallel); a wrong one is answered after a second, without holding the others (a
    stream of wrong guesses must not lock out the right password)."""
    stored = site.options.password_hash
    assert stored is not None
    async with site.login_lock:
        ok = await asyncio.to_thread(verify_password, password, stored)
    if not ok:
        await asyncio.sleep(WRONG_PASSWORD_DELAY)
    return ok
