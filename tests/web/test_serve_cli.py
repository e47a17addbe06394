"""``telewatch serve`` refuses clearly: another host without a password, no archive, a port
in use. One line each, a non-zero exit, nothing served."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from webkit import story_path  # noqa: F401 (a fixture)

from archiver.cli import cli


def serve(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*args], env={"TELEWATCH_CONFIG": ""})
    return result.exit_code, result.stderr


def test_another_host_needs_a_password(story_path: Path) -> None:
    code, err = serve("--db", str(story_path), "serve", "--host", "0.0.0.0")
    assert code == 2
    assert err.startswith("Error: --host 0.0.0.0: reachable from other machines")
    assert "telewatch hash-password" in err and err.count("\n") == 1


def test_another_host_with_a_bad_hash_in_the_config(story_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[web_view]\npassword_hash = "swordfish-swordfish"\n')
    code, err = serve("--config", str(config), "--db", str(story_path), "serve")
    assert code == 2 and "web_view.password_hash: not a telewatch password hash" in err
    assert "swordfish" not in err


def test_no_archive_yet(tmp_path: Path) -> None:
    code, err = serve("--db", str(tmp_path / "none.db"), "serve")
    assert code == 1 and "no archive here yet" in err
    assert not (tmp_path / "none.db").exists()


def test_a_port_in_use(story_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, err = serve("--db", str(story_path), "serve", "--port", str(port))
    assert code == 1
    assert (
        err == f"Error: 127.0.0.1:{port}: the port is in use (another `telewatch serve`?);"
        " pick another with --port\n"
    )


def test_without_datasette_serve_says_what_to_install(
    story_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "web.server", None)  # as if datasette were not installed
    code, err = serve("--db", str(story_path), "serve")
    assert code == 1 and "the web view needs Datasette" in err
    assert "pip install 'telewatch[web]'" in err and err.count("\n") == 1
