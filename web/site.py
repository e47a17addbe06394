"""One web view per Datasette instance: its options, its archive (opened read-only on first
use, closed at the server's shutdown) and its templates.

Options come from :func:`configure` (``telewatch serve`` calls it with the config's password
hash and time zone) or, under a plain ``datasette archive.db``, from the plugin's metadata::

    {"plugins": {"telewatch": {"database": "telewatch", "timezone": "Europe/Kyiv",
                               "password_hash": {"$env": "TELEWATCH_WEB_PASSWORD_HASH"}}}}

The hash is never put into Datasette's metadata by ``telewatch serve``: ``/-/metadata``
would show it.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from archiver.errors import TelewatchError
from archiver.password import check_hash
from archiver.store.archive import Archive, ArchiveError
from archiver.store.postgres import redact

log = logging.getLogger(__name__)

PREFIX = "/-/telewatch"
_TELEWATCH_TABLES = frozenset({"posts", "versions", "versions_fts", "post_events", "channels"})


@dataclass(frozen=True, slots=True)
class Options:
    database: str | None = None  # Datasette's name of the archive; None: the first archive found
    password_hash: str | None = field(default=None, repr=False)
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    home: bool = False  # the search page answers at / (``telewatch serve``)
    # A PostgreSQL archive's URL (``telewatch serve`` on ``[storage] url``): the archive is
    # there, not among Datasette's databases, and Datasette's table pages cannot show it.
    url: str | None = field(default=None, repr=False)


class Site:
    """What the plugin keeps for one Datasette instance."""

    def __init__(self, datasette: Any, options: Options) -> None:
        self.datasette = datasette
        self.options = options
        self.archive: Archive | None = None
        self.counter: Archive | None = None  # a second connection: totals beside the search
        self.db_name: str | None = None  # Datasette's name of the archive, once found
        self._lock: asyncio.Lock | None = None
        self._env: jinja2.Environment | None = None
        self._login_lock: asyncio.Lock | None = None

    @property
    def login_lock(self) -> asyncio.Lock:
        """Held while a password is checked: wrong guesses are answered one at a time."""
        if self._login_lock is None:
            self._login_lock = asyncio.Lock()
        return self._login_lock

    @property
    def tz(self) -> ZoneInfo:
        return self.options.timezone

    @property
    def env(self) -> jinja2.Environment:
        if self._env is None:
            self._env = jinja2.Environment(
                loader=jinja2.PackageLoader("web", "templates"),
                autoescape=True,
                trim_blocks=True,
                lstrip_blocks=True,
                undefined=jinja2.StrictUndefined,
            )
            self._env.globals["prefix"] = PREFIX
        return self._env

    @property
    def tables_url(self) -> str | None:
        """Datasette's page of the archive's tables; None on PostgreSQL (Datasette reads
        SQLite files only: psql or any PostgreSQL tool shows the tables there)."""
        if self.options.url is not None:
            return None
        if self.db_name is None:
            return "/"
        return str(self.datasette.urls.database(self.db_name))

    def render(self, template: str, **context: Any) -> str:
        return self.env.get_template(f"telewatch/{template}").render(**context)

    async def open(self) -> Archive:
        """The archive, opened read-only on first use."""
        if self.archive is not None:
            return self.archive
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.archive is None:
                url = self.options.url
                path = url if url is not None else await self._path()
                self.archive = await Archive.open_readonly(path)
                shown = redact(url) if url is not None else path
                log.info("web view: archive %s opened read-only", shown)
        return self.archive

    async def open_counter(self) -> Archive:
        """A second read-only connection to the archive, on a thread of its own: a page
        counts its total there while the search runs on the first (SQLite runs both at once).
        On PostgreSQL the archive's own pool runs both at once already."""
        archive = await self.open()
        if archive.dialect == "postgresql":
            return archive
        if self.counter is None:
            counter = await Archive.open_readonly(archive.path)
            if self.counter is None:
                self.counter = counter
            else:
                await counter.close()
        return self.counter

    async def _path(self) -> str:
        name = self.options.database
        dbs = self.datasette.databases
        if name is not None:
            if name not in dbs or not dbs[name].path:
                raise ArchiveError(
                    f"web view: no database {name!r} here (have: {', '.join(sorted(dbs))})"
                )
            self.db_name = name
            return str(dbs[name].path)
        for key, db in dbs.items():
            if not db.path:
                continue
            tables = set(await db.table_names())
            if tables >= _TELEWATCH_TABLES:
                self.db_name = key
                return str(db.path)
        raise ArchiveError(
            "web view: none of the databases is a telewatch archive; give the archive's file"
            " (datasette data/telewatch.db)"
        )

    async def close(self) -> None:
        if self.counter is not None:
            counter, self.counter = self.counter, None
            await counter.close()
        if self.archive is not None:
            archive, self.archive = self.archive, None
            await archive.close()
            log.info("web view: archive closed")


_sites: weakref.WeakKeyDictionary[Any, Site] = weakref.WeakKeyDictionary()


def configure(datasette: Any, options: Options) -> Site:
    """Set the web view's options for this Datasette instance (before its first request)."""
    site = Site(datasette, options)
    _sites[datasette] = site
    return site


def site_of(datasette: Any) -> Site:
    """The instance's web view, configured from the plugin metadata when nobody did."""
    site = _sites.get(datasette)
    if site is None:
        site = configure(datasette, options_from_metadata(datasette.plugin_config("telewatch")))
    return site


def options_from_metadata(config: Any) -> Options:
    if config is None:
        return Options()
    if not isinstance(config, dict):
        raise TelewatchError("plugins.telewatch: expected an object")
    tz_name = config.get("timezone", "UTC")
    try:
        tz = ZoneInfo(str(tz_name))
    except (ZoneInfoNotFoundError, ValueError):
        raise TelewatchError(
            f"plugins.telewatch.timezone: unknown time zone {tz_name!r}"
            ' (use an IANA name like "Europe/Kyiv")'
        ) from None
    pw = config.get("password_hash")
    if pw and (why := check_hash(str(pw))) is not None:
        raise TelewatchError(
            f"plugins.telewatch.password_hash: {why}; make one with `telewatch hash-password`"
        )
    return Options(
        database=config.get("database"),
        password_hash=str(pw) if pw else None,
        timezone=tz,
    )


async def close_all() -> None:
    """Close every open archive (the tests' teardown; the server closes at its shutdown)."""
    for site in list(_sites.values()):
        await site.close()
