"""Channel pages: the list of archived channels with their counts and last checks, and one
channel's status, coverage (``archiver.store.coverage.channel_coverage``: id ranges, ids
never seen, windows nobody watched and why), its last failed checks, and its activity per
day over the last :data:`CHART_DAYS` days of its archive."""

from __future__ import annotations

from datetime import timedelta

from datasette.utils.asgi import Request, Response

from archiver.store.activity import daily_activity, last_post_date
from archiver.store.archive import Archive, utcnow
from archiver.store.channels import require_channel
from archiver.store.coverage import channel_coverage, recent_faults
from archiver.store.search import channel_stats
from web.chart import activity_svg
from web.pages import context, page
from web.site import Site

CHART_DAYS = 90


@page
async def channels_page(request: Request, site: Site, archive: Archive) -> Response:
    stats = await channel_stats(archive)
    html = site.render("channels.html", **context(request, site, title="Channels", stats=stats))
    return Response.html(html)


@page
async def channel_page(request: Request, site: Site, archive: Archive) -> Response:
    channel = await require_channel(archive, request.url_vars["channel"])
    stats = next(s for s in await channel_stats(archive) if s.channel_id == channel.id)
    cov = await channel_coverage(archive, channel.id)
    last = await last_post_date(archive, channel.id)
    end = (last or utcnow()).astimezone(site.tz).date()
    days = await daily_activity(
        archive, channel.id, end - timedelta(days=CHART_DAYS - 1), end, site.tz
    )
    html = site.render(
        "channel.html",
        **context(
            request,
            site,
            title=channel.name,
            channel=channel,
            ref=channel.username or str(channel.id),
            stats=stats,
            cov=cov,
            faults=await recent_faults(archive, channel.id),
            chart=activity_svg(days, f"{channel.name}: posts, edits and deletions per day"),
            chart_days=CHART_DAYS,
            chart_end=end,
        ),
    )
    return Response.html(html)
