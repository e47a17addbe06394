"""The same log line at most once a minute, with a count: a fault that repeats cannot fill a
disk (one run wrote 12.9 GB of one Telethon warning)."""

from __future__ import annotations

import logging

from archiver.logs import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, *args: object, name: str = "telethon.network") -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)


def test_a_repeated_line_is_written_once_a_minute_with_the_count() -> None:
    clock = Clock()
    f = RepeatFilter(clock=clock)
    passed = []
    for _ in range(400):
        clock.now += 0.25  # 100 s of a line four times a second (exact in binary)
        r = record("Server closed the connection: %s", "[Errno 104] Connection reset by peer")
        if f.filter(r):
            passed.append(r.getMessage())
    assert len(passed) == 2
    assert passed[0] == "Server closed the connection: [Errno 104] Connection reset by peer"
    assert passed[1] == (
        "Server closed the connection: [Errno 104] Connection reset by peer"
        " [and 239 more like this in the last 60 s]"
    )


def test_different_lines_and_loggers_are_not_held_back() -> None:
    f = RepeatFilter(clock=Clock())
    lines = [record("sync %s: ok", c) for c in ("a", "b", "c")] + [record("x", name="other")]
    assert all(f.filter(r) for r in lines)


def test_memory_is_bounded_by_keep() -> None:
    f = RepeatFilter(keep=10, clock=Clock())
    for i in range(1000):
        f.filter(record("line %d", i))
    assert len(f._seen) == 10


def test_setup_logging_installs_it() -> None:
    from archiver.logs import setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO")
        assert any(isinstance(f, RepeatFilter) for f in root.handlers[0].filters)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
