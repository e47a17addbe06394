"""What every page does: the archive opened, domain errors turned into a page that says what
to do (never a traceback), the shared template context."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from datasette.utils.asgi import Request, Response

from archiver.channels import BadChannelRef
from archiver.errors import ChannelNotFound, QueryError, TelewatchError
from archiver.store.archive import Archive, ArchiveError
from archiver.store.search import PostNotFound
from web import fmt
from web.access import signed_in
from web.site import Site, site_of

log = logging.getLogger(__name__)

View = Callable[[Request, Any], Awaitable[Any]]
Page = Callable[[Request, Site, Archive], Awaitable[Any]]


def error_text(exc: TelewatchError) -> tuple[int, str]:
    if isinstance(exc, QueryError):
        shown = exc.query if len(exc.query) <= 80 else exc.query[:77] + "..."
        return 400, f"query {shown!r}: {exc}"
    if isinstance(exc, ChannelNotFound | PostNotFound):
        return 404, str(exc)
    if isinstance(exc, BadChannelRef):
        return 400, str(exc)
    if isinstance(exc, ArchiveError):
        return 503, str(exc)
    return 400, str(exc)


def context(request: Request, site: Site, **values: Any) -> dict[str, Any]:
    """What every template gets."""
    return {
        "fmt": fmt,
        "tz": site.tz,
        "path": request.path,
        "signed_in": site.options.password_hash is not None and signed_in(site.datasette, request),
        "csrftoken": request.scope.get("csrftoken", lambda: "")(),
        "tables_url": site.tables_url,
        **values,
    }


def page(fn: Page) -> View:
    """A view: the site and its archive passed in, errors shown as a page."""

    async def view(request: Request, datasette: Any) -> Any:
        site = site_of(datasette)
        try:
            archive = await site.open()
            return await fn(request, site, archive)
        except TelewatchError as exc:
            status, message = error_text(exc)
        except sqlite3.DatabaseError as exc:
            log.warning("web view: %s: %s", request.path, type(exc).__name__)
            status, message = 503, f"the archive could not be read ({exc}); try again shortly"
        html = site.render("error.html", **context(request, site, title="Error", message=message))
        return Response.html(html, status=status)

    # Not functools.wraps: Datasette passes arguments by the names of the signature it sees.
    view.__name__, view.__doc__ = fn.__name__, fn.__doc__
    return view
