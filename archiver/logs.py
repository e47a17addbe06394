"""Logging set-up for the CLI edge: text or JSON lines, and redaction of every secret.

Called once by the CLI; nothing here runs at import time. The redaction filter sits on the
handler, so no logger anywhere (ours, Telethon's, PTB's, httpx's) can write a configured
token, api_hash or session string, nor a Bot API URL with its token, nor a phone number.
The repeat filter beside it writes the same line at most once a minute, with a count of the
copies it held back, so that no fault can fill a disk with one line (12.9 GB once).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

_BOT_TOKEN = re.compile(r"(?<![0-9])\d{5,}:[A-Za-z0-9_-]{30,}")  # also inside /bot<token>/
_PHONE = re.compile(r"(?<![\w/=])\+\d[\d ()-]{7,}\d")
REDACTED = "[redacted]"


class RedactingFilter(logging.Filter):
    """Replaces secrets in the final message (after %-formatting) with ``[redacted]``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, REDACTED)
        text = _BOT_TOKEN.sub(REDACTED, text)
        return _PHONE.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        clean = self.redact(message)
        if clean != message or record.args:
            record.msg = clean
            record.args = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class RepeatFilter(logging.Filter):
    """The same line (logger, level, final message) at most once per ``window`` seconds.

    The copies in between are counted, not written; the next copy written after the window
    says how many were held back (``... [and 41230 more like this in the last 60 s]``). Lines
    with a traceback are held back the same way. At most ``keep`` distinct lines are
    remembered (the oldest forgotten first), so memory stays bounded whatever is logged."""

    def __init__(
        self, window: float = 60.0, keep: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.window = window
        self.keep = keep
        self.clock = clock
        self._seen: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())
        now = self.clock()
        entry = self._seen.get(key)  # [when last written, copies held back since]
        if entry is not None and now - entry[0] < self.window:
            entry[1] += 1
            return False
        if entry is not None and entry[1]:
            held = int(entry[1])
            record.msg = f"{key[2]} [and {held} more like this in the last {now - entry[0]:.0f} s]"
            record.args = None
        self._seen[key] = [now, 0]
        self._seen.move_to_end(key)
        while len(self._seen) > self.keep:
            self._seen.popitem(last=False)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """Configure the root logger once: one stderr handler, redacting."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
            )
        )
    handler.addFilter(RepeatFilter())
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries that log request URLs (which carry the bot token) stay at WARNING.
    for noisy in ("httpx", "httpcore", "telethon.network", "apscheduler.executors", "pymorphy3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
