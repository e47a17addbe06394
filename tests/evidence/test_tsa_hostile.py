"""The RFC 3161 client against authorities that misbehave (tests/fakes/tsa.py is the honest
one): an answer that trickles in, an answer far larger than any token, garbage; and the
documented ``openssl ts -verify`` check of a stored token (docs/evidence.md)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from fakes.tsa import serve_tsa

from archiver.evidence.tsa import TsaClient, TsaError

ROOT = "5e" * 32


@contextmanager
def serve_raw(head: bytes, body: Iterator[bytes], pause: float) -> Iterator[str]:
    """A loopback HTTP server that reads one request and answers ``head`` then each chunk of
    ``body`` with ``pause`` seconds between them, until the client goes away or the block
    ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def run() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                try:
                    conn.sendall(head)
                    for chunk in body:
                        if stop.wait(pause):
                            return
                        conn.sendall(chunk)
                except OSError:  # the client hung up: what a bounded client does
                    continue

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/tsa"
    finally:
        stop.set()
        thread.join()
        listener.close()


def forever(chunk: bytes) -> Iterator[bytes]:
    while True:
        yield chunk


async def stamp(client: TsaClient) -> bytes:
    # a guard so the old, unbounded client fails this test instead of hanging the suite
    return await asyncio.wait_for(client.stamp(ROOT), 30)


async def test_an_answer_that_trickles_in_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """One byte every 0.1 s never trips httpx's per-read timeout: the client's own deadline
    must (a sync pass waits for the roots: close_days runs at the end of sync_all)."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/timestamp-reply\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    with serve_raw(head, forever(b"\x30"), 0.1) as url, pytest.raises(TsaError, match="no answer"):
        await stamp(TsaClient(url, timeout=1.0))


async def test_an_answer_larger_than_any_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token is a few kilobytes; an authority (or whatever answers at its URL) sending
    megabytes is cut off, not read into memory to the end."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/timestamp-reply\r\n\r\n"
    with (
        serve_raw(head, forever(b"\x00" * 65536), 0.0) as url,
        pytest.raises(TsaError, match="larger than"),
    ):
        await stamp(TsaClient(url, timeout=20.0))


async def test_a_declared_huge_answer_is_refused_before_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/timestamp-reply\r\n"
        b"Content-Length: 4000000000\r\n\r\n"
    )
    with (
        serve_raw(head, forever(b"\x00" * 65536), 0.0) as url,
        pytest.raises(TsaError, match="larger than"),
    ):
        await stamp(TsaClient(url, timeout=20.0))


async def test_garbage_is_a_tsa_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
    with (
        serve_raw(head, iter([b"garbage!!"]), 0.0) as url,
        pytest.raises(TsaError, match="not a TimeStampResp"),
    ):
        await stamp(TsaClient(url, timeout=5.0))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_openssl_ts_verify_accepts_a_stored_token_for_the_documented_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/evidence.md: `printf %s "$ROOT_HASH" > root.txt; openssl ts -verify -data root.txt
    -in token.tsr -CAfile tsa-ca.pem`. OK for the root, FAILED for any other data."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with serve_tsa() as (url, authority):
        token = await TsaClient(url).stamp(ROOT)
        (tmp_path / "tsa-ca.pem").write_bytes(authority.ca.public_bytes(Encoding.PEM))
    (tmp_path / "token.tsr").write_bytes(token)
    (tmp_path / "root.txt").write_text(ROOT)
    (tmp_path / "other.txt").write_text(ROOT[:-1] + "0")

    def openssl(data: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "ts", "-verify", "-data", data, "-in", "token.tsr",
             "-CAfile", "tsa-ca.pem"],
            cwd=tmp_path, capture_output=True, text=True, check=False,
        )  # fmt: skip

    good = openssl("root.txt")
    assert good.returncode == 0, good.stderr
    assert "Verification: OK" in good.stdout
    bad = openssl("other.txt")
    assert bad.returncode != 0
    assert "imprint mismatch" in bad.stderr


async def test_an_answer_to_another_request_is_refused() -> None:
    """The nonce (rfc3161-client puts a random one in each request) must come back: a token
    replayed from another request, or made for one, is not this root's fresh timestamp."""
    import httpx
    from fakes.tsa import TestAuthority
    from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

    authority = TestAuthority()

    def answer(request: httpx.Request) -> httpx.Response:
        other = (
            TimestampRequestBuilder()
            .data(ROOT.encode())
            .hash_algorithm(HashAlgorithm.SHA256)
            .cert_request(cert_request=True)
            .build()
        )  # fmt: skip  (same imprint, its own nonce)
        return httpx.Response(200, content=authority.respond(other.as_bytes()))

    client = TsaClient("http://tsa.test/", transport=httpx.MockTransport(answer))
    with pytest.raises(TsaError, match="nonce"):
        await client.stamp(ROOT)


async def test_log_verify_finds_a_changed_byte_in_a_stored_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token's time (genTime) changed by one digit, imprint and status untouched: only its
    signature gives it away, and `telewatch log verify` must check it (as evidence verify
    does, against the certificate the token carries)."""
    import sqlite3

    from conftest import new_post

    from archiver.evidence.log import make_root, verify
    from archiver.store.archive import Archive
    from archiver.store.ingest import ingest

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    path = tmp_path / "a.db"
    async with await Archive.open(path) as a:
        await a.write(
            "INSERT INTO channels (id, username, source, created_at) VALUES (?, 'vsaldo', 'web',"
            " '2024-05-01 00:00:00')",
            (new_post(1, "x").channel_id,),
        )
        await ingest(a, [new_post(1, "one")], source="web", alerts=False)
        day = (await a.fetchone("SELECT substr(at, 1, 10) FROM observations"))[0]
        from datetime import date

        with serve_tsa() as (url, _):
            root = await make_root(a, date.fromisoformat(day), tsa=TsaClient(url))
        assert root is not None and root.tsa_token is not None
        assert await verify(a) is None
    token = bytearray(root.tsa_token)
    at = token.index(b"\x18\x0f") + 2  # the GeneralizedTime 'YYYYMMDDHHMMSSZ'
    token[at + 3] = ord("0") if token[at + 3] != ord("0") else ord("1")  # another decade
    con = sqlite3.connect(path)
    con.execute("UPDATE log_roots SET tsa_token = ?", (bytes(token),))
    con.commit()
    con.close()
    async with await Archive.open(path) as a:
        broken = await verify(a)
    assert broken is not None and "timestamp" in str(broken) and "(changed)" in str(broken)
