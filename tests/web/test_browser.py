"""End to end in a real browser: ``telewatch serve`` in its own process on the story's
archive, on each backend in turn (the SQLite file, then its copy on PostgreSQL), Debian's
chromium driven by Playwright (``executable_path``: no browser download), one browser for the
whole module, through a search, a post page, a time line and a channel page. Each test writes
a screenshot: into the test's temporary folder, or, on SQLite, into ``$TELEWATCH_SCREENSHOTS``
(``make screenshots`` sets it to docs/img for docs/web.md).

Skipped, with one reason, where chromium or Playwright is missing (`.ci/run` installs chromium
with apt when it can)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pg import BACKENDS
from story import DEPUTY, OFFICIAL
from webkit import serving, story_path, story_url  # noqa: F401 (fixtures)

from archiver.store.postgres import is_url

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip(
        "browser tests: Debian's chromium is not installed (apt-get install -y chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="browser tests: Playwright is not installed (make setup)"
)

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1000, "height": 720}


@pytest.fixture(scope="module", params=BACKENDS)
def archive(request: pytest.FixtureRequest, story_path: Path) -> Path | str:
    """The story's archive: its file, or its copy on PostgreSQL (the module runs once each)."""
    if request.param == "sqlite":
        return story_path
    return str(request.getfixturevalue("story_url"))


def telewatch(archive: Path | str, *args: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of ``telewatch ARGS`` on ``archive`` (PostgreSQL's
    URL in the environment, as a deployment gives it)."""
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "TELEWATCH_CONFIG": ""}
    env.pop("TELEWATCH_DATABASE_URL", None)
    if is_url(archive):
        env["TELEWATCH_DATABASE_URL"] = str(archive)
        return [sys.executable, "-m", "archiver", *args], env
    return [sys.executable, "-m", "archiver", "--db", str(archive), *args], env


@pytest.fixture(scope="module")
def server(archive: Path | str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``telewatch serve --port 0`` on the archive in its own process; its URL. Stopped with
    SIGTERM, which must end it cleanly: the archive closed, the exit status SIGTERM's (uvicorn
    shuts down, then raises the signal again; a shell shows 143)."""
    cwd = tmp_path_factory.mktemp("serve")  # no config.toml here: built-in defaults
    argv, env = telewatch(archive, "serve", "--port", "0")
    with serving(argv, env, cwd) as served:
        yield served.url
    assert "archive closed" in served.rest and "Traceback" not in served.rest


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB")
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    try:
        yield pg
    finally:
        context.close()


@pytest.fixture
def shots(archive: Path | str, tmp_path: Path) -> Path:
    """Where the screenshots go: docs/img's pictures are the SQLite run's."""
    wanted = os.environ.get("TELEWATCH_SCREENSHOTS")
    return Path(wanted) if wanted and not is_url(archive) else tmp_path


def shot(page: Any, name: str, folder: Path, *, full: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"web-{name}.png"
    page.screenshot(path=str(path), full_page=full)
    return path


def cli_count(archive: Path | str, query: str) -> int:
    """What ``telewatch search`` finds (in a process of its own: Playwright's sync API runs an
    event loop in this thread)."""
    argv, env = telewatch(archive, "search", query, "--json", "--limit", "1000")
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    return len([json.loads(x) for x in out.splitlines()])


def test_search_in_the_browser(server: str, page: Any, archive: Path | str, shots: Path) -> None:
    page.goto(server + "/")
    assert page.url.endswith("/-/telewatch/search")
    page.fill("#q", "эвакуация")
    page.press("#q", "Enter")
    page.wait_for_selector("#total")
    hits = page.locator("li.hit")
    expected = cli_count(archive, "эвакуация")
    assert hits.count() == expected == int(page.get_attribute("#total", "data-total") or -1)
    marks = {m.lower() for m in page.locator("li.hit mark").all_inner_texts()}
    assert {"эвакуация", "эвакуации", "эвакуацию"} <= marks
    page.select_option("select[name=channel]", DEPUTY)
    page.click("form.query button")
    page.wait_for_selector("#total")
    assert {p.split("/")[0] for p in _posts(page)} == {DEPUTY}
    page.select_option("select[name=channel]", "")
    page.check("input[name=deleted]")
    page.click("form.query button")
    page.wait_for_selector("#total")
    assert _posts(page) == [f"{OFFICIAL}/42"]
    page.goto(server + "/-/telewatch/search?q=эвакуация")
    assert shot(page, "search", shots, full=False).stat().st_size > 10_000


def _posts(page: Any) -> list[str]:
    return [
        x or "" for x in page.eval_on_selector_all("li.hit", "els => els.map(e => e.dataset.post)")
    ]


def test_a_post_page_in_the_browser(server: str, page: Any, shots: Path) -> None:
    page.goto(server + "/-/telewatch/search?q=эвакуация&deleted=1")
    page.click(f'li.hit[data-post="{OFFICIAL}/42"] a.when')
    page.wait_for_selector("#state")
    assert page.url.endswith(f"/-/telewatch/post/{OFFICIAL}/42")
    assert page.get_attribute("#state", "data-state") == "deleted"
    assert "Telegram reported the deletion" in page.inner_text("#state")
    assert page.locator("div.version").count() == 2
    assert page.inner_text("#v2 del").startswith("Администрация просит помочь")
    assert page.inner_text("#v2 ins") == "Информация о выезде не соответствует действительности."
    # Struck through and marked as a reader sees them, not only as tags.
    assert "line-through" in page.eval_on_selector(
        "#v2 del", "e => getComputedStyle(e).textDecorationLine"
    )
    assert page.get_attribute("a.tg", "href") == f"https://t.me/{OFFICIAL}/42"
    assert shot(page, "post", shots).stat().st_size > 10_000


def test_a_time_line_in_the_browser(server: str, page: Any, shots: Path) -> None:
    page.goto(server + "/-/telewatch/timeline")
    page.fill("#q", "эвакуация OR выезд")
    page.fill("input[name=since]", "2025-01-01")
    page.click("form.query button")
    page.wait_for_selector("table.timeline")
    heads = page.locator("table.timeline thead th a").all_inner_texts()
    assert len(heads) == 2
    rows = page.eval_on_selector_all(
        "tr.entry", "els => els.map(e => [e.className.split(' ')[1], e.dataset.post])"
    )
    assert rows[:4] == [
        ["entry-post", f"{OFFICIAL}/42"],
        ["entry-post", f"{DEPUTY}/302"],
        ["entry-edited", f"{OFFICIAL}/42"],
        ["entry-deleted", f"{OFFICIAL}/42"],
    ]
    # The two channels are side by side: the official's cells left of the deputy's.
    left = page.locator(f'tr.entry[data-post="{OFFICIAL}/42"] td.cell').first.bounding_box()
    right = page.locator(f'tr.entry[data-post="{DEPUTY}/302"] td.cell').first.bounding_box()
    assert left is not None and right is not None and left["x"] < right["x"]
    assert page.locator("svg.activity").count() == 2
    assert shot(page, "timeline", shots).stat().st_size > 10_000


def test_a_channel_page_in_the_browser(server: str, page: Any, shots: Path) -> None:
    page.goto(server + "/-/telewatch/channels")
    page.click(f'a[href="/-/telewatch/channel/{OFFICIAL}"]')
    page.wait_for_selector("svg.activity")
    assert "1–42" in page.inner_text("section.coverage")
    assert shot(page, "channel", shots).stat().st_size > 10_000
