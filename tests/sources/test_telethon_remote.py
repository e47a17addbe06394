"""The shared fake Telegram (tests/fakes/telethon_remote.py) behind real telewatch processes:
what it carries is what the in-process fake answers, and it refuses one session used from two
processes at once, as Telegram does."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

from fakes.telethon_client import SELF_ID, FakeTelegram
from fakes.telethon_remote import serve

from archiver.sources.telethon_session import DUPLICATED

ROOT = Path(__file__).resolve().parents[2]
REMOTE = ROOT / "tests" / "fakes" / "telethon_remote.py"
WITHIN = 60  # seconds: generous, for a loaded machine


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("TELEWATCH_")}
    e.update(NO_PROXY="127.0.0.1,localhost", PYTHONUNBUFFERED="1")
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    return e


def setup(folder: Path, tg: FakeTelegram, account: int = SELF_ID) -> Path:
    (folder / "data").mkdir(parents=True)
    tg.session_file(folder / "data" / "telewatch.session", account)
    config = folder / "config.toml"
    config.write_text(
        '[storage]\npath = "data/t.db"\n'
        '[telegram]\napi_id = 12345\napi_hash = "0123456789abcdef0123456789abcdef"\n'
        "[schedule]\nheartbeat_seconds = 1\n"
        '[[channels]]\nusername = "vsaldo"\nbackfill = "all"\n'
    )
    return config


async def telewatch(address: str, folder: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(REMOTE), address, "--", "--config", str(folder / "config.toml"),
        *args, cwd=folder, env=env(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


def posts(folder: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(folder / "data" / "t.db") as db:
        return list(
            db.execute(
                "SELECT p.message_id, v.text FROM posts p JOIN versions v"
                " ON v.id = p.current_version_id ORDER BY p.message_id"
            )
        )


async def test_a_sync_process_reads_the_tests_telegram(tmp_path: Path) -> None:
    tg = FakeTelegram()
    tg.add_channel()
    tg.posts(5, text="Евакуація {}")
    config = setup(tmp_path, tg)
    async with serve(tg) as served:
        proc = await telewatch(served.address, tmp_path, "sync")
        _, err = await asyncio.wait_for(proc.communicate(), WITHIN)
    assert proc.returncode == 0, err.decode()
    assert posts(tmp_path) == [(i, f"Евакуація {i}") for i in range(1, 6)]
    assert served.duplicated == [] and config.exists()
    # the process asked for the history through the socket, as TL requests
    assert tg.counts().get("messages.GetHistory", 0) >= 1


async def test_one_session_in_two_processes_is_refused_as_telegram_does(tmp_path: Path) -> None:
    """Two archivers on two machines with one session: Telegram answers AUTH_KEY_DUPLICATED
    to the second, which stops with the login line, never a traceback."""
    tg = FakeTelegram()
    tg.add_channel()
    tg.posts(3)
    first, second = tmp_path / "one", tmp_path / "two"
    setup(first, tg)
    setup(second, tg)
    (second / "data" / "telewatch.session").write_bytes(
        (first / "data" / "telewatch.session").read_bytes()
    )  # the same session file copied to a second machine
    async with serve(tg) as served:
        one = await telewatch(served.address, first, "run", "--no-bot")

        async def connected() -> None:
            while not served.places(SELF_ID):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(connected(), WITHIN)
        two = await telewatch(served.address, second, "run", "--no-bot")
        _, err = await asyncio.wait_for(two.communicate(), WITHIN)
        one.terminate()
        await asyncio.wait_for(one.communicate(), WITHIN)
    assert two.returncode != 0
    said = err.decode()
    assert "Traceback" not in said, said
    assert said.splitlines()[-1] == f"Error: {DUPLICATED}"
    assert served.duplicated and all(acc == SELF_ID for acc, _ in served.duplicated)
