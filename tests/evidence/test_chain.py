"""The log's hash chain (archiver/evidence/chain.py): formulas as in docs/evidence.md, and
verify_links naming the first broken link for each kind of tampering."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archiver.evidence.chain import (
    GENESIS,
    Broken,
    Link,
    canonical,
    canonical_reference,
    entry_hash,
    post_key,
    sha256_hex,
    verify_links,
)


def build(contents: list[str], captures: list[str | None] | None = None) -> list[Link]:
    links: list[Link] = []
    prev = GENESIS
    for i, text in enumerate(contents):
        seq = i + 1
        content_sha = sha256_hex(text.encode())
        capture = captures[i] if captures else None
        h = entry_hash(seq, "-100/7", content_sha, capture, prev)
        links.append(Link(seq, "-100/7", content_sha, capture, prev, h))
        prev = h
    return links


def test_canonical_is_sorted_compact_utf8() -> None:
    assert canonical({"b": 1, "a": "Київ", "c": [1, None]}) == (
        '{"a":"Київ","b":1,"c":[1,null]}'.encode()
    )


def test_entry_hash_formula() -> None:
    content_sha = "a" * 64
    expected = hashlib.sha256(
        f"telewatch-log-v1\n7\n1500000001/42\n{content_sha}\n\n{GENESIS}".encode()
    ).hexdigest()
    assert post_key(1500000001, 42) == "1500000001/42"
    assert entry_hash(7, "1500000001/42", content_sha, None, GENESIS) == expected
    with_capture = hashlib.sha256(
        f"telewatch-log-v1\n7\n1500000001/42\n{content_sha}\n{'b' * 64}\n{GENESIS}".encode()
    ).hexdigest()
    assert entry_hash(7, "1500000001/42", content_sha, "b" * 64, GENESIS) == with_capture
    assert GENESIS == "0" * 64


def test_an_intact_chain_verifies() -> None:
    assert verify_links(build(["one", "two", "three"], [None, "c" * 64, None])) is None
    assert verify_links([]) is None


def test_a_slice_verifies_from_the_entry_before_it() -> None:
    links = build(["one", "two", "three", "four"])
    assert verify_links(links[2:], start_prev=links[1].entry_hash) is None
    assert verify_links(links[2:]) == Broken(
        3, "prev_hash does not match the previous entry's entry_hash"
    )


def _changed_content(links: list[Link]) -> list[Link]:
    links[1] = replace(links[1], content_sha=sha256_hex(b"other"))
    return links


def _changed_capture(links: list[Link]) -> list[Link]:
    links[2] = replace(links[2], capture_sha="d" * 64)
    return links


def _swapped(links: list[Link]) -> list[Link]:
    links[1], links[2] = links[2], links[1]
    return links


def _dropped(links: list[Link]) -> list[Link]:
    del links[1]
    return links


def _rehashed_one(links: list[Link]) -> list[Link]:
    # The tamperer recomputes entry 2's hash after changing it: entry 3 still points at the old.
    content_sha = sha256_hex(b"other")
    h = entry_hash(2, links[1].post_key, content_sha, None, links[0].entry_hash)
    links[1] = replace(links[1], content_sha=content_sha, entry_hash=h)
    return links


def _other_post(links: list[Link]) -> list[Link]:
    # A link said to be about another post than the one it was hashed for.
    links[3] = replace(links[3], post_key="-100/8")
    return links


@pytest.mark.parametrize(
    ("tamper", "broken"),
    [
        (_other_post, Broken(4, "entry_hash does not match its recomputed hash")),
        (_changed_content, Broken(2, "entry_hash does not match its recomputed hash")),
        (_changed_capture, Broken(3, "entry_hash does not match its recomputed hash")),
        (_swapped, Broken(3, "expected seq 2 after 1")),
        (_dropped, Broken(3, "expected seq 2 after 1")),
        (_rehashed_one, Broken(3, "prev_hash does not match the previous entry's entry_hash")),
    ],
)
def test_the_first_broken_link_is_named(tamper, broken: Broken) -> None:  # type: ignore[no-untyped-def]
    links = tamper(build(["one", "two", "three", "four"], [None, None, "c" * 64, None]))
    assert verify_links(links) == broken
    assert str(broken).startswith(f"entry {broken.seq}: ")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.text(st.characters(blacklist_categories=("Cs",))),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(st.characters(blacklist_categories=("Cs",)), max_size=8), inner,
                      max_size=4),
    max_leaves=12,
)  # fmt: skip


@given(JSON_VALUES)
def test_canonical_is_the_json_dumps_definition(value: object) -> None:
    assert canonical(value) == canonical_reference(value)
