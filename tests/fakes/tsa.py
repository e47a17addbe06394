"""A local RFC 3161 time-stamp authority on 127.0.0.1, signing with a test CA made at test time.

What it answers follows RFC 3161 and RFC 5652 (CMS):
- a ``POST`` of ``application/timestamp-query`` (RFC 3161 section 3.4) answered with
  ``application/timestamp-reply``: a ``TimeStampResp`` whose ``PKIStatusInfo`` is granted (0)
  and whose ``timeStampToken`` is a CMS ``SignedData`` (RFC 5652 section 5.1) carrying the
  DER ``TSTInfo`` (RFC 3161 section 2.4.2: version 1, policy, the request's message imprint,
  a serial number, genTime, the request's nonce) as eContent of type id-ct-TSTInfo;
- one ``SignerInfo`` (version 1, issuerAndSerialNumber) whose signed attributes are the
  content type, the message digest of the eContent (RFC 5652 section 5.3) and the ESS
  signing certificate (RFC 3161 section 2.4.1, RFC 5035 SigningCertificateV2), sorted as DER
  sorts a SET OF, signed with ECDSA P-256 / SHA-256; the TSA certificate is included
  (the request's certReq), with the critical extended key usage id-kp-timeStamping that
  RFC 3161 section 2.3 requires.
``fail`` makes it answer HTTP errors, for the "a TSA failure never stops archiving" tests.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from rfc3161_client import _rust

SHA256 = "2.16.840.1.101.3.4.2.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
SIGNED_DATA = "1.2.840.113549.1.7.2"
TST_INFO = "1.2.840.113549.1.9.16.1.4"
CONTENT_TYPE = "1.2.840.113549.1.9.3"
MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"  # RFC 5035 section 3 (ESS)
POLICY = "1.3.6.1.4.1.99999.1"  # a private arc: the test authority's policy


# --- DER (X.690), the few types a TimeStampResp needs -----------------------------------------


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def set_of(*parts: bytes) -> bytes:
    return tlv(0x31, b"".join(sorted(parts)))  # DER sorts the elements of a SET OF


def integer(value: int) -> bytes:
    return tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def oid(dotted: str) -> bytes:
    nums = [int(x) for x in dotted.split(".")]
    out = bytes([40 * nums[0] + nums[1]])
    for n in nums[2:]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        out += bytes(reversed(chunk))
    return tlv(0x06, out)


def octets(data: bytes) -> bytes:
    return tlv(0x04, data)


def explicit(n: int, content: bytes) -> bytes:
    return tlv(0xA0 + n, content)


def algorithm(dotted: str) -> bytes:
    return seq(oid(dotted))


# --- the authority ---------------------------------------------------------------------------


class TestAuthority:
    """A CA and a TSA certificate under it, made fresh (nothing is read from disk)."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "telewatch test CA")])
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "telewatch TSA")]))
            .issuer_name(ca_name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        self.serial = 0
        self.failures: list[int] = []  # HTTP statuses to answer next, one per request
        self.requests = 0

    def respond(self, query: bytes) -> bytes:
        req = _rust.parse_timestamp_request(query)
        self.serial += 1
        imprint = req.message_imprint
        cert_der = self.cert.public_bytes(Encoding.DER)
        tst_info = seq(
            integer(1),
            oid(POLICY),
            seq(algorithm(imprint.hash_algorithm.dotted_string), octets(imprint.message)),
            integer(self.serial),
            tlv(0x18, datetime.now(UTC).strftime("%Y%m%d%H%M%SZ").encode()),
            *([integer(req.nonce)] if req.nonce is not None else []),
        )
        attrs = [
            seq(oid(CONTENT_TYPE), set_of(oid(TST_INFO))),
            seq(oid(MESSAGE_DIGEST), set_of(octets(hashlib.sha256(tst_info).digest()))),
            # RFC 3161 section 2.4.1: the token MUST carry the ESS signing certificate
            # attribute naming the TSA's certificate (RFC 5035: SigningCertificateV2, one
            # ESSCertIDv2 whose hashAlgorithm is the DEFAULT SHA-256, so left out in DER).
            # `openssl ts -verify` refuses a token without it (ess_lib.c:
            # OSSL_ESS_check_signing_certs, "missing signing certificate attribute").
            seq(
                oid(SIGNING_CERTIFICATE_V2),
                set_of(seq(seq(seq(octets(hashlib.sha256(cert_der).digest()))))),
            ),
        ]
        signature = self.key.sign(set_of(*attrs), ec.ECDSA(hashes.SHA256()))
        signer = seq(
            integer(1),
            seq(self.cert.issuer.public_bytes(), integer(self.cert.serial_number)),
            algorithm(SHA256),
            tlv(0xA0, b"".join(sorted(attrs))),  # [0] IMPLICIT SET OF Attribute
            algorithm(ECDSA_SHA256),
            octets(signature),
        )
        signed_data = seq(
            integer(3),
            set_of(algorithm(SHA256)),
            seq(oid(TST_INFO), explicit(0, octets(tst_info))),
            tlv(0xA0, cert_der),  # [0] IMPLICIT certificates
            set_of(signer),
        )
        token = seq(oid(SIGNED_DATA), explicit(0, signed_data))
        return seq(seq(integer(0)), token)


class _Handler(BaseHTTPRequestHandler):
    tsa: TestAuthority

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.tsa.requests += 1
        if self.tsa.failures:
            self.send_response(self.tsa.failures.pop(0))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.headers.get("Content-Type") != "application/timestamp-query":
            self.send_response(415)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        answer = self.tsa.respond(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_tsa() -> Iterator[tuple[str, TestAuthority]]:
    """(url, authority) of a TSA listening on 127.0.0.1 until the block ends."""
    tsa = TestAuthority()
    handler = type("Handler", (_Handler,), {"tsa": tsa})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tsa", tsa
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
