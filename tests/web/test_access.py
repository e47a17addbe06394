"""Who may see the web view: with a password configured, nothing but the login form before
logging in (Datasette's own pages included), and reads only after; the server's shutdown
closes the archive; ``telewatch serve`` refuses to listen beyond this machine without a
password, and says when the port is taken."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest
from datasette.app import Datasette
from webkit import (  # noqa: F401 (fixtures)
    MakeSite,
    make_site,
    site,
    story_archive,
    story_path,
    story_url,
)

from archiver.errors import ConfigError, TelewatchError
from archiver.password import hash_password
from web import access
from web.server import bind, check_host
from web.site import site_of

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
async def locked(make_site: MakeSite, story_archive: Path | str, password_hash: str) -> Datasette:
    """The web view with a password, on each backend in turn."""
    return await make_site(story_archive, password_hash=password_hash)


async def login(ds: Datasette, password: str, next_url: str = "/-/telewatch/search") -> Any:
    """The form's POST, with the CSRF token and cookie a browser would send."""
    form = await ds.client.get(f"/-/telewatch/login?next={next_url}")
    assert form.status_code == 200
    token = re.search(r'name="csrftoken" value="([^"]+)"', form.text)
    assert token is not None
    cookie = form.cookies["ds_csrftoken"]
    return await ds.client.post(
        "/-/telewatch/login",
        data={"csrftoken": token.group(1), "password": password, "next": next_url},
        cookies={"ds_csrftoken": cookie},
    )


@pytest.mark.parametrize(
    "url", ["/-/telewatch/search?q=эвакуация", "/-/telewatch/post/kherson_admin_demo/42",
            "/story", "/story/versions.json", "/-/telewatch/search.csv?q=x", "/"],
)  # fmt: skip
async def test_every_page_asks_for_the_password_first(locked: Datasette, url: str) -> None:
    resp = await locked.client.get(url)
    assert resp.status_code == 302
    assert resp.headers["location"].startswith("/-/telewatch/login?next=")
    assert "эвакуация" not in resp.text and "Уважаемые" not in resp.text


async def test_a_wrong_password_is_refused(
    locked: Datasette, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(access, "WRONG_PASSWORD_DELAY", 0.0)
    resp = await login(locked, "wrong password")
    assert resp.status_code == 403 and "Wrong password." in resp.text
    assert "ds_actor" not in resp.cookies


async def test_the_right_password_opens_reads_only(locked: Datasette) -> None:
    resp = await login(locked, PASSWORD, "/-/telewatch/post/kherson_admin_demo/42")
    assert resp.status_code == 302
    assert resp.headers["location"] == "/-/telewatch/post/kherson_admin_demo/42"
    set_cookie = resp.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie
    actor = {"ds_actor": resp.cookies["ds_actor"]}
    page = await locked.client.get("/-/telewatch/post/kherson_admin_demo/42", cookies=actor)
    assert page.status_code == 200 and "Log out" in page.text
    write = await locked.client.post("/story/posts", cookies=actor, data={"x": "1"})
    assert write.status_code == 405 and write.text == "This server is read-only."


async def test_after_login_datasettes_own_pages_open_too(
    make_site: MakeSite, password_hash: str
) -> None:
    locked = await make_site(password_hash=password_hash)  # the story's SQLite file
    actor = {"ds_actor": (await login(locked, PASSWORD)).cookies["ds_actor"]}
    table = await locked.client.get("/story/posts.json", cookies=actor)
    assert table.status_code == 200


async def test_a_forged_or_expired_cookie_is_not_a_login(locked: Datasette) -> None:
    forged = {"ds_actor": "eyJhIjp7ImlkIjoicm9vdCJ9fQ.forged"}
    assert (await locked.client.get("/-/telewatch/search", cookies=forged)).status_code == 302
    expired = locked.sign({"a": {"id": "telewatch"}, "e": "1"}, "actor")  # 1970
    resp = await locked.client.get("/-/telewatch/search", cookies={"ds_actor": expired})
    assert resp.status_code == 302
    endless = locked.sign({"a": {"id": "telewatch"}}, "actor")  # ours always expire
    resp = await locked.client.get("/-/telewatch/search", cookies={"ds_actor": endless})
    assert resp.status_code == 302


@pytest.mark.parametrize(
    ("target", "safe"),
    [
        ("/-/telewatch/timeline?q=x", "/-/telewatch/timeline?q=x"),
        ("https://evil.example/", "/-/telewatch/search"),
        ("//evil.example/", "/-/telewatch/search"),
        ("/\\evil.example", "/-/telewatch/search"),
        ("", "/-/telewatch/search"),
    ],
)
def test_after_login_only_a_path_of_this_site(target: str, safe: str) -> None:
    assert access.safe_next(target) == safe


async def test_without_a_password_pages_are_open(site: Datasette) -> None:
    resp = await site.client.get("/-/telewatch/search")
    assert resp.status_code == 200 and "Log out" not in resp.text
    login_page = await site.client.get("/-/telewatch/login?next=/-/telewatch/timeline")
    assert login_page.status_code == 302  # nothing to log in to


async def test_the_servers_shutdown_closes_the_archive(site: Datasette) -> None:
    assert (await site.client.get("/-/telewatch/search?q=x")).status_code == 200
    web = site_of(site)
    assert web.archive is not None
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(dict(message))

    await site.app()({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert web.archive is None


@pytest.mark.parametrize(
    ("host", "local"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.8.0.1", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.org", False)],
)  # fmt: skip
def test_listening_beyond_this_machine_needs_a_password(host: str, local: bool) -> None:
    assert access.is_local(host) is local
    if local:
        check_host(host, None)
    else:
        with pytest.raises(ConfigError, match=r"a password is required: run `telewatch hash"):
            check_host(host, None)
        check_host(host, "scrypt$...")


def test_a_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(TelewatchError, match=rf"127.0.0.1:{port}: the port is in use"):
            bind("127.0.0.1", port)


async def test_under_plain_datasette_the_hash_comes_from_the_metadata(
    make_site: MakeSite, story_path: Path, password_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``datasette archive.db -m metadata.json``: the hash from the environment ($env)."""
    monkeypatch.setenv("TW_HASH", password_hash)
    metadata = {"plugins": {"telewatch": {"password_hash": {"$env": "TW_HASH"}}}}
    ds = Datasette([str(story_path)], metadata=metadata)
    await ds.invoke_startup()
    assert site_of(ds).options.password_hash == password_hash
    assert (await ds.client.get("/-/telewatch/search")).status_code == 302
    actor = {"ds_actor": (await login(ds, PASSWORD)).cookies["ds_actor"]}
    shown = await ds.client.get("/-/metadata.json", cookies=actor)
    assert shown.status_code == 200 and "TW_HASH" in shown.text
    assert password_hash not in shown.text


def test_a_malformed_hash_in_the_metadata_is_refused() -> None:
    from web.site import options_from_metadata

    with pytest.raises(TelewatchError, match="password_hash: not a telewatch password hash"):
        options_from_metadata({"password_hash": "plain text"})
    with pytest.raises(TelewatchError, match="timezone: unknown time zone"):
        options_from_metadata({"timezone": "Mars/Olympus"})
