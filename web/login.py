"""The login form and logging out (only with ``[web_view] password_hash``; see
:mod:`web.access`)."""

from __future__ import annotations

import logging
import time
from typing import Any

from datasette.utils import baseconv
from datasette.utils.asgi import Request, Response

from web.access import COOKIE, LOGIN, SESSION_SECONDS, check_password, safe_next
from web.pages import context
from web.site import site_of

log = logging.getLogger(__name__)


async def login(request: Request, datasette: Any) -> Response:
    site = site_of(datasette)
    target = safe_next(request.args.get("next"))
    if site.options.password_hash is None:
        return Response.redirect(target)
    error = None
    status = 200
    if request.method == "POST":
        form = await request.post_vars()
        target = safe_next(form.get("next"))
        if await check_password(site, form.get("password", "")):
            log.info("web view: logged in")
            response = Response.redirect(target)
            expires = baseconv.base62.encode(int(time.time()) + SESSION_SECONDS)
            value = datasette.sign({"a": {"id": "telewatch"}, "e": expires}, "actor")
            response.set_cookie(
                COOKIE, value, max_age=SESSION_SECONDS, httponly=True, samesite="lax"
            )
            return response
        log.info("web view: a wrong password")
        error = "Wrong password."
        status = 403
    html = site.render(
        "login.html", **context(request, site, title="Log in", next=target, error=error)
    )
    return Response.html(html, status=status)


async def logout(request: Request, datasette: Any) -> Response:
    response = Response.redirect(LOGIN)
    response.set_cookie(COOKIE, "", max_age=0, httponly=True, samesite="lax")
    return response
