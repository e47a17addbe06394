"""Configuration: TOML file + environment -> validated, frozen :class:`Settings`.

Nothing is read at import time. :func:`load_settings` is called once, at the CLI edge. Every
error is a :class:`ConfigError` whose one-line message names the key and what was expected,
e.g. ``config.toml: storage.path: expected a string, got 5``.

Secrets may come from the environment instead of the file: ``TELEWATCH_API_ID``,
``TELEWATCH_API_HASH``, ``TELEWATCH_BOT_TOKEN``, ``TELEWATCH_SESSION`` (a session string).
The full list of keys, with comments: ``config.example.toml`` and ``docs/configuration.md``.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from archiver import __version__
from archiver.channels import BadChannelRef, ChannelRef, parse_ref
from archiver.errors import ConfigError
from archiver.models import FOLLOW_UPS, POST_KINDS, Rule
from archiver.password import check_hash

DEFAULT_CONFIG = Path("config.toml")
DEFAULT_DB = Path("data/telewatch.db")
ENV_CONFIG = "TELEWATCH_CONFIG"
SOURCES = ("telethon", "web")
MEDIA_KINDS = ("photo", "video", "document", "audio", "voice", "animation", "sticker")
DEFAULT_USER_AGENT = f"telewatch/{__version__} (+https://github.com/telewatch/telewatch)"


@dataclass(frozen=True, slots=True)
class Backfill:
    """How far back a channel's first sync reads: everything, N posts, or an age."""

    kind: str  # all | count | age
    count: int | None = None
    age: timedelta | None = None

    def __str__(self) -> str:
        if self.kind == "count":
            return f"{self.count} posts"
        if self.kind == "age":
            assert self.age is not None
            return f"{self.age.days}d"
        return "all"


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    ref: ChannelRef
    source: str = "telethon"
    backfill: Backfill = Backfill("age", age=timedelta(days=30))
    join: bool = True
    account: str | None = None  # pinned to this [[accounts]] name (Telethon channels)


@dataclass(frozen=True, slots=True)
class StorageSettings:
    path: Path = DEFAULT_DB
    # PostgreSQL instead of the SQLite file (docs/postgresql.md); ``path`` then only places
    # the local lock and marker files. ``TELEWATCH_DATABASE_URL`` overrides it.
    url: str | None = field(default=None, repr=False)
    backup_dir: Path = Path("data/backups")
    backup_keep: int = 7
    media_dir: Path = Path("data/media")


@dataclass(frozen=True, slots=True)
class TelegramSettings:
    api_id: int | None = None
    api_hash: str | None = field(default=None, repr=False)
    session: Path = Path("data/telewatch.session")
    session_string: str | None = field(default=None, repr=False)
    flood_wait_ceiling: int = 300
    recent_posts: int = 100
    recent_hours: int = 48
    timeout_seconds: float = 30.0  # deadline of one request, and of connecting
    connect_attempts: int = 4  # connections tried (backoff with jitter) before a pass gives up


IMPLICIT_ACCOUNT = "main"  # the one account of a config without [[accounts]]
JOIN_LIMIT = 500  # channels an account may join (Telegram: about 500)
PREMIUM_JOIN_LIMIT = 1000  # with Telegram Premium
_ACCOUNT_NAME = re.compile(r"^[a-z0-9_-]{1,32}$")


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """One Telegram account (``[[accounts]]``): its own session, its own join limit. Without
    ``[[accounts]]`` there is one, ``main``, made of ``[telegram]`` (:attr:`Settings.accounts`).
    ``api_id``/``api_hash`` None: ``[telegram]``'s."""

    name: str
    session: Path
    session_string: str | None = field(default=None, repr=False)
    api_id: int | None = None
    api_hash: str | None = field(default=None, repr=False)
    join_limit: int = JOIN_LIMIT
    premium: bool = False
    implicit: bool = False  # the ``main`` account of a config without [[accounts]]

    @property
    def env_name(self) -> str:
        """The environment variable that may hold this account's session string."""
        if self.implicit:
            return "TELEWATCH_SESSION"
        return "TELEWATCH_SESSION_" + self.name.upper().replace("-", "_")

    @property
    def login_command(self) -> str:
        return "telewatch login" if self.implicit else f"telewatch login --account {self.name}"


@dataclass(frozen=True, slots=True)
class WebSettings:
    base_url: str = "https://t.me"
    delay_seconds: float = 1.0
    user_agent: str = DEFAULT_USER_AGENT
    timeout_seconds: float = 20.0
    max_retries: int = 4
    recent_pages: int = 1  # superseded by [recheck] recent_days; accepted, unused
    requests_per_pass: int = 500
    max_page_bytes: int = 4_000_000


@dataclass(frozen=True, slots=True)
class MediaSettings:
    download: frozenset[str] = frozenset()
    max_size_mb: float = 20.0


@dataclass(frozen=True, slots=True)
class BotSettings:
    token: str | None = field(default=None, repr=False)
    api_base_url: str = "https://api.telegram.org/bot"
    admins: frozenset[int] = frozenset()
    allowed_users: frozenset[int] = frozenset()
    allowed_chats: frozenset[int] = frozenset()
    export_cap: int = 5000
    poll_seconds: float = 1.0
    max_attempts: int = 8


@dataclass(frozen=True, slots=True)
class WebViewSettings:
    """``telewatch serve``: the password (a hash from ``telewatch hash-password``) that every
    page asks for; required to listen on anything but this machine's loopback."""

    password_hash: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class DisplaySettings:
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    """Cron expressions (five fields); an empty string switches a job off."""

    sync: str = "*/15 * * * *"
    recheck: str = "7 * * * *"
    backup: str = "30 3 * * *"
    maintenance: str = "45 4 * * 0"
    digest: str = ""
    heartbeat_seconds: int = 30
    stale_after_minutes: int = 90
    pass_deadline_seconds: float = 600.0  # one sync or recheck pass ends by then


@dataclass(frozen=True, slots=True)
class RecheckSettings:
    """Re-reading archived posts for edits and deletions (docs/record.md): every pass re-reads
    posts up to ``recent_days`` old; older ones on a rotation that covers the whole channel at
    least once every ``full_recheck_days``."""

    recent_days: float = 7.0
    full_recheck_days: float = 7.0


@dataclass(frozen=True, slots=True)
class EvidenceSettings:
    """Raw captures and the observation log's timestamps (docs/evidence.md)."""

    max_capture_bytes: int = 2_000_000  # a longer body is cut, and the capture says so
    capture_retention_days: int = 0  # 0: captures are kept for ever
    tsa_url: str | None = None  # an RFC 3161 authority that stamps each daily root


@dataclass(frozen=True, slots=True)
class WorkersSettings:
    """Several worker processes sharing the work (docs/operations.md, "Several workers"): a
    worker holds each unit for ``lease_seconds``, renews it every third of that, and a dead
    worker's units move to the others after it."""

    lease_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    level: str = "INFO"
    format: str = "text"


@dataclass(frozen=True, slots=True)
class Settings:
    source: Path | None = None  # the config file read, or None for built-in defaults
    storage: StorageSettings = StorageSettings()
    telegram: TelegramSettings = TelegramSettings()
    web: WebSettings = WebSettings()
    media: MediaSettings = MediaSettings()
    bot: BotSettings = BotSettings()
    display: DisplaySettings = DisplaySettings()
    schedule: ScheduleSettings = ScheduleSettings()
    logging: LoggingSettings = LoggingSettings()
    recheck: RecheckSettings = RecheckSettings()
    web_view: WebViewSettings = WebViewSettings()
    evidence: EvidenceSettings = EvidenceSettings()
    workers: WorkersSettings = WorkersSettings()
    channels: tuple[ChannelConfig, ...] = ()
    rules: tuple[Rule, ...] = ()
    configured_accounts: tuple[AccountSettings, ...] = ()  # [[accounts]] as written
    # The [[accounts]] name these settings are for (account_settings); None: the implicit one.
    for_account: str | None = None

    @property
    def accounts(self) -> tuple[AccountSettings, ...]:
        """The Telegram accounts, in config order: the ``[[accounts]]`` tables, or without
        them the one implicit account ``main`` made of ``[telegram]``."""
        if self.configured_accounts:
            return self.configured_accounts
        tg = self.telegram
        return (
            AccountSettings(
                IMPLICIT_ACCOUNT, tg.session, tg.session_string, tg.api_id, tg.api_hash,
                implicit=True,
            ),
        )  # fmt: skip

    def account(self, name: str) -> AccountSettings:
        """The account named ``name``; a ConfigError listing the names when there is none."""
        for a in self.accounts:
            if a.name == name:
                return a
        names = ", ".join(a.name for a in self.accounts)
        raise ConfigError(f"no account named {name!r} in the config (accounts: {names})")

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value configured: what log redaction must never let through."""
        values = [
            self.telegram.api_hash,
            self.telegram.session_string,
            self.bot.token,
            self.web_view.password_hash,
        ]
        for a in self.configured_accounts:
            values += [a.api_hash, a.session_string]
        return tuple(v for v in values if v)


def account_name(settings: Settings) -> str:
    """The account ``settings`` are for (:func:`account_settings`): its name, else the first
    account's (``main`` without ``[[accounts]]``)."""
    return settings.for_account or settings.accounts[0].name


def account_settings(settings: Settings, account: AccountSettings | str) -> Settings:
    """``settings`` as one account sees them: ``[telegram]`` with that account's session,
    session string and credentials (``[telegram]``'s when it has none), and ``for_account``
    naming it. Everything that opens a Telethon client reads ``settings.telegram``, so this is
    how a client of another account is made. The implicit account: ``settings`` unchanged."""
    acct = settings.account(account) if isinstance(account, str) else account
    if acct.implicit:
        return settings
    tg = settings.telegram
    return replace(
        settings,
        telegram=replace(
            tg,
            session=acct.session,
            session_string=acct.session_string,
            api_id=acct.api_id if acct.api_id is not None else tg.api_id,
            api_hash=acct.api_hash or tg.api_hash,
        ),
        for_account=acct.name,
    )


# ---------------------------------------------------------------------------- validation

T = TypeVar("T")


class _Section:
    """Typed access to one TOML table; every error names ``prefix.key``."""

    def __init__(self, data: Any, prefix: str, where: str) -> None:
        self.where = where
        self.prefix = prefix
        if not isinstance(data, dict):
            self.fail("", f"expected a table, got {_show(data)}")
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix and key else (self.prefix or key)

    def fail(self, key: str, message: str) -> ConfigError:
        raise ConfigError(f"{self.where}: {self.name(key)}: {message}")

    def get(self, key: str, kind: type[T] | tuple[type, ...], default: Any) -> Any:
        self.used.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            names = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
            secret = self.name(key) in _SECRET_KEYS or key in _SECRET_NAMES
            shown = _kind_of(value) if secret else _show(value)
            self.fail(key, f"expected {names}, got {shown}")
        return value

    def ints(self, key: str) -> frozenset[int]:
        value = self.get(key, list, [])
        for i, item in enumerate(value):
            if not isinstance(item, int) or isinstance(item, bool):
                self.fail(f"{key}[{i}]", f"expected an integer Telegram id, got {_show(item)}")
        return frozenset(value)

    def positive(
        self,
        key: str,
        kind: type[T] | tuple[type, ...],
        default: Any,
        *,
        maximum: float | None = None,
        zero: bool = False,
        why: str = "",
    ) -> Any:
        """A number above 0 (``zero``: 0 or more), finite, at most ``maximum`` (``why`` says
        where the ceiling comes from): nan, inf and negative values name the key."""
        value = self.get(key, kind, default)
        if value is None:
            return value
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(key, f"expected a finite number, got {_show(value)}")
        if value < 0 or (value == 0 and not zero):
            least = "zero or more" if zero else "a positive number"
            self.fail(key, f"expected {least}, got {_show(value)}")
        if maximum is not None and value > maximum:
            self.fail(key, f"expected at most {maximum:g}{why}, got {_show(value)}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            self.fail(unknown[0], "unknown key (see config.example.toml for the known keys)")


_KIND_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


# Keys whose values are never echoed, even when wrong (a hash pasted into api_id is common).
_SECRET_KEYS = frozenset(
    {"telegram.api_id", "telegram.api_hash", "bot.token", "web_view.password_hash", "storage.url"}
)
_SECRET_NAMES = frozenset({"api_id", "api_hash", "session_string"})  # in any table


def _kind_of(value: Any) -> str:
    return (
        "a value of the wrong kind (not shown: it may be a secret)"
        if value is not None
        else "nothing"
    )


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return str(value)


_AGE = re.compile(r"^(\d+)\s*([dhw])$")
_MAX_POSTS = 2**31 - 1  # message ids are 32-bit: no channel holds more posts
_MAX_AGE_DAYS = 36_500
WEEK = 7 * 24 * 3600.0
MAX_EXPORT_CAP = 10_000  # ~5 KB a post in CSV: 50 MB, the largest file a bot may send


def _poll_seconds(sec: _Section) -> float:
    value = float(sec.positive("poll_seconds", (int, float), 1.0, maximum=3600))
    if value < 0.1:
        sec.fail(
            "poll_seconds",
            "expected at least 0.1 (each look reads the archive: less is a busy loop),"
            f" got {value:g}",
        )
    return value


def _posts(sec: _Section, count: int) -> int:
    if count > _MAX_POSTS:
        sec.fail(
            "backfill",
            f"expected at most {_MAX_POSTS} posts (message ids are 32-bit), got {count};"
            ' use "all" for everything',
        )
    return count


def _http_url(sec: _Section, key: str, default: str) -> str:
    """An http(s) URL with a host (``file://``, ``ftp://`` and bare paths are refused)."""
    value: str = sec.get(key, str, default).strip().rstrip("/")
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        sec.fail(key, f"expected an http:// or https:// URL with a host, got {value!r}")
    return value


_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?]+$")


def _backfill(sec: _Section) -> Backfill:
    value = sec.get("backfill", (str, int), "30d")
    if isinstance(value, int):
        if value < 0:
            sec.fail(
                "backfill", f'expected "all", a number of posts or an age like "90d", got {value}'
            )
        return Backfill("count", count=_posts(sec, value))
    text = value.strip().lower()
    if text == "all":
        return Backfill("all")
    if text.isdigit():
        return Backfill("count", count=_posts(sec, int(text)))
    m = _AGE.match(text)
    if not m:
        sec.fail(
            "backfill", f'expected "all", a number of posts or an age like "90d", got {value!r}'
        )
    assert m is not None
    n, unit = int(m.group(1)), m.group(2)
    hours = n * {"d": 24, "w": 168, "h": 1}[unit]
    if hours > _MAX_AGE_DAYS * 24:
        sec.fail(
            "backfill",
            f"expected an age of at most {_MAX_AGE_DAYS} days (Telegram began in 2013), got"
            f' {value!r}; use "all" for everything',
        )
    days = {"d": 1, "w": 7}.get(unit)
    age = timedelta(days=n * days) if days else timedelta(hours=n)
    return Backfill("age", age=age)


def _channel(data: Any, i: int, where: str) -> ChannelConfig:
    sec = _Section(data, f"channels[{i}]", where)
    refs = [(k, sec.get(k, (str, int), None)) for k in ("username", "id", "link")]
    given = [(k, v) for k, v in refs if v is not None]
    if len(given) != 1:
        sec.fail("", "give exactly one of username, id or link")
    key, value = given[0]
    try:
        ref = parse_ref(str(value))
    except BadChannelRef as exc:
        sec.fail(key, str(exc))
        raise
    source = sec.get("source", str, "telethon")
    if source not in SOURCES:
        sec.fail("source", f"expected one of {', '.join(SOURCES)}, got {source!r}")
    if source == "web" and ref.username is None:
        sec.fail(key, "a web channel needs its public username (the preview is t.me/s/<username>)")
    account = sec.get("account", str, None)
    if account is not None and source != "telethon":
        sec.fail("account", "only a Telethon channel is followed by an account (source is web)")
    ch = ChannelConfig(ref, source, _backfill(sec), sec.get("join", bool, True), account)
    sec.done()
    return ch


def _account(data: Any, i: int, where: str, base: Path) -> AccountSettings:
    sec = _Section(data, f"accounts[{i}]", where)
    name = sec.get("name", str, None)
    if name is None:
        sec.fail("name", 'missing: every account needs a name, like name = "desk1"')
    if not _ACCOUNT_NAME.match(name):
        sec.fail(
            "name",
            f"expected 1 to 32 of a-z, 0-9, _ and - (it names the session file and the"
            f" environment variable), got {name!r}",
        )
    session_text = sec.get("session", str, None)
    if session_text is not None and (not session_text.strip() or "\x00" in session_text):
        sec.fail("session", "expected the path of a session file")
    session = Path(session_text).expanduser() if session_text else Path(f"data/{name}.session")
    if not session.is_absolute():
        session = base / session
    premium = sec.get("premium", bool, False)
    limit = PREMIUM_JOIN_LIMIT if premium else JOIN_LIMIT
    acct = AccountSettings(
        name=name,
        session=session,
        api_id=sec.get("api_id", int, None),
        api_hash=sec.get("api_hash", str, None),
        join_limit=sec.positive("join_limit", int, limit, maximum=10_000),
        premium=premium,
    )
    sec.done()
    return acct


def _accounts(raw: dict[str, Any], where: str, base: Path) -> tuple[AccountSettings, ...]:
    accounts_raw = raw.get("accounts", [])
    if not isinstance(accounts_raw, list):
        raise ConfigError(f"{where}: accounts: expected a list of [[accounts]] tables")
    accounts = tuple(_account(a, i, where, base) for i, a in enumerate(accounts_raw))
    first: dict[str, int] = {}
    sessions: dict[Path, int] = {}
    for i, a in enumerate(accounts):
        if a.name in first:
            raise ConfigError(
                f"{where}: accounts[{i}].name: {a.name!r} is used twice (accounts[{first[a.name]}]"
                " has it); give each account its own name"
            )
        if a.session in sessions:
            raise ConfigError(
                f"{where}: accounts[{i}].session: {a.session} is the session of"
                f" accounts[{sessions[a.session]}] too; one session per account (Telegram"
                " refuses one session used twice at once: AUTH_KEY_DUPLICATED)"
            )
        first[a.name] = i
        sessions[a.session] = i
    return accounts


def _check_pins(
    channels: tuple[ChannelConfig, ...], accounts: tuple[AccountSettings, ...], where: str
) -> None:
    names = [a.name for a in accounts] or [IMPLICIT_ACCOUNT]
    for i, ch in enumerate(channels):
        if ch.account is not None and ch.account not in names:
            raise ConfigError(
                f"{where}: channels[{i}].account: no account named {ch.account!r} (accounts:"
                f" {', '.join(names)}); add it as [[accounts]] or fix the name"
            )
    _check_pin_room(channels, accounts, where)


def _check_pin_room(
    channels: tuple[ChannelConfig, ...], accounts: tuple[AccountSettings, ...], where: str
) -> None:
    """No account is pinned more channels than its ``join_limit``: a pin always wins, so the
    account would be given them all and Telegram would refuse the joins past its limit.
    Only the config's pins count (channels followed from the bot chat are never pinned)."""
    pinned: dict[str, int] = {}
    for ch in channels:
        if ch.account is not None:
            pinned[ch.account] = pinned.get(ch.account, 0) + 1
    for a in accounts or (AccountSettings(IMPLICIT_ACCOUNT, Path(), implicit=True),):
        n = pinned.get(a.name, 0)
        if n <= a.join_limit:
            continue
        if a.implicit:
            fix = "unpin some, or add [[accounts]] accounts and pin them there"
        elif a.premium or a.join_limit != JOIN_LIMIT:
            fix = "unpin some, raise its join_limit, or add an [[accounts]] account for them"
        else:
            fix = (
                "unpin some, raise its join_limit (premium = true if it has Telegram Premium),"
                " or add an [[accounts]] account for them"
            )
        raise ConfigError(
            f"{where}: channels: {n} channels are pinned to account {a.name!r}, more than its"
            f" join_limit of {a.join_limit}; {fix}"
        )


def _rule(data: Any, i: int, where: str) -> Rule:
    from archiver.errors import QueryError
    from archiver.query import parse

    sec = _Section(data, f"rules[{i}]", where)
    name = sec.get("name", str, None)
    if not name or not name.strip():
        sec.fail("name", "every rule needs a name")
    sec.prefix = f"rules[{i}] ({name})"
    query = sec.get("query", str, None)
    if query is None or not query.strip():
        sec.fail("query", "missing or empty: the search query the rule matches")
    try:
        parse(query)
    except QueryError as exc:
        sec.fail("query", f"{exc}: {query!r}")
    channels = sec.get("channels", list, [])
    for j, ref in enumerate(channels):
        try:
            parse_ref(str(ref))
        except BadChannelRef as exc:
            sec.fail(f"channels[{j}]", str(exc))
    notify = sorted(sec.ints("notify"))
    kinds = sec.get("kinds", list, list(POST_KINDS))
    for j, kind in enumerate(kinds):
        if kind not in POST_KINDS:
            sec.fail(f"kinds[{j}]", f"expected one of {', '.join(POST_KINDS)}, got {_show(kind)}")
    follow_ups = sec.get("follow_ups", str, "all")
    if follow_ups not in FOLLOW_UPS:
        sec.fail("follow_ups", f"expected one of {', '.join(FOLLOW_UPS)}, got {follow_ups!r}")
    sec.done()
    return Rule(
        name=name.strip(),
        query=query,
        notify=tuple(notify),
        channels=tuple(str(c) for c in channels),
        kinds=frozenset(kinds),
        follow_ups=follow_ups,
    )


def _cron(sec: _Section, key: str, default: str) -> str:
    value: str = sec.get(key, str, default).strip()
    if value and (len(value.split()) != 5 or not all(_CRON_FIELD.match(f) for f in value.split())):
        sec.fail(
            key, f'expected a cron expression of five fields like "*/15 * * * *", got {value!r}'
        )
    if value:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            sec.fail(key, f"invalid cron expression {value!r}: {exc}")
    return value


def _section(raw: dict[str, Any], key: str, where: str) -> _Section:
    return _Section(raw.get(key, {}), key, where)


def _build(raw: dict[str, Any], where: str, base: Path) -> Settings:
    known = {
        "storage",
        "telegram",
        "web",
        "media",
        "bot",
        "display",
        "schedule",
        "logging",
        "recheck",
        "web_view",
        "evidence",
        "workers",
        "channels",
        "rules",
        "accounts",
    }
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"{where}: {key}: unknown section (known: {', '.join(sorted(known))})"
            )

    def path(sec: _Section, key: str, default: Path) -> Path:
        value = sec.get(key, str, None)
        if value is None:
            return default
        if not value.strip() or "\x00" in value:
            sec.fail(
                key, f"expected a path, got {_show(value) if value.strip() else 'an empty string'}"
            )
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p

    s = _section(raw, "storage", where)
    storage = StorageSettings(
        path=path(s, "path", DEFAULT_DB),
        backup_dir=path(s, "backup_dir", Path("data/backups")),
        backup_keep=s.positive("backup_keep", int, 7, maximum=10_000),
        media_dir=path(s, "media_dir", Path("data/media")),
        url=_database_url(s.get("url", str, None), s),
    )
    s.done()

    t = _section(raw, "telegram", where)
    telegram = TelegramSettings(
        api_id=t.get("api_id", int, None),
        api_hash=t.get("api_hash", str, None),
        session=path(t, "session", Path("data/telewatch.session")),
        flood_wait_ceiling=t.positive("flood_wait_ceiling", int, 300, maximum=86_400),
        recent_posts=t.positive("recent_posts", int, 100, maximum=10_000),
        recent_hours=t.positive("recent_hours", int, 48, maximum=24 * 365),
        timeout_seconds=float(t.positive("timeout_seconds", (int, float), 30.0, maximum=3600)),
        connect_attempts=t.positive("connect_attempts", int, 4, maximum=100),
    )
    t.done()

    w = _section(raw, "web", where)
    base_url = _http_url(w, "base_url", "https://t.me")
    web = WebSettings(
        base_url=base_url,
        delay_seconds=float(
            w.positive("delay_seconds", (int, float), 1.0, zero=True, maximum=3600)
        ),
        user_agent=w.get("user_agent", str, DEFAULT_USER_AGENT),
        timeout_seconds=float(w.positive("timeout_seconds", (int, float), 20.0, maximum=3600)),
        max_retries=w.positive("max_retries", int, 4, zero=True, maximum=100),
        recent_pages=w.positive("recent_pages", int, 1, maximum=1000),
        requests_per_pass=w.positive("requests_per_pass", int, 500, maximum=1_000_000),
        max_page_bytes=w.positive("max_page_bytes", int, 4_000_000, maximum=1_000_000_000),
    )
    w.done()

    m = _section(raw, "media", where)
    download = m.get("download", list, [])
    for j, kind in enumerate(download):
        if kind not in MEDIA_KINDS:
            m.fail(f"download[{j}]", f"expected one of {', '.join(MEDIA_KINDS)}, got {_show(kind)}")
    max_mb = m.positive("max_size_mb", (int, float), 20.0, maximum=4096)
    media = MediaSettings(frozenset(download), float(max_mb))
    m.done()

    b = _section(raw, "bot", where)
    bot = BotSettings(
        token=b.get("token", str, None),
        api_base_url=_http_url(b, "api_base_url", "https://api.telegram.org/bot"),
        admins=b.ints("admins"),
        allowed_users=b.ints("allowed_users"),
        allowed_chats=b.ints("allowed_chats"),
        export_cap=b.positive(
            "export_cap",
            int,
            5000,
            maximum=MAX_EXPORT_CAP,
            why=" (Telegram refuses bot files over 50 MB)",
        ),
        poll_seconds=_poll_seconds(b),
        max_attempts=b.positive("max_attempts", int, 8, maximum=1000),
    )
    b.done()

    d = _section(raw, "display", where)
    tzname = d.get("timezone", str, "UTC")
    try:
        tz = ZoneInfo(tzname)
    except (ZoneInfoNotFoundError, ValueError):
        d.fail("timezone", f'unknown time zone {tzname!r} (use an IANA name like "Europe/Kyiv")')
        raise
    d.done()

    sc = _section(raw, "schedule", where)
    schedule = ScheduleSettings(
        sync=_cron(sc, "sync", "*/15 * * * *"),
        recheck=_cron(sc, "recheck", "7 * * * *"),
        backup=_cron(sc, "backup", "30 3 * * *"),
        maintenance=_cron(sc, "maintenance", "45 4 * * 0"),
        digest=_cron(sc, "digest", ""),
        heartbeat_seconds=sc.positive("heartbeat_seconds", int, 30, maximum=86_400),
        stale_after_minutes=sc.positive("stale_after_minutes", int, 90, maximum=7 * 24 * 60),
        pass_deadline_seconds=float(
            sc.positive("pass_deadline_seconds", (int, float), 600.0, maximum=WEEK)
        ),
    )
    sc.done()

    rc = _section(raw, "recheck", where)
    recheck = RecheckSettings(
        recent_days=float(rc.positive("recent_days", (int, float), 7.0)),
        full_recheck_days=float(rc.positive("full_recheck_days", (int, float), 7.0)),
    )
    for key in ("recent_days", "full_recheck_days"):
        value = getattr(recheck, key)
        if not 0 < value <= 3650:  # also refuses nan and inf
            rc.fail(key, f"expected a number of days from 0 to 3650, got {value}")
    rc.done()

    wv = _section(raw, "web_view", where)
    password_hash = wv.get("password_hash", str, None)
    if password_hash is not None and (why := check_hash(password_hash)) is not None:
        wv.fail(
            "password_hash",
            f"{why}; make one with `telewatch hash-password` and paste the line it prints",
        )
    web_view = WebViewSettings(password_hash)
    wv.done()

    ev = _section(raw, "evidence", where)
    tsa_url = ev.get("tsa_url", str, None)
    evidence = EvidenceSettings(
        max_capture_bytes=ev.positive("max_capture_bytes", int, 2_000_000, maximum=1_000_000_000),
        capture_retention_days=ev.positive(
            "capture_retention_days", int, 0, zero=True, maximum=36_500
        ),
        tsa_url=_http_url(ev, "tsa_url", "") if tsa_url else None,
    )
    ev.done()

    wk = _section(raw, "workers", where)
    lease = float(wk.positive("lease_seconds", (int, float), 60.0, maximum=86_400))
    if not lease >= 1:  # also refuses nan
        wk.fail("lease_seconds", f"expected a number of seconds from 1 to 86400, got {lease}")
    workers = WorkersSettings(lease_seconds=lease)
    wk.done()

    lg = _section(raw, "logging", where)
    level = lg.get("level", str, "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        lg.fail("level", f"expected DEBUG, INFO, WARNING or ERROR, got {level!r}")
    fmt = lg.get("format", str, "text")
    if fmt not in ("text", "json"):
        lg.fail("format", f'expected "text" or "json", got {fmt!r}')
    lg.done()

    channels_raw = raw.get("channels", [])
    if not isinstance(channels_raw, list):
        raise ConfigError(f"{where}: channels: expected a list of [[channels]] tables")
    channels = tuple(_channel(c, i, where) for i, c in enumerate(channels_raw))
    seen: dict[str, int] = {}
    for i, ch in enumerate(channels):
        key = str(ch.ref)
        if key in seen:
            raise ConfigError(
                f"{where}: channels[{i}]: {key} is already listed as channels[{seen[key]}]"
            )
        seen[key] = i
    accounts = _accounts(raw, where, base)
    _check_pins(channels, accounts, where)

    rules_raw = raw.get("rules", [])
    if not isinstance(rules_raw, list):
        raise ConfigError(f"{where}: rules: expected a list of [[rules]] tables")
    rules = tuple(_rule(r, i, where) for i, r in enumerate(rules_raw))
    names: dict[str, int] = {}
    for i, rule in enumerate(rules):
        if rule.name in names:
            raise ConfigError(
                f"{where}: rules[{i}]: the name {rule.name!r} is already used by "
                f"rules[{names[rule.name]}]"
            )
        names[rule.name] = i

    return Settings(
        storage=storage,
        telegram=telegram,
        web=web,
        media=media,
        bot=bot,
        display=DisplaySettings(tz),
        schedule=schedule,
        logging=LoggingSettings(level, fmt),
        recheck=recheck,
        web_view=web_view,
        evidence=evidence,
        workers=workers,
        channels=channels,
        rules=rules,
        configured_accounts=accounts,
    )


def _database_url(value: str | None, where: _Section | str) -> str | None:
    """``[storage] url``: a PostgreSQL URL (the value is never shown: it may hold a password)."""
    if value is None:
        return None
    if not value.strip().startswith(("postgresql://", "postgres://")):
        why = "expected a postgresql:// URL (the value is not shown); for a SQLite file set"
        if isinstance(where, str):
            raise ConfigError(f"environment: {where}: {why} [storage] path instead")
        where.fail("url", f"{why} path instead")
    return value.strip()


def _env(settings: Settings, env: Mapping[str, str], where: str) -> Settings:
    tg = settings.telegram
    if url := env.get("TELEWATCH_DATABASE_URL"):
        storage = replace(settings.storage, url=_database_url(url, "TELEWATCH_DATABASE_URL"))
        settings = replace(settings, storage=storage)
    if api_id := env.get("TELEWATCH_API_ID"):
        if not api_id.strip().isdigit():
            raise ConfigError(
                "environment: TELEWATCH_API_ID: expected an integer (the value is not shown:"
                " did you put the api_hash there?)"
            )
        tg = replace(tg, api_id=int(api_id))
    if api_hash := env.get("TELEWATCH_API_HASH"):
        tg = replace(tg, api_hash=api_hash.strip())
    if session := env.get("TELEWATCH_SESSION"):
        tg = replace(tg, session_string=session.strip())
    accounts = tuple(
        replace(a, session_string=value.strip()) if (value := env.get(a.env_name)) else a
        for a in settings.configured_accounts
    )
    settings = replace(settings, configured_accounts=accounts)
    bot = settings.bot
    if token := env.get("TELEWATCH_BOT_TOKEN"):
        bot = replace(bot, token=token.strip())
    return replace(settings, telegram=tg, bot=bot)


def parse_rules_file(path: Path) -> tuple[Rule, ...]:
    """The ``[[rules]]`` of a separate TOML file (``telewatch rules test --rules FILE``)."""
    raw = _read(path, "rules file")
    unknown = set(raw) - {"rules"}
    if unknown:
        raise ConfigError(
            f"{path}: {sorted(unknown)[0]}: unknown key (a rules file holds [[rules]] only)"
        )
    rules = raw.get("rules", [])
    if not isinstance(rules, list) or not rules:
        raise ConfigError(f"{path}: rules: expected one or more [[rules]] tables")
    return tuple(_rule(r, i, str(path)) for i, r in enumerate(rules))


def _read(path: Path, what: str = "config file (copy config.example.toml)") -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give the path of a TOML file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(
            f"{path}: nested too deeply to read (more than Python's recursion limit);"
            " a telewatch config nests 3 levels at most"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def find_config(explicit: Path | None, env: Mapping[str, str]) -> Path | None:
    """``--config``, else ``$TELEWATCH_CONFIG``, else ``./config.toml`` if it exists, else None."""
    if explicit is not None:
        return explicit
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG])
    if not DEFAULT_CONFIG.exists():
        return None
    if DEFAULT_CONFIG.is_symlink():
        # The image links /config.toml to data/config.toml: name the file people edit (their
        # ./data/config.toml) in every message, not the link.
        return Path(os.readlink(DEFAULT_CONFIG))
    return DEFAULT_CONFIG


def load_settings(
    path: Path | None = None,
    *,
    db: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Read and validate the configuration. ``path=None`` means built-in defaults.

    Relative paths in the file are relative to the current directory (where telewatch runs).
    """
    environ = os.environ if env is None else env
    if path is None:
        settings = Settings()
        where = "environment"
    else:
        raw = _read(path)
        where = str(path)
        settings = replace(_build(raw, where, Path(".")), source=path)
    settings = _env(settings, environ, where)
    if db is not None:  # --db: this SQLite file, whatever [storage] url says
        settings = replace(settings, storage=replace(settings.storage, path=db, url=None))
    return settings


def require(value: T | None, key: str, hint: str, check: Callable[[T], bool] = bool) -> T:
    """A setting that a command needs: a ConfigError naming the key when it is missing."""
    if value is None or not check(value):
        raise ConfigError(f"{key}: not set; {hint}")
    return value


def _archive_name(storage: StorageSettings) -> str:
    if storage.url is None:
        return str(storage.path)
    from archiver.store.postgres import redact

    return f"PostgreSQL {redact(storage.url)}"


def summary(settings: Settings) -> list[str]:
    """A human summary for ``telewatch config check``. Never shows a secret's value."""

    def secret(value: object) -> str:
        return "set" if value else "not set"

    s = settings
    lines = [
        f"config: {s.source or 'built-in defaults'}",
        f"archive: {_archive_name(s.storage)}",
        f"backups: {s.storage.backup_dir} (keep {s.storage.backup_keep})",
        f"telegram: api_id {secret(s.telegram.api_id)}, api_hash {secret(s.telegram.api_hash)}, "
        "session "
        + (
            "string from TELEWATCH_SESSION"
            if s.telegram.session_string
            else str(s.telegram.session)
        ),
        *_account_lines(s),
        f"bot: token {secret(s.bot.token)}, {len(s.bot.admins)} admin(s), "
        f"{len(s.bot.allowed_users)} allowed user(s), {len(s.bot.allowed_chats)} allowed chat(s)",
        f"display time zone: {s.display.timezone.key}",
        f"web view: password {secret(s.web_view.password_hash)}",
        f"channels: {len(s.channels)}",
    ]
    for ch in s.channels:
        pin = f", account {ch.account}" if ch.account else ""
        lines.append(
            f"  {ch.ref} via {ch.source}, backfill {ch.backfill}, join {str(ch.join).lower()}" + pin
        )
    lines.append(f"rules: {len(s.rules)}")
    for rule in s.rules:
        who = f"{len(rule.notify)} recipient(s)" if rule.notify else "NO recipients: alerts nobody"
        lines.append(f"  {rule.name}: {rule.query}  -> {who}")
    jobs = ", ".join(
        f"{name} '{expr}'"
        for name, expr in (
            ("sync", s.schedule.sync),
            ("recheck", s.schedule.recheck),
            ("backup", s.schedule.backup),
            ("maintenance", s.schedule.maintenance),
            ("digest", s.schedule.digest),
        )
        if expr
    )
    lines.append(f"schedule: {jobs}")
    return lines


def _account_lines(s: Settings) -> list[str]:
    """``config check``: each [[accounts]] table (none without them: [telegram] says it all)."""
    lines = []
    if s.configured_accounts:
        lines.append(f"accounts: {len(s.configured_accounts)}")
    for a in s.configured_accounts:
        where = f"string from {a.env_name}" if a.session_string else str(a.session)
        own = ", own api_id/api_hash" if a.api_id is not None or a.api_hash else ""
        lines.append(f"  {a.name}: session {where}, join limit {a.join_limit}{own}")
    return lines
