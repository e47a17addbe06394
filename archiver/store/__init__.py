"""The SQLite archive: schema, writes and reads. See :class:`archiver.store.archive.Archive`."""

from archiver.store.archive import Archive, ArchiveError, Matcher, parse_ts, ts, utcnow

__all__ = ["Archive", "ArchiveError", "Matcher", "parse_ts", "ts", "utcnow"]
