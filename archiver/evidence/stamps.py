"""Checking an RFC 3161 timestamp token over a daily root, offline (``rfc3161-client``).

A token is the time-stamping authority's signed statement "this hash existed at this time".
:func:`check_token` says whether a token (the DER ``TimeStampResp`` stored with the root)
covers a root hash, when, and who signed it. The signature is checked against the
certificates the token carries; only with ``trusted`` (the authority's root certificates,
PEM) is the signer itself checked against a certificate the reader trusts, as the token's
own certificates could have been made by anyone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

IMPRINT = "sha256"  # the hash of the root the token's message imprint holds


class TokenProblem(ValueError):
    """Why a token does not vouch for a root, in words."""


@dataclass(frozen=True, slots=True)
class Stamp:
    time: datetime  # the authority's genTime (UTC)
    signer: str  # the signing certificate's subject
    trusted: bool  # checked against a certificate given by the reader


def root_message(root_hash: str) -> bytes:
    """The bytes timestamped for a root: the root hash as its 64 hex characters (ASCII)."""
    return root_hash.encode("ascii")


def check_token(token: bytes, root_hash: str, *, trusted: Sequence[bytes] = ()) -> Stamp:
    """The stamp ``token`` gives ``root_hash``; raises :class:`TokenProblem`."""
    from cryptography import x509
    from rfc3161_client import VerificationError, VerifierBuilder, decode_timestamp_response

    try:
        resp = decode_timestamp_response(token)
        info = resp.tst_info
        imprint = info.message_imprint.message
        gen_time = info.gen_time
    except (ValueError, TypeError) as exc:
        raise TokenProblem(f"not an RFC 3161 timestamp response ({exc})") from None
    message = root_message(root_hash)
    wanted = {
        hashlib.sha256(message).digest(),
        hashlib.sha384(message).digest(),
        hashlib.sha512(message).digest(),
    }
    if imprint not in wanted:
        raise TokenProblem("its message imprint is not the hash of this root")
    try:
        certs = [x509.load_der_x509_certificate(c) for c in resp.signed_data.certificates]
    except ValueError as exc:
        raise TokenProblem(f"a certificate in it cannot be read ({exc})") from None
    signer = ""
    infos = list(resp.signed_data.signer_infos)
    if len(infos) == 1:
        for c in certs:
            if c.issuer == infos[0].issuer and c.serial_number == infos[0].serial_number:
                signer = c.subject.rfc4514_string()
    roots: list[x509.Certificate] = []
    for pem in trusted:
        try:
            roots.extend(x509.load_pem_x509_certificates(pem))
        except ValueError as exc:
            raise TokenProblem(f"the trusted certificate cannot be read ({exc})") from None
    builder = VerifierBuilder()
    for c in roots or certs:
        builder = builder.add_root_certificate(c)
    if not roots and not certs:
        raise TokenProblem("it carries no certificate to check its signature with")
    try:
        builder.build().verify(resp, imprint)
    except VerificationError as exc:
        raise TokenProblem(f"its signature does not hold ({exc})") from None
    when = gen_time if gen_time.tzinfo else gen_time.replace(tzinfo=UTC)
    return Stamp(when.astimezone(UTC), signer or "an unnamed signer", bool(roots))
