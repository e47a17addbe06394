"""``telewatch serve``: Datasette with the web view, on one archive, until Ctrl-C or SIGTERM.

It listens on 127.0.0.1 unless told otherwise; any other address needs ``[web_view]
password_hash`` (then every page asks for the password and the server answers reads only).
The socket is bound before anything else, so a port in use is one clear line.

On a PostgreSQL archive (``[storage] url``) Datasette gets no file: the web view's pages read
the archive over read-only sessions (``Archive.open_readonly``), and Datasette's own table and
SQL pages, which read SQLite files only, are not offered.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import uvicorn
from datasette.app import Datasette

from archiver.errors import ConfigError, TelewatchError
from archiver.store.postgres import is_url, redact
from web.access import is_local
from web.site import Options, configure, site_of

log = logging.getLogger(__name__)


def check_host(host: str, password_hash: str | None) -> None:
    if not is_local(host) and password_hash is None:
        raise ConfigError(
            f"--host {host}: reachable from other machines, so a password is required: run"
            " `telewatch hash-password` and put the line it prints under [web_view] in the"
            " config (or leave --host at 127.0.0.1)"
        )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or one line that says what to do."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise TelewatchError(f"--host {host}: not an address of this machine") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise TelewatchError(
                f"{host}:{port}: the port is in use (another `telewatch serve`?); pick another"
                " with --port"
            ) from None
        raise TelewatchError(f"{host}:{port}: cannot listen ({exc.strerror})") from None
    sock.setblocking(False)
    return sock


def build(archive: Path | str, password_hash: str | None, tz: ZoneInfo) -> Datasette:
    """Datasette on the archive (a SQLite file, or a PostgreSQL URL), with the web view as
    the home page."""
    if is_url(archive):
        ds = Datasette([], settings={"sql_time_limit_ms": 3000})
        ds.remove_database("_memory")  # an empty SQLite in memory: no SQL page to offer
        options = Options(url=str(archive), password_hash=password_hash, timezone=tz, home=True)
    else:
        path = str(archive)
        ds = Datasette([path], settings={"sql_time_limit_ms": 3000})
        name = next(k for k, db in ds.databases.items() if db.path == path)
        options = Options(database=name, password_hash=password_hash, timezone=tz, home=True)
    configure(ds, options)
    return ds


async def serve(
    archive: Path | str,
    host: str,
    port: int,
    password_hash: str | None,
    tz: ZoneInfo,
    *,
    echo: Callable[[str], None] = print,
) -> None:
    check_host(host, password_hash)
    sock = bind(host, port)
    ds = build(archive, password_hash, tz)
    await ds.invoke_startup()
    shown = f"[{host}]" if ":" in host else host
    of = f"PostgreSQL {redact(str(archive))}" if is_url(archive) else archive
    echo(
        f"telewatch web view of {of}: http://{shown}:{sock.getsockname()[1]}/"
        + (" (password required)" if password_hash else "")
        + "; Ctrl-C stops it"
    )
    config = uvicorn.Config(ds.app(), log_level="warning", lifespan="on", access_log=False)
    try:
        await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        sock.close()
        await site_of(ds).close()  # the server's shutdown closed it, unless it failed first
