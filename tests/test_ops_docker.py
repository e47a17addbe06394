"""The container, checked without a container engine: hadolint, the two-stage build, one volume
layout in the image, the compose file, the example config and the docs (the README's "In a
container" is the one source), and the container's own edge cases run in-process: the demo with
no config, an unwritable ./data, restore with no terminal. tests/container/ runs the built image
for real (`make container-test`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from click.testing import CliRunner

from archiver.cli import cli
from archiver.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
README = ROOT / "README.md"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
WORKDIR = PurePosixPath("/")  # where telewatch runs in the container
VOLUME = PurePosixPath("/data")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, FROM first."""
    out: list[list[tuple[str, str]]] = []
    for ins in instructions(path):
        if ins[0] == "FROM":
            out.append([])
        out[-1].append(ins)
    return out


def last(ins: list[tuple[str, str]], name: str) -> str:
    values = [v for k, v in ins if k == name]
    assert values, f"no {name} in the Dockerfile"
    return values[-1]


def exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(x, str) for x in parsed)
    return parsed


def in_container(path: Path) -> PurePosixPath:
    """Where a path of the settings lands in the container (relative ones resolve in /)."""
    return WORKDIR / PurePosixPath(path.as_posix())


def readme_section() -> str:
    text = README.read_text()
    start = text.index("## In a container")
    return text[start : text.index("\n## ", start + 1)]


# ---------------------------------------------------------------------------- the image


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
    section = readme_section()
    assert "`" + " ".join(command) + "`" in section
    # any other command is `docker compose run --rm telewatch <command>`, as documented
    assert exec_form(last(ins, "ENTRYPOINT")) == ["telewatch"]
    assert "docker compose run --rm telewatch login" in section


def test_two_stages_and_only_the_virtualenv_reaches_the_image() -> None:
    build, final = stages(DOCKERFILE)
    base = build[0][1].split()[0]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base)
    assert build[0][1].split()[-2:] == ["AS", "build"]
    assert final[0] == ("FROM", base)  # the same Python as the virtualenv was made with
    runs = " && ".join(v for k, v in build if k == "RUN")
    assert "python -m venv /app" in runs  # pip inside a virtualenv: no root warning
    assert "/app/bin/pip install --no-cache-dir -r requirements.lock" in runs
    assert "/app/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ." in runs
    assert "/app/bin/pip install --no-cache-dir --no-deps /wheels/telewatch-*.whl" in runs
    assert "/app/bin/pip uninstall --yes pip setuptools" in runs
    # the image gets the virtualenv and nothing else: no source copy, build/ or *.egg-info
    copies = [v for k, v in final if k == "COPY"]
    assert copies == ["--from=build /app /app"]
    assert not any("pip" in v for k, v in final if k == "RUN")
    assert "PATH=/app/bin:$PATH" in last(final, "ENV")
    user = last(final, "USER").split(":")[0]
    assert user == "10001"
    assert "--uid 10001" in last(final, "RUN")
    health = last(final, "HEALTHCHECK")
    assert exec_form(health.split("CMD", 1)[1].strip()) == ["telewatch", "health"]
    # no secret is baked in: nothing sets a token, hash or session
    for kind, value in instructions(DOCKERFILE):
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
    assert included == {"requirements.lock", "pyproject.toml", "README.md", "archiver", "bot",
                        "web"}  # fmt: skip
    copied = {
        part.rstrip("/")
        for k, v in instructions(DOCKERFILE)
        if k == "COPY" and not v.startswith("--from")
        for part in v.split()[:-1]
    }
    assert copied <= included


# ---------------------------------------------------------------------------- one layout


def test_one_volume_layout_in_the_image() -> None:
    final = stages(DOCKERFILE)[-1]
    assert PurePosixPath(last(final, "WORKDIR")) == WORKDIR
    assert exec_form(last(final, "VOLUME")) == [str(VOLUME)]
    assert "chown telewatch:telewatch /data" in last(final, "RUN")
    # ./config.toml, where telewatch looks without --config, is the volume's config.toml
    assert "ln -s data/config.toml /config.toml" in last(final, "RUN")
    assert "TELEWATCH_CONFIG" not in " ".join(v for k, v in final if k == "ENV")
    assert (WORKDIR / "data/config.toml").parent == VOLUME


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(lambda: load_settings(ROOT / "config.example.toml", env={}), id="example"),
        pytest.param(Settings, id="built-in defaults"),
    ],
)
def test_every_path_of_the_config_lands_in_the_volume(settings: type[Settings]) -> None:
    s = settings()
    paths = {
        "storage.path": s.storage.path,
        "storage.backup_dir": s.storage.backup_dir,
        "storage.media_dir": s.storage.media_dir,
        "telegram.session": s.telegram.session,
    }
    for key, path in paths.items():
        assert not path.is_absolute(), key  # the same relative path on the host and inside
        assert in_container(path).parent == VOLUME or VOLUME in in_container(path).parents, key
        assert path.parts[0] == "data", key  # ./data on the host: never ./data/data
    assert in_container(s.storage.path) == VOLUME / "telewatch.db"


def test_compose_runs_the_image_on_the_same_volume() -> None:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["telewatch"]  # `docker compose run --rm telewatch login`
    entrypoint = exec_form(last(instructions(DOCKERFILE), "ENTRYPOINT"))
    assert entrypoint + service["command"] == ["telewatch", "run"]
    assert service["volumes"] == [f"./data:{VOLUME}"]
    assert service["env_file"] == [".env"]
    assert service["init"] is True
    text = (ROOT / "docker-compose.yml").read_text()
    for documented in ('["run", "--no-bot"]', '["bot"]', "telewatch sync"):
        assert documented in text


def docker_commands(text: str) -> set[str]:
    """Every `docker …` command a text shows, up to a comment, backtick, && or line end."""
    found = re.findall(r"docker (?:compose|run|build) [^`\n#&]*", text)
    return {re.sub(r"\s+", " ", c).strip() for c in found}


@pytest.mark.parametrize("doc", ["docs/operations.md", "docker-compose.yml"])
def test_the_readme_is_the_one_source_of_container_commands(doc: str) -> None:
    readme = re.sub(r"\s+", " ", README.read_text())
    commands = docker_commands((ROOT / doc).read_text())
    assert commands
    missing = [c for c in sorted(commands) if c not in readme]
    assert not missing, f"{doc} shows commands the README does not: {missing}"


def test_the_docs_never_name_the_old_nested_layout() -> None:
    for doc in ["README.md", "docs/operations.md", "docs/configuration.md", "docker-compose.yml",
                "config.example.toml", "Dockerfile"]:  # fmt: skip
        text = (ROOT / doc).read_text()
        assert "data/data" not in text, doc
        assert "resolve against `/data`" not in text and "resolve against /data" not in text, doc


def test_readme_documents_the_container_demo_scheduling_and_restore() -> None:
    section = readme_section()
    for needle in (
        'docker run --rm -v "$PWD/data:/data" telewatch demo',
        "sudo chown 10001:10001 data",
        "cp config.example.toml data/config.toml",
        "docker compose up -d",
        "*/15 * * * *  cd /srv/telewatch && docker compose run --rm -T telewatch sync",
        "docker compose run --rm telewatch restore --yes data/backups/",
        "bot off: no bot token",
        "`data/demo.db`",
        "`data/telewatch.db`",
    ):
        assert needle in section, needle


def test_operations_doc_covers_the_topics() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    for needle in (
        "README.md#in-a-container",
        "telewatch run",
        "--no-bot",
        "telewatch sync",
        "crontab",
        "docker compose run --rm -T telewatch sync",
        "telewatch backup",
        "restore --yes",
        "telewatch health",
        "stopped cleanly",
        "bot off",
        "migrat",
        "500",
        "FLOOD_WAIT",
        "--log-format",
        "--log-level",
        "| 3 |",
    ):
        assert needle in doc, needle


def test_benchmarks_give_the_image_size_and_the_time_to_the_first_heartbeat() -> None:
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    section = doc[doc.index("## The container") :]
    assert re.search(r"image size[^\n]*\d+ MB", section, re.I)
    assert re.search(r"to the first heartbeat[^\n]*\d+(\.\d+)? s", section, re.I)


@pytest.mark.parametrize("command", ["run", "health", "backup", "restore", "maintenance"])
def test_ops_commands_have_a_docstring_with_an_example(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"telewatch {command}" in result.output


# ---------------------------------------------------------------------------- edge cases


def test_the_demo_needs_no_config_even_when_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # e.g. `-e TELEWATCH_CONFIG=/data/config.toml` on a fresh volume: the demo runs anyway
    monkeypatch.chdir(tmp_path)
    env = {"TELEWATCH_CONFIG": str(tmp_path / "data" / "config.toml")}
    result = CliRunner().invoke(cli, ["demo"], env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "demo.db").is_file()
    assert not (tmp_path / "data" / "data").exists()
    assert "Done. Explore it: telewatch --db data/demo.db search" in result.output


def test_the_demo_in_the_image_suggests_compose_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the image (TELEWATCH_IN_CONTAINER, set by the Dockerfile) the last lines are what the user
    types on the host: through compose, with the config in data/ (it suggested
    `cp config.example.toml config.toml`, a file the image has not, and a bare telewatch)."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["demo"], env={"TELEWATCH_IN_CONTAINER": "1"})
    assert result.exit_code == 0, result.output
    last = result.output.rstrip().splitlines()[-2:]
    assert last == [
        "Done. Explore it: docker compose run --rm telewatch --db data/demo.db search 'евакуація'",
        "Real use: cp config.example.toml data/config.toml; docker compose run --rm telewatch"
        " login; docker compose up -d",
    ]
    dockerfile = (Path(__file__).parents[1] / "Dockerfile").read_text()
    assert "TELEWATCH_IN_CONTAINER=1" in dockerfile


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Act as a user who may not write where root may: root (CI) switches its effective uid to
    nobody's for the duration; anyone else is unprivileged already."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def readonly_data() -> Iterator[Path]:
    """A project folder whose data/ the test's user may read but not write (owned by root when
    the test runs as root, mode 0555 otherwise), as a fresh ./data volume is for uid 10001."""
    base = Path(tempfile.mkdtemp(prefix="telewatch-ro-"))
    try:
        (base / "data").mkdir()
        shutil.copy(FIXTURES / "export" / "channel.json", base / "channel.json")
        base.chmod(0o755)
        (base / "channel.json").chmod(0o644)
        (base / "data").chmod(0o755 if os.geteuid() == 0 else 0o555)
        yield base
    finally:
        (base / "data").chmod(stat.S_IRWXU)
        shutil.rmtree(base)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["demo"], id="demo"),
        pytest.param(["import", "channel.json", "--username", "vsaldo"], id="import"),
        pytest.param(["sync"], id="sync"),
    ],
)
def test_an_unwritable_data_folder_is_one_clear_line(
    readonly_data: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(readonly_data)
    (readonly_data / "config.toml").write_text(
        '[[channels]]\nusername = "testograd"\nsource = "web"\n'
    )
    runner = CliRunner()
    # what the commands import lazily is imported while still privileged (the interpreter
    # may live where nobody cannot read, e.g. under /root)
    warm = runner.invoke(cli, ["--db", str(readonly_data / "warm.db"), "demo"])
    assert warm.exit_code == 0, warm.output
    with unprivileged():
        result = runner.invoke(cli, ["--config", "config.toml", *args])
    uid = 65534 if os.geteuid() == 0 else os.geteuid()
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, OSError)
    [line] = result.output.splitlines()
    assert line.startswith("Error: data")
    assert f"permission denied (telewatch runs as uid {uid})" in line
    assert line.endswith(f"`sudo chown -R {uid}:{uid} data`")


def test_restore_without_a_terminal_names_yes_instead_of_aborting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default layout: data/telewatch.db, data/backups
    runner = CliRunner()
    imported = runner.invoke(cli, ["import", str(FIXTURES / "export" / "channel.json")])
    assert imported.exit_code == 0, imported.output
    assert runner.invoke(cli, ["backup"]).exit_code == 0
    [backup] = (tmp_path / "data" / "backups").glob("telewatch-*.db")
    name = f"data/backups/{backup.name}"

    refused = runner.invoke(cli, ["restore", name])  # CliRunner's stdin is no terminal
    assert refused.exit_code == 1
    assert refused.output == (
        "Error: restore: nothing to ask for confirmation on (no terminal, or the connection "
        f"dropped); run `telewatch restore {name} --yes` to replace data/telewatch.db\n"
    )
    restored = runner.invoke(cli, ["restore", "--yes", name])
    assert restored.exit_code == 0, restored.output
    assert restored.stdout == f"data/telewatch.db: restored from {name}\n"
