"""A post's page: every version in the order telewatch observed it, each with the words the
previous version had and it lost struck through and the words it added marked; when each was
edited (Telegram's time, when the source gave one) and seen, by which source; what was
observed after (``post_events``); the deletion state and how it was established; media; the
link to Telegram; and the alerts the post caused (kinds, rules, delivery; recipients are
counted, not named)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from datasette.utils.asgi import Request, Response

from archiver.errors import TelewatchError
from archiver.store.activity import post_info
from archiver.store.archive import Archive
from archiver.store.channels import require_channel
from archiver.store.outbox import list_alerts
from archiver.store.search import PostHistory, history
from web import fmt
from web.pages import context, page
from web.site import Site


@dataclass(frozen=True, slots=True)
class VersionView:
    number: int
    body: Any  # Markup: the text with the diff against the previous version
    changed: bool  # the text differs from the previous version's
    edit_date: Any
    seen_at: Any
    source: str
    current: bool


def versions(h: PostHistory) -> list[VersionView]:
    out = []
    prev: str | None = None
    for i, v in enumerate(h.versions, 1):
        out.append(
            VersionView(
                number=i,
                body=fmt.diffed(prev, v.text),
                changed=prev is not None and prev != v.text,
                edit_date=v.edit_date,
                seen_at=v.seen_at,
                source=v.source,
                current=i == h.current,
            )
        )
        prev = v.text
    return out


@dataclass(frozen=True, slots=True)
class AlertGroup:
    kind: str
    rules: tuple[str, ...]
    created_at: Any
    recipients: int
    statuses: str  # "2 sent, 1 pending"


async def alert_groups(archive: Archive, post_id: int) -> list[AlertGroup]:
    """The post's alerts, one line per kind and rules (oldest first), recipients counted."""
    groups: dict[tuple[str, tuple[str, ...]], list[Any]] = {}
    for a in reversed(await list_alerts(archive, limit=1000, post_id=post_id)):
        groups.setdefault((a.kind, a.rules), []).append(a)
    out = []
    for (kind, rules), alerts in groups.items():
        statuses = Counter(a.status for a in alerts)
        out.append(
            AlertGroup(
                kind=kind,
                rules=rules,
                created_at=alerts[0].created_at,
                recipients=len({a.recipient for a in alerts}),
                statuses=", ".join(f"{n} {s}" for s, n in statuses.most_common()),
            )
        )
    return out


@page
async def post_page(request: Request, site: Site, archive: Archive) -> Response:
    ref = request.url_vars["channel"]
    try:
        message_id = int(request.url_vars["message_id"])
    except ValueError:
        raise TelewatchError(f"{request.url_vars['message_id']!r}: not a message id") from None
    channel = await require_channel(archive, ref)
    h = await history(archive, channel.id, message_id)
    info = await post_info(archive, channel.id, message_id)
    assert info is not None
    title = f"{channel.name} #{message_id}"
    html = site.render(
        "post.html",
        **context(
            request,
            site,
            title=title,
            h=h,
            channel=channel,
            channel_ref=channel.username or str(channel.id),
            info=info,
            versions=versions(h),
            alerts=await alert_groups(archive, info.post_id),
        ),
    )
    return Response.html(html)
