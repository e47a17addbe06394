"""The ``telewatch`` command.

Global options come before the subcommand: ``telewatch [--config PATH] [--db PATH] COMMAND``.
Every :class:`~archiver.errors.TelewatchError` becomes one line on stderr and its exit code
(0 done, 1 failed, 2 usage or config error, 3 not logged in, 4 partial: some channels archived
and some failed, 130/143 stopped by SIGINT/SIGTERM); no traceback reaches a user.
The bot is imported lazily, inside the commands that run it.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Coroutine
from datetime import timedelta
from functools import wraps
from pathlib import Path
from typing import IO, Any, ParamSpec, TypeVar

import click

from archiver import __version__
from archiver.config import Settings, find_config, load_settings
from archiver.errors import (
    ConfigError,
    Interrupted,
    NotWritable,
    PartialFailure,
    QueryError,
    TelewatchError,
)
from archiver.logs import setup_logging
from archiver.query import Node, Or, Query, and_filters, make_filter, parse

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_LOGGED_IN, EXIT_PARTIAL = 0, 1, 2, 3, 4


class App:
    """What the global options decided; settings are loaded on first use."""

    def __init__(
        self, config: Path | None, db: Path | None, log_level: str | None, log_format: str | None
    ) -> None:
        self.config_path = find_config(config, os.environ)
        self.db_override = db
        self.log_level = log_level
        self.log_format = log_format
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path, db=self.db_override)
            setup_logging(
                self.log_level or self._settings.logging.level,
                self.log_format or self._settings.logging.format,
                self._settings.secrets,
            )
        return self._settings

    async def open_archive(self, *, create: bool = True) -> Any:
        from archiver.store import Archive

        return await Archive.open_storage(self.settings.storage, create=create)

    def sqlite_only(self, command: str, hint: str = "") -> None:
        """Refuse ``command`` in one line when the archive is on PostgreSQL, where it does
        not work yet (docs/postgresql.md lists what does)."""
        if self.settings.storage.url is not None:
            from archiver.store.postgres import NotOnPostgres

            raise NotOnPostgres(f"`{command}`", hint)


class TelewatchGroup(click.Group):
    """Turns domain errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except QueryError as exc:
            shown = exc.query if len(exc.query) <= 80 else exc.query[:77] + "..."
            click.echo(f"Error: query {shown!r}: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except TelewatchError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except sqlite3.DatabaseError as exc:
            click.echo(f"Error: {_archive_error(ctx, exc)}", err=True)
            ctx.exit(EXIT_FAILED)
        except PermissionError as exc:  # an unwritable ./data volume, most often
            denied = NotWritable(exc.filename or ".")
            click.echo(f"Error: {denied}", err=True)
            ctx.exit(denied.exit_code)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            click.echo(
                f"Error: {exc.filename or 'a file'}: the disk is full; free some space and run"
                " the command again (nothing archived before is lost)",
                err=True,
            )
            ctx.exit(EXIT_FAILED)
        except BufferError as exc:  # Telethon's InvalidBufferError: not Telegram on the wire
            click.echo(
                "Error: the connection to Telegram returned data that is not Telegram's"
                f" ({type(exc).__name__}); check the network, a proxy or a firewall in between,"
                " and try again",
                err=True,
            )
            ctx.exit(EXIT_FAILED)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


def _loop_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's report of an exception nobody retrieved: Telethon fails the futures of its
    own pings with the connection's error and never awaits them. Those are the network
    failure already reported per channel: a DEBUG line, not a traceback."""
    exc = context.get("exception")
    if isinstance(exc, OSError | BufferError):
        log.debug("%s: %s", context.get("message", "asyncio"), type(exc).__name__)
        return
    loop.default_exception_handler(context)


def _archive_error(ctx: click.Context, exc: sqlite3.DatabaseError) -> str:
    """SQLite's error at the CLI edge as one line that says what to do."""
    app = ctx.find_object(App)
    where = "the archive"
    if app is not None and app._settings:
        storage = app._settings.storage
        where = str(storage.path) if storage.url is None else "the PostgreSQL archive"
    reason = str(exc)
    if "locked" in reason or "busy" in reason:
        return "the archive is locked by another telewatch process; try again shortly"
    if "full" in reason:
        return (
            f"{where}: the disk is full ({reason}); free some space and run the command again"
            " (the last batch was rolled back; nothing archived before it is lost)"
        )
    from archiver.store.archive import DAMAGED, damaged

    if any(w in reason for w in DAMAGED):
        return damaged(where, reason)
    return f"{where}: the archive could not be read or written ({reason})"


def run_async(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, R]:
    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        async def main() -> R:
            asyncio.get_running_loop().set_exception_handler(_loop_errors)
            return await fn(*args, **kwargs)

        return asyncio.run(main())

    return wrapper


pass_app = click.make_pass_decorator(App)

# Commands whose arguments may start with '-' (-учения, -1001811111111): unknown options pass
# through as arguments, and no short option exists that a word could spell (-shelling would
# otherwise be -s -h ... and show the help).
_DASH_ARGS: dict[str, Any] = {"ignore_unknown_options": True, "help_option_names": ["--help"]}


@click.group(cls=TelewatchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default: $TELEWATCH_CONFIG, then ./config.toml, else built-in defaults).",
)
@click.option(
    "--db",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Archive file; overrides [storage] path (default data/telewatch.db).",
)
@click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)
)
@click.option("--log-format", type=click.Choice(["text", "json"]))
@click.version_option(__version__, prog_name="telewatch")
@click.pass_context
def cli(
    ctx: click.Context,
    config: Path | None,
    db: Path | None,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """telewatch: follow public Telegram channels, archive every post, edit and deletion,
    search them in Russian, Ukrainian and English, and get alerts in Telegram.

    \b
    First steps without Telegram credentials:
      telewatch import result.json --username vsaldo
      telewatch search 'эвакуация OR евакуація'
    """
    ctx.obj = App(config, db, log_level, log_format)


def _filters(
    channels: tuple[str, ...], since: str | None, until: str | None, tz: str = "UTC"
) -> list[Node]:
    """The ``--channel/--since/--until`` options as query filters (validated like the query);
    ``tz``: the display time zone, whose days the dates name."""
    extra: list[Node] = []
    if channels:
        nodes: list[Node] = [make_filter("channel", c, f"--channel {c}") for c in channels]
        extra.append(nodes[0] if len(nodes) == 1 else Or(tuple(nodes)))
    for name, value in (("since", since), ("until", until)):
        if value:
            extra.append(make_filter(name, value, f"--{name} {value}", tz))
    return extra


def _query(
    text: str, channels: tuple[str, ...], since: str | None, until: str | None, tz: str
) -> Query:
    return and_filters(parse(text, tz), _filters(channels, since, until, tz))


def search_options(fn: Callable[P, R]) -> Callable[P, R]:
    for opt in reversed(
        [
            click.option(
                "--channel",
                "channels",
                multiple=True,
                metavar="C",
                help="Only this channel (username, id or t.me link); repeatable.",
            ),
            click.option(
                "--since",
                metavar="YYYY-MM-DD",
                help="Posts on or after this day (in the display time zone).",
            ),
            click.option(
                "--until",
                metavar="YYYY-MM-DD",
                help="Posts on or before this day (in the display time zone).",
            ),
        ]
    ):
        fn = opt(fn)
    return fn


# ---------------------------------------------------------------------------- archive commands


@cli.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--username", help="The channel's public username (exports do not carry it).")
@pass_app
@run_async
async def import_cmd(app: App, files: tuple[Path, ...], username: str | None) -> None:
    """Import Telegram Desktop "Export chat history" JSON files.

    Accepts a channel's result.json and the whole-account export (its channels). Importing the
    same file twice changes nothing; a changed text becomes a new version. Import never alerts.

    \b
    Example:
      telewatch import ~/Downloads/ChatExport_2024-05-01/result.json --username vsaldo
    """
    from archiver.channels import parse_ref
    from archiver.sources.export import import_file

    if username is not None:
        ref = parse_ref(username)
        if ref.username is None:
            raise TelewatchError(f"--username: expected a public username, got {username!r}")
        username = ref.username
    for path in files:
        if path.is_dir():
            raise TelewatchError(f"{path}: is a folder; give the result.json inside it")
        if not path.is_file():
            raise TelewatchError(f"{path}: no such file")
    archive = await app.open_archive()
    try:
        for path in files:
            size = path.stat().st_size
            show = sys.stderr.isatty()
            with click.progressbar(
                length=size, label=path.name, file=sys.stderr, hidden=not show
            ) as bar:
                done = 0

                def progress(pos: int) -> None:
                    nonlocal done
                    bar.update(pos - done)
                    done = pos

                results = await import_file(archive, path, username=username, progress=progress)
            for r in results:
                name = r.username or r.title or str(r.channel_id)
                click.echo(
                    f"{path}: {name}: {r.posts_added} posts added, "
                    f"{r.versions_added} versions added"
                )
    finally:
        await archive.close()


@cli.command(context_settings=_DASH_ARGS)
@click.argument("query")
@search_options
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option(
    "--sort", type=click.Choice(["newest", "relevance"]), default="newest", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_app
@run_async
async def search(
    app: App,
    query: str,
    channels: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int,
    sort: str,
    as_json: bool,
) -> None:
    """Search the archive, newest first.

    A bare word finds every form of it: `эвакуация` finds эвакуацию and эвакуации. Also
    "exact phrase", prefix*, OR, -word, NOT word, (parentheses), channel:NAME,
    since:YYYY-MM-DD, until:YYYY-MM-DD, is:edited, is:deleted, has:media.
    See docs/query-language.md.

    \b
    Examples:
      telewatch search '(эвакуация OR евакуація OR evacuation) -учения'
      telewatch search '"организовать выезд"' --channel vsaldo --since 2022-10-01
    """
    from archiver.display import hit_lines
    from archiver.store.search import search as run_search
    from archiver.store.vocabulary import suggestion_hint

    q = _query(query, channels, since, until, app.settings.display.timezone.key)
    archive = await app.open_archive(create=False)
    try:
        hits = await run_search(archive, q, limit=limit, sort=sort)
        hint = None if hits else await suggestion_hint(archive, q)
    finally:
        await archive.close()
    if hint is not None:
        click.echo(hint, err=True)
    if as_json:
        for h in hits:
            click.echo(json.dumps(h.to_json(), ensure_ascii=False))
        return
    tz = app.settings.display.timezone
    color = sys.stdout.isatty()
    for h in hits:
        click.echo("\n".join(hit_lines(h, tz, color)))
        click.echo()
    click.echo(f"{len(hits)} result(s)" + (" (--limit reached)" if len(hits) == limit else ""))


@cli.command(context_settings=_DASH_ARGS)
@click.argument("channel")
@click.argument("message_id", type=click.IntRange(1, 2**31 - 1))
@click.option("--json", "as_json", is_flag=True)
@pass_app
@run_async
async def history(app: App, channel: str, message_id: int, as_json: bool) -> None:
    """Every version of one post, oldest first, and its deletion.

    \b
    Example:
      telewatch history vsaldo 1234
    """
    from archiver.display import history_lines
    from archiver.store.search import history as get_history

    archive = await app.open_archive(create=False)
    try:
        h = await get_history(archive, channel, message_id)
    finally:
        await archive.close()
    if as_json:
        click.echo(json.dumps(h.to_json(), ensure_ascii=False))
    else:
        click.echo("\n".join(history_lines(h, app.settings.display.timezone)))


@cli.command(context_settings=_DASH_ARGS)
@click.argument("channel")
@click.option("--json", "as_json", is_flag=True)
@pass_app
@run_async
async def coverage(app: App, channel: str, as_json: bool) -> None:
    """What the archive can vouch for in one channel: the message ids archived, ids never
    seen, the time windows nobody was watching and why, and the last full re-read.

    \b
    Example:
      telewatch coverage vsaldo --json
    """
    from archiver.display import coverage_lines
    from archiver.store.channels import require_channel
    from archiver.store.coverage import WATCH_TOLERANCE, channel_coverage

    tolerance = max(WATCH_TOLERANCE, timedelta(minutes=app.settings.schedule.stale_after_minutes))
    archive = await app.open_archive(create=False)
    try:
        row = await require_channel(archive, channel)
        cov = await channel_coverage(archive, row.id, tolerance=tolerance)
    finally:
        await archive.close()
    if as_json:
        click.echo(json.dumps(cov.as_json(), ensure_ascii=False))
    else:
        click.echo("\n".join(coverage_lines(cov, app.settings.display.timezone)))


@cli.command(context_settings=_DASH_ARGS)
@click.argument("query", required=False, default="")
@search_options
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True
)
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File to write (default: standard output).",
)
@pass_app
@run_async
async def export(
    app: App,
    query: str,
    channels: tuple[str, ...],
    since: str | None,
    until: str | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Export search results (without a query: every post but service messages) to CSV or
    JSON lines. Service messages (pins, title and photo changes) stay in the archive and in
    `telewatch history`; searches and exports leave them out.

    The CSV is UTF-8 with a byte-order mark, so Excel and LibreOffice show Cyrillic as is.

    \b
    Example:
      telewatch export 'евакуація' --channel vsaldo --format csv --output evacuation.csv
    """
    from archiver.display import CsvWriter
    from archiver.store.search import Hit, export_rows, iter_hits

    q = _query(query, channels, since, until, app.settings.display.timezone.key)
    archive = await app.open_archive(create=False)
    n = 0
    try:
        try:
            out: IO[str] = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
        except OSError as exc:
            raise TelewatchError(
                f"--output {output}: cannot write ({exc.strerror}); check that the folder"
                " exists and is writable"
            ) from None
        try:
            writer = CsvWriter(out) if fmt == "csv" else None

            async def flush(hits: list[Hit]) -> None:
                for row in await export_rows(archive, hits):
                    if writer is not None:
                        writer.write(row)
                    else:
                        out.write(json.dumps(row, ensure_ascii=False) + "\n")

            page: list[Hit] = []
            async for hit in iter_hits(archive, q):
                page.append(hit)
                n += 1
                if len(page) >= 200:
                    await flush(page)
                    page = []
            await flush(page)
        finally:
            if output:
                out.close()
    finally:
        await archive.close()
    if output:
        click.echo(f"{output}: {n} post(s) written", err=True)


class _EvidenceGroup(click.Group):
    """``telewatch evidence LINK...`` makes a bundle (the ``make`` command);
    ``telewatch evidence verify FILE.zip`` checks one."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["make", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=_EvidenceGroup)
def evidence() -> None:
    """Evidence bundles: one zip with a post's versions, deletion and coverage, its log
    entries chained to a timestamped root, and its raw captures; checked offline by
    `telewatch evidence verify` (docs/evidence.md). Without a command, the arguments are
    those of `make`.

    \b
    Example:
      telewatch evidence t.me/vsaldo/1234 --output vsaldo-1234.zip
      telewatch evidence verify vsaldo-1234.zip
    """


@evidence.command("make")
@click.argument("links", nargs=-1)
@click.option("--query", "query_text", metavar="Q", help="The posts this search finds.")
@click.option("--since", metavar="YYYY-MM-DD", help="With --query: posts on or after this day.")
@click.option("--until", metavar="YYYY-MM-DD", help="With --query: posts on or before this day.")
@click.option(
    "--output", required=True, type=click.Path(path_type=Path, dir_okay=False), help="FILE.zip"
)
@click.option(
    "--max-posts", default=500, show_default=True, type=click.IntRange(1, 100_000),
    help="Refuse a --query that finds more posts than this.",
)  # fmt: skip
@pass_app
@run_async
async def evidence_make(
    app: App,
    links: tuple[str, ...],
    query_text: str | None,
    since: str | None,
    until: str | None,
    output: Path,
    max_posts: int,
) -> None:
    """Write the evidence bundle of posts (links t.me/channel/123 or @channel/123), or of the
    posts a search finds (the query language of `telewatch search`).

    \b
    Example:
      telewatch evidence t.me/vsaldo/1234 --output vsaldo-1234.zip
      telewatch evidence make --query 'евакуація channel:vsaldo' --since 2024-05-01 --output may.zip
    """
    from archiver.evidence.bundles import BundleError, bundle_from_archive

    if bool(links) == (query_text is not None):
        raise BundleError("give post links, or --query, but not both")
    if (since or until) and query_text is None:
        raise BundleError("--since and --until go with --query")
    tz = app.settings.display.timezone.key
    query = _query(query_text, (), since, until, tz) if query_text is not None else None
    tolerance = max(
        timedelta(minutes=90), timedelta(minutes=app.settings.schedule.stale_after_minutes)
    )
    request = {"links": list(links), "query": query_text, "since": since, "until": until}
    archive = await app.open_archive(create=False)
    try:
        summary = await bundle_from_archive(
            archive, output, links=links, query=query, request=request, max_posts=max_posts,
            tolerance=tolerance,
        )  # fmt: skip
    finally:
        await archive.close()
    anchor = (
        f"chained to the root of {summary.root_day}"
        if summary.root_day
        else "not yet covered by a daily root (made after each UTC day ends)"
    )
    click.echo(
        f"{summary.path}: {summary.posts} post(s), {summary.entries} log entries ({anchor}),"
        f" {summary.captures} capture(s), {summary.size} bytes",
        err=True,
    )


@evidence.command("verify")
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--tsa-cert", "tsa_certs", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
    help="The time-stamping authority's root certificate (PEM) to check the signer against.",
)  # fmt: skip
def evidence_verify(bundle: Path, tsa_certs: tuple[Path, ...]) -> None:
    """Check an evidence bundle offline, without the archive: every file's hash, each log
    entry's content and chain up to the root, the timestamp token over the root, each
    capture against its entry, and the report against the entries. Prints "bundle verified"
    or one line per problem (exit 1).

    \b
    Example:
      telewatch evidence verify vsaldo-1234.zip --tsa-cert tsa-root.pem
    """
    from archiver.evidence.bundle_check import verify_bundle

    trusted = []
    for cert in tsa_certs:
        try:
            trusted.append(cert.read_bytes())
        except OSError as exc:
            raise TelewatchError(f"--tsa-cert {cert}: cannot read it ({exc.strerror})") from None
    verdict = verify_bundle(bundle, trusted=trusted)
    for line in verdict.lines():
        click.echo(line, err=not verdict.ok)
    if not verdict.ok:
        raise SystemExit(EXIT_FAILED)


_COVERAGE_KEYS = ("id_ranges", "ids_never_seen", "states", "watched_since", "unwatched")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_app
@run_async
async def stats(app: App, as_json: bool) -> None:
    """Per channel: posts, edits, deletions, first and last post, last sync, last full
    re-read; with --json also its coverage (as `telewatch coverage` prints it). Then the last
    web pass's request budget: spent per phase, left, and what it could not do.

    \b
    Example:
      telewatch stats --json
    """
    from archiver.display import stats_lines
    from archiver.sources.web.sync import last_pass, pass_summary
    from archiver.store.coverage import WATCH_TOLERANCE, channel_coverage
    from archiver.store.following import following_report
    from archiver.store.search import channel_stats

    tolerance = max(WATCH_TOLERANCE, timedelta(minutes=app.settings.schedule.stale_after_minutes))
    archive = await app.open_archive(create=False)
    try:
        rows = await channel_stats(archive)
        report = await following_report(archive)
        accounts = await _accounts_report(archive, app.settings)
        web_pass = await last_pass(archive)
        workers = await _workers_of(archive, app.settings)
        stopped = await _stopped_workers(archive, app.settings)
        covered = (
            {r.channel_id: await channel_coverage(archive, r.channel_id, tolerance=tolerance)
             for r in rows}
            if as_json else {}
        )  # fmt: skip
    finally:
        await archive.close()
    # Configured channels with nothing archived yet (never synced, or failing from the start).
    known = {r.channel_id for r in rows} | {r.channel.lower() for r in rows if r.channel}
    missing = [ch for ch in app.settings.channels if (ch.ref.id or ch.ref.username) not in known]
    if as_json:
        for r in rows:
            cov = covered[r.channel_id].as_json()
            data = {**r.to_json(), "coverage": {k: cov[k] for k in _COVERAGE_KEYS}}
            data |= report.json_for(r.channel_id)
            if accounts is not None and r.source == "telethon":
                data["account"] = accounts.account_for(r.channel_id, r.channel)
            if workers is not None:  # the worker following it (several workers: leases)
                data["worker"] = workers.get(r.channel or "", workers.get(str(r.channel_id)))
            click.echo(json.dumps(data, ensure_ascii=False))
        for ch in missing:
            extra: dict[str, Any] = {}
            if accounts is not None and ch.source == "telethon":
                extra["account"] = accounts.by_key.get(str(ch.ref).lower())
            if workers is not None:
                extra["worker"] = workers.get(str(ch.ref))
            click.echo(json.dumps({"channel": str(ch.ref), "source": ch.source, "posts": 0,
                                   "sync_status": "never archived"}
                                  | report.json_for_ref(ch.ref) | extra))  # fmt: skip
        for wait in report.flood_json():
            click.echo(json.dumps(wait))
        for load in accounts.json() if accounts is not None else []:
            click.echo(json.dumps(load))
        if web_pass is not None:
            click.echo(json.dumps({"web_pass": web_pass}))
        for w in stopped:
            click.echo(json.dumps(w))
    else:
        click.echo("\n".join(stats_lines(rows, app.settings.display.timezone)))
        for ch in missing:
            why = report.line_for_ref(ch.ref) or (
                "nothing archived yet: never synced, or its sync fails (see the output of"
                " `telewatch sync`)"
            )
            click.echo(f"{ch.ref} ({ch.source}): {why}")
        for text in report.lines(known_ids={r.channel_id for r in rows}):
            click.echo(text)
        for text in accounts.lines() if accounts is not None else []:
            click.echo(text)
        if web_pass is not None:
            click.echo(pass_summary(web_pass))
        for who, keys in _by_worker(workers or {}).items():
            click.echo(f"worker {who} follows: {', '.join(keys)}" if who
                       else f"followed by no worker now: {', '.join(keys)}")  # fmt: skip
        for w in stopped:
            left = w["left"]
            fate = (f"nobody has taken over {', '.join(left)} since" if left
                    else "holds nothing (its units, if any, went to other workers)")  # fmt: skip
            click.echo(
                f"worker {w['worker']}: stopped, last seen {_utc_text(w['last_seen'])}"
                f" (pid {w['pid']} on {w['host']}); {fate}"
            )


def _by_worker(workers: dict[str, str | None]) -> dict[str | None, list[str]]:
    out: dict[str | None, list[str]] = {}
    for key, who in workers.items():
        out.setdefault(who, []).append(key)
    return dict(sorted(out.items(), key=lambda kv: (kv[0] is None, kv[0] or "")))


async def _workers_of(archive: Any, settings: Any) -> dict[str, str | None] | None:
    """Channel key -> the worker following it now (None: nobody); None without leases."""
    from archiver.worker import following

    rows = await following(archive, settings)
    return None if rows is None else {f.channel: f.worker for f in rows}


def _utc_text(iso: str) -> str:
    return iso.replace("T", " ").replace("Z", " UTC")


async def _stopped_workers(archive: Any, settings: Any) -> list[dict[str, Any]]:
    """The workers whose heartbeat stopped without a clean stop, as ``stats`` shows them."""
    from archiver.store.archive import iso_utc
    from archiver.store.leases import parse
    from archiver.worker import stopped_workers

    return [
        {"worker": w.name, "state": "stopped",
         "last_seen": iso_utc(parse(w.seen_at).replace(microsecond=0)), "host": w.host,
         "pid": w.pid, "left": list(w.left)}
        for w in await stopped_workers(archive, settings)
    ]  # fmt: skip


async def _accounts_report(archive: Any, settings: Settings) -> Any:
    """Which account follows each Telethon channel, with ``[[accounts]]`` (None without:
    the one account follows them all, and the output stays as it was)."""
    if not settings.configured_accounts:
        return None
    from archiver.sources.telethon_accounts import accounts_report

    return await accounts_report(archive, settings)


@cli.group("workers")
def workers_group() -> None:
    """The worker names of `run --worker NAME` (docs/operations.md, "Several workers")."""


@workers_group.command("forget")
@click.argument("name")
@pass_app
@run_async
async def workers_forget(app: App, name: str) -> None:
    """Retire a stopped worker's name for good: `health` and `stats` no longer name it.
    Refused while that worker is alive (seen within [workers] lease_seconds). Its units are
    left free for the next worker; a clean stop (SIGTERM, Ctrl-C) forgets a name by itself,
    and `maintenance` forgets one unseen for 7 days that holds nothing.

    \b
    Example:
      telewatch workers forget w3
    """
    from archiver.worker import forget

    archive = await app.open_archive(create=False)
    try:
        gone = await forget(archive, app.settings, name)
    finally:
        await archive.close()
    left = f"; left free: {', '.join(gone.left)}" if gone.left else ""
    click.echo(f"worker {name} forgotten (last seen {gone.seen_at[:19]} UTC){left}")


@cli.group("log")
def log_group() -> None:
    """The observation log: every change to the record, hash-chained (docs/evidence.md)."""


@log_group.command("verify")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of the line.")
@pass_app
@run_async
async def log_verify(app: App, as_json: bool) -> None:
    """Check the whole observation log: each entry's content hash, the chain, the versions
    and captures it names, and the daily roots (with their timestamps). Exits non-zero
    naming the first broken link.

    \b
    Example:
      telewatch log verify
    """
    from archiver.evidence.verify import LogBroken, check

    archive = await app.open_archive(create=False)
    try:
        broken, summary = await check(archive)
    finally:
        await archive.close()
    if as_json:
        data: dict[str, Any] = {
            "intact": broken is None,
            "entries": summary.entries,
            "last_root": summary.last_root,
            "captures_pruned": summary.captures_pruned,
        }
        if broken is not None:
            data |= {"broken_seq": broken.seq, "reason": broken.reason}
        click.echo(json.dumps(data, ensure_ascii=False))
    if broken is not None:
        raise LogBroken(broken)
    if not as_json:
        pruned = f", {summary.captures_pruned} capture(s) pruned" if summary.captures_pruned else ""
        click.echo(
            f"log intact: {summary.entries} entries, last root {summary.last_root or 'none yet'}"
            + pruned
        )


@cli.group()
def config() -> None:
    """Check the configuration."""


@config.command("check")
@pass_app
def config_check(app: App) -> None:
    """Validate the config and print a summary (secrets are never shown).

    \b
    Example:
      telewatch --config config.toml config check
    """
    from archiver.config import summary

    click.echo("\n".join(summary(app.settings)))
    click.echo("config OK")


@cli.command()
@pass_app
@run_async
async def demo(app: App) -> None:
    """The whole pipeline on the bundled sample channel, with no Telegram account.

    Imports the sample export, searches it, backtests two rules, replays a new post, an edit
    and a deletion through the live ingest path, and prints the alerts the bot would send.
    Writes only to a demo archive (default data/demo.db). Needs no config: one is read, for
    its time zone, only when it exists.

    \b
    Examples:
      telewatch --db data/demo.db demo
      docker run --rm -v "$PWD/data:/data" telewatch demo
    """
    from archiver.demo import run_demo

    path = app.db_override or Path("data/demo.db")
    cfg = app.config_path  # e.g. $TELEWATCH_CONFIG naming a file a fresh volume lacks
    tz = app.settings.display.timezone.key if cfg is None or cfg.exists() else "UTC"
    if app.log_level is None:  # the demo's own output tells the story
        logging.getLogger().setLevel(logging.WARNING)
    await run_demo(path, click.echo, tz_name=tz)


# ---------------------------------------------------------------------------- rules


@cli.group()
def rules() -> None:
    """Keyword rules: backtest them over the archive, list them."""


@rules.command("test")
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A TOML file of [[rules]] to test instead of the configured rules.",
)
@click.option("--newest", default=3, show_default=True, help="Matches shown per rule.")
@click.option("--json", "as_json", is_flag=True, help="One line per (rule, post).")
@pass_app
@run_async
async def rules_test(app: App, rules_file: Path | None, newest: int, as_json: bool) -> None:
    """Evaluate rules over the whole archive before switching them on (a backtest).

    Per rule: how many archived posts it matches and the newest few. With --json, one object
    per (rule, post): rule, channel_id, channel, message_id, date, snippet.

    \b
    Examples:
      telewatch rules test
      telewatch rules test --rules draft-rules.toml --json
    """
    from archiver.backtest import backtest, format_backtest, hit_json_line, iter_backtest
    from archiver.config import parse_rules_file

    to_test = parse_rules_file(rules_file) if rules_file else app.settings.rules
    if not to_test:
        raise TelewatchError("no rules to test: add [[rules]] to the config, or give --rules FILE")
    tz = app.settings.display.timezone.key
    archive = await app.open_archive(create=False)
    try:
        if as_json:
            async for hit in iter_backtest(archive, to_test, tz=tz):
                click.echo(hit_json_line(hit))
        else:
            results = await backtest(archive, to_test, newest=newest, tz=tz)
            lines = format_backtest(
                results, app.settings.display.timezone, color=sys.stdout.isatty()
            )
            click.echo("\n".join(lines))
    finally:
        await archive.close()


@rules.command("list")
@pass_app
@run_async
async def rules_list(app: App) -> None:
    """The configured rules and the journalists' personal rules (made in the bot).

    \b
    Example:
      telewatch rules list
    """
    from archiver.rules import format_rules_list, list_all_rules
    from archiver.store import Archive

    settings = app.settings
    archive = (
        await Archive.open_storage(settings.storage, create=False)
        if settings.storage.url is not None or settings.storage.path.exists()
        else None
    )
    try:
        items = await list_all_rules(archive, settings.rules)
    finally:
        if archive is not None:
            await archive.close()
    click.echo(format_rules_list(items))


@cli.command()
@click.option(
    "--status",
    type=click.Choice(["pending", "sending", "sent", "failed", "unknown", "dropped"]),
    help="Only alerts in it.",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--requeue", is_flag=True, help="Put every failed alert back to pending first.")
@pass_app
@run_async
async def alerts(app: App, status: str | None, limit: int, as_json: bool, requeue: bool) -> None:
    """The alert outbox, newest first: what the bot has sent, is sending, or gave up on.

    \b
    Examples:
      telewatch alerts --status failed
      telewatch alerts --requeue        # after fixing what made them fail
      telewatch alerts --json --limit 1000
    """
    from archiver.rules import format_alerts, list_alerts
    from archiver.store import outbox

    archive = await app.open_archive(create=False)
    try:
        if requeue:
            n = await outbox.requeue(archive)
            click.echo(f"{n} failed alert(s) put back to pending", err=True)
        rows = await list_alerts(archive, status=status, limit=limit)
    finally:
        await archive.close()
    if as_json:
        for row in rows:
            click.echo(row.to_json())
    else:
        click.echo(format_alerts(rows, app.settings.display.timezone))


# ---------------------------------------------------------------------------- telegram


@cli.command()
@click.option("--string", "as_string", is_flag=True, help="Print a session string instead.")
@click.option("--account", "account", metavar="NAME", help="The [[accounts]] account to log in.")
@pass_app
@run_async
async def login(app: App, as_string: bool, account: str | None) -> None:
    """Log in to Telegram once (phone, code, 2FA password). The only command that prompts.

    Writes the session file ([telegram] session, mode 0600), or with --string prints a session
    string to put in TELEWATCH_SESSION (container secrets). Needs [telegram] api_id and
    api_hash (or TELEWATCH_API_ID / TELEWATCH_API_HASH) from https://my.telegram.org. With
    [[accounts]], --account NAME logs in that account (its session, or with --string a string
    for TELEWATCH_SESSION_<NAME>); it is needed when there are several.

    \b
    Examples:
      telewatch login
      telewatch login --account desk2
      docker compose run --rm telewatch login
    """
    from archiver.config import account_settings
    from archiver.lock import session_lock
    from archiver.sources.telethon import login as tg_login

    settings = account_settings(app.settings, _login_account(app.settings, account))
    lock = session_lock(settings)
    lock.acquire("login")
    try:
        out = await tg_login(settings, as_string=as_string)
    except EOFError:  # stdin at its end at a prompt
        click.echo(err=True)  # end the prompt's line
        raise TelewatchError(
            "login: nothing to read the answers from (no terminal, or the connection dropped);"
            " run `telewatch login` in a terminal (with Docker: `docker compose run --rm"
            " telewatch login`, which keeps one)"
        ) from None
    finally:
        lock.release()
    if as_string and out:
        click.echo(out)
        click.echo("Keep this string secret: it is a password to the account.", err=True)
    else:
        click.echo(f"Logged in; session saved to {settings.telegram.session}", err=True)


def _login_account(settings: Settings, name: str | None) -> str:
    """The account ``login`` is for: ``--account``, or the only one; with several and no
    ``--account``, a one-line error listing them."""
    if name is not None:
        return settings.account(name).name  # a ConfigError listing the names when unknown
    if len(settings.accounts) == 1:
        return settings.accounts[0].name
    names = ", ".join(a.name for a in settings.accounts)
    raise ConfigError(
        f"login: the config has {len(settings.accounts)} accounts ({names}); say which with"
        " `telewatch login --account NAME`"
    )


_NOT_FAILED = ("ok", "flood_wait", "skipped", "too_many_channels", "join_pending")


def _sync_summary(results: list[Any]) -> int:
    failed = 0
    for r in results:
        name = getattr(r, "channel", None) or getattr(r, "username", None) or r.channel_id
        line = f"{name}: {r.status}"
        if r.status in ("ok", "flood_wait"):
            line += f", {r.new_posts} new, {r.edits} edited, {r.deletions} deleted"
        if r.flood_wait_until:
            line += f", flood wait until {r.flood_wait_until:%Y-%m-%d %H:%M} UTC"
        if r.error:
            line += f": {r.error}"
        click.echo(line)
        # A channel that cannot be read (an error, or a status such as not_found, private,
        # banned) fails the pass; a flood wait is a pause, and a refused join (the channel is
        # polled meanwhile) still reads it: neither is a failure.
        failed += r.status not in _NOT_FAILED
    return failed


async def _interruptible(coro: Coroutine[Any, Any, R], command: str) -> R:
    """Run ``coro`` so that SIGTERM or SIGINT cancels it (its cleanup runs: the Telegram
    client disconnects, the archive closes, the lock is released) and the command ends with
    :class:`Interrupted`. Every batch is its own transaction: nothing archived is lost."""
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    got: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if not got:
            log.info("received %s: stopping %s", sig.name, command)
        got.append(sig)
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await task
    except asyncio.CancelledError:
        if not got:
            raise
        raise Interrupted(
            f"{command}: stopped by {got[0].name}; what was archived is kept and the next"
            f" {command} resumes from there",
            130 if got[0] == signal.SIGINT else 143,
        ) from None
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _one_pass(app: App, command: str, worker: str | None = None) -> None:
    from archiver.lock import instance_lock
    from archiver.rules import RuleLoader
    from archiver.runner import uses_telethon
    from archiver.sync import recheck_all, sync_all

    settings = app.settings
    if not settings.channels:
        raise TelewatchError(
            "no channels configured: add [[channels]] to the config (see config.example.toml)"
        )
    loader = RuleLoader.for_settings(settings)  # a bad rule stops here, before any network
    session = uses_telethon(settings) and worker is None
    with instance_lock(settings, session=session, command=command, worker=worker):
        archive = await app.open_archive()
        try:
            loader.install(archive)
            if worker is None:
                await _no_live_workers(archive, settings, command)
            await archive.heartbeat(command, os.getpid())
            if worker is not None:
                results = await _interruptible(
                    _worker_pass(archive, settings, worker, command), command
                )
            else:
                run_pass = sync_all if command == "sync" else recheck_all
                results = await _interruptible(run_pass(archive, settings), command)
        finally:
            await archive.close()
    failed = _sync_summary(list(results))
    if not failed:
        return
    logins = getattr(results, "logins_lost", {})
    lost = getattr(results, "login_lost", None) or next(iter(logins.values()), None)
    if failed == len(results):
        if lost is not None:
            raise lost
        raise TelewatchError(f"{command}: every channel failed (see above)")
    hint = "; run `telewatch login` for the Telegram ones" if lost else ""
    if logins and settings.configured_accounts:
        hint = "; log in " + ", ".join(f"`telewatch login --account {n}`" for n in logins)
    raise PartialFailure(
        f"{command}: {failed} of {len(results)} channel(s) failed (see above); the others are"
        " archived" + hint
    )


async def _no_live_workers(archive: Any, settings: Any, command: str) -> None:
    """A pass without a worker name takes no lease and opens every account's session: not
    while workers (``run``, ``run --worker``) follow this archive's channels, maybe on
    other machines (one session in two places: Telegram answers AUTH_KEY_DUPLICATED)."""
    from archiver.store import leases

    live = await leases.live_workers(
        archive, settings.workers.lease_seconds, await leases.db_now(archive)
    )
    if live:
        hint = (
            "use `telewatch sync --worker NAME` for one worker's share"
            if command == "sync"
            else "their `run` rechecks on [schedule] recheck"
        )
        raise TelewatchError(
            f"{command}: worker(s) {', '.join(live)} follow this archive's channels now (a"
            f" pass without --worker would use the same Telegram sessions); {hint}, or stop"
            " them first"
        )


async def _worker_pass(archive: Any, settings: Any, name: str, command: str = "sync") -> Any:
    """``sync --worker NAME`` (``recheck --worker NAME``): one pass over this worker's share
    of the units (leases, docs/operations.md "Several workers"), released at the end."""
    import contextlib

    from archiver.errors import AlreadyRunning
    from archiver.lock import session_locks
    from archiver.store.archive import Archive
    from archiver.store.leases import account_unit
    from archiver.sync import recheck_all, sync_all
    from archiver.worker import Worker

    # the leases' own connection: a renewal never queues behind the pass's ingest
    leases_db = await Archive.open_storage(settings.storage)
    worker = Worker(archive, settings, name, leases_db=leases_db)
    stop = asyncio.Event()
    keeping: asyncio.Task[None] | None = None
    let_go: list[str] = []  # why the pass was stopped before its end
    this_pass = asyncio.current_task()
    assert this_pass is not None
    passing: list[bool] = []  # the pass runs: a cancel lands in it (not in our own cleanup)

    def stop_the_pass(why: str) -> None:
        let_go.append(why)
        if passing:
            this_pass.cancel()  # its clients disconnect as it unwinds

    try:
        await worker.start()
        archive.fence = worker.fence
        keeping = asyncio.create_task(worker.keep(stop, stop_the_pass), name="leases")
        with contextlib.ExitStack() as held:
            for account in worker.accounts_held():  # one session in one process at a time
                [lock] = session_locks(settings, [account])
                try:
                    lock.acquire(command)
                except AlreadyRunning as exc:
                    log.warning("worker %s: %s; its channels are left to it", name, exc)
                    await worker.give_back([account_unit(account)])
                    continue
                held.callback(lock.release)
            channels = worker.channels()
            log.info("worker %s: %d unit(s), %d channel(s)", name, len(worker.held),
                     len(channels))  # fmt: skip
            passing.append(True)
            try:
                if let_go:  # let go of its units before the pass began
                    raise TelewatchError(let_go[0])
                if command == "recheck":  # the Telegram accounts it holds (web: re-read by sync)
                    return await recheck_all(archive, settings, accounts=worker.accounts_held())
                return await sync_all(archive, settings, channels=channels,
                                      accounts=worker.accounts_held())  # fmt: skip
            except asyncio.CancelledError:
                if let_go and this_pass.uncancel() == 0:  # cancelled by stop_the_pass only
                    raise TelewatchError(let_go[0]) from None
                raise
            finally:
                passing.clear()
    finally:
        stop.set()
        if keeping is not None:
            await asyncio.wait([keeping])
        await worker.stop()
        await leases_db.close()


@cli.command()
@click.option(
    "--worker",
    "worker",
    metavar="NAME",
    help="Sync only this worker's share of the channels (several workers).",
)
@pass_app
@run_async
async def sync(app: App, worker: str | None) -> None:
    """One pass over every configured channel, then exit (for cron).

    Each channel resumes from its last archived post; the first pass of a channel is its
    backfill ([[channels]] backfill) and sends no alerts. A flood wait above the ceiling skips
    that channel until the next pass. Refuses to start while another sync or run holds the
    archive. A pass ends by [schedule] pass_deadline_seconds; SIGTERM or Ctrl-C ends it at
    once, keeping what was archived. Exit 4 when some channels failed (the others are
    archived), 1 when all did, 3 when the Telegram login is missing and nothing else was.

    \b
    Example (crontab, every 15 minutes):
      */15 * * * * cd /srv/telewatch && .venv/bin/telewatch sync
      telewatch sync --worker w1
    """
    from archiver.worker import check_name

    await _one_pass(app, "sync", None if worker is None else check_name(worker))


@cli.command()
@click.option(
    "--worker",
    "worker",
    metavar="NAME",
    help="Re-read only this worker's share of the Telegram accounts (several workers).",
)
@pass_app
@run_async
async def recheck(app: App, worker: str | None) -> None:
    """Re-read the newest posts of every channel: record edits and deletions made while we were
    not listening, and refresh view and reaction counts.

    \b
    Example:
      telewatch recheck
      telewatch recheck --worker w1
    """
    from archiver.worker import check_name

    await _one_pass(app, "recheck", None if worker is None else check_name(worker))


@cli.command()
@pass_app
@run_async
async def bot(app: App) -> None:
    """Run the bot alone (when the archiver runs as `telewatch run --no-bot` elsewhere).

    Delivers queued alerts (new ones within 2 seconds) and answers allowed journalists.
    Needs [bot] token (or TELEWATCH_BOT_TOKEN). Stops cleanly on SIGTERM or Ctrl-C.

    \b
    Example:
      TELEWATCH_BOT_TOKEN=123:ABC telewatch bot
    """
    import signal

    from archiver.health import record_end
    from archiver.runner import heartbeat_loop

    os.environ.setdefault("PTB_TIMEDELTA", "true")  # PTB 22: retry_after as a timedelta
    from bot.app import run_bot

    settings = app.settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    archive = await app.open_archive()
    try:
        await archive.heartbeat("bot", os.getpid())  # for `telewatch health --process bot`
        beat = asyncio.create_task(
            heartbeat_loop(archive, settings.schedule.heartbeat_seconds, stop, "bot")
        )
        try:
            await run_bot(settings, archive=archive, stop_event=stop)
        finally:
            stop.set()
            await beat
    except (Exception, asyncio.CancelledError) as exc:
        await archive.close()
        await record_end(archive.path, "bot", os.getpid(), exc, url=archive.url)
        raise
    await archive.close()
    # `health --process bot`: stopped
    await record_end(archive.path, "bot", os.getpid(), None, url=archive.url)


# ---------------------------------------------------------------------------- web view


@cli.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (see below)."
)
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535))
@pass_app
@run_async
async def serve(app: App, host: str, port: int) -> None:
    """Open the archive in a browser: search with word forms, post histories with their
    diffs, time lines of several channels, channel coverage (docs/web.md).

    Listens on 127.0.0.1 by default. Any other address needs [web_view] password_hash (make
    it with `telewatch hash-password`): every page then asks for the password, and the
    server answers reads only. Needs Datasette: pip install 'telewatch[web]'. On a
    PostgreSQL archive ([storage] url) the same pages; Datasette's table pages read SQLite
    files only, so use psql there for raw tables.

    \b
    Examples:
      telewatch serve
      telewatch serve --host 0.0.0.0 --port 8080   # with [web_view] password_hash set
    """
    try:
        from web.server import serve as run_server
    except ImportError as exc:
        raise TelewatchError(
            f"serve: the web view needs Datasette ({exc.name} is missing):"
            " pip install 'telewatch[web]'"
        ) from None

    settings = app.settings
    archive = await app.open_archive(create=False)  # upgrades an older schema, once
    await archive.close()
    await run_server(
        settings.storage.url or settings.storage.path,  # PostgreSQL's URL, else the file
        host,
        port,
        settings.web_view.password_hash,
        settings.display.timezone,
        echo=lambda line: click.echo(line, err=True),
    )


@cli.command("hash-password")
def hash_password_cmd() -> None:
    """Make the [web_view] password_hash for `telewatch serve`: asks for the password twice
    (or reads one line from standard input) and prints the line to put in the config.

    \b
    Examples:
      telewatch hash-password
      printf '%s\\n' "$WEB_PASSWORD" | telewatch hash-password
    """
    from archiver.password import hash_password

    if sys.stdin.isatty():
        try:
            password = click.prompt(
                "Password for the web view", hide_input=True, confirmation_prompt=True, err=True
            )
        except click.Abort:
            raise TelewatchError("hash-password: no password given; nothing written") from None
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    click.echo(f'password_hash = "{hash_password(password)}"')
    click.echo("Put this line under [web_view] in config.toml.", err=True)


# ---------------------------------------------------------------------------- operations


@cli.command()
@click.option("--no-bot", is_flag=True, help="The archiver alone; run `telewatch bot` elsewhere.")
@click.option(
    "--worker",
    "worker",
    metavar="NAME",
    help="Run as this worker, sharing the channels with the other workers.",
)
@pass_app
@run_async
async def run(app: App, no_bot: bool, worker: str | None) -> None:
    """Follow every channel, run the scheduled jobs and serve the bot, in one process.

    Live updates for Telethon channels with join = true, the [schedule] jobs (sync of the
    other channels, recheck, backup, maintenance, digest), a heartbeat for `telewatch health`,
    and the bot unless --no-bot. Stops cleanly on SIGTERM or Ctrl-C. A second `run` or `sync`
    on the same archive or session refuses to start. See docs/operations.md.

    With --worker NAME, several run processes (on one machine or many, on one archive)
    share the channels through leases: each follows its share, and a stopped or crashed
    worker's channels move to the others within [workers] lease_seconds.

    \b
    Examples:
      telewatch run
      telewatch --log-format json run --no-bot
      telewatch run --no-bot --worker w1
    """
    from archiver.runner import run as run_service
    from archiver.worker import check_name

    os.environ.setdefault("PTB_TIMEDELTA", "true")  # PTB 22: retry_after as a timedelta
    name = None if worker is None else check_name(worker)
    await run_service(app.settings, with_bot=not no_bot, worker=name)


@cli.command()
@click.option(
    "--process",
    type=click.Choice(["run", "bot", "sync", "none"]),
    default="run",
    show_default=True,
    help="Whose heartbeat must be fresh; none in cron mode (channels only).",
)
@pass_app
@click.pass_context
@run_async
async def health(ctx: click.Context, app: App, process: str) -> None:
    """Exit 0 when the running process and every channel are fresh, else 1 with the reasons.

    Fresh: the process wrote its heartbeat within three [schedule] heartbeat_seconds (at least
    90 s), and each configured channel synced successfully within stale_after_minutes. The
    container's HEALTHCHECK runs this.

    \b
    Examples:
      telewatch health
      telewatch health --process none   # cron mode: channels only
    """
    from archiver.health import check_health

    settings = app.settings
    archive = await app.open_archive(create=False)
    try:
        report = await check_health(
            archive, settings, process=None if process == "none" else process
        )
    finally:
        await archive.close()
    for line in report.ok_lines:
        click.echo(f"ok: {line}")
    for line in report.problems:
        click.echo(f"PROBLEM: {line}")
    if not report.healthy:
        click.echo(f"unhealthy: {len(report.problems)} problem(s)", err=True)
        ctx.exit(EXIT_FAILED)
    click.echo("healthy")


@cli.command()
@pass_app
@run_async
async def backup(app: App) -> None:
    """Back up the archive now (safe while telewatch runs) and keep the newest N.

    Uses SQLite's online backup into [storage] backup_dir, checks the copy with
    PRAGMA integrity_check, and deletes the oldest beyond [storage] backup_keep.

    \b
    Example:
      telewatch backup
    """
    app.sqlite_only("telewatch backup", "back it up with pg_dump (docs/postgresql.md, Backups)")
    from archiver.backup import backup as run_backup

    st = app.settings.storage
    result = await run_backup(st.path, st.backup_dir, st.backup_keep)
    click.echo(
        f"{result.path}: {result.size} bytes, verified; {len(result.removed)} old backup(s) removed"
    )


@cli.command()
@click.argument("backup_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def restore(app: App, backup_file: Path, yes: bool) -> None:
    """Replace the archive with a backup (stop `telewatch run` first).

    The backup is verified first; the archive's lock is held while it is written, so this
    refuses while a `run` or `sync` is going on. Everything archived after the backup is lost:
    make a backup of the current state first if in doubt.

    \b
    Examples:
      telewatch restore data/backups/telewatch-20240501T033000Z.db
      docker compose run --rm telewatch restore --yes data/backups/telewatch-20240501T033000Z.db
    """
    app.sqlite_only(
        "telewatch restore",
        "restore a pg_dump with pg_restore (docs/postgresql.md, Backups)",
    )
    import contextlib

    from archiver.backup import restore_sync, verify
    from archiver.lock import archive_lock, worker_locks

    settings = app.settings
    verify(backup_file)
    target = settings.storage.path
    if not yes:
        no_terminal = TelewatchError(
            f"restore: nothing to ask for confirmation on (no terminal, or the connection"
            f" dropped); run `telewatch restore {backup_file} --yes` to replace {target}"
        )
        if not sys.stdin.isatty():
            raise no_terminal
        try:
            ok = click.confirm(f"Replace {target} with {backup_file}?", err=True)
        except click.Abort:  # EOF or Ctrl-C at the prompt
            raise no_terminal from None
        if not ok:
            raise TelewatchError(f"restore: not confirmed; {target} is unchanged")
    lock = archive_lock(settings)
    lock.acquire("restore")
    try:
        with contextlib.ExitStack() as workers:  # and no `run --worker` on it either
            for worker in worker_locks(settings):
                worker.acquire("restore")
                workers.callback(worker.release)
            restore_sync(backup_file, target)
    finally:
        lock.release()
    click.echo(f"{target}: restored from {backup_file}")


@cli.command()
@pass_app
@run_async
async def maintenance(app: App) -> None:
    """Optimise the archive: PRAGMA optimize, merge the full-text index, checkpoint the WAL
    (on PostgreSQL: ANALYZE, autovacuum does the rest); prune raw captures past
    [evidence] capture_retention_days; forget workers stopped 7 days ago that hold nothing.

    Safe while telewatch runs; `telewatch run` does it weekly ([schedule] maintenance).

    \b
    Example:
      telewatch maintenance
    """
    from archiver.maintenance import maintain

    archive = await app.open_archive(create=False)
    try:
        result = await maintain(
            archive,
            capture_retention_days=app.settings.evidence.capture_retention_days,
            settings=app.settings,
        )
    finally:
        await archive.close()
    pruned = f", {result.captures_pruned} capture(s) pruned" if result.captures_pruned else ""
    if result.workers_forgotten:
        pruned += f", stopped worker(s) forgotten: {', '.join(result.workers_forgotten)}"
    click.echo(f"maintenance done in {result.seconds:.1f} s{pruned}")


@cli.command()
@click.option(
    "--to",
    "url",
    required=True,
    metavar="URL",
    help="The PostgreSQL database to copy into: postgresql://user:password@host/db (empty).",
)
@pass_app
@run_async
async def migrate(app: App, url: str) -> None:
    """Copy the SQLite archive to PostgreSQL, table by table, and verify the copy.

    The archive is [storage] path (or --db); the target database must be empty, or hold a
    copy this command began: run it again after a failure or Ctrl-C and it continues where
    it stopped. At the end every table's rows are counted and hashed on both sides. Stop
    `telewatch run` first. Then set [storage] url (docs/postgresql.md).

    \b
    Example:
      telewatch migrate --to postgresql://telewatch:PASSWORD@db.example.org/telewatch
    """
    from archiver.store.postgres import is_url, redact
    from archiver.store.transfer import TableCopy, migrate, open_pair

    if not is_url(url):
        raise TelewatchError("migrate: --to: expected a postgresql:// URL (not shown)")
    storage = app.settings.storage
    if storage.url is not None:
        raise TelewatchError(
            "migrate: the archive is already on PostgreSQL ([storage] url); give the SQLite"
            " file with --db PATH"
        )
    show = sys.stderr.isatty()
    bars: dict[str, Any] = {}

    def progress(table: str, done: int, total: int) -> None:
        bar = bars.get(table)
        if bar is None:
            for old in bars.values():
                old.render_finish()
            bar = click.progressbar(
                length=max(total, 1), label=f"{table:18}", file=sys.stderr, hidden=not show
            )
            bars[table] = bar
            bar.pos = 0
        bar.update(done - bar.pos)

    source, target = await open_pair(storage.path, url)
    try:
        copied: list[TableCopy] = await migrate(source, target, progress=progress)
    finally:
        for bar in bars.values():
            bar.render_finish()
        await target.close()
        await source.close()
    for t in copied:
        click.echo(f"{t.name}: {t.rows} rows ({t.copied} copied now), verified")
    click.echo(
        f"{storage.path} -> {redact(url)}: {len(copied)} tables copied and verified;"
        " set [storage] url (or TELEWATCH_DATABASE_URL) to use it"
    )


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="telewatch")
