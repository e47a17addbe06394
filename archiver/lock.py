"""One writer at a time: a second ``sync`` or ``run`` on the same archive or session refuses.

Overlapping cron runs are the classic "database is locked" of this field, and one Telegram
session used from two processes gets ``AuthKeyDuplicatedError``. So ``sync`` and ``run`` take an
exclusive :func:`fcntl.flock` on ``<archive>.lock`` (and ``<session>.lock``) before they open
anything, and a second one fails at once with :class:`~archiver.errors.AlreadyRunning`.

``flock`` locks belong to the open file: the kernel drops them when the process exits, however
it exits (even ``kill -9``), so a lock file left behind is never stale. The file holds the pid
of the holder, only to name it in the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

from archiver.config import Settings, account_settings
from archiver.errors import AlreadyRunning, NotWritable, TelewatchError

log = logging.getLogger(__name__)


class FileLock:
    """An exclusive, non-blocking ``flock`` on ``path``; ``what`` names it in the message."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._fh: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self, command: str = "telewatch") -> None:
        """Take the lock or raise :class:`AlreadyRunning` at once (never waits)."""
        if self._fh is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Append mode: opening must not truncate the pid another holder wrote.
            fh = self.path.open("a+", encoding="utf-8")
        except PermissionError:
            raise NotWritable(self.path.parent) from None
        except OSError as exc:
            raise TelewatchError(
                f"{self.path}: cannot create the lock file ({exc.strerror}); "
                "check that the folder is writable"
            ) from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fh)
            fh.close()
            by = f" (pid {holder})" if holder else ""
            raise AlreadyRunning(
                f"{self.what} is in use by another telewatch sync or run{by}; "
                f"wait for it to finish or stop it before starting `{command}` "
                f"(lock file {self.path})"
            ) from None
        except BaseException:
            fh.close()
            raise
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        log.debug("lock %s taken", self.path)

    def release(self) -> None:
        """Drop the lock (the file stays: removing it would race with the next holder)."""
        fh, self._fh = self._fh, None
        if fh is None:
            return
        with contextlib.suppress(OSError):
            fh.seek(0)
            fh.truncate()
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()
        log.debug("lock %s released", self.path)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fh: IO[str]) -> int | None:
    try:
        fh.seek(0)
        text = fh.read(32).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def archive_lock(settings: Settings, worker: str | None = None) -> FileLock:
    """The lock of the archive file: ``<archive>.lock`` beside it; for a named worker
    (``--worker``) ``<archive>.<worker>.lock``: several workers share one archive (their
    leases divide the work), but one name runs once per machine."""
    path = settings.storage.path
    if worker is not None:
        return FileLock(path.with_name(f"{path.name}.{worker}.lock"),
                        f"the worker {worker} of the archive {path}")  # fmt: skip
    return FileLock(path.with_name(path.name + ".lock"), f"the archive {path}")


def session_lock(settings: Settings) -> FileLock:
    """The lock of the Telegram session: ``<session file>.lock``; for a session string
    (``TELEWATCH_SESSION``), a file in the temporary folder named by a digest of the string
    (the string itself never reaches a file name or a message)."""
    tg = settings.telegram
    if tg.session_string:
        digest = hashlib.sha256(tg.session_string.encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"telewatch-session-{digest}.lock"
        return FileLock(path, "the Telegram session of TELEWATCH_SESSION")
    session = tg.session
    if not session.name.endswith(".session"):  # Telethon appends it
        session = session.with_name(session.name + ".session")
    return FileLock(session.with_name(session.name + ".lock"), f"the Telegram session {session}")


def session_locks(settings: Settings, accounts: Iterable[str] | None = None) -> list[FileLock]:
    """The session locks of every ``[[accounts]]`` account (``accounts``: of these), or of
    ``[telegram]``'s session without them."""
    chosen = [a for a in settings.accounts if accounts is None or a.name in accounts]
    return [session_lock(account_settings(settings, a)) for a in chosen]


@contextlib.contextmanager
def instance_lock(
    settings: Settings, *, session: bool, command: str, worker: str | None = None
) -> Iterator[None]:
    """Hold the archive's lock (and the session's, when ``session``) for the block.

    ``with instance_lock(settings, session=uses_telethon, command="sync"): ...``; raises
    :class:`AlreadyRunning` at once when another process holds either. ``worker``: the lock
    of that worker name only (:func:`archive_lock`)."""
    locks = [archive_lock(settings, worker)]
    if session:
        locks += session_locks(settings)
    with contextlib.ExitStack() as stack:
        for lock in locks:
            lock.acquire(command)
            stack.callback(lock.release)
        yield
