"""The optional daily digest: to each recipient, what matched their rules since the last one.

Switched on by ``[schedule] digest`` (a cron expression, e.g. ``"0 8 * * *"``). The digest
reads the alerts that ingest already wrote (the outbox), so it shows exactly what the rules
matched, including alerts that could not be delivered at the time: per rule, how many posts
matched and links to the newest of them.

The delivery path is deliberately simple (and separate from the outbox, whose rows are one
per post): one plain-text ``sendMessage`` per recipient through the Bot API with the bot's
token, no retries. A digest that fails is logged with the recipient's id; the next digest
covers its own window. The end of each sent window is kept in the archive's ``meta`` table, so
a restart or a manual second run does not send the same window twice. Recipients that blocked
the bot are skipped, and so are those that may no longer receive alerts (denied by an admin, or
not in ``[bot] allowed_users``/``allowed_chats``: checked when the digest is sent, as alerts
are); alerts dropped for that reason are not counted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

import httpx

from archiver.channels import post_link
from archiver.config import Settings
from archiver.errors import ConfigError
from archiver.store.access import recipient_refusal
from archiver.store.archive import Archive, parse_ts, ts, utcnow
from archiver.store.outbox import inactive_recipients

log = logging.getLogger(__name__)

META_KEY = "digest_last_at"
WINDOW = timedelta(days=1)
MAX_LINKS = 5  # links shown per rule
MAX_CHARS = 4000  # Telegram allows 4096 per message, counted in UTF-16 code units


def _english(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class Digest:
    recipient: int
    text: str
    matches: int  # posts that matched at least one of the recipient's rules


@dataclass(frozen=True, slots=True)
class _Match:
    link: str
    channel: str
    date: datetime
    kind: str


async def build_digests(
    archive: Archive,
    *,
    since: datetime,
    until: datetime,
    tz: tzinfo,
    max_links: int = MAX_LINKS,
    recipient: int | None = None,
    _: Callable[[str], str] = _english,
    translate_for: Callable[[int], Callable[[str], str]] | None = None,
) -> list[Digest]:
    """One digest per recipient with alerts created in ``[since, until)``, by recipient id
    (of ``recipient`` only, when given: a personal digest). ``_`` translates its words (the
    bot passes the recipient's language; the ids are in bot/locales, extracted from this
    file too); ``translate_for`` gives each recipient's instead (the scheduled digest);
    ``{name}`` fields are filled in after translation."""
    only = "" if recipient is None else " AND a.recipient = ?"
    rows = await archive.fetchall(
        "SELECT a.recipient, a.rules, a.kind, a.post_id, p.message_id, p.date, c.id AS cid,"
        " c.username, c.title FROM alerts a JOIN posts p ON p.id = a.post_id"
        " JOIN channels c ON c.id = p.channel_id"
        f" WHERE a.created_at >= ? AND a.created_at < ? AND a.status <> 'dropped'{only}"
        " ORDER BY a.recipient, a.id DESC",
        (ts(since), ts(until)) + (() if recipient is None else (recipient,)),
    )
    by_recipient: dict[int, dict[str, dict[int, _Match]]] = {}
    for r in rows:
        rules = by_recipient.setdefault(r["recipient"], {})
        match = _Match(
            link=post_link(r["cid"], r["username"], r["message_id"]),
            channel=r["title"] or r["username"] or str(r["cid"]),
            date=parse_ts(r["date"]) or until,
            kind=r["kind"],
        )
        for name in json.loads(r["rules"]):
            # newest alert first: a post alerted as new and then as edited shows once
            rules.setdefault(str(name), {}).setdefault(r["post_id"], match)
    digests: list[Digest] = []
    for recipient, rules in sorted(by_recipient.items()):
        _ = translate_for(recipient) if translate_for is not None else _
        posts = {pid for matched in rules.values() for pid in matched}
        head = _("telewatch daily digest: {n} post(s) matched your rules since {since} ({tz})")
        head = head.format(
            n=len(posts), since=f"{since.astimezone(tz):%Y-%m-%d %H:%M}", tz=getattr(tz, "key", tz)
        )
        kinds = {"edited": _("edited"), "reverted": _("edit reverted"), "deleted": _("deleted"),
                 "restored": _("restored")}  # fmt: skip
        lines = [head]
        for name in sorted(rules, key=lambda n: (-len(rules[n]), n)):
            matched = sorted(rules[name].values(), key=lambda m: m.date, reverse=True)
            lines.append("")
            lines.append(f"{name}: {len(matched)}")
            for m in matched[:max_links]:
                note = "" if m.kind == "new" else f" ({kinds.get(m.kind, m.kind)})"
                lines.append(f"  {m.channel}, {m.date.astimezone(tz):%d.%m %H:%M}{note}: {m.link}")
            if len(matched) > max_links:
                lines.append("  " + _("and {n} more").format(n=len(matched) - max_links))
        digests.append(Digest(recipient, _fit(lines), len(posts)))
    return digests


def _utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji of a channel title is 2)."""
    return len(text.encode("utf-16-le")) // 2


def _fit(lines: list[str]) -> str:
    """Whole lines up to Telegram's message size."""
    out: list[str] = []
    size = 0
    for line in lines:
        n = _utf16_len(line) + 1
        if size + n > MAX_CHARS - 2:
            out.append("…")
            break
        out.append(line)
        size += n
    return "\n".join(out)


async def send_digests(
    archive: Archive,
    settings: Settings,
    *,
    now: datetime | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    translate_for: Callable[[int], Callable[[str], str]] | None = None,
) -> int:
    """Build and send the digests of the window since the last one (at most a day); returns
    how many were sent. ``translate_for(recipient)`` is the ``_`` of the language the bot
    speaks to that chat (English without it)."""
    token = settings.bot.token
    if not token:
        raise ConfigError("bot.token: not set; the daily digest is sent by the bot")
    until = now or utcnow()
    last = parse_ts(await archive.get_meta(META_KEY))
    since = max(until - WINDOW, last) if last is not None else until - WINDOW
    if since >= until:
        log.info("digest: the window up to %s was already sent", ts(until))
        return 0
    digests = await build_digests(
        archive,
        since=since,
        until=until,
        tz=settings.display.timezone,
        translate_for=translate_for,
    )
    blocked = await inactive_recipients(archive)
    sent = 0
    url = f"{settings.bot.api_base_url}{token}/sendMessage"
    async with httpx.AsyncClient(
        transport=transport, timeout=settings.web.timeout_seconds
    ) as client:
        for d in digests:
            if d.recipient in blocked:
                log.info("digest: recipient %d is inactive, skipped", d.recipient)
                continue
            refused = await recipient_refusal(archive, settings.bot, d.recipient)
            if refused is not None:
                log.info("digest: recipient %d skipped: %s", d.recipient, refused)
                continue
            if await _send(client, url, d):
                sent += 1
    async with archive.transaction() as db:
        await db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (META_KEY, ts(until)),
        )
    log.info("digest: %d of %d sent", sent, len(digests))
    return sent


async def _send(client: httpx.AsyncClient, url: str, d: Digest) -> bool:
    payload = {
        "chat_id": d.recipient,
        "text": d.text,
        "link_preview_options": '{"is_disabled":true}',
    }
    try:
        resp = await client.post(url, data=payload)
    except httpx.HTTPError as exc:
        # The URL carries the token: name the error's type only.
        log.warning("digest: recipient %d: %s", d.recipient, type(exc).__name__)
        return False
    if resp.status_code != 200:
        try:
            description = str(resp.json().get("description", ""))
        except ValueError:
            description = ""
        log.warning(
            "digest: recipient %d: HTTP %d %s", d.recipient, resp.status_code, description[:200]
        )
        return False
    return True
