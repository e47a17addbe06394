"""The rules of the record: what an observation of a post means. Pure: no I/O.

- :mod:`archiver.record.content`: what counts as the content of a post (the signature whose
  change makes a new version).
- :mod:`archiver.record.events`: given what the archive holds for a post and what a source just
  observed, the events to record (new version, became current again, counters only, missing,
  deleted, restored).
- :mod:`archiver.record.reread`: how much of a channel's older history a pass re-reads.

docs/record.md states the same rules for readers; tests/record/ holds them as tables.
"""
