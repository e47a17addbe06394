"""`telewatch bot` as cron-free operators run it: a real process, the fake Bot API over HTTP,
a heartbeat that `telewatch health --process bot` reads, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from botkit import fake_api
from fakes.botapi import TOKEN

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONPATH": str(ROOT),
        "TELEWATCH_CONFIG": "",
    }


async def test_the_bot_command_beats_and_stops(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    async with fake_api() as api:
        cfg.write_text(
            f'[storage]\npath = "{tmp_path / "a.db"}"\n'
            f'[bot]\ntoken = "{TOKEN}"\napi_base_url = "{api.api_base_url}"\n',
            encoding="utf-8",
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "archiver", "--config", str(cfg), "bot",
            env=_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            while not api.received.get("getUpdates"):
                assert proc.returncode is None, await proc.communicate()
                await asyncio.sleep(0.05)
            health = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "archiver", "--config", str(cfg), "health",
                 "--process", "bot"],
                capture_output=True, text=True, env=_env(), timeout=60, check=False,
            )  # fmt: skip
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 10)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
    assert TOKEN.encode() not in err  # the token never reaches the log
    assert health.returncode == 0, health.stdout + health.stderr
