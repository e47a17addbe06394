"""`run_bot` as its own process stops cleanly on SIGTERM and SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from botkit import MEMBER, fake_api, queue_alerts, seed_channel
from fakes.botapi import TOKEN

from archiver.store.archive import Archive

ROOT = Path(__file__).resolve().parents[2]
CODE = """
import asyncio, sys
from pathlib import Path
from archiver.config import load_settings
from bot.app import run_bot
asyncio.run(run_bot(load_settings(Path(sys.argv[1]))))
print("clean exit", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_the_bot_process_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    db = tmp_path / "s.db"
    async with fake_api() as api:
        if sig == signal.SIGTERM:  # also show the process delivers before it is stopped
            archive = await Archive.open(db)
            await seed_channel(archive)
            await queue_alerts(archive, ["война"])
            await archive.close()
        cfg = tmp_path / "config.toml"
        cfg.write_text(
            f'[storage]\npath = "{db}"\n'
            f'[bot]\ntoken = "{TOKEN}"\napi_base_url = "{api.api_base_url}"\n'
            f"poll_seconds = 0.2\nallowed_users = [{MEMBER}]\n",
            encoding="utf-8",
        )
        env = {
            **os.environ,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONPATH": str(ROOT),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CODE,
            str(cfg),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            if sig == signal.SIGTERM:
                await api.wait_for(chat_id=MEMBER, timeout=30)
            while not api.received.get("getUpdates"):
                assert proc.returncode is None, await proc.communicate()
                await asyncio.sleep(0.05)
            proc.send_signal(sig)
            out, err = await asyncio.wait_for(proc.communicate(), 10)  # the promise: 10 s
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"clean exit" in out
    assert b"Traceback" not in err, err.decode()
    # The updater's last getUpdates (timeout 0) confirmed what it had fetched.
    last = [c for c in api.calls if c.method == "getUpdates"][-1]
    assert last.params.get("timeout") in ("0", "0.0")
    if sig == signal.SIGTERM:
        archive = await Archive.open(db)
        try:
            row = await archive.fetchone("SELECT status FROM alerts")
            assert row is not None and row[0] == "sent"
        finally:
            await archive.close()
