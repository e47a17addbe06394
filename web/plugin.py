"""The Datasette plugin (entry point ``datasette``: ``telewatch = "web.plugin"``).

Pages under ``/-/telewatch/``: ``search`` (and ``search.csv``, ``search.json``),
``post/<channel>/<id>``, ``timeline``, ``channels``, ``channel/<channel>``; ``login`` and
``logout`` when a password is set. ``telewatch serve`` also answers ``/`` with the search.
Datasette's own pages (tables, SQL) stay as they are, on read-only connections.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar, cast

from datasette import hookimpl as _hookimpl
from datasette.utils.asgi import Request, Response

from web import access, login
from web.channel import channel_page, channels_page
from web.post import post_page
from web.search import export, search_page
from web.site import PREFIX, site_of
from web.timeline import timeline_page

F = TypeVar("F", bound=Callable[..., Any])
_CSS: dict[str, str] = {}


def hookimpl(fn: F) -> F:
    """Datasette's ``hookimpl``, typed."""
    return cast(F, _hookimpl(fn))


async def style() -> Response:
    if "css" not in _CSS:
        _CSS["css"] = (resources.files("web") / "static" / "telewatch.css").read_text("utf-8")
    return Response(
        _CSS["css"],
        content_type="text/css; charset=utf-8",
        headers={"cache-control": "max-age=3600"},
    )


async def home(request: Request) -> Response:
    return Response.redirect(f"{PREFIX}/search")


@hookimpl
def register_routes(datasette: Any) -> list[tuple[str, Any]]:
    p = PREFIX.replace("/", r"\/").replace("-", r"\-")
    routes: list[tuple[str, Any]] = [
        (rf"^{p}/?$", home),
        (rf"^{p}/search$", search_page),
        (rf"^{p}/search\.(?P<format>csv|json)$", export),
        (rf"^{p}/post/(?P<channel>[^/]+)/(?P<message_id>[0-9]+)$", post_page),
        (rf"^{p}/timeline$", timeline_page),
        (rf"^{p}/channels$", channels_page),
        (rf"^{p}/channel/(?P<channel>[^/]+)$", channel_page),
        (rf"^{p}/style\.css$", style),
        (rf"^{p}/login$", login.login),
        (rf"^{p}/logout$", login.logout),
    ]
    if site_of(datasette).options.home:
        routes.append((r"^/$", home))
    return routes


@hookimpl
def asgi_wrapper(datasette: Any) -> Any:
    return access.wrapper(datasette)


@hookimpl
def menu_links(datasette: Any) -> list[dict[str, str]]:
    return [
        {"href": datasette.urls.path(f"{PREFIX}/search"), "label": "telewatch: search"},
        {"href": datasette.urls.path(f"{PREFIX}/timeline"), "label": "telewatch: time line"},
        {"href": datasette.urls.path(f"{PREFIX}/channels"), "label": "telewatch: channels"},
    ]
