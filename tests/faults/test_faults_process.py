"""Faults met by a real ``telewatch`` process: a Telegram that resets, stalls or refuses, and
SIGTERM/SIGINT in the middle of it. Nothing spins, nothing hangs, the log stays small, the
web channels are archived, the exit code says what happened, and the lock is released."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.faultserver import FaultServer
from fakes.tme import FakeTme

from archiver.lock import FileLock

from .conftest import aimed_session

HANG_GUARD = 60  # seconds: turns a hang into a failure; each process ends far sooner


def write_config(tmp_path: Path, port: int, base_url: str, timeout: float = 0.5) -> Path:
    aimed_session(tmp_path / "tw.session", port)
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[storage]
path = "{tmp_path / "a.db"}"

[telegram]
api_id = 12345
api_hash = "0123456789abcdef0123456789abcdef"
session = "{tmp_path / "tw.session"}"
timeout_seconds = {timeout}
connect_attempts = 3

[web]
base_url = "{base_url}"
delay_seconds = 0

[schedule]
sync = ""
recheck = ""
backup = ""
maintenance = ""

[[channels]]
username = "vsaldo"
backfill = "all"
join = false

[[channels]]
username = "testograd"
source = "web"
backfill = "all"
""",
        encoding="utf-8",
    )
    return config


def env() -> dict[str, str]:
    return {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "TELEWATCH_CONFIG": ""}


def telewatch(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "archiver", "--config", str(config), *args],
        capture_output=True, text=True, env=env(), timeout=HANG_GUARD, check=False,
    )  # fmt: skip


def start(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "archiver", "--config", str(config), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
    )  # fmt: skip


@pytest.fixture
def web_channel(tme: tuple[FakeTme, str]) -> Iterator[str]:
    fake, base = tme
    fake.channel("testograd").add_texts(range(1, 4))
    yield base


@pytest.mark.parametrize("mode", ["reset"])  # refused: in-process, test_faults_telegram
def test_sync_against_a_broken_telegram_archives_the_web_channel_and_exits_partial(
    mode: str, tmp_path: Path, web_channel: str
) -> None:
    with FaultServer(mode) as srv:
        config = write_config(tmp_path, srv.port, web_channel)
        out = telewatch(config, "sync")
        connections = srv.connections
    assert out.returncode == 4, out.stderr
    assert "testograd: ok, 3 new" in out.stdout
    assert "vsaldo: error" in out.stdout
    assert "Error: sync: 1 of 2 channel(s) failed" in out.stderr
    assert "Traceback" not in out.stderr
    assert connections <= 2 * 3
    # The log holds each line once: Telethon's reconnect warning is not repeated per attempt.
    assert out.stderr.count("Server closed the connection") <= 1
    assert len(out.stderr) < 20_000


def test_sync_without_a_session_still_archives_the_web_channel(
    tmp_path: Path, web_channel: str
) -> None:
    config = write_config(tmp_path, 1, web_channel)
    (tmp_path / "tw.session").unlink()
    out = telewatch(config, "sync")
    assert out.returncode == 4, out.stderr
    assert "testograd: ok, 3 new" in out.stdout
    assert "vsaldo: error: vsaldo: not logged in: run `telewatch login`" in out.stdout
    assert "run `telewatch login` for the Telegram ones" in out.stderr


def wait_for_connection(srv: FaultServer, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while srv.connections == 0:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "telewatch never connected"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("command", "sig", "code"),
    [
        (("sync",), signal.SIGTERM, 143),
        (("sync",), signal.SIGINT, 130),
        (("run", "--no-bot"), signal.SIGTERM, 0),
        (("run", "--no-bot"), signal.SIGINT, 0),
    ],
)
def test_a_signal_ends_a_command_stuck_on_a_stalled_telegram_and_frees_the_lock(
    command: tuple[str, ...], sig: signal.Signals, code: int, tmp_path: Path
) -> None:
    with FaultServer("stall") as srv:
        config = write_config(tmp_path, srv.port, "https://t.me", timeout=600)
        proc = start(config, *command)
        try:
            wait_for_connection(srv, proc)
            proc.send_signal(sig)
            _, stderr = proc.communicate(timeout=HANG_GUARD)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    lock = FileLock(tmp_path / "a.db.lock", "the archive")
    lock.acquire()  # free again
    lock.release()
