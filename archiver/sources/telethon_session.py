"""Telegram sessions: ``login`` (the only code that prompts) and ``connect_client`` (for
every other command).

A session is a password: the file is created with mode 0600 before Telethon writes the key
into it; ``login --string`` writes no file and returns a ``StringSession`` for
``TELEWATCH_SESSION``. ``connect_client`` raises :class:`NotLoggedIn` before any network call
when there is neither, and after connecting when Telegram no longer accepts the session.
Nothing here logs the phone number, the code, the password, the api_hash or the session.
"""

from __future__ import annotations

import getpass
import logging
import os
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from telethon import errors, functions, types, utils
from telethon.sessions import StringSession

from archiver import __version__
from archiver.config import Settings
from archiver.errors import ConfigError, NotLoggedIn, SourceError
from archiver.sources.telethon_flood import AccountFloodWait
from archiver.sources.telethon_ledger import (
    FloodLedger,
    last_account,
    method_name,
    remember_account,
)
from archiver.sources.telethon_network import DeadlineClient
from archiver.store.archive import Archive, utcnow

log = logging.getLogger(__name__)

NOT_LOGGED_IN = "not logged in: run `telewatch login`"
REVOKED = (
    "the Telegram session is no longer valid (revoked or logged out): run `telewatch login` again"
)


class Client(DeadlineClient):
    """telewatch's TelegramClient (with the request deadlines of
    :class:`~archiver.sources.telethon_network.DeadlineClient`): every request passes the
    account's flood ledger, and what Telethon handles silently is reported.

    - ``ledger``: when set, ``_call`` (the one path of every request, ours and the update
      loop's, ``client/users.py:32``) asks it before sending and records every
      ``FLOOD_WAIT`` Telegram answers (see :mod:`archiver.sources.telethon_ledger`).
    - ``reconnect_hooks``: run after Telethon reconnected by itself
      (``_handle_auto_reconnect``), so the live listener re-reads what it may have missed.
    - ``gap_hooks``: called with ``(marked channel id or None, reason)`` when Telegram reports
      a gap that Telethon fills without telling anyone: ``channelDifferenceTooLong`` (it resets
      the channel's state and returns nothing, ``_updates/messagebox.py:774-782``), a
      ``channelDifference`` carrying edits or deletions (it moves the channel's pts first and
      then drops them as already applied, ``_updates/messagebox.py:783-797``), or
      ``differenceTooLong`` for the whole account.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reconnect_hooks: list[Callable[[], Awaitable[None]]] = []
        self.gap_hooks: list[Callable[[int | None, str], None]] = []
        self.ledger: FloodLedger | None = None

    async def _call(
        self, sender: Any, request: Any, ordered: bool = False, flood_sleep_threshold: Any = None
    ) -> Any:
        ledger = self.ledger
        me = self._self_id  # known from get_me() on, inside connect() too
        if ledger is not None and me and ledger.account != me:
            ledger = None  # the last account's ledger, loaded before connecting: not this one's
        if ledger is not None:
            for r in request if isinstance(request, list) else [request]:
                ledger.check(r)
        try:
            result = await super()._call(sender, request, ordered, flood_sleep_threshold)
        except (errors.FloodWaitError, errors.FloodPremiumWaitError) as exc:
            if ledger is not None and not isinstance(request, list):
                await ledger.record(request, int(exc.seconds))
            raise
        self._report_gaps(request, result)
        return result

    def _report_gaps(self, request: Any, result: Any) -> None:
        if not self.gap_hooks:
            return
        found: tuple[int | None, str] | None = None
        if isinstance(result, types.updates.ChannelDifferenceTooLong):
            found = (utils.get_peer_id(types.PeerChannel(request.channel.channel_id)), "too_long")
        elif isinstance(result, types.updates.ChannelDifference) and any(
            isinstance(u, _DROPPED) for u in result.other_updates
        ):
            found = (utils.get_peer_id(types.PeerChannel(request.channel.channel_id)), "dropped")
        elif isinstance(result, types.updates.DifferenceTooLong):
            found = (None, "too_long")
        if found is not None:
            for hook in list(self.gap_hooks):
                hook(*found)

    async def _handle_auto_reconnect(self) -> None:
        await super()._handle_auto_reconnect()
        for hook in list(self.reconnect_hooks):
            await hook()


_DROPPED = (types.UpdateEditChannelMessage, types.UpdateDeleteChannelMessages)

# Telegram no longer accepts the session: 401s, and AUTH_KEY_DUPLICATED. Not every
# ``AuthKeyError``: Telethon gives that class to any 406 (NOT_ACCEPTABLE) it has no class for
# (``errors/rpcbaseerrors.py``), and Telegram adds errors all the time.
LOGIN_LOST = (errors.UnauthorizedError, errors.AuthKeyDuplicatedError)
DUPLICATED = (
    "Telegram saw the session used from two places at once and no longer accepts it"
    " (AUTH_KEY_DUPLICATED): give every running process its own session ([[accounts]],"
    " `telewatch run --worker`, docs/operations.md) and run `telewatch login` again"
)


def login_lost(exc: BaseException) -> NotLoggedIn:
    """The domain error for a session Telegram no longer accepts (one of ``LOGIN_LOST``)."""
    return NotLoggedIn(DUPLICATED if isinstance(exc, errors.AuthKeyDuplicatedError) else REVOKED)


ClientFactory = Callable[..., Any]  # (session, api_id, api_hash, *, receive_updates, catch_up)


def make_client(
    session: Any,
    api_id: int,
    api_hash: str,
    *,
    receive_updates: bool = False,
    catch_up: bool = False,
    **network: Any,
) -> Any:
    """A client that raises every flood wait (``flood_sleep_threshold=0``) so
    :class:`FloodPolicy` alone decides, and that raises the real error after its retries.
    ``catch_up``: ask Telegram for what happened while we were away when connecting (needs a
    session file, which keeps the update state). It brings back new posts only (see
    :mod:`archiver.sources.telethon_live`), and as events dispatched while connecting, before
    the live listener registers its handlers: nothing relies on it, the forward read from the
    high-water mark brings those posts back. ``network``: the deadlines and reconnect bounds
    of ``telethon_network.network_kwargs``."""
    return Client(
        session,
        api_id,
        api_hash,
        flood_sleep_threshold=0,
        raise_last_call_error=True,
        receive_updates=receive_updates,
        catch_up=catch_up,
        device_model="telewatch",
        app_version=__version__,
        **network,
    )


def _credentials(settings: Settings) -> tuple[int, str]:
    tg = settings.telegram
    if tg.api_id is None:
        raise ConfigError(
            "telegram.api_id: missing: set [telegram] api_id or TELEWATCH_API_ID"
            " (get one at https://my.telegram.org)"
        )
    if not tg.api_hash:
        raise ConfigError(
            "telegram.api_hash: missing: set [telegram] api_hash or TELEWATCH_API_HASH"
            " (get one at https://my.telegram.org)"
        )
    return tg.api_id, tg.api_hash


def session_path(settings: Settings) -> Path:
    """The session file as Telethon names it (it appends ``.session`` when missing)."""
    p = settings.telegram.session
    return p if p.name.endswith(".session") else p.with_name(p.name + ".session")


def prepare_session_file(path: Path) -> None:
    """Create the session file readable by its owner only, before Telethon writes the key."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)  # no O_TRUNC: keep an existing session
    os.close(fd)
    os.chmod(path, 0o600)


@dataclass(frozen=True, slots=True)
class LoginPrompts:
    """How ``login`` asks for the phone number, the code and the 2FA password."""

    phone: Callable[[], str] = lambda: input("Phone number (international format, +...): ")
    code: Callable[[], str] = lambda: input("Code Telegram sent you: ")
    password: Callable[[], str] = lambda: getpass.getpass("Two-step verification password: ")


async def login(
    settings: Settings,
    *,
    as_string: bool,
    prompts: LoginPrompts | None = None,
    factory: ClientFactory = make_client,
) -> str | None:
    """Log in interactively (phone, code, 2FA password). Writes the session file
    (``[telegram] session``, mode 0600) and returns None, or with ``as_string`` writes no file
    and returns a session string for ``TELEWATCH_SESSION``. Already logged in: no prompt."""
    api_id, api_hash = _credentials(settings)
    path: Path | None = None
    if as_string:
        session: Any = StringSession()
    else:
        path = session_path(settings)
        prepare_session_file(path)
        session = str(path)
    p = prompts or LoginPrompts()
    client = factory(session, api_id, api_hash)
    try:
        await client.start(phone=p.phone, code_callback=p.code, password=p.password)
        me = await client.get_me()
        log.info("logged in to Telegram as user %s", getattr(me, "id", "?"))
        out: str | None = client.session.save() if as_string else None
    except errors.RPCError as exc:
        raise SourceError(f"login failed: {exc.__class__.__name__}: {exc.message}") from None
    finally:
        await client.disconnect()
        if path is not None and path.exists():
            os.chmod(path, 0o600)
    return out


async def check_login(client: Any, now: Callable[[], datetime] = utcnow) -> None:
    """Is the session still accepted? Telethon's ``is_user_authorized()`` answers False on ANY
    error of its ``GetState`` (``client/users.py:207-227``), a flood wait included; this asks
    the same request and tells them apart: a flood wait is :class:`AccountFloodWait` with its
    deadline, a refused session :class:`NotLoggedIn`. No request when Telethon's own
    ``connect()`` has just logged in (``_on_login`` set ``_authorized``)."""
    if getattr(client, "_authorized", None) is True:
        return
    try:
        await client(functions.updates.GetStateRequest())
    except (errors.FloodWaitError, errors.FloodPremiumWaitError) as exc:
        raise _account_wait(exc, now) from None
    except LOGIN_LOST as exc:
        raise login_lost(exc) from None
    except errors.RPCError as exc:
        raise SourceError(
            f"the login check failed: Telegram answered {exc.__class__.__name__}; try again later"
        ) from None
    client._authorized = True


def _account_wait(exc: Any, now: Callable[[], datetime]) -> AccountFloodWait:
    seconds = int(exc.seconds)
    request = getattr(exc, "request", None)
    method = method_name(request) if request is not None else "updates.GetState"
    return AccountFloodWait(method, seconds, now() + timedelta(seconds=seconds))


async def account_id(client: Any) -> int:
    """The Telegram user id of the logged-in account (known after ``connect()``)."""
    me = getattr(client, "_self_id", None)
    if me:
        return int(me)
    peer = await client.get_me(input_peer=True)
    if peer is None:
        raise NotLoggedIn(REVOKED)
    return int(utils.get_peer_id(peer))


async def ensure_ledger(
    archive: Archive, client: Any, now: Callable[[], datetime] = utcnow
) -> FloodLedger:
    """The client's flood ledger for ``archive`` and the logged-in account, installed (or
    read again from the archive, where another process may have added a wait). Each account
    has its own (keyed by its Telegram user id): one account's waits never hold another."""
    ledger: FloodLedger | None = getattr(client, "ledger", None)
    me = await account_id(client)
    if ledger is not None and ledger.archive is archive and ledger.account == me:
        ledger.now = now
        await ledger.refresh()
        return ledger
    ledger = await FloodLedger.load(archive, me, now)
    client.ledger = ledger
    name = getattr(client, "account_name", None)
    if await last_account(archive, name) != me:
        await remember_account(archive, me, name)
    return ledger


def unconnected_client(
    settings: Settings, *, receive_updates: bool = False, factory: ClientFactory = make_client
) -> Any:
    """The client of the configured session, not connected yet (``connect_client`` connects
    it; ``run`` keeps one when Telegram cannot be reached at start). Raises
    :class:`NotLoggedIn` (before any network call) when there is no session."""
    api_id, api_hash = _credentials(settings)
    tg = settings.telegram
    if tg.session_string:
        try:
            session: Any = StringSession(tg.session_string)
        except (ValueError, struct.error):
            env = (
                settings.account(settings.for_account).env_name
                if settings.for_account
                else "TELEWATCH_SESSION"
            )
            raise NotLoggedIn(
                f"{env} is not a session string: run `{_login(settings)} --string` again"
            ) from None
        catch_up = False  # a StringSession keeps no update state
    else:
        path = session_path(settings)
        if not path.exists():
            raise NotLoggedIn(not_logged_in(settings))
        session = str(path)
        catch_up = receive_updates
    client = factory(session, api_id, api_hash, receive_updates=receive_updates, catch_up=catch_up)
    if settings.for_account is not None:
        client.account_name = (
            settings.for_account
        )  # the ledger's key of the last user id, per account
    return client


def _login(settings: Settings) -> str:
    name = settings.for_account
    return "telewatch login" if name is None else f"telewatch login --account {name}"


def not_logged_in(settings: Settings) -> str:
    """The missing-login message, naming the account when there are ``[[accounts]]``."""
    name = settings.for_account
    if name is None:
        return NOT_LOGGED_IN
    return f"account {name}: not logged in: run `{_login(settings)}`"


def named(settings: Settings, exc: NotLoggedIn) -> NotLoggedIn:
    """``exc`` naming the ``[[accounts]]`` account and its login command (unchanged for the
    one account of a config without ``[[accounts]]``)."""
    name = settings.for_account
    text = str(exc)
    if name is None or text.startswith(f"account {name}:"):
        return exc
    text = text.replace("`telewatch login`", f"`{_login(settings)}`")
    return NotLoggedIn(f"account {name}: {text}")


async def connect_client(
    settings: Settings,
    *,
    receive_updates: bool = False,
    factory: ClientFactory = make_client,
    archive: Archive | None = None,
    now: Callable[[], datetime] = utcnow,
) -> Any:
    """A connected, authorised client for every command but ``login``. With ``archive``,
    the account's flood ledger is installed before the first request (from the account last
    used with the archive), so a wait recorded by another process holds here too. A session
    file keeps Telethon's update state, and a client that receives updates catches up from
    it (``catch_up=True``; see :func:`make_client` for what that does and does not do)."""
    client = unconnected_client(settings, receive_updates=receive_updates, factory=factory)
    if archive is not None:
        known = await last_account(archive, settings.for_account)
        if known is not None:
            client.ledger = await FloodLedger.load(archive, known, now)
    try:
        await client.connect()
        if archive is not None and getattr(client, "_self_id", None):
            await ensure_ledger(archive, client, now)  # before the login check's request
        await check_login(client, now)
        if archive is not None:
            await ensure_ledger(archive, client, now)
    except NotLoggedIn as exc:
        await client.disconnect()
        raise named(settings, exc) from None
    except OSError as exc:
        await client.disconnect()
        raise SourceError(f"cannot connect to Telegram ({exc}): check the network") from None
    except LOGIN_LOST as exc:  # inside connect(): Telegram refuses the key at once
        await client.disconnect()
        raise named(settings, login_lost(exc)) from None
    except (errors.FloodWaitError, errors.FloodPremiumWaitError) as exc:  # inside connect()
        me = getattr(client, "_self_id", None)
        unrecorded = client.ledger is None or client.ledger.account != me  # _call skipped it
        if archive is not None and me and exc.request is not None and unrecorded:
            ledger = await ensure_ledger(archive, client, now)
            await ledger.record(exc.request, int(exc.seconds))
        await client.disconnect()
        raise _account_wait(exc, now) from None
    except BaseException:
        await client.disconnect()
        raise
    return client
