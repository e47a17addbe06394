"""The search form: its fields, read from a request's query string, as one query of the
query language (the same parser and word forms as ``telewatch search``), and back as links."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from archiver.errors import QueryError, TelewatchError
from archiver.query import Node, Or, Query, and_filters, make_filter, parse
from archiver.store.search import SORTS

PAGE_SIZE = 20
MAX_PAGE = 10_000


class FieldError(TelewatchError):
    """A form field's value is not valid: the message names the field, not a query text."""


def _field(name: str, value: str, tz: str) -> Node:
    try:
        return make_filter(name, value, f"{name}:{value}", tz)
    except QueryError as exc:
        reason = exc.reason.removeprefix(f"{name}: ")
        raise FieldError(f"the {name} field: {reason}") from None


@dataclass(frozen=True, slots=True)
class SearchForm:
    q: str = ""
    channels: tuple[str, ...] = ()
    since: str = ""
    until: str = ""
    edited: bool = False
    deleted: bool = False
    media: bool = False
    sort: str = "newest"
    page: int = 1

    @classmethod
    def from_args(cls, args: Any) -> SearchForm:
        """From Datasette's ``request.args`` (a multi-dict): unknown values fall back to the
        defaults rather than fail (a link typed by hand)."""
        sort = args.get("sort") or "newest"
        try:
            page = int(args.get("page") or 1)
        except ValueError:
            page = 1
        channels = tuple(c.strip() for c in args.getlist("channel") if c.strip())
        return cls(
            q=(args.get("q") or "").strip(),
            channels=tuple(dict.fromkeys(channels)),
            since=(args.get("since") or "").strip(),
            until=(args.get("until") or "").strip(),
            edited=bool(args.get("edited")),
            deleted=bool(args.get("deleted")),
            media=bool(args.get("media")),
            sort=sort if sort in SORTS else "newest",
            page=min(max(page, 1), MAX_PAGE),
        )

    @property
    def empty(self) -> bool:
        """Nothing asked: the page shows the form alone."""
        return not (self.q or self.channels or self.since or self.until) and not (
            self.edited or self.deleted or self.media
        )

    def query(self, tz: str = "UTC") -> Query:
        """The text parsed, the fields ANDed on as filters (:class:`FieldError` names the
        field). ``tz`` is the display time zone: the days of ``since``/``until`` (fields or
        in the text) are its days, as the dates on the page are."""
        extra: list[Node] = []
        if self.channels:
            nodes: list[Node] = [_field("channel", c, tz) for c in self.channels]
            extra.append(nodes[0] if len(nodes) == 1 else Or(tuple(nodes)))
        for name, value in (("since", self.since), ("until", self.until)):
            if value:
                extra.append(_field(name, value, tz))
        if self.edited:
            extra.append(make_filter("is", "edited", "is:edited"))
        if self.deleted:
            extra.append(make_filter("is", "deleted", "is:deleted"))
        if self.media:
            extra.append(make_filter("has", "media", "has:media"))
        return and_filters(parse(self.q, tz), extra)

    def params(self, **changes: Any) -> str:
        """The form as a query string (for paging, sorting and export links)."""
        form = replace(self, **changes)
        pairs: list[tuple[str, str]] = []
        if form.q:
            pairs.append(("q", form.q))
        pairs += [("channel", c) for c in form.channels]
        for key in ("since", "until"):
            if getattr(form, key):
                pairs.append((key, getattr(form, key)))
        for key in ("edited", "deleted", "media"):
            if getattr(form, key):
                pairs.append((key, "1"))
        if form.sort != "newest":
            pairs.append(("sort", form.sort))
        if form.page != 1:
            pairs.append(("page", str(form.page)))
        return urlencode(pairs)
