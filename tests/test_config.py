"""Configuration: TOML + environment -> frozen settings; every error one line naming the key."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from archiver.channels import ChannelRef
from archiver.config import (
    DEFAULT_DB,
    Backfill,
    Settings,
    find_config,
    load_settings,
    parse_rules_file,
    summary,
)
from archiver.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def load(tmp_path: Path, text: str, **kw: object) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, env=kw.pop("env", {}), **kw)  # type: ignore[arg-type]


ERRORS = [
    # wrong types and unknown keys
    ("[storage]\npath = 5", "storage.path: expected a string, got 5"),
    ('[storage]\npathh = "x"',
     "storage.pathh: unknown key (see config.example.toml for the known keys)"),
    ("[storage]\nbackup_keep = 0", "storage.backup_keep: expected a positive number, got 0"),
    ("storage = 5", "storage: expected a table, got 5"),
    ("[workers]\nlease_seconds = 0", "workers.lease_seconds: expected a positive number, got 0"),
    ("[workers]\nlease_seconds = 0.5",
     "workers.lease_seconds: expected a number of seconds from 1 to 86400, got 0.5"),
    ("[nope]", "nope: unknown section (known: accounts, bot, channels, display, evidence, logging,"
     " media, recheck, rules, schedule, storage, telegram, web, web_view, workers)"),
    (
        '[telegram]\napi_id = "0123456789abcdef0123456789abcdef"',
        "telegram.api_id: expected an integer, got a value of the wrong kind (not shown: it may"
        " be a secret)",
    ),
    ('[bot]\ntoken = 123456789', "bot.token: expected a string, got a value of the wrong kind"
     " (not shown: it may be a secret)"),
    ("[telegram]\nrecent_hours = true", "telegram.recent_hours: expected an integer, got true"),
    ('[bot]\nadmins = [1, "two"]', "bot.admins[1]: expected an integer Telegram id, got 'two'"),
    (
        '[web]\nbase_url = "ftp://x"',
        "web.base_url: expected an http:// or https:// URL with a host, got 'ftp://x'",
    ),
    ("[web]\ndelay_seconds = -1", "web.delay_seconds: expected zero or more, got -1"),
    ('[logging]\nlevel = "LOUD"',
     "logging.level: expected DEBUG, INFO, WARNING or ERROR, got 'LOUD'"),
    ('[logging]\nformat = "xml"', "logging.format: expected \"text\" or \"json\", got 'xml'"),
    ('[media]\ndownload = ["photo", "hologram"]', "media.download[1]: expected one of photo, "
     "video, document, audio, voice, animation, sticker, got 'hologram'"),
    # backfill
    ('[[channels]]\nusername = "vsaldo"\nbackfill = "forever"', "channels[0].backfill: expected "
     "\"all\", a number of posts or an age like \"90d\", got 'forever'"),
    ('[[channels]]\nusername = "vsaldo"\nbackfill = -3', "channels[0].backfill: expected \"all\", "
     "a number of posts or an age like \"90d\", got -3"),
    # cron
    ('[schedule]\nsync = "*/15 * * *"', "schedule.sync: expected a cron expression of five "
     "fields like \"*/15 * * * *\", got '*/15 * * *'"),
    ('[schedule]\nbackup = "99 * * * *"', "schedule.backup: invalid cron expression '99 * * * *': "
     "Error validating expression '99': the last value (99) is higher than the maximum value (59)"),
    # time zone
    ('[display]\ntimezone = "Mars/Olympus"', "display.timezone: unknown time zone 'Mars/Olympus' "
     "(use an IANA name like \"Europe/Kyiv\")"),
    # rules
    ('[[rules]]\nname = "a"\nquery = "x"\n[[rules]]\nname = "a"\nquery = "y"',
     "rules[1]: the name 'a' is already used by rules[0]"),
    ('[[rules]]\nname = "evac"\nquery = \'"эвакуация\'',
     "rules[0] (evac).query: unbalanced quote at 1: '\"эвакуация'"),
    ('[[rules]]\nname = "evac"\nquery = "эвакуация OR"',
     "rules[0] (evac).query: OR needs a term on both sides at 11: 'эвакуация OR'"),
    ('[[rules]]\nquery = "a"', "rules[0].name: every rule needs a name"),
    ('[[rules]]\nname = "x"',
     "rules[0] (x).query: missing or empty: the search query the rule matches"),
    ('[[rules]]\nname = "x"\nquery = "a"\nkinds = ["new", "moved"]',
     "rules[0] (x).kinds[1]: expected one of new, edited, deleted, got 'moved'"),
    ('[[rules]]\nname = "x"\nquery = "a"\nnotify = [1]\nextra = 1',
     "rules[0] (x).extra: unknown key (see config.example.toml for the known keys)"),
    ('[[rules]]\nname = "x"\nquery = "a"\nchannels = ["vsaldo", "bad ref"]',
     "rules[0] (x).channels[1]: 'bad ref' is not a channel: use a username (vsaldo), an id "
     "(-1001811111111) or a link (https://t.me/vsaldo)"),
    # channels
    ('[[channels]]\nusername = "no spaces"', "channels[0].username: 'no spaces' is not a channel: "
     "use a username (vsaldo), an id (-1001811111111) or a link (https://t.me/vsaldo)"),
    ('[[channels]]\nid = -1001811111111\nsource = "web"', "channels[0].id: a web channel needs "
     "its public username (the preview is t.me/s/<username>)"),
    ('[[channels]]\nlink = "https://t.me/c/1811111111/5"\nsource = "web"', "channels[0].link: a "
     "web channel needs its public username (the preview is t.me/s/<username>)"),
    ('[[channels]]\nusername = "vsaldo"\nid = 5', "channels[0]: give exactly one of username, id "
     "or link"),
    ("[[channels]]\njoin = true", "channels[0]: give exactly one of username, id or link"),
    ('[[channels]]\nusername = "vsaldo"\nsource = "rss"',
     "channels[0].source: expected one of telethon, web, got 'rss'"),
    ('[[channels]]\nusername = "vsaldo"\n[[channels]]\nlink = "https://t.me/VSaldo"',
     "channels[1]: vsaldo is already listed as channels[0]"),
    ("channels = 5", "channels: expected a list of [[channels]] tables"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), ERRORS, ids=[m.split(":")[0] for _, m in ERRORS])
def test_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert str(err.value) == f"{tmp_path / 'config.toml'}: {message}"
    assert "\n" not in str(err.value)
    assert err.value.exit_code == 2


def test_workers_lease_seconds(tmp_path: Path) -> None:
    assert load(tmp_path, "").workers.lease_seconds == 60
    assert load(tmp_path, "[workers]\nlease_seconds = 2.5").workers.lease_seconds == 2.5


def test_invalid_toml_names_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.toml: invalid TOML: .*line 2"):
        load(tmp_path, "[storage]\nthis is not toml\n")


def test_a_missing_config_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such config file.*config\.example\.toml"):
        load_settings(tmp_path / "nope.toml", env={})


def test_defaults_with_no_config_file() -> None:
    s = load_settings(None, env={})
    assert s.source is None
    assert s.storage.path == DEFAULT_DB == Path("data/telewatch.db")
    assert s.telegram.api_id is None and s.bot.token is None
    assert (s.telegram.flood_wait_ceiling, s.telegram.recent_posts, s.telegram.recent_hours) == (
        300,
        100,
        48,
    )
    assert s.web.base_url == "https://t.me" and s.web.delay_seconds == 1.0
    assert s.display.timezone.key == "UTC"
    assert s.channels == () and s.rules == ()
    assert s.schedule.sync == "*/15 * * * *"
    assert (s.logging.level, s.logging.format) == ("INFO", "text")


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    s = load(tmp_path, "")
    assert s.source == tmp_path / "config.toml"
    assert dataclasses.replace(s, source=None) == load_settings(None, env={})


def test_settings_are_frozen() -> None:
    s = load_settings(None, env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.storage = s.storage  # type: ignore[misc]


def test_db_override_wins_over_the_file(tmp_path: Path) -> None:
    s = load(tmp_path, '[storage]\npath = "archive/main.db"', db=Path("/elsewhere/x.db"))
    assert s.storage.path == Path("/elsewhere/x.db")
    assert load(tmp_path, '[storage]\npath = "archive/main.db"').storage.path == Path(
        "archive/main.db"
    )
    assert load_settings(None, db=Path("y.db"), env={}).storage.path == Path("y.db")


def test_environment_secrets_override_the_file(tmp_path: Path) -> None:
    env = {
        "TELEWATCH_API_ID": "12345",
        "TELEWATCH_API_HASH": "0123456789abcdef0123456789abcdef",
        "TELEWATCH_BOT_TOKEN": "123456:ABCdefGHIjklMNOpqrSTUvwxYZ0123456789",
        "TELEWATCH_SESSION": "1BVtsOK4Bu...session...",
    }
    s = load(tmp_path, '[telegram]\napi_id = 1\napi_hash = "fromfile"\n[bot]\ntoken = "x:y"',
             env=env)  # fmt: skip
    assert s.telegram.api_id == 12345
    assert s.telegram.api_hash == env["TELEWATCH_API_HASH"]
    assert s.telegram.session_string == env["TELEWATCH_SESSION"]
    assert s.bot.token == env["TELEWATCH_BOT_TOKEN"]
    assert set(s.secrets) == {
        env["TELEWATCH_API_HASH"],
        env["TELEWATCH_SESSION"],
        env["TELEWATCH_BOT_TOKEN"],
    }
    # Without a config file too.
    assert load_settings(None, env=env).telegram.api_id == 12345
    # And the file's values stand when the environment is silent.
    assert load(tmp_path, '[telegram]\napi_id = 1\napi_hash = "fromfile"').telegram.api_id == 1


def test_a_bad_api_id_in_the_environment_names_the_variable() -> None:
    with pytest.raises(
        ConfigError, match="TELEWATCH_API_ID: expected an integer \\(the value is not shown"
    ):
        load_settings(None, env={"TELEWATCH_API_ID": "abc"})


def test_secrets_never_show_in_repr_or_summary(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        '[telegram]\napi_id = 1\napi_hash = "hash-secret-value"\n[bot]\ntoken = "123:tok-secret"',
        env={"TELEWATCH_SESSION": "session-secret-value"},
    )
    text = repr(s) + "\n".join(summary(s))
    for secret in ("hash-secret-value", "123:tok-secret", "session-secret-value"):
        assert secret not in text
    assert "api_hash set" in "\n".join(summary(s))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"all"', Backfill("all")),
        ('"ALL"', Backfill("all")),
        ("500", Backfill("count", count=500)),
        ('"500"', Backfill("count", count=500)),
        ("0", Backfill("count", count=0)),
        ('"90d"', Backfill("age", age=timedelta(days=90))),
        ('"2w"', Backfill("age", age=timedelta(days=14))),
        ('"12h"', Backfill("age", age=timedelta(hours=12))),
    ],
)
def test_backfill_values(tmp_path: Path, value: str, expected: Backfill) -> None:
    s = load(tmp_path, f'[[channels]]\nusername = "vsaldo"\nbackfill = {value}')
    assert s.channels[0].backfill == expected


def test_channels_and_their_defaults(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        """
        [[channels]]
        username = "@VSaldo"

        [[channels]]
        id = 1822222222
        join = false

        [[channels]]
        link = "https://t.me/s/kherson_oda"
        source = "web"
        backfill = "all"
        """,
    )
    a, b, c = s.channels
    assert a.ref == ChannelRef(username="vsaldo")
    assert (a.source, a.join, a.backfill) == ("telethon", True, Backfill("age", age=timedelta(30)))
    assert b.ref == ChannelRef(id=-1001822222222) and b.join is False
    assert (c.ref.username, c.source, c.backfill.kind) == ("kherson_oda", "web", "all")


def test_rules_are_parsed(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        """
        [[rules]]
        name = " evacuation "
        query = 'эвакуация OR евакуація -учения'
        notify = [222, 111]
        channels = ["vsaldo"]
        kinds = ["new", "edited"]
        """,
    )
    (rule,) = s.rules
    assert rule.name == "evacuation"
    assert rule.notify == (111, 222)
    assert rule.channels == ("vsaldo",)
    assert rule.kinds == frozenset({"new", "edited"})
    assert rule.owner is None


def test_relative_paths_and_home(tmp_path: Path) -> None:
    s = load(tmp_path, '[storage]\npath = "~/tw/a.db"\nbackup_dir = "b"')
    assert s.storage.path == Path.home() / "tw" / "a.db"
    assert s.storage.backup_dir == Path("b")


def test_find_config_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config(None, {}) is None
    (tmp_path / "config.toml").write_text("")
    assert find_config(None, {}) == Path("config.toml")
    assert find_config(None, {"TELEWATCH_CONFIG": "/etc/tw.toml"}) == Path("/etc/tw.toml")
    assert find_config(Path("mine.toml"), {"TELEWATCH_CONFIG": "/etc/tw.toml"}) == Path("mine.toml")


def test_a_linked_config_is_named_by_the_file_people_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image links /config.toml to data/config.toml (Dockerfile): an error must name
    data/config.toml, the file the user edits as ./data/config.toml, not the link."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "config.toml").write_text("[storage]\npath = 5\n")
    (tmp_path / "config.toml").symlink_to("data/config.toml")
    found = find_config(None, {})
    assert found == Path("data/config.toml")
    with pytest.raises(ConfigError) as err:
        load_settings(found)
    assert str(err.value).startswith("data/config.toml: storage.path")


def test_rules_file(tmp_path: Path) -> None:
    good = tmp_path / "rules.toml"
    good.write_text('[[rules]]\nname = "a"\nquery = "обстріл"\n', encoding="utf-8")
    assert [r.name for r in parse_rules_file(good)] == ["a"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[storage]\npath = "x"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: storage: unknown key"):
        parse_rules_file(bad)


def test_the_example_config_loads_with_every_section() -> None:
    s = load_settings(EXAMPLE, env={})
    sources = {c.source for c in s.channels}
    assert sources == {"telethon", "web"}
    assert len(s.rules) >= 2
    evac = next(r for r in s.rules if "эвакуация" in r.query)
    assert "евакуація" in evac.query


def test_the_example_config_documents_every_key() -> None:
    """Every field of every settings section appears in config.example.toml (as a key or
    a commented-out key), so a new setting cannot be added without documenting it."""
    text = EXAMPLE.read_text(encoding="utf-8")
    s = load_settings(None, env={})
    skip = {"session_string"}  # environment only
    sections = ("storage", "telegram", "web", "media", "bot", "display", "schedule", "logging",
                "workers")  # fmt: skip
    for section in sections:
        assert f"[{section}]" in text
        for f in dataclasses.fields(getattr(s, section)):
            if f.name in skip:
                continue
            assert f"\n{f.name} =" in text or f"\n# {f.name} =" in text, f"{section}.{f.name}"
    for key in ("username", "id", "link", "source", "backfill", "join"):
        assert f"{key} =" in text, f"channels.{key}"
    for key in ("name", "query", "notify", "channels", "kinds"):
        assert f"{key} =" in text, f"rules.{key}"


def test_the_configuration_doc_documents_every_key() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    s = load_settings(None, env={})
    sections = ("storage", "telegram", "web", "media", "bot", "display", "schedule", "logging",
                "workers")  # fmt: skip
    for section in sections:
        for f in dataclasses.fields(getattr(s, section)):
            if f.name == "session_string":
                continue
            assert f"`{f.name}`" in doc, f"{section}.{f.name}"
    for var in ("TELEWATCH_API_ID", "TELEWATCH_API_HASH", "TELEWATCH_BOT_TOKEN",
                "TELEWATCH_SESSION", "TELEWATCH_CONFIG"):  # fmt: skip
        assert var in doc
