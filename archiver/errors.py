"""The one exception hierarchy of telewatch.

Every error a user can cause derives from :class:`TelewatchError`. Each edge translates it
once: the CLI prints ``str(err)`` on one line and exits with ``err.exit_code``; the bot replies
with usage text; the archiver logs it and goes on with the next channel.
"""

from __future__ import annotations

import os
from pathlib import Path


class TelewatchError(Exception):
    """Base class. ``str()`` is a one-line message that says what to do next."""

    exit_code = 1


class ConfigError(TelewatchError):
    """The configuration is invalid; the message names the key."""

    exit_code = 2


class QueryError(TelewatchError):
    """A search or rule query does not parse; the message gives the position."""

    exit_code = 2

    def __init__(self, message: str, position: int, query: str = "") -> None:
        super().__init__(f"{message} at {position}")
        self.reason = message
        self.position = position
        self.query = query


class RuleError(TelewatchError):
    """A rule is invalid; the message names the rule."""

    exit_code = 2


class InputFileError(TelewatchError):
    """An input file (export, rules file) is malformed; the message names the file."""

    exit_code = 1


class ChannelNotFound(TelewatchError):
    """A channel reference matches no archived channel."""

    exit_code = 1


class NotLoggedIn(TelewatchError):
    """No usable Telegram session: the user must run ``telewatch login``."""

    exit_code = 3


class AlreadyRunning(TelewatchError):
    """Another sync or run holds the archive's lock."""

    exit_code = 1


class SourceError(TelewatchError):
    """A channel could not be read from its source (private, no preview, ...)."""

    exit_code = 1


class PartialFailure(TelewatchError):
    """A pass archived some channels and failed others (each named in its own line above)."""

    exit_code = 4


class Interrupted(TelewatchError):
    """Stopped by SIGINT (exit 130) or SIGTERM (exit 143); what was archived is kept."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class NotWritable(TelewatchError):
    """A file or folder telewatch must use is not accessible to the user it runs as (an
    unwritable ``./data`` volume, most often)."""

    exit_code = 1

    def __init__(self, path: str | os.PathLike[str]) -> None:
        uid = os.geteuid()
        p = Path(path)
        try:
            folder = p if p.is_dir() else p.parent
        except OSError:  # not even its folder can be looked into
            folder = p.parent
        if _read_only_fs(folder):
            message = (
                f"{p}: on a read-only filesystem (a volume mounted read-only, `:ro`?); telewatch"
                " writes the archive and its -wal/-shm files there: mount it read-write"
            )
        else:
            message = (
                f"{p}: permission denied (telewatch runs as uid {uid}); give that user access "
                f"to the folder, e.g. `sudo chown -R {uid}:{uid} {folder}`"
            )
        super().__init__(message)
        self.path = p


def _read_only_fs(folder: Path) -> bool:
    """Whether ``folder`` is on a filesystem mounted read-only (there chown cannot help)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
