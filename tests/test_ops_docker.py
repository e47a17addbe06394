"""The container, checked without a Docker engine: hadolint, and the command it runs is the
`telewatch run` the README documents; the compose file and the docs agree with it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from archiver.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def last(ins: list[tuple[str, str]], name: str) -> str:
    values = [v for k, v in ins if k == name]
    assert values, f"no {name} in the Dockerfile"
    return values[-1]


def exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(x, str) for x in parsed)
    return parsed


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    exe = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint is not installed")
    result = subprocess.run(
        [exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_telewatch_run_as_the_readme_says() -> None:
    ins = instructions(DOCKERFILE)
    command = exec_form(last(ins, "ENTRYPOINT")) + exec_form(last(ins, "CMD"))
    assert command == ["telewatch", "run"]
    readme = (ROOT / "README.md").read_text()
    assert "`" + " ".join(command) + "`" in readme
    # any other command is `docker compose run --rm telewatch <command>`, as documented
    assert exec_form(last(ins, "ENTRYPOINT")) == ["telewatch"]
    assert "docker compose run --rm telewatch login" in readme


def test_the_image_is_built_as_the_brief_says() -> None:
    ins = instructions(DOCKERFILE)
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", last(ins, "FROM"))
    runs = " && ".join(v for k, v in ins if k == "RUN")
    assert "pip install --no-cache-dir -r requirements.lock" in runs
    assert "pip install --no-cache-dir --no-deps ." in runs
    user = last(ins, "USER").split(":")[0]
    assert user not in ("root", "0")
    assert last(ins, "WORKDIR") == "/data"
    assert exec_form(last(ins, "VOLUME")) == ["/data"]
    assert "TELEWATCH_CONFIG=/data/config.toml" in last(ins, "ENV")
    health = last(ins, "HEALTHCHECK")
    assert exec_form(health.split("CMD", 1)[1].strip()) == ["telewatch", "health"]
    # no secret is baked in: nothing sets a token, hash or session
    for kind, value in ins:
        if kind in ("ENV", "ARG"):
            assert not re.search(r"TOKEN|HASH|SESSION|API_ID", value), value


def test_dockerignore_keeps_secrets_and_data_out() -> None:
    lines = [
        x.strip()
        for x in (ROOT / ".dockerignore").read_text().splitlines()
        if x.strip() and not x.startswith("#")
    ]
    assert lines[0] == "*"  # everything is excluded unless named
    included = {x[1:].rstrip("/") for x in lines if x.startswith("!")}
    assert included == {"requirements.lock", "pyproject.toml", "README.md", "archiver", "bot"}
    ins = instructions(DOCKERFILE)
    copied = {part.rstrip("/") for k, v in ins if k == "COPY" for part in v.split()[:-1]}
    assert copied <= included


def test_compose_runs_the_same_command_with_the_volume() -> None:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["telewatch"]  # `docker compose run --rm telewatch login`
    entrypoint = exec_form(last(instructions(DOCKERFILE), "ENTRYPOINT"))
    assert entrypoint + service["command"] == ["telewatch", "run"]
    assert any(v.endswith(":/data") for v in service["volumes"])
    assert service["env_file"]
    text = (ROOT / "docker-compose.yml").read_text()
    for documented in ('["run", "--no-bot"]', '["bot"]', "telewatch sync"):
        assert documented in text


def test_operations_doc_covers_the_topics() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    for needle in (
        "docker compose run --rm telewatch login",
        "telewatch run",
        "--no-bot",
        "telewatch sync",
        "crontab",
        "telewatch backup",
        "telewatch restore",
        "telewatch health",
        "migrat",
        "500",
        "FLOOD_WAIT",
        "--log-format",
        "--log-level",
        "| 3 |",
    ):
        assert needle in doc, needle


@pytest.mark.parametrize("command", ["run", "health", "backup", "restore", "maintenance"])
def test_ops_commands_have_a_docstring_with_an_example(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"telewatch {command}" in result.output
