"""Quiet hours per chat (``/quiet 23:00-07:00``): alerts created during them are held
(left pending, never claimed) until they end, then sent as one summary (bot/delivery.py).
Times of day are in the display time zone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, tzinfo

from archiver.errors import TelewatchError
from archiver.store.archive import Archive

_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–—]\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True, slots=True)
class QuietHours:
    starts: time
    ends: time

    def contains(self, t: time) -> bool:
        """Whether the time of day ``t`` is quiet (``ends`` excluded; spans midnight when
        ``ends`` is before ``starts``)."""
        if self.starts <= self.ends:
            return self.starts <= t < self.ends
        return t >= self.starts or t < self.ends

    def quiet_at(self, when: datetime, tz: tzinfo) -> bool:
        return self.contains(when.astimezone(tz).time().replace(second=0, microsecond=0))

    def __str__(self) -> str:
        return f"{self.starts:%H:%M}-{self.ends:%H:%M}"


def parse_time(text: str) -> time:
    """``HH:MM`` (24-hour) as a time; TelewatchError naming the text otherwise."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", text)
    if m is None or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise TelewatchError(f"{text.strip()!r}: expected a time of day as HH:MM, e.g. 07:30")
    return time(int(m.group(1)), int(m.group(2)))


def parse_span(text: str) -> QuietHours:
    """``23:00-07:00`` as quiet hours; TelewatchError naming the text otherwise."""
    m = _SPAN.match(text)
    if m is None:
        raise TelewatchError(
            f"{text.strip()!r}: expected quiet hours as HH:MM-HH:MM, e.g. 23:00-07:00"
        )
    try:
        starts = parse_time(f"{m.group(1)}:{m.group(2)}")
        ends = parse_time(f"{m.group(3)}:{m.group(4)}")
    except TelewatchError:
        raise TelewatchError(
            f"{text.strip()!r}: not a time of day (HH:MM, 00:00 to 23:59), e.g. 23:00-07:00"
        ) from None
    if starts == ends:
        raise TelewatchError(f"{text.strip()!r}: the quiet hours start and end at the same time")
    return QuietHours(starts, ends)


async def set_quiet(archive: Archive, chat_id: int, hours: QuietHours) -> None:
    await archive.write(
        "INSERT INTO quiet_hours (chat_id, starts, ends) VALUES (?, ?, ?)"
        " ON CONFLICT (chat_id) DO UPDATE SET starts = excluded.starts, ends = excluded.ends",
        (chat_id, f"{hours.starts:%H:%M}", f"{hours.ends:%H:%M}"),
    )


async def clear_quiet(archive: Archive, chat_id: int) -> bool:
    rows = await archive.write(
        "DELETE FROM quiet_hours WHERE chat_id = ? RETURNING chat_id", (chat_id,)
    )
    return bool(rows)


async def quiet_hours(archive: Archive) -> dict[int, QuietHours]:
    """Every chat's quiet hours."""
    rows = await archive.fetchall("SELECT chat_id, starts, ends FROM quiet_hours")
    return {r[0]: QuietHours(parse_time(r[1]), parse_time(r[2])) for r in rows}
