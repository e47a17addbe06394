"""A second sync or run on the same archive or session refuses at once; a dead holder frees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from archiver.config import Settings, StorageSettings, TelegramSettings
from archiver.errors import AlreadyRunning, TelewatchError
from archiver.lock import FileLock, archive_lock, instance_lock, session_lock


def settings(tmp_path: Path, db: str = "a.db", session: str = "tg.session") -> Settings:
    return Settings(
        storage=StorageSettings(path=tmp_path / db),
        telegram=TelegramSettings(session=tmp_path / session),
    )


HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from archiver.lock import FileLock
    lock = FileLock(Path(sys.argv[1]), "the archive")
    lock.acquire()
    print("locked", flush=True)
    sys.stdin.read()  # hold until the test closes stdin, or kills us
    """
)


def hold(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_refused_then_free_after_the_holder_is_killed(tmp_path: Path) -> None:
    s = settings(tmp_path)
    path = archive_lock(s).path
    assert path == tmp_path / "a.db.lock"
    proc = hold(path)
    try:
        with pytest.raises(AlreadyRunning) as info:
            archive_lock(s).acquire("sync")
        message = str(info.value)
        assert f"pid {proc.pid}" in message
        assert "a.db" in message and "`sync`" in message
        assert info.value.exit_code == 1
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no clean-up at all: the kernel drops the flock
        proc.wait(timeout=10)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.stdout.close()
    assert path.exists()  # the file stays behind, and does not matter
    lock = archive_lock(s)
    lock.acquire()
    assert path.read_text().strip() == str(os.getpid())
    lock.release()


def test_released_on_exit_of_the_block(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with instance_lock(s, session=True, command="run"):
        with pytest.raises(AlreadyRunning):
            archive_lock(s).acquire()
        with pytest.raises(AlreadyRunning, match="Telegram session"):
            session_lock(s).acquire()
    with instance_lock(s, session=True, command="run"):
        pass


def test_released_when_the_block_raises(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with pytest.raises(RuntimeError), instance_lock(s, session=False, command="sync"):
        raise RuntimeError("sync failed")
    with archive_lock(s):
        pass


def test_same_session_on_another_archive_is_refused(tmp_path: Path) -> None:
    first = settings(tmp_path, db="one.db")
    second = settings(tmp_path, db="two.db")  # same session file
    with instance_lock(first, session=True, command="run"):
        with (
            pytest.raises(AlreadyRunning, match=r"tg\.session"),
            instance_lock(second, session=True, command="sync"),
        ):
            pass
        # a web-only run on the other archive needs no session
        with instance_lock(second, session=False, command="sync"):
            pass
    # the archive lock the refused attempt took was given back
    with archive_lock(second):
        pass


def test_session_lock_names(tmp_path: Path) -> None:
    s = settings(tmp_path, session="account")  # Telethon appends .session
    assert session_lock(s).path == tmp_path / "account.session.lock"
    secret = "1BVtsOKABu-SECRET-SESSION-STRING"
    with_string = replace(s, telegram=replace(s.telegram, session_string=secret))
    lock = session_lock(with_string)
    assert secret not in str(lock.path) and secret not in lock.what
    assert lock.path == session_lock(with_string).path  # the same string, the same lock
    other = replace(s, telegram=replace(s.telegram, session_string=secret + "x"))
    assert session_lock(other).path != lock.path


def test_an_impossible_lock_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the archive's folder should be")
    with pytest.raises(TelewatchError, match=r"data/a\.db\.lock: cannot create the lock file"):
        FileLock(blocker / "a.db.lock", "the archive").acquire()
