"""telewatch's web view: a Datasette plugin, a client of ``archiver`` like the bot.

Entry point ``datasette``: ``telewatch = "web.plugin"``. Started by ``telewatch serve``
(:mod:`web.server`) or by ``datasette data/telewatch.db`` with telewatch installed.
Nothing happens at import time.
"""
