"""The rules of the record, one row per case and source (docs/record.md says the same)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from archiver.models import Entity, Media, Post
from archiver.record import events as ev
from archiver.record.content import Signature, signature
from archiver.record.events import Held, Known, Seen

T = datetime(2024, 5, 1, 12, tzinfo=UTC)


def sig(text: str, **kw: object) -> Signature:
    return signature(Post(channel_id=-1001, message_id=1, date=T, text=text, **kw))  # type: ignore[arg-type]


A = sig("Эвакуация объявлена")
B = sig("Эвакуация отменена")
C = sig("Эвакуация перенесена")
LINK_1 = sig("подробнее тут", entities=(Entity("text_link", 10, 3, "https://a.example"),))
LINK_2 = sig("подробнее тут", entities=(Entity("text_link", 10, 3, "https://b.example"),))
BOLD = sig("подробнее тут", entities=(Entity("bold", 0, 9),))
PLAIN = sig("подробнее тут")
PHOTO_1 = sig("фото", media=(Media("photo", file_unique_id="photo:1"),))
PHOTO_2 = sig("фото", media=(Media("photo", file_unique_id="photo:2"),))
PHOTO_UNKNOWN = sig("фото", media=(Media("photo"),))  # an export or the web: no stable id
HTML_1 = sig("текст", html="<b>текст</b>")
HTML_2 = sig("текст", html="<i>текст</i>")
URL_AUTO = sig("см. https://x.example", entities=(Entity("url", 4, 17),))
URL_NONE = sig("см. https://x.example")


def held(*versions: tuple[int, Signature, str | None], current: int, state: str = "present"):
    return Held(tuple(Known(i, s, d) for i, s, d in versions), current, state)


ONE = held((1, A, None), current=1)
ONE_DATED = held((1, A, "2024-05-01 12:00:00"), current=1)
TWO = held((1, A, None), (2, B, None), current=2)  # A then B, undated (web)
TWO_DATED = held((1, A, None), (2, B, "2024-05-01 13:00:00"), current=2)

# (case, held, seen, expected events as (kind, version, prev))
CASES = [
    ("a post never seen is new", None, Seen(A, "telethon"), [("new", None, None)]),
    ("the same text again: counters only", ONE, Seen(A, "web"), []),
    ("a changed text is a new version", ONE, Seen(B, "telethon", "2024-05-01 13:00:00"),
     [("edited", None, 1)]),
    ("web: a changed text (undated) is a new version", ONE, Seen(B, "web"), [("edited", None, 1)]),
    ("link target only", held((1, LINK_1, None), current=1), Seen(LINK_2, "telethon", "x"),
     [("edited", None, 1)]),
    ("formatting only", held((1, PLAIN, None), current=1), Seen(BOLD, "telethon", "x"),
     [("edited", None, 1)]),
    ("media only", held((1, PHOTO_1, None), current=1), Seen(PHOTO_2, "telethon", "x"),
     [("edited", None, 1)]),
    ("web HTML only", held((1, HTML_1, None), current=1), Seen(HTML_2, "web"),
     [("edited", None, 1)]),
    ("media unknown to one source is not a change", held((1, PHOTO_UNKNOWN, None), current=1),
     Seen(PHOTO_1, "telethon", "x"), [("filled", 1, None)]),
    ("an auto-detected link entity is not content", held((1, URL_NONE, None), current=1),
     Seen(URL_AUTO, "telethon"), []),
    ("a text written before schema 4 knows only its text",
     held((1, Signature(A.text, None, None, None, None), None), current=1), Seen(A, "telethon"),
     [("filled", 1, None)]),
    ("web: A -> B -> A is a revert", TWO, Seen(A, "web"), [("reverted", 1, 2)]),
    ("telethon: a revert with a newer edit date", TWO_DATED,
     Seen(A, "telethon", "2024-05-01 14:00:00"), [("reverted", 1, 2)]),
    ("an old export of the first text is not a revert", TWO_DATED,
     Seen(A, "export", "2024-05-01 12:30:00"), []),
    ("an undated text from a dated source is older: history only", ONE_DATED,
     Seen(B, "export"), [("late", None, 1)]),
    ("an older dated text arriving late: history only",
     held((1, A, "2024-05-01 15:00:00"), current=1), Seen(C, "export", "2024-05-01 13:00:00"),
     [("late", None, 1)]),
    ("read again by the web while missing: present again", held((1, A, None), current=1,
     state="missing"), Seen(A, "web"), [("present", 1, None)]),
    ("read again by Telethon after a confirmed deletion: restored",
     held((1, A, None), current=1, state="deleted"), Seen(A, "telethon"), [("restored", 1, None)]),
    ("restored and edited in one reading", held((1, A, None), current=1, state="deleted"),
     Seen(B, "web"), [("restored", 1, None), ("edited", None, 1)]),
    ("an export is a copy from the past: it restores nothing",
     held((1, A, None), current=1, state="deleted"), Seen(A, "export"), []),
]  # fmt: skip


@pytest.mark.parametrize(("case", "held_", "seen", "expected"), CASES, ids=[c[0] for c in CASES])
def test_observe(
    case: str, held_: Held | None, seen: Seen, expected: list[tuple[str, int | None, int | None]]
) -> None:
    got = [(e.kind, e.version, e.prev) for e in ev.observe(held_, seen)]
    assert got == expected, case


# (state, claim, event kind or None, state after)
ABSENCE = [
    ("present", "missing", "missing", "missing"),
    ("restored", "missing", "missing", "missing"),
    ("missing", "missing", None, "missing"),
    ("deleted", "missing", None, "deleted"),  # a listing says nothing new about a deleted post
    ("present", "deleted", "deleted", "deleted"),
    ("missing", "deleted", "deleted", "deleted"),
    ("restored", "deleted", "deleted", "deleted"),  # deleted again after a restore
    ("deleted", "deleted", None, "deleted"),
    ("missing", "present", "present", "present"),
    ("deleted", "present", "restored", "restored"),
    ("present", "present", None, "present"),
]


@pytest.mark.parametrize(("state", "claim", "kind", "after"), ABSENCE)
def test_absent(state: str, claim: str, kind: str | None, after: str) -> None:
    event = ev.absent(state, claim)
    assert (event.kind if event else None) == kind
    assert (ev.state_after(state, event) if event else state) == after


def test_parts_changed_are_named() -> None:
    assert B.changed_parts(A) == ("text",)
    assert LINK_2.changed_parts(LINK_1) == ("links",)
    assert PHOTO_2.changed_parts(PHOTO_1) == ("media",)
    assert PHOTO_UNKNOWN.changed_parts(PHOTO_1) == ()


def test_signature_round_trips_through_the_archive_form() -> None:
    for s in (A, LINK_1, BOLD, PHOTO_1, PHOTO_UNKNOWN, HTML_1):
        assert Signature.load(s.text, s.dump()) == s
    assert Signature.load(A.text, None) == Signature(A.text, None, None, None, None)
    assert A.content_sha != LINK_1.content_sha and len(A.content_sha) == 64
