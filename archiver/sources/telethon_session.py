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
from pathlib import Path
from typing import Any

from telethon import errors
from telethon.sessions import StringSession

from archiver import __version__
from archiver.config import Settings
from archiver.errors import ConfigError, NotLoggedIn, SourceError
from archiver.sources.telethon_network import DeadlineClient

log = logging.getLogger(__name__)

NOT_LOGGED_IN = "not logged in: run `telewatch login`"
REVOKED = (
    "the Telegram session is no longer valid (revoked or logged out): run `telewatch login` again"
)


class _Client(DeadlineClient):
    """A TelegramClient that tells telewatch when it has reconnected by itself, so the live
    listener can catch up on what it missed while the connection was down."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reconnect_hooks: list[Callable[[], Awaitable[None]]] = []

    async def _handle_auto_reconnect(self) -> None:
        await super()._handle_auto_reconnect()
        for hook in list(self.reconnect_hooks):
            await hook()


ClientFactory = Callable[..., Any]  # (session, api_id, api_hash, *, receive_updates) -> client


def make_client(
    session: Any, api_id: int, api_hash: str, *, receive_updates: bool = False, **network: Any
) -> Any:
    """A client that raises every flood wait (``flood_sleep_threshold=0``) so
    :class:`FloodPolicy` alone decides, and that raises the real error after its retries.
    ``network``: the deadlines and reconnect bounds of ``telethon_network.network_kwargs``."""
    return _Client(
        session,
        api_id,
        api_hash,
        flood_sleep_threshold=0,
        raise_last_call_error=True,
        receive_updates=receive_updates,
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


async def connect_client(
    settings: Settings, *, receive_updates: bool = False, factory: ClientFactory = make_client
) -> Any:
    """A connected, authorised client for every command but ``login``."""
    api_id, api_hash = _credentials(settings)
    tg = settings.telegram
    if tg.session_string:
        try:
            session: Any = StringSession(tg.session_string)
        except (ValueError, struct.error):
            raise NotLoggedIn(
                "TELEWATCH_SESSION is not a session string: run `telewatch login --string` again"
            ) from None
    else:
        path = session_path(settings)
        if not path.exists():
            raise NotLoggedIn(NOT_LOGGED_IN)
        session = str(path)
    client = factory(session, api_id, api_hash, receive_updates=receive_updates)
    try:
        await client.connect()
        authorised = await client.is_user_authorized()
    except OSError as exc:
        await client.disconnect()
        raise SourceError(f"cannot connect to Telegram ({exc}): check the network") from None
    if not authorised:
        await client.disconnect()
        raise NotLoggedIn(REVOKED)
    return client
