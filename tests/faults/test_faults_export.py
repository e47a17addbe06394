"""Hostile Telegram Desktop exports: nesting from 1,000 to 50,000 levels in every place the
readers look (the top level, a message, a whole-account file, a header field). Each is one
clear error naming the file, never a RecursionError, with memory flat (ijson keeps the path of
every open level: a 200 KB file of "[" once took 24 GB before it was refused)."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from archiver.errors import InputFileError
from archiver.sources.export import MAX_DEPTH, ExportReader

HEAD = '{"name": "x", "type": "public_channel", "id": 1, "messages": '
MSG = '{"id": 1, "type": "message", "date_unixtime": "1700000000", "text": '
SHAPES = {
    "messages nested": lambda n: HEAD + "[" * n + "]" * n + "}",
    "a message's text nested": lambda n: HEAD + "[" + MSG + "[" * n + "]" * n + "}]}",
    "objects in a message": lambda n: HEAD + "[" + MSG + '"a", "x": ' + '{"a": ' * n + "1"
    + "}" * n + "}]}",
    "whole account": lambda n: '{"chats": {"list": [{"name": "x", "type": "public_channel",'
    ' "id": 1, "messages": [' + MSG + "[" * n + "]" * n + "}]}]}}",
    "only opening brackets": lambda n: HEAD + "[" * n,
}  # fmt: skip


@pytest.mark.parametrize("levels", [1_000, 50_000])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_deep_nesting_is_one_clear_error_with_flat_memory(
    shape: str, levels: int, tmp_path: Path
) -> None:
    path = tmp_path / "result.json"
    path.write_text(SHAPES[shape](levels), encoding="utf-8")
    tracemalloc.start()
    try:
        with pytest.raises(InputFileError) as err:
            list(ExportReader(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    assert f"nested deeper than {MAX_DEPTH} levels" in message or "nested too deep" in message
    assert peak < 16 * 2**20  # the same few MB at 1,000 and at 50,000 levels


def test_nesting_a_real_export_uses_is_read() -> None:
    assert MAX_DEPTH >= 32 * 7  # far above the 7 levels Telegram Desktop writes


def test_import_of_a_deep_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text(SHAPES["messages nested"](200_000), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "archiver", "--db", str(tmp_path / "a.db"), "import", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "TELEWATCH_CONFIG": ""},
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"Error: {path}: nested deeper than {MAX_DEPTH} levels (in its first 65536 bytes):"
        " not a Telegram Desktop export (theirs nest 7 levels at most); export again"
    ]
