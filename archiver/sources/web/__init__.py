"""The no-login source: public channels read through their web preview ``t.me/s/<username>``.

- :mod:`archiver.sources.web.page`: the HTML of a preview page -> domain objects;
- :mod:`archiver.sources.web.sync`: fetching politely and syncing channels into the archive.

docs/web-source.md describes the whole source.
"""

from archiver.sources.web.sync import (
    TmeClient,
    WebSyncResult,
    sync_web_channel,
    sync_web_channels,
)

__all__ = ["TmeClient", "WebSyncResult", "sync_web_channel", "sync_web_channels"]
