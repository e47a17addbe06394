"""Password hashes for the web view (``[web_view] password_hash``, ``telewatch hash-password``).

scrypt from the standard library (RFC 7914), with a random 16-byte salt and the parameters
kept in the hash, so they can be raised later without breaking old hashes::

    scrypt$16384$8$1$<salt, base64>$<key, base64>

n = 2**14, r = 8, p = 1 costs about 16 MB and 50 ms a check: cheap for one login, costly
for a guessing run. Only the hash is stored; comparison is in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from archiver.errors import ConfigError

SCHEME = "scrypt"
N, R, P = 2**14, 8, 1
KEY_BYTES = 32
SALT_BYTES = 16
MIN_LENGTH = 8
_MAX_N = 2**20  # a pasted hash cannot make a login take minutes and gigabytes


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _derive(password: str, salt: bytes, n: int, r: int, p: int, size: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=size, maxmem=256 * n * r + 2**20
    )


def hash_password(password: str) -> str:
    """A new hash of ``password`` (a fresh salt each time)."""
    if len(password) < MIN_LENGTH:
        raise ConfigError(f"password: at least {MIN_LENGTH} characters, please")
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(password, salt, N, R, P, KEY_BYTES)
    return f"{SCHEME}${N}${R}${P}${_b64(salt)}${_b64(key)}"


def _parts(stored: str) -> tuple[int, int, int, bytes, bytes]:
    fields = stored.split("$")
    if len(fields) != 6 or fields[0] != SCHEME:
        raise ValueError("not a telewatch password hash")
    try:
        n, r, p = int(fields[1]), int(fields[2]), int(fields[3])
        salt = base64.b64decode(fields[4], validate=True)
        key = base64.b64decode(fields[5], validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("not a telewatch password hash") from None
    if n < 2 or n > _MAX_N or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16:
        raise ValueError("scrypt parameters out of range")
    if len(salt) < 8 or len(key) < 16:
        raise ValueError("salt or key too short")
    return n, r, p, salt, key


def check_hash(stored: str) -> str | None:
    """Why ``stored`` is not a usable hash, or None when it is."""
    try:
        _parts(stored)
    except ValueError as exc:
        return str(exc)
    return None


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (False for a malformed hash)."""
    try:
        n, r, p, salt, key = _parts(stored)
    except ValueError:
        return False
    return hmac.compare_digest(_derive(password, salt, n, r, p, len(key)), key)
