"""The no-login source: public channels read through their web preview ``t.me/s/<username>``.

- :mod:`archiver.sources.web.page`: the HTML of a listing page or a post's embed page ->
  domain objects (pure);
- :mod:`archiver.sources.web.client`: fetching politely and within bounds (pacer, budget);
- :mod:`archiver.sources.web.pager`: one channel's share of a pass (pages, re-reads,
  confirmations, rotation);
- :mod:`archiver.sources.web.sync`: the pass over every web channel.

docs/web-source.md describes the whole source.
"""

from archiver.sources.web.client import TmeClient
from archiver.sources.web.sync import (
    WebPass,
    WebSyncResult,
    last_pass,
    sync_web_channel,
    sync_web_channels,
)

__all__ = [
    "TmeClient",
    "WebPass",
    "WebSyncResult",
    "last_pass",
    "sync_web_channel",
    "sync_web_channels",
]
