"""Resolving Telethon channels for the logged-in account.

A channel is addressed by its id and access hash. Hashes belong to the account that resolved
the channel, so each is stored with that account's user id (``channels.hash_account``); the
archive's hash is used only when it is this account's (or of an unknown owner, from before
owners were kept), else the channel is resolved again. ``contacts.resolveUsername`` (the
request Telegram punishes most) counts against the account's daily budget
(:data:`RESOLVE_PER_DAY`); ``channels.getFullChannel`` (description, subscribers) is asked at
most daily per channel, and a flood wait on it never stops the read. A channel named by id
takes its hash from the session's entity cache, with no request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telethon import functions, types, utils

from archiver.config import ChannelConfig
from archiver.models import bare_id
from archiver.sources.telethon_convert import channel_info
from archiver.sources.telethon_flood import FloodPolicy, FloodWaitTooLong
from archiver.sources.telethon_ledger import RESOLVE, RESOLVE_PER_DAY, FloodLedger
from archiver.sources.telethon_session import ensure_ledger
from archiver.sources.telethon_status import DAY, ChannelProblem, Problem, not_found
from archiver.store.archive import Archive
from archiver.store.channels import ChannelRow, get_channel, upsert_channel
from archiver.store.following import get_following, update_following

__all__ = ["RESOLVE_PER_DAY", "Resolver", "input_peer", "marked", "resolve_channel"]

log = logging.getLogger(__name__)

SOURCE = "telethon"
FULL_EVERY = DAY  # GetFullChannel at most this often per channel


def input_peer(row: ChannelRow) -> Any:
    """The archived channel as Telethon's ``InputPeerChannel`` (needs its access hash)."""
    return types.InputPeerChannel(bare_id(row.id), row.access_hash)


@dataclass
class Resolver:
    """Resolves channels for one account: from the archive when it holds this account's
    hash, else one ``ResolveUsername`` within the daily budget (and ``GetFullChannel`` at most
    daily)."""

    archive: Archive
    client: Any
    policy: FloodPolicy
    ledger: FloodLedger
    now: Callable[[], datetime]

    async def channel(self, cfg: ChannelConfig) -> tuple[ChannelRow, Any]:
        row = await get_channel(self.archive, cfg.ref)
        if row is not None and row.access_hash is not None:
            f = await get_following(self.archive, row.id)
            owner = f.hash_account if f is not None else None
            if owner is None or owner == self.ledger.account:
                return row, input_peer(row)
            log.info(
                "channel %s: its access hash belongs to another account; resolving for this one",
                row.id,
            )
        return await self.resolve(cfg, row)

    async def resolve(self, cfg: ChannelConfig, row: ChannelRow | None) -> tuple[ChannelRow, Any]:
        name = str(cfg.ref)
        username = cfg.ref.username or (row.username if row is not None else None)
        now = self.now()
        if username is None:
            peer = await self._from_session(cfg, row)
            row = row or await get_channel(self.archive, cfg.ref)
        else:
            if not await self.ledger.spend(RESOLVE, RESOLVE_PER_DAY):
                until = self.ledger.next_day()
                raise ChannelProblem(
                    name,
                    Problem(
                        "flood_wait",
                        f"this account used its {RESOLVE_PER_DAY} {RESOLVE} calls for today"
                        f" (a budget that keeps Telegram from banning it); next on"
                        f" {until:%Y-%m-%d %H:%M} UTC",
                        until,
                    ),
                )
            res = await self.policy.call(
                name, lambda: self.client(functions.contacts.ResolveUsernameRequest(username))
            )
            peer_id = utils.get_peer_id(res.peer)
            chat = next((c for c in res.chats if utils.get_peer_id(c) == peer_id), None)
            if not isinstance(chat, types.Channel):
                raise ChannelProblem(
                    name,
                    not_found(
                        now,
                        "this username is a user or a bot, not a channel: check [[channels]];"
                        " looked up again once a day",
                    ),
                )
            peer = types.InputPeerChannel(chat.id, chat.access_hash)
            full = None
            if row is None or await self._full_due(row.id, now):
                full = await self._get_full(name, peer)
            row = await upsert_channel(
                self.archive, channel_info(chat, full.full_chat if full else None), source=SOURCE
            )
            if full is not None:
                await update_following(self.archive, row.id, full_checked_at=now)
        assert row is not None
        await update_following(
            self.archive,
            row.id,
            access_hash=peer.access_hash,
            hash_account=self.ledger.account,
            resolved_at=now,
        )
        log.info("channel %s resolved to %s", name, row.id)
        return row, peer

    async def _from_session(self, cfg: ChannelConfig, row: ChannelRow | None) -> Any:
        """A channel named by id: its hash from the session's entity cache (no request)."""
        assert cfg.ref.id is not None
        try:
            peer = self.client.session.get_input_entity(types.PeerChannel(bare_id(cfg.ref.id)))
        except ValueError:
            peer = None
        if not isinstance(peer, types.InputPeerChannel):
            raise ChannelProblem(
                str(cfg.ref),
                not_found(
                    self.now(),
                    "no access hash known for this id: list the channel by username or link in"
                    " [[channels]] (or join it with this account first)",
                ),
            )
        if row is None:
            full = await self.policy.call(
                str(cfg.ref), lambda: self.client(functions.channels.GetFullChannelRequest(peer))
            )
            chat = next((c for c in full.chats if c.id == peer.channel_id), None)
            if not isinstance(chat, types.Channel):
                raise ChannelProblem(str(cfg.ref), not_found(self.now()))
            await upsert_channel(self.archive, channel_info(chat, full.full_chat), source=SOURCE)
            await update_following(self.archive, marked(chat.id), full_checked_at=self.now())
        return peer

    async def _full_due(self, channel_id: int, now: datetime) -> bool:
        f = await get_following(self.archive, channel_id)
        last = f.full_checked_at if f is not None else None
        return last is None or now - last >= FULL_EVERY

    async def _get_full(self, name: str, peer: Any) -> Any:
        """``GetFullChannel``, or None when it is in a flood wait (recorded in the ledger;
        the description can wait, the posts cannot)."""
        try:
            return await self.policy.call(
                name, lambda: self.client(functions.channels.GetFullChannelRequest(peer))
            )
        except FloodWaitTooLong as exc:
            log.info("channel %s: description not refreshed (%s waits)", name, exc.method)
            return None

    async def full(self, row: ChannelRow, peer: Any) -> ChannelRow:
        """The description and subscriber count (``GetFullChannel``), at most once a day per
        channel; a flood wait on it never stops the read."""
        now = self.now()
        if not await self._full_due(row.id, now):
            return row
        full = await self._get_full(str(row.id), peer)
        if full is None:
            return row
        chat = next((c for c in full.chats if c.id == peer.channel_id), None)
        if isinstance(chat, types.Channel):
            row = await upsert_channel(
                self.archive, channel_info(chat, full.full_chat), source=SOURCE
            )
        await update_following(self.archive, row.id, full_checked_at=now)
        return row


def marked(bare: int) -> int:
    return int(utils.get_peer_id(types.PeerChannel(bare)))


async def resolve_channel(
    archive: Archive, client: Any, cfg: ChannelConfig, policy: FloodPolicy
) -> tuple[ChannelRow, Any]:
    """The channel's archive row and input peer (see :class:`Resolver`)."""
    ledger = await ensure_ledger(archive, client)
    return await Resolver(archive, client, policy, ledger, ledger.now).channel(cfg)
