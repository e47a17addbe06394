"""The web view's password: scrypt hashes made by `telewatch hash-password`, checked in
constant time, validated where the config is read, never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from archiver.cli import cli
from archiver.config import load_settings
from archiver.errors import ConfigError
from archiver.password import check_hash, hash_password, verify_password


@pytest.fixture(scope="module")
def made() -> str:
    return hash_password("correct horse battery")


def test_a_hash_verifies_its_password_only(made: str) -> None:
    assert made.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse battery", made)
    assert not verify_password("correct horse batterY", made)
    assert not verify_password("", made)
    assert hash_password("correct horse battery") != made  # a fresh salt each time
    assert check_hash(made) is None


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        ("correct horse battery", "not a telewatch password hash"),
        ("bcrypt$1$2$3$4$5", "not a telewatch password hash"),
        ("scrypt$16384$8$1$!!$AAAA", "not a telewatch password hash"),
        ("scrypt$16383$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
         "scrypt parameters out of range"),
        ("scrypt$1073741824$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
         "scrypt parameters out of range"),  # would take minutes and gigabytes
        ("scrypt$16384$8$1$AAAA$AAAA", "salt or key too short"),
    ],
)  # fmt: skip
def test_malformed_hashes_are_named_and_never_match(stored: str, why: str) -> None:
    assert check_hash(stored) == why
    assert not verify_password("correct horse battery", stored)


def test_a_short_password_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 8 characters"):
        hash_password("short")


def test_the_config_takes_the_hash_and_checks_it(tmp_path: Path, made: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[web_view]\npassword_hash = "{made}"\n')
    s = load_settings(path, env={})
    assert s.web_view.password_hash == made and made in s.secrets
    assert made not in repr(s)
    path.write_text('[web_view]\npassword_hash = "hunter2hunter2"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert "web_view.password_hash: not a telewatch password hash" in str(err.value)
    assert "telewatch hash-password" in str(err.value) and "hunter2" not in str(err.value)
    path.write_text("[web_view]\npassword_hash = 5\n")
    with pytest.raises(ConfigError, match="expected a string, got a value of the wrong kind"):
        load_settings(path, env={})  # a secret's key: the value is not echoed


def test_hash_password_reads_stdin_and_prints_the_config_line() -> None:
    result = CliRunner().invoke(cli, ["hash-password"], input="correct horse battery\n")
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert line.startswith('password_hash = "scrypt$') and line.endswith('"')
    assert verify_password("correct horse battery", line.split('"')[1])
    assert "under [web_view]" in result.stderr
    short = CliRunner().invoke(cli, ["hash-password"], input="short\n")
    assert short.exit_code == 2 and "at least 8 characters" in short.stderr
