"""Bundles with RFC 3161 timestamp tokens (issue 19), from the local test authority
(tests/fakes/tsa.py, loopback only): the token covers the root and its signature holds
(against its own certificate; with --tsa-cert, against a trusted root); a changed token, a
token of another root, or another authority's root certificate is named."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding
from fakes.tsa import TestAuthority as Authority
from fakes.tsa import serve_tsa
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

from archiver.cli import cli
from archiver.evidence.bundle_check import verify_bundle
from archiver.evidence.roots import make_day_root
from archiver.evidence.stamps import TokenProblem, check_token
from archiver.evidence.tsa import TsaClient
from archiver.models import ChannelInfo, Post
from archiver.store.archive import Archive, utcnow
from archiver.store.channels import upsert_channel
from archiver.store.ingest import ingest
from evidence.bundlekit import read_member, rewrite
from evidence.test_bundle_format import build, story

CH = -1001811111111


def token_for(tsa: Authority, root_hash: str) -> bytes:
    request = (
        TimestampRequestBuilder()
        .data(root_hash.encode())
        .hash_algorithm(HashAlgorithm.SHA256)
        .cert_request(cert_request=True)
        .build()
    )
    return tsa.respond(request.as_bytes())


@pytest.fixture(scope="module")
def tsa() -> Authority:
    return Authority()


async def stamped(tmp_path: Path, tsa: Authority) -> Path:
    log = story()
    for i, r in enumerate(log.roots):
        log.roots[i] = type(r)(
            r.day, r.seq, r.root_hash, "http://127.0.0.1/tsa", token_for(tsa, r.root_hash),
            r.made_at,
        )  # fmt: skip
    return await build(tmp_path, log)


def _token(bundle: Path, i: int) -> bytes:
    return base64.b64decode(json.loads(read_member(bundle, "roots.json"))[i]["tsa_token"])


def _with_token(i: int, change: object) -> object:
    def rewrite_roots(data: bytes) -> bytes:
        roots = json.loads(data)
        token = base64.b64decode(roots[i]["tsa_token"])
        roots[i]["tsa_token"] = base64.b64encode(change(token)).decode()  # type: ignore[operator]
        return json.dumps(roots, sort_keys=True, ensure_ascii=False,
                          separators=(",", ":")).encode() + b"\n"  # fmt: skip

    return rewrite_roots


def _later(token: bytes) -> bytes:
    """The token's genTime (GeneralizedTime, tag 0x18, 15 bytes) one year later."""
    at = token.index(b"\x18\x0f") + 2
    year = int(token[at : at + 4])
    return token[:at] + str(year + 1).encode() + token[at + 4 :]


def test_check_token_covers_the_root_and_names_its_signer(tsa: Authority) -> None:
    root = "ab" * 32
    token = token_for(tsa, root)
    stamp = check_token(token, root)
    assert stamp.signer == "CN=telewatch TSA" and not stamp.trusted
    assert check_token(token, root, trusted=[tsa.ca.public_bytes(Encoding.PEM)]).trusted
    with pytest.raises(TokenProblem, match="message imprint is not the hash of this root"):
        check_token(token, "cd" * 32)
    other = Authority()
    with pytest.raises(TokenProblem, match="not certified by the --tsa-cert"):
        check_token(token, root, trusted=[other.ca.public_bytes(Encoding.PEM)])
    # the certificate in the token is not what the signature covers: only a trusted root
    # finds a changed one (without it the summary says the signer was not checked)
    renamed = token.replace(b"telewatch TSA", b"telewatch TSB")
    assert check_token(renamed, root).signer == "CN=telewatch TSB"
    with pytest.raises(TokenProblem, match="not certified by the --tsa-cert"):
        check_token(renamed, root, trusted=[tsa.ca.public_bytes(Encoding.PEM)])


@pytest.mark.parametrize("where", [-5, -40, 60, 120, 200])
def test_any_changed_byte_of_a_token_is_found(tsa: Authority, where: int) -> None:
    root = "ab" * 32
    token = bytearray(token_for(tsa, root))
    token[where] ^= 0x01
    with pytest.raises(TokenProblem):
        check_token(bytes(token), root)


async def test_a_stamped_bundle_verifies(tmp_path: Path, tsa: Authority) -> None:
    out = await stamped(tmp_path, tsa)
    v = verify_bundle(out)
    assert v.ok, v.problems
    assert "to the root of 2024-05-02, timestamped" in v.lines()[0]
    assert "by CN=telewatch TSA (signer not checked: give --tsa-cert)" in v.lines()[0]
    trusted = verify_bundle(out, trusted=[tsa.ca.public_bytes(Encoding.PEM)])
    assert trusted.ok and "(signer not checked" not in trusted.lines()[0]
    untrusted = verify_bundle(out, trusted=[Authority().ca.public_bytes(Encoding.PEM)])
    assert any("not certified by the --tsa-cert" in p for p in untrusted.problems)


@pytest.mark.parametrize("forge", [False, True], ids=["edit", "forged-manifest"])
@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda t: t[:-3] + bytes([t[-3] ^ 1]) + t[-2:], "signature does not hold"),
        (_later, "signed message digest is not the hash of its content"),
    ],
    ids=["signature byte", "time byte"],
)
async def test_a_changed_token_is_named(
    tmp_path: Path, tsa: Authority, change: object, says: str, forge: bool
) -> None:
    out = await stamped(tmp_path, tsa)
    bad = rewrite(out, tmp_path / "bad.zip", "roots.json", _with_token(1, change), forge=forge)  # type: ignore[arg-type]
    problems = verify_bundle(bad).problems
    assert any(
        p.startswith("roots.json, root of 2024-05-02 (entry 8): the timestamp token does not hold")
        and says in p
        for p in problems
    ), problems


async def test_a_token_of_another_root_is_named(tmp_path: Path, tsa: Authority) -> None:
    out = await stamped(tmp_path, tsa)
    first = _token(out, 0)
    bad = rewrite(out, tmp_path / "bad.zip", "roots.json", _with_token(1, lambda _: first),  # type: ignore[arg-type]
                  forge=True)  # fmt: skip
    assert (
        "roots.json, root of 2024-05-02 (entry 8): the timestamp token does not hold: its message"
        " imprint is not the hash of this root"
    ) in verify_bundle(bad).problems


def test_a_bundle_of_a_root_stamped_by_the_authority(tmp_path: Path) -> None:
    """The real path: the day's root stamped over HTTP by the local authority
    (archiver.evidence.tsa), the bundle made and verified by the CLI with --tsa-cert."""
    db = tmp_path / "a.db"
    with serve_tsa() as (url, authority):

        async def populate() -> None:
            async with await Archive.open(db) as a:
                await upsert_channel(a, ChannelInfo(CH, "vsaldo", "Сальдо"), source="telethon")
                await ingest(a, [Post(CH, 1, utcnow(), "Евакуація")], source="telethon",
                             alerts=False)  # fmt: skip
                root = await make_day_root(a, utcnow().date(), tsa=TsaClient(url))
                assert root is not None and root.tsa_token is not None

        asyncio.run(populate())
        ca = tmp_path / "ca.pem"
        ca.write_bytes(authority.ca.public_bytes(Encoding.PEM))
    out = tmp_path / "b.zip"
    runner = CliRunner()
    made = runner.invoke(cli, ["--db", str(db), "evidence", "t.me/vsaldo/1", "--output", str(out)])
    assert made.exit_code == 0, made.output
    checked = runner.invoke(cli, ["evidence", "verify", str(out), "--tsa-cert", str(ca)])
    assert checked.exit_code == 0, checked.output
    assert "timestamped" in checked.output and "by CN=telewatch TSA;" in checked.output
    assert "(no timestamp token)" not in read_member(out, "report.md").decode()
