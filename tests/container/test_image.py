"""The built image, run for real, as the README's "In a container" section documents it.

Run by `make container-test` (.ci/container-test.sh builds the image with
../shared/container/build-image.sh and names it in TELEWATCH_IMAGE); skipped everywhere else.
Each README command line used here is asserted to be in the README verbatim, then run with
podman instead of docker (`docker compose` lines as the compose file's service: its volume,
env_file and init). Test-only additions: `--network host`, so the container reaches the fake
t.me of tests/fakes/tme.py served on the host's loopback; `--http-proxy=false`, so the host's
proxy variables do not send those loopback requests to a proxy; `--no-healthcheck` where the
image's HEALTHCHECK is not under test (podman's health timers need systemd).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import shlex
import socketserver
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.tme import T0, FakePost, FakeTme

IMAGE = os.environ.get("TELEWATCH_IMAGE", "")
pytestmark = pytest.mark.skipif(
    not IMAGE, reason="the built image is tested by `make container-test` (TELEWATCH_IMAGE)"
)

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
FIXTURES = ROOT / "tests" / "fixtures"
UID = 10001  # the image's user
STOP_GRACE = 10  # seconds: `docker stop`'s default before SIGKILL
START_WITHIN = 60.0  # a generous bound for waiting (never asserted as a timing)

# The README's lines this test runs (each asserted to be in the README verbatim).
DEMO = 'docker run --rm -v "$PWD/data:/data" telewatch demo'
CHOWN = "mkdir -p data && sudo chown 10001:10001 data"
CONFIG = "cp config.example.toml data/config.toml"
IMPORT = (
    "docker compose run --rm telewatch import data/ChatExport_2024-05-01/result.json "
    "--username vsaldo"
)
SEARCH = "docker compose run --rm telewatch search 'эвакуация'"
HEALTH = "docker compose run --rm telewatch health"
UP = "docker compose up -d"
STOP = "docker compose stop"
CRON = "*/15 * * * *  cd /srv/telewatch && docker compose run --rm -T telewatch sync"
BACKUP_DOC = "telewatch backup"
RESTORE = (
    "docker compose run --rm telewatch restore --yes data/backups/telewatch-20240501T033000Z.db"
)


# ---------------------------------------------------------------------------- podman


def podman(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def documented(line: str) -> str:
    assert line in README, f"the README no longer documents: {line}"
    return line


@dataclass
class Project:
    """A folder laid out as the README says: ./data (the volume), .env, docker-compose.yml."""

    path: Path
    extra: tuple[str, ...] = ("--http-proxy=false",)

    @property
    def data(self) -> Path:
        return self.path / "data"

    def service(self) -> dict[str, object]:
        yaml = pytest.importorskip("yaml")
        compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
        svc = compose["services"]["telewatch"]
        assert isinstance(svc, dict)
        return svc

    def compose_flags(self) -> list[str]:
        """`docker compose run`'s view of the service: its volumes, env_file and init."""
        svc = self.service()
        flags: list[str] = []
        for volume in svc["volumes"]:  # type: ignore[attr-defined]
            host, _, inside = str(volume).partition(":")
            flags += ["-v", f"{(self.path / host).resolve()}:{inside}"]
        for env_file in svc.get("env_file", []):  # type: ignore[attr-defined]
            flags += ["--env-file", str(self.path / env_file)]
        if svc.get("init"):
            flags.append("--init")
        return flags

    def docker_run(self, line: str, *extra: str) -> list[str]:
        """A README `docker run … telewatch ARGS` line as a podman command."""
        words = shlex.split(documented(line).replace("$PWD", str(self.path)))
        assert words[:2] == ["docker", "run"], line
        i = words.index("telewatch")  # the image: options before it, the command after
        return ["run", "--no-healthcheck", *self.extra, *extra, *words[2:i], IMAGE,
                *words[i + 1 :]]  # fmt: skip

    def compose_run(self, line: str, *extra: str) -> list[str]:
        """A README `docker compose run --rm [-T] telewatch ARGS` line as a podman command."""
        line = documented(line)
        words = shlex.split(line[line.index("docker compose") :])
        assert words[:3] == ["docker", "compose", "run"], line
        rest = words[3:]
        flags = []
        while rest[0].startswith("-"):
            flag = rest.pop(0)
            assert flag in ("--rm", "-T"), flag  # -T: no terminal, as podman run without -t
            if flag == "--rm":
                flags.append("--rm")
        assert rest.pop(0) == "telewatch"
        return ["run", "--no-healthcheck", *flags, *self.compose_flags(), *self.extra, *extra,
                IMAGE, *rest]  # fmt: skip

    def command(self, *args: str) -> list[str]:
        """`docker compose run --rm telewatch ARGS` for a command the README shows elsewhere."""
        return ["run", "--rm", "--no-healthcheck", *self.compose_flags(), *self.extra, IMAGE,
                *args]  # fmt: skip

    def compose_up(self, name: str, *extra: str, command: list[str] | None = None) -> list[str]:
        """`docker compose up -d`: the service's command, detached, with its grace period."""
        assert documented(UP)
        svc = self.service()
        grace = str(svc["stop_grace_period"]).removesuffix("s")
        cmd = command or list(svc["command"])  # type: ignore[call-overload]
        return ["run", "-d", "--name", name, "--stop-timeout", grace, *self.compose_flags(),
                *self.extra, *extra, IMAGE, *cmd]  # fmt: skip

    def sql(self, query: str) -> list[tuple[object, ...]]:
        """Read the archive from the host while no container writes it."""
        db = sqlite3.connect(f"file:{self.data / 'telewatch.db'}?immutable=1", uri=True)
        try:
            return list(db.execute(query))
        finally:
            db.close()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """The README's first steps: ./data owned by the container's user, an empty .env."""
    assert documented(CHOWN)
    (tmp_path / "data").mkdir()
    os.chown(tmp_path / "data", UID, UID)
    (tmp_path / ".env").touch(mode=0o600)
    return Project(tmp_path)


def copy_example_config(project: Project, channels: str = "", web: str = "") -> None:
    """`cp config.example.toml data/config.toml`, then edited as a user would: the example's
    channels and rules replaced by ``channels``; ``web`` replaces the [web] base_url line."""
    assert documented(CONFIG)
    text = (ROOT / "config.example.toml").read_text()
    text = text[: text.index("# -------------------------------------------------------------")]
    if web:
        text = text.replace('base_url = "https://t.me"\n', web)
    config = project.data / "config.toml"
    config.write_text(text + channels)
    os.chown(config, UID, UID)


@pytest.fixture
def container_names() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        podman("rm", "--force", "--time", "0", name)


def new_name(names: list[str]) -> str:
    name = f"telewatch-test-{uuid.uuid4().hex[:10]}"
    names.append(name)
    return name


# ---------------------------------------------------------------------------- fake t.me


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTme

    def do_GET(self) -> None:
        host = self.headers.get("Host", "127.0.0.1")
        request = httpx.Request("GET", f"http://{host}{self.path}", headers=dict(self.headers))
        response = self.fake.handle(request)
        body = response.content
        self.send_response(response.status_code)
        for key, value in response.headers.items():
            if key.lower() not in ("content-length", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def tme() -> Iterator[tuple[FakeTme, str]]:
    """The fake t.me on the host's 127.0.0.1 (the container reaches it with --network host),
    with the channel testograd: 25 posts, about an evacuation."""
    fake = FakeTme()
    ch = fake.channel("testograd", page_size=10)
    ch.add_texts(range(1, 26), "Сводка {id}: эвакуация жителей продолжается")
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def web_config(project: Project, base: str) -> None:
    copy_example_config(
        project,
        channels='[[channels]]\nusername = "testograd"\nsource = "web"\nbackfill = "all"\n',
        web=f'base_url = "{base}"\n',
    )
    config = project.data / "config.toml"
    config.write_text(config.read_text().replace("delay_seconds = 1.0", "delay_seconds = 0.0"))


# ---------------------------------------------------------------------------- the tests


def test_the_image_holds_only_what_runs() -> None:
    script = r"""
        echo "uid=$(id -u)"; echo "cwd=$(pwd)"; echo "config=$(readlink /config.toml)"
        echo "app=$(ls -A /app | tr '\n' ' ')"
        echo "leftovers=$(find / -xdev \( -name 'telewatch*.egg-info' -o -path /app/build \
             -o -path /app/archiver -o -name pyproject.toml \) -print 2>/dev/null | tr '\n' ' ')"
        echo "pip=$(ls /app/bin | grep -c pip)"
        echo "module=$(python -c 'import archiver; print(archiver.__file__)')"
    """
    out = podman("run", "--rm", "--no-healthcheck", "--entrypoint", "sh", IMAGE, "-c", script)
    assert out.returncode == 0, out.stderr
    seen = dict(line.split("=", 1) for line in out.stdout.splitlines())
    assert (seen["uid"], seen["cwd"], seen["config"]) == (str(UID), "/", "data/config.toml")
    assert seen["app"].split() == ["bin", "include", "lib", "lib64", "pyvenv.cfg"]  # a venv
    assert seen["leftovers"] == ""  # no source copy, build/, telewatch.egg-info, pyproject
    assert seen["pip"] == "0"  # nothing installs at run time
    assert seen["module"].startswith("/app/lib/python3.11/site-packages/archiver/")

    [info] = json.loads(podman("image", "inspect", IMAGE).stdout)
    config = info["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert info["Healthcheck"]["Test"] == ["CMD", "telewatch", "health"]  # podman: top level
    assert "/data" in config["Volumes"]
    assert config["Entrypoint"] == ["telewatch"] and config["Cmd"] == ["run"]
    log = os.environ.get("TELEWATCH_BUILD_LOG")
    if log and Path(log).is_file():  # pip ran in the virtualenv: no warning about root
        assert "Running pip as the 'root' user" not in Path(log).read_text()
    print(f"\nfigure: image size {info['Size'] / 1e6:.0f} MB")  # for docs/benchmarks.md


def test_the_demo_needs_no_config_and_writes_data_demo_db(project: Project) -> None:
    out = podman(*project.docker_run(DEMO))
    assert out.returncode == 0, out.stderr
    # on the host, through compose, as the user types it (archiver/demo.py closing)
    assert "Done. Explore it: docker compose run --rm telewatch --db data/demo.db" in out.stdout
    assert "cp config.example.toml data/config.toml" in out.stdout
    assert "`data/demo.db`" in README  # where the README says it writes
    assert (project.data / "demo.db").is_file()
    assert sorted(p.name for p in project.data.iterdir()) == ["demo.db"]  # no data/data


def test_an_unwritable_data_folder_is_one_clear_line(project: Project) -> None:
    os.chown(project.data, 0, 0)  # the README's chown forgotten: root's 0755 folder
    project.data.chmod(0o755)
    out = podman(*project.docker_run(DEMO))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        "Error: data: permission denied (telewatch runs as uid 10001); give that user access "
        "to the folder, e.g. `sudo chown -R 10001:10001 data`"
    ]


def test_a_read_only_data_volume_is_one_clear_line(project: Project) -> None:
    """`-v ./data:/data:ro` (a mount made read-only by mistake, or a backup share): one line
    that says so, not "permission denied ... chown" (chown cannot help there), and exit 1."""
    words = project.docker_run(DEMO)
    i = words.index(f"{project.path}/data:/data")
    words[i] += ":ro"
    out = podman(*words)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        "Error: data: on a read-only filesystem (a volume mounted read-only, `:ro`?); telewatch"
        " writes the archive and its -wal/-shm files there: mount it read-write"
    ]


def test_import_search_backup_and_restore_in_the_documented_layout(project: Project) -> None:
    copy_example_config(project)  # the example as it is: data/telewatch.db, data/backups ...
    export = project.data / "ChatExport_2024-05-01" / "result.json"
    export.parent.mkdir()
    export.write_bytes((FIXTURES / "export" / "channel.json").read_bytes())

    imported = podman(*project.compose_run(IMPORT))
    assert imported.returncode == 0, imported.stderr
    assert "vsaldo: 10 posts added" in imported.stdout
    # where the README says: data/telewatch.db, ./data/telewatch.db on the host
    assert "`data/telewatch.db`" in README
    assert (project.data / "telewatch.db").is_file()
    assert not (project.data / "data").exists()
    assert project.sql("SELECT count(*) FROM posts") == [(10,)]

    found = podman(*project.compose_run(SEARCH))
    assert found.returncode == 0, found.stderr
    assert "Объявлена [эвакуация] жителей Заречного" in found.stdout  # the match marked

    assert BACKUP_DOC in (ROOT / "docs" / "operations.md").read_text()
    made = podman(*project.command("backup"))
    assert made.returncode == 0, made.stderr
    [copy] = (project.data / "backups").glob("telewatch-*.db")  # data/backups, as documented

    # restore with no terminal: a clear line naming --yes, not "Aborted!"
    words = shlex.split(documented(RESTORE).replace("telewatch-20240501T033000Z.db", copy.name))
    restore = words[words.index("restore") :]
    refused = podman(*project.command(*[w for w in restore if w != "--yes"]))
    assert refused.returncode == 1
    assert "Aborted!" not in refused.stderr
    assert refused.stderr.splitlines() == [
        "Error: restore: nothing to ask for confirmation on (no terminal, or the connection "
        f"dropped); run `telewatch restore data/backups/{copy.name} --yes` to replace "
        "data/telewatch.db"
    ]
    restored = podman(*project.command(*restore))
    assert restored.returncode == 0, restored.stderr
    assert f"data/telewatch.db: restored from data/backups/{copy.name}" in restored.stdout


def test_cron_sync_then_search_from_a_second_container(
    project: Project, tme: tuple[FakeTme, str]
) -> None:
    fake, base = tme
    web_config(project, base)
    sync = project.compose_run(CRON, "--network", "host")

    first = podman(*sync)
    assert first.returncode == 0, first.stderr
    assert "testograd: ok, 25 new" in first.stdout

    found = podman(*project.compose_run(SEARCH))  # another container, the same volume
    assert found.returncode == 0, found.stderr
    assert "Сводка 25: [эвакуация] жителей продолжается" in found.stdout
    assert "20 result(s) (--limit reached)" in found.stdout

    # the next cron pass: a new post, and an edit of a recent one, read by the same line
    ch = fake.channels["testograd"]
    ch.add(FakePost(26, html.escape("Сводка 26: эвакуация завершена"), T0 + timedelta(hours=26)))
    ch.add(FakePost(24, html.escape("Сводка 24: эвакуация отменена"), T0 + timedelta(hours=24),
                    edited=True))  # fmt: skip
    second = podman(*sync)
    assert second.returncode == 0, second.stderr
    assert "testograd: ok, 1 new, 1 edited" in second.stdout
    versions = project.sql(
        "SELECT v.text FROM versions v JOIN posts p ON p.id = v.post_id "
        "WHERE p.message_id = 24 ORDER BY v.id"
    )
    assert [v[0] for v in versions] == [
        "Сводка 24: эвакуация жителей продолжается",
        "Сводка 24: эвакуация отменена",
    ]


def wait_for_heartbeat(project: Project, process: str = "run") -> float:
    """Poll the archive from the host (read-only) until ``process`` wrote its heartbeat;
    returns when (time.monotonic())."""
    db = project.data / "telewatch.db"
    deadline = time.monotonic() + START_WITHIN
    while time.monotonic() < deadline:
        if db.exists() and Path(f"{db}-shm").exists():
            try:
                con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
                try:
                    row = con.execute(
                        "SELECT state FROM heartbeats WHERE process = ?", (process,)
                    ).fetchone()
                finally:
                    con.close()
                if row == ("running",):
                    return time.monotonic()
            except sqlite3.Error:
                pass  # not created or migrated yet
        time.sleep(0.05)
    raise AssertionError(f"no {process} heartbeat within {START_WITHIN} s")


def wait_until(check: object, what: str) -> None:
    deadline = time.monotonic() + START_WITHIN
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {START_WITHIN} s: {what}")


def test_the_compose_service_without_a_bot_token_runs_and_health_follows_it(
    project: Project, tme: tuple[FakeTme, str], container_names: list[str]
) -> None:
    _, base = tme
    web_config(project, base)
    health = project.compose_run(HEALTH, "--network", "host")

    before = podman(*health)  # nothing has run yet
    assert before.returncode == 1
    assert "no archive here yet" in before.stderr

    name = new_name(container_names)
    started = time.monotonic()
    up = podman(*project.compose_up(name, "--network", "host"))  # `run`, no TELEWATCH_BOT_TOKEN
    assert up.returncode == 0, up.stderr
    first_beat = wait_for_heartbeat(project)
    print(f"\nfigure: docker run -> first heartbeat {first_beat - started:.2f} s")

    # the scheduler's first sync (at start) archives the channel; a second container finds it
    wait_until(
        lambda: "Сводка 25" in podman(*project.compose_run(SEARCH)).stdout,
        "the scheduler's first sync archives testograd",
    )
    during = podman(*health)
    assert during.returncode == 0, during.stdout + during.stderr
    [line] = [x for x in during.stdout.splitlines() if "process run" in x]
    assert line.startswith("ok: process run: heartbeat ")
    assert line.endswith("; bot off: no bot token (TELEWATCH_BOT_TOKEN or [bot] token); "
                         "archiving and the jobs run, alerts wait in the outbox until the token "
                         "is set and telewatch restarted")  # fmt: skip
    assert "ok: channel testograd: synced" in during.stdout
    checked = podman("healthcheck", "run", name)  # the image's own HEALTHCHECK
    assert checked.returncode == 0, checked.stdout + checked.stderr

    stopped = podman("stop", name, timeout=60)  # `docker compose stop`: SIGTERM, then the grace
    assert documented(STOP) and stopped.returncode == 0, stopped.stderr
    state = json.loads(podman("inspect", name).stdout)[0]["State"]
    assert state["ExitCode"] == 0  # it stopped by itself on SIGTERM: not killed (137)
    logs = podman("logs", name).stderr
    assert len([x for x in logs.splitlines() if "bot off: no bot token" in x]) == 1, logs
    assert "received SIGTERM: shutting down" in logs and "telewatch run: stopped" in logs

    after = podman(*health)
    assert after.returncode == 1
    assert "PROBLEM: process run: stopped cleanly" in after.stdout


def test_run_no_bot_stops_on_sigterm_within_the_grace_period(
    project: Project, tme: tuple[FakeTme, str], container_names: list[str]
) -> None:
    _, base = tme
    web_config(project, base)
    name = new_name(container_names)
    run = project.compose_up(name, "--network", "host", "--no-healthcheck",
                             command=["run", "--no-bot"])  # fmt: skip
    run[run.index("--stop-timeout") + 1] = str(STOP_GRACE)  # Docker's default grace period
    assert podman(*run).returncode == 0
    wait_for_heartbeat(project)

    began = time.monotonic()
    stopped = podman("stop", name, timeout=60)
    took = time.monotonic() - began
    assert stopped.returncode == 0, stopped.stderr
    state = json.loads(podman("inspect", name).stdout)[0]["State"]
    assert state["ExitCode"] == 0  # SIGTERM handled: a SIGKILL after the grace would be 137
    logs = podman("logs", name).stderr
    assert "received SIGTERM: shutting down" in logs and "telewatch run: stopped" in logs
    assert "bot off" in logs and "no bot token" not in logs  # --no-bot: off by choice
    print(f"\nfigure: docker stop (SIGTERM) -> exit {took:.2f} s")

    after = podman(*project.compose_run(HEALTH, "--network", "host"))
    assert after.returncode == 1
    assert "PROBLEM: process run: stopped cleanly" in after.stdout


def test_health_names_the_error_that_stopped_run(project: Project) -> None:
    # a Telethon channel and no login: `run` stops at once with exit 3
    (project.path / ".env").write_text(
        "TELEWATCH_API_ID=12345\nTELEWATCH_API_HASH=0123456789abcdef0123456789abcdef\n"
    )
    copy_example_config(project, channels='[[channels]]\nusername = "vsaldo"\n')
    run = podman(*project.command("run"))
    assert run.returncode == 3, run.stderr
    error = run.stderr.splitlines()[-1]
    assert error.startswith("Error: ") and "telewatch login" in error

    health = podman(*project.compose_run(HEALTH))
    assert health.returncode == 1
    [line] = [x for x in health.stdout.splitlines() if "process run" in x]
    assert line.startswith("PROBLEM: process run: stopped by an error")
    assert line.endswith(error.removeprefix("Error: "))


WEB_UP = "docker compose --profile web up -d"


def test_the_web_view_service_serves_the_archive_behind_its_password(
    project: Project, container_names: list[str]
) -> None:
    """The compose file's `web` service (profile web): `telewatch serve` on the container's
    network, which it refuses without [web_view] password_hash; with one, every page asks for
    the password and the search finds the demo's posts. (The image had no web view before:
    docs said to pip install it beside the archive.)"""
    import re
    import socket

    from archiver.password import hash_password

    yaml = pytest.importorskip("yaml")
    assert documented(WEB_UP)
    web = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]
    assert web["profiles"] == ["web"] and web["ports"] == ["127.0.0.1:8001:8001"]
    demo = podman(*project.docker_run(DEMO))
    assert demo.returncode == 0, demo.stderr
    with socket.socket() as s:  # --network host (test-only): a free port of the host's
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [*web["command"][:-1], str(port)]
    assert command[:3] == ["serve", "--host", "0.0.0.0"]

    no_password = podman(*project.command("--db", "data/demo.db", *command))
    assert no_password.returncode == 2 and "a password is required" in no_password.stderr
    assert "Traceback" not in no_password.stderr

    password = "correct horse battery"
    (project.data / "config.toml").write_text(
        '[storage]\npath = "data/demo.db"\n\n[web_view]\n'
        f'password_hash = "{hash_password(password)}"\n'
    )
    os.chown(project.data / "config.toml", UID, UID)
    name = new_name(container_names)
    up = podman("run", "-d", "--name", name, "--network", "host", *project.compose_flags(),
                *project.extra, IMAGE, *command)  # fmt: skip
    assert up.returncode == 0, up.stderr
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(f"{base}/-/telewatch/login"), "the web view listens")
    with httpx.Client(base_url=base, trust_env=False, timeout=30) as client:
        locked = client.get("/-/telewatch/search?q=евакуація")
        assert locked.status_code == 302
        assert locked.headers["location"].startswith("/-/telewatch/login")
        form = client.get("/-/telewatch/login?next=/-/telewatch/search")
        token = re.search(r'name="csrftoken" value="([^"]+)"', form.text)
        assert token is not None
        signed = client.post(
            "/-/telewatch/login",
            data={"csrftoken": token.group(1), "password": password,
                  "next": "/-/telewatch/search?q=евакуація"},
        )  # fmt: skip
        assert signed.status_code == 302
        found = client.get("/-/telewatch/search?q=евакуація")
        assert found.status_code == 200
        total = re.search(r'id="total" data-total="(\d+)"', found.text)
        assert total is not None and int(total.group(1)) > 0
    stopped = podman("stop", name, timeout=60)
    assert stopped.returncode == 0, stopped.stderr


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, trust_env=False, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


# ------------------------------------------------------------ the compose `postgres` profile
POSTGRES_UP = "docker compose --profile postgres up -d postgres archiver-1 archiver-2 bot"


def compose_service(name: str) -> dict[str, object]:
    yaml = pytest.importorskip("yaml")
    svc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][name]
    assert isinstance(svc, dict)
    return svc


BOT_TOKEN = "123456:TEST-token"


class _BotApiThread:
    """tests/fakes/botapi.py's fake Bot API on the host's loopback, in a thread of its own
    (this module's tests are synchronous)."""

    def __init__(self) -> None:
        import asyncio

        from fakes.botapi import FakeBotApi

        self.loop = asyncio.new_event_loop()
        self.fake = FakeBotApi(BOT_TOKEN)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(30)
        self.api_base_url = self.fake.api_base_url

    def sent(self) -> list[Any]:
        return list(self.fake.sent())

    def close(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.fake.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


class _Relay(socketserver.ThreadingTCPServer):
    """TCP on the host's loopback to the test server's Unix socket (in its private data
    folder, which the container's user cannot enter): what the containers see of
    PostgreSQL, as the compose file's `postgres` service is TCP on its network."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.upstreams: set[Any] = set()
        super().__init__(("127.0.0.1", 0), _RelayHandler)

    def server_close(self) -> None:
        super().server_close()
        for upstream in list(self.upstreams):  # connections still open when the test ends
            upstream.close()


class _RelayHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        import socket

        assert isinstance(self.server, _Relay)
        upstream = socket.socket(socket.AF_UNIX)
        self.server.upstreams.add(upstream)
        try:
            upstream.connect(self.server.socket_path)
            self._both_ways(upstream)
        finally:
            self.server.upstreams.discard(upstream)
            upstream.close()

    def _both_ways(self, upstream: Any) -> None:
        import socket

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        other = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
        other.start()
        pump(self.request, upstream)
        other.join()


def test_the_postgres_profile_workers_share_the_channels_and_survive_a_kill(
    project: Project, container_names: list[str], pg_server: str
) -> None:
    """The profile's two archiver workers, as the compose file runs them, on one PostgreSQL
    (the test's own server, reached through its socket: the `postgres` image cannot be pulled
    here): each follows half the channels, and when one is killed the other takes its half."""
    from urllib.parse import parse_qs, urlsplit

    import psycopg
    from pg import new_database

    assert documented(POSTGRES_UP)
    url = new_database(pg_server)
    folder = parse_qs(urlsplit(url).query)["host"][0]
    relay = _Relay(str(Path(folder) / ".s.PGSQL.5432"))
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    inside = f"postgresql://postgres@127.0.0.1:{relay.server_address[1]}{urlsplit(url).path}"
    fake = FakeTme()
    names = [f"chan{i}" for i in range(1, 5)]
    for i, n in enumerate(names):
        ch = fake.channel(n, page_size=10, bare_id=1811111111 + i)
        ch.add_texts(range(1, 31), n + " сводка {id}: эвакуация")
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    channels = "".join(
        f'[[channels]]\nusername = "{n}"\nsource = "web"\nbackfill = "all"\n' for n in names
    )
    copy_example_config(project, channels=channels, web=f'base_url = "{base}"\n')
    config = project.data / "config.toml"
    text = config.read_text().replace("delay_seconds = 1.0", "delay_seconds = 0.0")
    assert "\nlease_seconds = 60\n" in text  # the example's [workers], shortened for the test
    text = text.replace("\nlease_seconds = 60\n", "\nlease_seconds = 4\n")
    bot_api = _BotApiThread()  # the compose file's bot, talking to a fake Bot API
    for key, value in (
        ("api_base_url", f'"{bot_api.api_base_url}"'),
        ("allowed_users", "[111]"),
    ):
        line = next(x for x in text.splitlines() if x.startswith(f"{key} = "))
        text = text.replace(line, f"{key} = {value}")
    config.write_text(text + '[[rules]]\nname = "done"\nquery = "завершена"\nnotify = [111]\n')

    def held() -> dict[str, str]:
        with psycopg.connect(url) as conn, conn.transaction():
            if not conn.execute("SELECT to_regclass('leases')").fetchall()[0][0]:
                return {}  # the first worker has not made the archive yet
            rows = conn.execute(
                "SELECT unit, worker FROM leases WHERE expires_at > to_char(clock_timestamp()"
                " AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')"  # leases.db_now's clock
            ).fetchall()
        return {str(u): str(w) for u, w in rows}

    def posts() -> list[tuple[object, ...]]:
        with psycopg.connect(url) as conn:
            if not conn.execute("SELECT to_regclass('observations')").fetchall()[0][0]:
                return []
            return conn.execute(
                "SELECT count(*), count(DISTINCT (channel_id, message_id)),"
                " (SELECT count(*) FROM versions),"
                " (SELECT count(*) FROM observations WHERE kind = 'seen') FROM posts"
            ).fetchall()

    started: dict[str, str] = {}
    try:
        bot = compose_service("bot")
        assert bot["command"] == ["bot"]
        name = new_name(container_names)
        up = podman(*project.compose_up(
            name, "--network", "host", "-e", f"TELEWATCH_DATABASE_URL={inside}",
            "-e", f"TELEWATCH_BOT_TOKEN={BOT_TOKEN}", command=["bot"],
        ))  # fmt: skip
        assert up.returncode == 0, up.stderr
        started["bot"] = name
        for worker in ("archiver-1", "archiver-2"):
            svc = compose_service(worker)
            command = [str(c) for c in svc["command"]]  # type: ignore[attr-defined]
            assert command == ["run", "--no-bot", "--worker", worker]
            name = new_name(container_names)
            up = podman(*project.compose_up(
                name, "--network", "host", "-e", f"TELEWATCH_DATABASE_URL={inside}",
                command=command,
            ))  # fmt: skip
            assert up.returncode == 0, up.stderr
            started[worker] = name

        def shared() -> bool:
            h = held()
            return len(h) == 4 and sorted(h.values()) == ["archiver-1"] * 2 + ["archiver-2"] * 2

        wait_until(shared, "the two workers hold two channels each")
        wait_until(lambda: posts() == [(120, 120, 120, 120)], "120 posts archived once")

        victim = held()["web:chan1"]
        podman("kill", "--signal", "KILL", started[victim])
        for n in names:
            fake.channels[n].add_texts([31], n + " сводка {id}: эвакуация завершена")
        survivor = "archiver-2" if victim == "archiver-1" else "archiver-1"
        wait_until(
            lambda: set(held().values()) == {survivor} and len(held()) == 4,
            "the survivor holds every channel",
        )
        wait_until(lambda: posts() == [(124, 124, 124, 124)], "the new posts archived once")
        # the bot sends each "завершена" alert once: four, whichever worker archived the post
        wait_until(lambda: len(bot_api.sent()) >= 4, "the bot sends the four alerts")
        time.sleep(2)  # a duplicate would be sent by now
        texts = sorted(c.params["text"] for c in bot_api.sent())
        assert len(texts) == 4 and all("завершена" in t for t in texts), texts
        assert {c.chat_id for c in bot_api.sent()} == {111}
        logs = podman("logs", started[survivor]).stderr
        assert "Traceback" not in logs, logs
    except AssertionError:
        for worker, name in started.items():  # what the workers said, for the failure
            print(f"--- {worker}:\n{podman('logs', name).stderr[-3000:]}")
        print(f"--- leases: {held()}")
        raise
    finally:
        for s in (server, relay):
            s.shutdown()
            s.server_close()
        bot_api.close()


def test_the_postgres_profiles_web_view_reads_the_archive_there(
    project: Project, container_names: list[str], pg_server: str, tmp_path: Path
) -> None:
    """The profile's `web-pg` service, as the compose file runs it, on a PostgreSQL archive
    (the test's own server through the relay, the demo archive moved there by `migrate`'s
    code): behind its password, the search finds the demo's posts; its start-up line hides
    the URL's password."""
    import asyncio
    import re
    import socket
    from urllib.parse import parse_qs, urlsplit

    from pg import new_database

    from archiver.demo import run_demo
    from archiver.password import hash_password
    from archiver.store.transfer import migrate, open_pair

    assert documented(POSTGRES_UP) and "Add `web-pg` to that line" in README
    svc = compose_service("web-pg")
    assert svc["profiles"] == ["postgres"] and svc["ports"] == ["127.0.0.1:8001:8001"]
    assert "TELEWATCH_DATABASE_URL" in svc["environment"]  # type: ignore[operator]
    url = new_database(pg_server)

    async def archive() -> None:
        demo = tmp_path / "demo.db"
        await run_demo(demo, lambda _line: None)
        source, target = await open_pair(demo, url)
        try:
            await migrate(source, target)
        finally:
            await source.close()
            await target.close()

    asyncio.run(archive())
    folder = parse_qs(urlsplit(url).query)["host"][0]
    relay = _Relay(str(Path(folder) / ".s.PGSQL.5432"))
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    # a password in the URL (the test server trusts its users: it is there to be hidden)
    inside = (
        f"postgresql://postgres:s3cret-pw@127.0.0.1:{relay.server_address[1]}{urlsplit(url).path}"
    )
    password = "correct horse battery"
    (project.data / "config.toml").write_text(
        f'[web_view]\npassword_hash = "{hash_password(password)}"\n'
    )
    os.chown(project.data / "config.toml", UID, UID)
    with socket.socket() as s:  # --network host (test-only): a free port of the host's
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [str(c) for c in svc["command"]]  # type: ignore[attr-defined]
    assert command[:3] == ["serve", "--host", "0.0.0.0"]
    command[-1] = str(port)
    name = new_name(container_names)
    try:
        up = podman(*project.compose_up(
            name, "--network", "host", "-e", f"TELEWATCH_DATABASE_URL={inside}",
            command=command,
        ))  # fmt: skip
        assert up.returncode == 0, up.stderr
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{base}/-/telewatch/login"), "the web view listens")
        with httpx.Client(base_url=base, trust_env=False, timeout=30) as client:
            locked = client.get("/-/telewatch/search?q=евакуація")
            assert locked.status_code == 302
            form = client.get("/-/telewatch/login?next=/-/telewatch/search")
            token = re.search(r'name="csrftoken" value="([^"]+)"', form.text)
            assert token is not None
            signed = client.post(
                "/-/telewatch/login",
                data={"csrftoken": token.group(1), "password": password,
                      "next": "/-/telewatch/search?q=евакуація"},
            )  # fmt: skip
            assert signed.status_code == 302
            found = client.get("/-/telewatch/search?q=евакуація")
            assert found.status_code == 200 and "Tables</a>" not in found.text
            total = re.search(r'id="total" data-total="(\d+)"', found.text)
            assert total is not None and int(total.group(1)) > 0
        logs = podman("logs", name).stderr
        assert "telewatch web view of PostgreSQL postgresql://postgres:***@127.0.0.1:" in logs
        assert "s3cret-pw" not in logs and "Traceback" not in logs, logs
        stopped = podman("stop", name, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
    finally:
        relay.shutdown()
        relay.server_close()
