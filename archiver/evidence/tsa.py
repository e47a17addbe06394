"""RFC 3161 timestamps of the log's daily roots (``[evidence] tsa_url``; docs/evidence.md).

The request and the answer are built and read by ``rfc3161-client`` (Trail of Bits: the
protocol in Rust over ``cryptography``'s ASN.1, no network of its own); the HTTP is ours
(httpx, ``application/timestamp-query`` as RFC 3161 section 3.4 says). What is stamped is the
root's 64 hex characters, hashed with SHA-256 by the request (the message imprint). The whole
``TimeStampResp`` is kept (``log_roots.tsa_token``), so anyone can check it later with the
TSA's certificate (``openssl ts -verify``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

import httpx
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    decode_timestamp_response,
)

from archiver.errors import TelewatchError

log = logging.getLogger(__name__)

QUERY = "application/timestamp-query"
REPLY = "application/timestamp-reply"
# A TimeStampResp with the TSA's certificate chain is a few kilobytes; anything near this is
# not one, and is not read to its end (whatever answers at the URL could send gigabytes).
MAX_ANSWER = 1_000_000


class TsaError(TelewatchError):
    """The timestamp authority did not give a valid timestamp (the message says why)."""


def imprint(root_hash: str) -> bytes:
    """The message imprint a root's timestamp carries: SHA-256 of its hex characters."""
    return hashlib.sha256(root_hash.encode()).digest()


def check_token(token: bytes, root_hash: str) -> None:
    """That ``token`` is a granted TimeStampResp over ``root_hash`` (its signature is the
    TSA's to check, with its certificate). Raises :class:`TsaError`."""
    try:
        resp = decode_timestamp_response(token)
    except ValueError as exc:
        raise TsaError(f"not a TimeStampResp ({exc})") from None
    if resp.status not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        raise TsaError(f"not granted (status {resp.status})")
    if resp.tst_info.message_imprint.message != imprint(root_hash):
        raise TsaError("it stamps another hash than this root")


class TsaClient:
    """Asks one RFC 3161 authority for timestamps. ``transport`` replaces the network."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.failed = False  # set by the roots' pass after a failure: no more tries this pass
        self._timeout = timeout
        self._transport = transport

    async def stamp(self, root_hash: str) -> bytes:
        """The DER TimeStampResp over ``root_hash``. Raises :class:`TsaError`."""
        request = (
            TimestampRequestBuilder()
            .data(root_hash.encode())
            .hash_algorithm(HashAlgorithm.SHA256)
            .cert_request(cert_request=True)
            .build()
        )
        try:
            # one deadline for the whole exchange: httpx's timeout is per read, so an answer
            # that trickles in a byte at a time would hold the sync pass for ever
            async with asyncio.timeout(self._timeout):
                token = await self._post(request.as_bytes())
        except (httpx.HTTPError, TimeoutError) as exc:
            raise TsaError(f"{self.url}: no answer ({type(exc).__name__})") from None
        check_token_for(token, root_hash, request.nonce, self.url)
        return token

    async def _post(self, query: bytes) -> bytes:
        """The answer's body, at most :data:`MAX_ANSWER` bytes. Raises :class:`TsaError`."""
        async with (
            httpx.AsyncClient(timeout=self._timeout, transport=self._transport) as http,
            http.stream("POST", self.url, content=query, headers={"Content-Type": QUERY}) as answer,
        ):
            if answer.status_code != 200:
                raise TsaError(f"{self.url}: HTTP {answer.status_code}")
            declared = answer.headers.get("content-length", "")
            too_big = TsaError(f"{self.url}: an answer larger than {MAX_ANSWER} bytes")
            if declared.isdigit() and int(declared) > MAX_ANSWER:
                raise too_big
            body = bytearray()
            async for chunk in answer.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER:
                    raise too_big
            return bytes(body)


def check_token_for(token: bytes, root_hash: str, nonce: int | None, url: str) -> None:
    """A fresh answer: a granted response over this root, to this request (its nonce)."""
    try:
        check_token(token, root_hash)
        if nonce is not None and decode_timestamp_response(token).tst_info.nonce != nonce:
            raise TsaError("the answer is not to this request (nonce)")
    except TsaError as exc:
        raise TsaError(f"{url}: {exc}") from None
