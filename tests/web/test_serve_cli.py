"""``telewatch serve`` refuses clearly: another host without a password, no archive, a port
in use, a PostgreSQL server that cannot be reached. One line each, a non-zero exit, nothing
served. On a PostgreSQL archive it starts in a process of its own, answers over loopback
and stops on SIGTERM, its password never shown."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from story import OFFICIAL
from webkit import serving, story_path, story_url  # noqa: F401 (fixtures)

from archiver.cli import cli


def serve(*args: str, url: str | None = None) -> tuple[int, str]:
    env = {"TELEWATCH_CONFIG": "", "TELEWATCH_DATABASE_URL": url}
    result = CliRunner().invoke(cli, [*args], env=env)
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


# ---------------------------------------------------------------------------- PostgreSQL


def with_password(url: str) -> str:
    """The test server's URL with a password in it (the server trusts its socket's users, so
    the password is never asked for: it is there to be hidden)."""
    assert "postgres:@" in url, url
    return url.replace("postgres:@", "postgres:s3cret-pw@", 1)


def test_serve_on_postgresql_answers_over_loopback_and_stops_on_sigterm(
    story_url: str, tmp_path: Path
) -> None:
    url = with_password(story_url)
    env = {
        **os.environ,
        "NO_PROXY": "127.0.0.1,localhost",
        "TELEWATCH_CONFIG": "",
        "TELEWATCH_DATABASE_URL": url,
    }
    argv = [sys.executable, "-m", "archiver", "serve", "--port", "0"]
    # no config.toml in tmp_path: built-in defaults, the archive from the environment
    with serving(argv, env, tmp_path) as served:
        assert served.line.startswith(
            "telewatch web view of PostgreSQL postgresql://postgres:***@/"
        )
        with httpx.Client(base_url=served.url, trust_env=False, timeout=30) as client:
            home = client.get("/", follow_redirects=True)
            assert home.status_code == 200 and str(home.url).endswith("/-/telewatch/search")
            assert "Tables</a>" not in home.text  # Datasette cannot show a PostgreSQL table
            found_page = client.get("/-/telewatch/search", params={"q": "эвакуация"})
            assert found_page.status_code == 200
            assert f'data-post="{OFFICIAL}/42"' in found_page.text
            post = client.get(f"/-/telewatch/post/{OFFICIAL}/42")
            assert post.status_code == 200 and "<ins>" in post.text
    rest = served.rest
    assert "opened read-only" in rest and "archive closed" in rest, rest
    assert "s3cret-pw" not in served.line + rest and "Traceback" not in rest


def test_serve_without_the_postgresql_server_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql://tw:s3cret-pw@/telewatch?host={tmp_path}&connect_timeout=2"
    code, err = serve("serve", url=url)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("Error: postgresql://tw:***@/telewatch?host=")
    assert "cannot connect to PostgreSQL" in err and "TELEWATCH_DATABASE_URL" in err
    assert "s3cret-pw" not in err


def test_serve_on_postgresql_keeps_the_host_rule(story_url: str) -> None:
    code, err = serve("serve", "--host", "0.0.0.0", url=story_url)
    assert code == 2
    assert err.startswith("Error: --host 0.0.0.0: reachable from other machines")
