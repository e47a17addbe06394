"""`telewatch run` as a real process: starts, refuses a second instance, stops on SIGTERM or
SIGINT within 10 s with exit code 0, with and without the bot; its logs never show a secret."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from archiver.cli import cli
from archiver.store.archive import Archive

STOP_WITHIN = 10.0  # seconds: Docker's default grace period before SIGKILL
START_WITHIN = 60.0  # a generous bound on start-up (imports on a slow CI machine)

API_HASH = "0123456789abcdef0123456789abcdef"
SESSION = "1BVtsOKABu7SESSIONSTRINGabcdefghijklmnopqrstuvwxyz0123456789"
PHONE = "+380 44 123 45 67"


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("TELEWATCH_")}
    e["NO_PROXY"] = "127.0.0.1,localhost"
    e["PYTHONUNBUFFERED"] = "1"
    e.update(extra)
    return e


def write_config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        '[storage]\npath = "data/t.db"\nbackup_dir = "data/backups"\n'
        "[schedule]\nheartbeat_seconds = 1\n" + extra
    )
    return config


@dataclass
class Proc:
    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    async def wait_for_line(self, text: str) -> None:
        assert self.proc.stderr is not None

        async def read() -> None:
            assert self.proc.stderr is not None
            while True:
                raw = await self.proc.stderr.readline()
                if not raw:
                    raise AssertionError(f"exited before {text!r}:\n" + "".join(self.lines))
                self.lines.append(raw.decode())
                if text in self.lines[-1]:
                    return

        await asyncio.wait_for(read(), START_WITHIN)

    async def stop(self, sig: signal.Signals) -> int:
        assert self.proc.stderr is not None
        self.proc.send_signal(sig)
        rest = await asyncio.wait_for(self.proc.stderr.read(), STOP_WITHIN)
        code = await asyncio.wait_for(self.proc.wait(), STOP_WITHIN)
        self.lines.append(rest.decode())
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


@pytest.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[list[Proc]]:
    procs: list[Proc] = []
    yield procs
    for p in procs:
        if p.proc.returncode is None:
            p.proc.kill()
            await p.proc.wait()


async def start(
    procs: list[Proc], tmp_path: Path, *args: str, environ: dict[str, str] | None = None
) -> Proc:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "archiver",
        *args,
        cwd=tmp_path,
        env=environ or env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    p = Proc(proc)
    procs.append(p)
    return p


async def run_health(tmp_path: Path, config: Path, *args: str) -> tuple[int, str]:
    """`telewatch health` in a process of its own: its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "archiver", "--config", str(config), "health", *args,
        cwd=tmp_path, env=env(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), START_WITHIN)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.mark.parametrize(("sig", "fmt"), [(signal.SIGTERM, "text"), (signal.SIGINT, "json")])
async def test_run_starts_refuses_a_second_and_stops_on_signal(
    spawn: list[Proc], tmp_path: Path, sig: signal.Signals, fmt: str
) -> None:
    config = write_config(tmp_path)
    run = await start(spawn, tmp_path, "--config", str(config), "--log-format", fmt, "run",
                      "--no-bot")  # fmt: skip
    await run.wait_for_line("telewatch run: started")

    db = sqlite3.connect(tmp_path / "data" / "t.db")
    try:
        row = db.execute("SELECT pid FROM heartbeats WHERE process = 'run'").fetchone()
    finally:
        db.close()
    assert row == (run.proc.pid,)

    # a second run on the same archive refuses at once, naming the holder
    second = await start(spawn, tmp_path, "--config", str(config), "run", "--no-bot")
    assert second.proc.stderr is not None
    out = await asyncio.wait_for(second.proc.stderr.read(), START_WITHIN)
    assert await second.proc.wait() == 1
    assert f"in use by another telewatch sync or run (pid {run.proc.pid})" in out.decode()

    # and so does `health` say healthy while it runs
    health = await start(spawn, tmp_path, "--config", str(config), "health")
    assert await asyncio.wait_for(health.proc.wait(), START_WITHIN) == 0

    assert await run.stop(sig) == 0
    assert "telewatch run: stopped" in run.stderr
    # after the stop, health says so (not "heartbeat 2 s ago")
    code, said = await run_health(tmp_path, config)
    assert code == 1
    assert "PROBLEM: process run: stopped cleanly " in said
    assert f"(pid {run.proc.pid}); start it again: `telewatch run`" in said
    if fmt == "json":
        records = [json.loads(line) for line in run.stderr.splitlines() if line.strip()]
        assert {"time", "level", "logger", "message"} <= set(records[0])
        assert any(r["message"].startswith("received SIGINT") for r in records)


async def test_run_without_a_bot_token_archives_with_the_bot_off_and_says_so(
    spawn: list[Proc], tmp_path: Path
) -> None:
    # The container's default command with no TELEWATCH_BOT_TOKEN: no exit, so no restart loop.
    config = write_config(tmp_path)
    run = await start(spawn, tmp_path, "--config", str(config), "run")
    await run.wait_for_line("telewatch run: started")
    off = [line for line in run.lines if "bot off" in line and "WARNING" in line]
    assert len(off) == 1, run.stderr
    assert "no bot token (TELEWATCH_BOT_TOKEN or [bot] token); archiving and the jobs run" in off[0]

    code, said = await run_health(tmp_path, config)
    assert code == 0, said
    [line] = [x for x in said.splitlines() if "process run" in x]
    assert line.startswith("ok: process run: heartbeat ")
    assert line.endswith("; bot off: no bot token (TELEWATCH_BOT_TOKEN or [bot] token); "
                         "archiving and the jobs run, alerts wait in the outbox until the token "
                         "is set and telewatch restarted")  # fmt: skip

    assert await run.stop(signal.SIGTERM) == 0


def test_run_without_a_login_exits_3_and_releases_everything(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        f'[telegram]\napi_id = 12345\napi_hash = "{API_HASH}"\n'
        f'session = "{tmp_path / "none.session"}"\n'
        '[[channels]]\nusername = "vsaldo"\n',
    )
    config.write_text(config.read_text().replace('"data/', f'"{tmp_path}/data/'))
    runner = CliRunner()
    for _ in range(2):  # the second attempt finds no lock left behind
        result = runner.invoke(cli, ["--config", str(config), "run", "--no-bot"])
        assert result.exit_code == 3, result.output
        assert "telewatch login" in result.output
    # and health names the error, not the heartbeat written before the login check
    health = runner.invoke(cli, ["--config", str(config), "health"])
    assert health.exit_code == 1
    [line] = [x for x in health.output.splitlines() if "process run" in x]
    assert line.startswith("PROBLEM: process run: stopped by an error")
    assert line.endswith(result.output.strip().removeprefix("Error: "))


async def test_run_with_the_bot_stops_cleanly_and_redacts_secrets(
    spawn: list[Proc], tmp_path: Path
) -> None:
    botapi = pytest.importorskip("fakes.botapi")
    api = botapi.FakeBotApi()
    await api.start()
    try:
        config = write_config(
            tmp_path,
            f'[bot]\napi_base_url = "{api.api_base_url}"\nadmins = [1]\n',
        )
        environ = env(
            TELEWATCH_BOT_TOKEN=botapi.TOKEN,
            TELEWATCH_API_HASH=API_HASH,
            TELEWATCH_SESSION=SESSION,
        )
        run = await start(spawn, tmp_path, "--config", str(config), "--log-level", "DEBUG",
                          "run", environ=environ)  # fmt: skip
        await run.wait_for_line("telewatch run: started")
        # A journalist pastes secrets into the chat: PTB logs every update at DEBUG.
        update_id = api.push_message(
            user_id=1, text=f"{botapi.TOKEN} {API_HASH} {SESSION} call {PHONE}"
        )
        await api.wait_fetched(update_id)
        await run.wait_for_line(f"'update_id': {update_id}")  # PTB's DEBUG line of the update

        assert await run.stop(signal.SIGTERM) == 0
    finally:
        await api.close()
    log = run.stderr
    assert "telewatch run: stopped" in log
    assert "bot on" in log
    assert "[redacted]" in log  # the secrets did reach the log, and were replaced
    for secret in (botapi.TOKEN, API_HASH, SESSION, PHONE, PHONE.replace(" ", "")):
        assert secret not in log


async def test_a_failing_part_stops_the_whole_run_with_its_exit_code(
    spawn: list[Proc], tmp_path: Path
) -> None:
    botapi = pytest.importorskip("fakes.botapi")
    api = botapi.FakeBotApi()  # answers 401 to any other token
    await api.start()
    try:
        config = write_config(tmp_path, f'[bot]\napi_base_url = "{api.api_base_url}"\n')
        wrong = "999999:WRONG-token-for-this-server"
        run = await start(spawn, tmp_path, "--config", str(config), "run",
                          environ=env(TELEWATCH_BOT_TOKEN=wrong))  # fmt: skip
        assert run.proc.stderr is not None
        out = (await asyncio.wait_for(run.proc.stderr.read(), START_WITHIN)).decode()
        assert await run.proc.wait() == 2  # the bot's ConfigError, after a clean teardown
    finally:
        await api.close()
    assert "telewatch run: stopped" in out
    assert "Error: bot.token:" in out.splitlines()[-1]
    assert wrong not in out
    # nothing is left held: a new run can take the archive at once
    again = await start(spawn, tmp_path, "--config", str(config), "run", "--no-bot")
    await again.wait_for_line("telewatch run: started")
    assert await again.stop(signal.SIGTERM) == 0


async def test_the_bot_alone_records_its_stop_for_health(spawn: list[Proc], tmp_path: Path) -> None:
    botapi = pytest.importorskip("fakes.botapi")
    api = botapi.FakeBotApi()
    await api.start()
    try:
        config = write_config(tmp_path, f'[bot]\napi_base_url = "{api.api_base_url}"\n')
        environ = env(TELEWATCH_BOT_TOKEN=botapi.TOKEN)
        bot = await start(spawn, tmp_path, "--config", str(config), "bot", environ=environ)
        await bot.wait_for_line("running")  # "bot @... running": the heartbeat was written before
        code, said = await run_health(tmp_path, config, "--process", "bot")
        assert code == 0, said
        assert await bot.stop(signal.SIGTERM) == 0
    finally:
        await api.close()
    code, said = await run_health(tmp_path, config, "--process", "bot")
    assert code == 1
    assert "PROBLEM: process bot: stopped cleanly" in said
    assert f"(pid {bot.proc.pid}); start it again: `telewatch bot`" in said


async def test_run_on_postgresql_beats_its_heart_there_and_leaves_backups_to_pg_dump(
    spawn: list[Proc], tmp_path: Path, pg_url: str
) -> None:
    config = write_config(tmp_path)
    environ = env(TELEWATCH_DATABASE_URL=pg_url)
    run = await start(spawn, tmp_path, "--config", str(config), "run", "--no-bot", environ=environ)
    await run.wait_for_line("telewatch run: started")
    assert "archive on PostgreSQL: no backup job (pg_dump does that" in run.stderr
    assert "maintenance" in run.stderr.split("telewatch run: started")[1].splitlines()[0]
    assert not (tmp_path / "data" / "t.db").exists()  # the archive is on the server
    async with await Archive.open(pg_url) as a:
        row = await a.fetchone("SELECT pid, state FROM heartbeats WHERE process = 'run'")
        assert row is not None and tuple(row) == (run.proc.pid, "running")
    assert await run.stop(signal.SIGTERM) == 0
    health = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "archiver", "--config", str(config), "health",
        cwd=tmp_path, env=environ, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(health.communicate(), START_WITHIN)
    assert health.returncode == 1
    assert "PROBLEM: process run: stopped cleanly " in out.decode()
