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
from typing import Any

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
    leaf = next(
        (c for c in certs if infos and c.issuer == infos[0].issuer
         and c.serial_number == infos[0].serial_number),
        None,
    )  # fmt: skip
    if leaf is None:
        raise TokenProblem("it carries no certificate of its signer to check its signature with")
    _check_signature(token, leaf)
    if roots:
        builder = VerifierBuilder()
        for c in roots:
            builder = builder.add_root_certificate(c)
        try:
            builder.build().verify(resp, imprint)
        except VerificationError as exc:
            raise TokenProblem(
                f"its signer is not certified by the --tsa-cert given ({_first(exc)})"
            ) from None
    when = gen_time if gen_time.tzinfo else gen_time.replace(tzinfo=UTC)
    return Stamp(when.astimezone(UTC), signer or "an unnamed signer", bool(roots))


def _first(exc: Exception) -> str:
    return str(exc).split(":", 1)[0]


# ---------------------------------------------------------------------------- the CMS signature
# rfc3161-client checks a signature only together with a chain to a trusted root. Without one,
# the signature is still checked against the signer's own certificate (RFC 5652 section 5.4:
# the signed attributes, as a DER SET OF, are what is signed; their message-digest attribute
# is the hash of the TSTInfo), so that any changed byte of the token is found.

_HASHES = {
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
_MESSAGE_DIGEST = bytes.fromhex("2a864886f70d010904")  # 1.2.840.113549.1.9.4, encoded


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise TokenProblem("it is cut short")
    tag, n = data[pos], data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or pos + k > len(data):
            raise TokenProblem("it is not DER")
        n = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    if pos + n > len(data):
        raise TokenProblem("it is cut short")
    return tag, pos, pos + n


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, element start, content start, content end) of each element in a constructed one."""
    out = []
    pos = start
    while pos < end:
        tag, s, e = _tlv(data, pos)
        out.append((tag, pos, s, e))
        pos = e
    return out


def _oid_name(data: bytes, start: int, end: int) -> str:
    """The dotted OID of an AlgorithmIdentifier's first element."""
    _tag, s, e = _tlv(data, start)
    body = data[s:e]
    nums = [body[0] // 40, body[0] % 40]
    value = 0
    for b in body[1:]:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            nums.append(value)
            value = 0
    return ".".join(map(str, nums))


def _check_signature(token: bytes, leaf: Any) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    try:
        _, s, e = _tlv(token, 0)  # TimeStampResp
        resp = _children(token, s, e)
        _, _, s, e = resp[1]  # timeStampToken: ContentInfo
        _, _, s, e = _children(token, s, e)[1]  # [0] EXPLICIT
        _, s, e = _tlv(token, s)  # SignedData
        parts = _children(token, s, e)
        _, _, s, e = parts[2]  # encapContentInfo
        _, _, s, e = _children(token, s, e)[1]  # [0] EXPLICIT eContent
        _, cs, ce = _tlv(token, s)
        content = token[cs:ce]
        signer_set = parts[-1]
        _, _, s, e = _children(token, signer_set[2], signer_set[3])[0]
        fields = _children(token, s, e)
        digest_alg = _HASHES.get(_oid_name(token, fields[2][2], fields[2][3]))
        attrs = next(f for f in fields if f[0] == 0xA0)
        signature = next(f for f in fields[4:] if f[0] == 0x04)
    except (IndexError, StopIteration, ValueError):
        raise TokenProblem("its CMS signature cannot be read") from None
    if digest_alg is None:
        raise TokenProblem("it is signed with a hash this telewatch does not know")
    algo = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[
        digest_alg
    ]
    digest = hashlib.new(digest_alg, content).digest()
    found = False
    for _tag, _p, s, e in _children(token, attrs[2], attrs[3]):
        kids = _children(token, s, e)
        if token[kids[0][2] : kids[0][3]] == _MESSAGE_DIGEST:
            _, vs, ve = _tlv(token, kids[1][2])
            found = token[vs:ve] == digest
    if not found:
        raise TokenProblem("its signed message digest is not the hash of its content (changed)")
    signed = b"\x31" + token[attrs[1] + 1 : attrs[3]]  # [0] IMPLICIT read as the SET OF it is
    sig = token[signature[2] : signature[3]]
    key = leaf.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sig, signed, ec.ECDSA(algo))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, signed, padding.PKCS1v15(), algo)
        else:
            raise TokenProblem("it is signed with a key type this telewatch does not check")
    except InvalidSignature:
        raise TokenProblem("its signature does not hold (the token was changed)") from None
