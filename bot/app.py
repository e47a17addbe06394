"""The python-telegram-bot Application: building it, owning its resources, running it.

``telewatch bot`` calls :func:`run_bot` with the settings; ``telewatch run`` calls it in its
own event loop with the archive it already has open, its own stop event, and a ``wake`` event
it sets after every ingest that queued alerts (so those go out at once)::

    wake = asyncio.Event()
    bot_task = asyncio.create_task(run_bot(settings, archive=archive, stop_event=stop, wake=wake))
    ...; stats = await ingest(...); wake.set() if stats.alerts_queued else None

Resources are set up in ``post_init`` (archive if not given, access policy, delivery) and torn
down in ``post_stop``/``post_shutdown`` in reverse order, exactly as ``run_polling`` would;
:func:`run_bot` drives the same steps itself because it must run inside a loop it does not own.
A stop (SIGTERM/SIGINT, or the stop event) finishes within seconds: polling stops at once,
running handlers finish, sends in flight are recorded, everything else stays pending.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from telegram import BotCommand, BotCommandScopeChat, LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import Application, ApplicationBuilder, Defaults

from archiver.config import Settings, require
from archiver.errors import ConfigError
from archiver.store.archive import Archive
from archiver.store.user_langs import all_langs, all_seen_langs
from archiver.store.wakeup import watcher_for
from bot.access import AccessPolicy
from bot.alerts import alert_buttons, alert_html, summary_buttons, summary_html
from bot.delivery import Clock, Delivery, Limits, RateLimiter, RetryPolicy
from bot.digests import PersonalDigests
from bot.handlers import register
from bot.handlers.common import COMMANDS
from bot.i18n import LANGS, translator
from bot.reply_limiter import MAX_WAIT, RETRY_CEILING, ReplyLimiter
from bot.services import KEY, Services

log = logging.getLogger(__name__)

App = Application[Any, Any, Any, Any, Any, Any]
_SETUP = "telewatch.setup"


@dataclass(frozen=True, slots=True)
class BotOptions:
    """Knobs that tests and benchmarks turn; the defaults are for production."""

    poll_timeout: float = 10.0  # getUpdates long poll, seconds
    limits: Limits = field(default_factory=Limits)
    retry: RetryPolicy | None = None  # default: backoff 2 s doubling, [bot] max_attempts
    send_timeout: float | None = None  # per alert send (None: PTB's defaults)
    stranger_cooldown: float = 600.0
    stop_grace: float = 3.0  # how long a stop waits for sends in flight (`run` allows 4 s)
    max_startup_wait: float = 60.0  # backoff cap while the Bot API is unreachable at start
    watch: bool = True  # wake on alerts queued by other processes (False: poll only; benches)
    clock: Clock = time.monotonic  # the rate limiter's (tests step it)
    reply_max_wait: float = MAX_WAIT  # a reply waits at most this for its slot, seconds
    reply_retry_ceiling: float = RETRY_CEILING  # a reply refused longer than this is dropped


@dataclass(slots=True)
class _Setup:
    settings: Settings
    archive: Archive | None
    wake: asyncio.Event | None
    options: BotOptions
    limiter: RateLimiter  # shared by alerts, digests and replies


def file_url(api_base_url: str) -> str:
    """The file download base for an API base: ``…/bot`` -> ``…/file/bot``."""
    base = api_base_url.rstrip("/")
    if base.endswith("/bot"):
        return base[: -len("/bot")] + "/file/bot"
    return base + "/file"


def build_application(
    settings: Settings,
    *,
    archive: Archive | None = None,
    wake: asyncio.Event | None = None,
    options: BotOptions | None = None,
) -> App:
    """The Application with every handler registered; resources come in ``post_init``."""
    token = require(
        settings.bot.token, "bot.token", "set [bot] token in the config or TELEWATCH_BOT_TOKEN"
    )
    opts = options or BotOptions()
    limiter = RateLimiter(opts.limits, opts.clock)
    replies = ReplyLimiter(
        limiter, max_wait=opts.reply_max_wait, retry_ceiling=opts.reply_retry_ceiling
    )
    app: App = (
        ApplicationBuilder()
        .token(token)
        .rate_limiter(replies)  # every call of the handlers; alerts pass through (PACED)
        .base_url(settings.bot.api_base_url)
        .base_file_url(file_url(settings.bot.api_base_url))
        .defaults(
            Defaults(
                parse_mode=ParseMode.HTML,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
                # a reply in a group quotes the command; when that message is gone by the
                # time the answer is ready (deleted), the answer is still sent
                allow_sending_without_reply=True,
            )
        )
        .concurrent_updates(True)
        .job_queue(None)
        .post_init(_post_init)
        .post_stop(_post_stop)
        .post_shutdown(_post_shutdown)
        .build()
    )
    app.bot_data[_SETUP] = _Setup(settings, archive, wake, opts, limiter)
    register(app)
    return app


async def _post_init(app: App) -> None:
    setup: _Setup = app.bot_data[_SETUP]
    settings, opts = setup.settings, setup.options
    owns = setup.archive is None
    archive = setup.archive or await Archive.open_storage(settings.storage)
    tz = settings.display.timezone
    config_rules = {r.name: r.query for r in settings.rules}
    svc = Services(
        settings=settings,
        archive=archive,
        access=AccessPolicy(archive, settings.bot, cooldown=opts.stranger_cooldown),
        owns_archive=owns,
    )
    app.bot_data[KEY] = svc
    await _check_access(svc)
    svc.langs.update(await all_langs(archive))
    svc.seen_langs.update(await all_seen_langs(archive))
    speak = svc.speak  # a private chat's id is its user's; a group's /lang is under its id

    svc.delivery = Delivery(
        archive,
        app.bot,
        lambda row: alert_html(row, tz, config_rules, speak(row.recipient)),
        buttons=lambda row: (summary_buttons if row.held else alert_buttons)(
            row, speak(row.recipient)
        ),
        render_summary=lambda row: summary_html(row, tz, speak(row.recipient)),
        tz=tz,
        refusal=svc.access.refusal,
        poll_seconds=settings.bot.poll_seconds,
        limits=opts.limits,
        retry=opts.retry or RetryPolicy(max_attempts=settings.bot.max_attempts),
        wake=setup.wake,
        watcher=watcher_for(archive) if opts.watch else None,  # other processes' alerts
        send_timeout=opts.send_timeout,
        clock=opts.clock,
        limiter=setup.limiter,
    )
    svc.digests = PersonalDigests(archive, app.bot, settings, svc.delivery.limiter,
                                  poll_seconds=min(30.0, settings.bot.poll_seconds),
                                  speak=speak)  # fmt: skip
    await _set_menus(app, settings)
    svc.delivery.start()
    svc.digests.start()


async def _check_access(svc: Services) -> None:
    """Apply the config's access to the archive: rules of users and chats it no longer allows
    are paused (and resumed when it allows them again), their waiting alerts dropped. Config
    rules that alert a chat the config does not allow are named in the log."""
    for rule in svc.settings.rules:
        for chat in rule.notify:
            why = svc.access.refusal(chat, None)
            if why is not None:
                log.warning("rule %r alerts chat %d, which gets nothing: %s; add it to [bot]",
                            rule.name, chat, why)  # fmt: skip
    try:
        change = await svc.access.reconcile()
    except sqlite3.Error as exc:  # sends are checked one by one anyway
        log.warning("could not apply the access of the config to personal rules (%s)", exc)
        return
    if change.rules_paused or change.rules_resumed or change.alerts_dropped:
        log.info("access: %d rule(s) paused, %d resumed, %d waiting alert(s) dropped",
                 change.rules_paused, change.rules_resumed, change.alerts_dropped)  # fmt: skip


async def _set_menus(app: App, settings: Settings) -> None:
    """Everyone's command menu without the admin commands; each admin's private chat with all.
    Each in English (the default) and in Ukrainian and Russian for clients in those languages
    (``language_code`` of setMyCommands)."""

    def menu(lang: str, admin: bool) -> list[BotCommand]:
        tr = translator(lang)
        return [BotCommand(n, tr(w)[:256]) for n, _, w in COMMANDS
                if admin or not w.startswith("admins:")]  # fmt: skip

    codes = {lang: (None if lang == "en" else lang) for lang in LANGS}
    try:
        for lang, code in codes.items():
            await app.bot.set_my_commands(menu(lang, False), language_code=code)
    except TelegramError as exc:
        log.warning("could not set the command menu (%s); carrying on", type(exc).__name__)
        return
    for admin in sorted(settings.bot.admins):
        try:  # "chat not found" until the admin has written to the bot once
            for lang, code in codes.items():
                await app.bot.set_my_commands(
                    menu(lang, True), scope=BotCommandScopeChat(admin), language_code=code
                )
        except TelegramError as exc:
            log.info("no admin menu for user %d yet (%s)", admin, type(exc).__name__)


async def _post_stop(app: App) -> None:
    svc: Services | None = app.bot_data.get(KEY)
    setup: _Setup = app.bot_data[_SETUP]
    if svc is not None and svc.digests is not None:
        await svc.digests.stop()
    if svc is not None and svc.delivery is not None:
        await svc.delivery.stop(grace=setup.options.stop_grace)


async def _post_shutdown(app: App) -> None:
    svc: Services | None = app.bot_data.pop(KEY, None)
    if svc is not None and svc.owns_archive:
        await svc.archive.close()


def delivery_of(app: App) -> Delivery | None:
    """The running app's delivery (``notify()`` wakes it)."""
    svc: Services | None = app.bot_data.get(KEY)
    return None if svc is None else svc.delivery


async def _initialize(app: App, stop: asyncio.Event, opts: BotOptions) -> bool:
    """``app.initialize()`` (which calls getMe), retrying while the Bot API is unreachable.
    False when a stop came first."""
    delay = 1.0
    while True:
        try:
            await app.initialize()
            return True
        except InvalidToken:
            raise ConfigError(
                "bot.token: the Bot API rejected the token; check it with @BotFather"
            ) from None
        except NetworkError as exc:
            log.warning("cannot reach the Bot API (%s); retrying in %.0fs",
                        type(exc).__name__, delay)  # fmt: skip
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return False
        except TimeoutError:
            delay = min(delay * 2, opts.max_startup_wait)


class BotRunner:
    """One run of the bot: ``await BotRunner(settings).run(stop)``. ``app`` and ``started``
    are there for the caller (and tests) to watch."""

    def __init__(
        self,
        settings: Settings,
        *,
        archive: Archive | None = None,
        wake: asyncio.Event | None = None,
        options: BotOptions | None = None,
    ) -> None:
        self.options = options or BotOptions()
        self.app = build_application(settings, archive=archive, wake=wake, options=self.options)
        self.started = asyncio.Event()

    @property
    def delivery(self) -> Delivery | None:
        return delivery_of(self.app)

    async def run(self, stop: asyncio.Event) -> None:
        """Initialize, post_init, poll, and on ``stop`` tear down in reverse order."""
        app = self.app
        if not await _initialize(app, stop, self.options):
            return
        try:
            await _post_init(app)
            assert app.updater is not None
            await app.updater.start_polling(
                timeout=int(self.options.poll_timeout), allowed_updates=Update.ALL_TYPES
            )
            await app.start()
            log.info("bot @%s running", app.bot.username)
            self.started.set()
            await stop.wait()
            log.info("bot stopping")
        finally:
            if isinstance(app.bot.rate_limiter, ReplyLimiter):
                app.bot.rate_limiter.close()  # no reply waits for a slot or a flood wait now
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()
            await _post_stop(app)
            await app.shutdown()
            await _post_shutdown(app)
            log.info("bot stopped")


async def run_bot(
    settings: Settings,
    *,
    archive: Archive | None = None,
    stop_event: asyncio.Event | None = None,
    wake: asyncio.Event | None = None,
    options: BotOptions | None = None,
) -> None:
    """Run the bot until ``stop_event`` is set, or (without one) until SIGTERM or SIGINT.

    ``archive``: an archive opened by the caller (``telewatch run``); without it the bot opens
    ``settings.storage.path`` and closes it when done. ``wake``: an event the caller sets when
    it committed new alerts. Raises :class:`ConfigError` for a missing or rejected token.
    """
    runner = BotRunner(settings, archive=archive, wake=wake, options=options)
    stop = stop_event if stop_event is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    if stop_event is None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
                handled.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                log.debug("cannot handle %s in this thread", sig.name)
    try:
        await runner.run(stop)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
