"""config.ini loading, precedence, validation, line-preserving save, and doc agreement."""

from __future__ import annotations

import configparser
import os
import re
from pathlib import Path

import pytest

from manager.config import CONFIG_ENV, Config, resolve_config_path
from manager.config_schema import (
    DEFAULT_CHANNEL_URL,
    RETIRED_KEYS,
    SETTINGS,
    SETTINGS_BY_KEY,
    ConfigValue,
    format_value,
    parse_text,
)
from manager.errors import ConfigError, ConfigUnknownKey, ConfigUnreadable
from manager.layout import Layout

REPO = Path(__file__).resolve().parents[1]
SHIPPED_INI = REPO / "config.ini"
DOCS = REPO / "docs" / "config.md"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def ini(tmp_path: Path) -> Path:
    return tmp_path / "config.ini"


# --- defaults, precedence, sources ---------------------------------------------------------
def test_missing_file_gives_every_default(ini: Path) -> None:
    cfg = Config.load(ini, env={})
    for setting in SETTINGS:
        assert cfg[setting.key] == setting.default
        assert cfg.source(setting.key) == "default"
    assert cfg["network_mode"] == "public"
    assert cfg["security_level"] == "normal"
    assert cfg["channel_url"] == DEFAULT_CHANNEL_URL
    assert cfg["cache_ttl"] == 86400
    assert cfg["registry_url"] == "https://api.comfy.org"
    assert not ini.exists(), "loading must not create the file"


def test_precedence_cli_over_env_over_file_over_default(ini: Path) -> None:
    write(ini, "[default]\nnetwork_mode = private\ncache_ttl = 60\nuse_uv = true\n")
    env = {"CM_NETWORK_MODE": "offline", "CM_CACHE_TTL": "120", "UNRELATED": "x"}
    cfg = Config.load(ini, env=env, cli={"network_mode": "public"})

    assert (cfg["network_mode"], cfg.source("network_mode"), cfg.origin("network_mode")) == (
        "public",
        "cli",
        "command line",
    )
    assert (cfg["cache_ttl"], cfg.source("cache_ttl"), cfg.origin("cache_ttl")) == (120, "env", "CM_CACHE_TTL")
    assert (cfg["use_uv"], cfg.source("use_uv"), cfg.origin("use_uv")) == (True, "file", f"{ini}:4")
    assert (cfg["bypass_ssl"], cfg.source("bypass_ssl")) == (False, "default")


def test_env_override_parses_normal_minus_and_case(ini: Path) -> None:
    write(ini, "[default]\nsecurity_level = strong\n")
    cfg = Config.load(ini, env={"CM_SECURITY_LEVEL": "Normal-", "CM_NETWORK_MODE": " OFFLINE "})
    assert cfg["security_level"] == "normal-"
    assert cfg["network_mode"] == "offline"
    assert cfg.source("security_level") == "env"


def test_unrelated_cm_variables_are_ignored(ini: Path) -> None:
    cfg = Config.load(ini, env={"CM_CHANNEL_DB": "/somewhere", CONFIG_ENV: "/x.ini", "CM_NETWRK_MODE": "x"})
    assert all(cfg.source(s.key) == "default" for s in SETTINGS)


def test_cli_keys_accept_dashes_and_typed_values(ini: Path) -> None:
    cfg = Config.load(
        ini,
        env={},
        cli={"network-mode": "offline", "http_timeout": 2.5, "use_uv": True, "wheelhouse_dirs": ["/a", "/b"]},
    )
    assert cfg["network_mode"] == "offline"
    assert cfg["http_timeout"] == 2.5
    assert cfg["use_uv"] is True
    assert cfg["wheelhouse_dirs"] == ("/a", "/b")


def test_values_and_explain(ini: Path) -> None:
    write(ini, "[default]\nnetwork_mode = offline\n")
    cfg = Config.load(ini, env={"CM_LOG_LEVEL": "debug"})
    values = cfg.values()
    assert set(values) == set(SETTINGS_BY_KEY)
    rows = cfg.explain()
    assert [r.key for r in rows] == [s.key for s in SETTINGS]
    by_key = {r.key: r for r in rows}
    assert by_key["network_mode"] == ConfigValue(
        "network_mode", "offline", "file", "default", SETTINGS_BY_KEY["network_mode"].help, f"{ini}:2"
    )
    assert (by_key["log_level"].value, by_key["log_level"].source, by_key["log_level"].section) == (
        "debug",
        "env",
        "security",
    )
    assert by_key["bypass_ssl"].origin == "built-in default"


def test_secrets_are_masked_unless_asked(ini: Path) -> None:
    write(
        ini,
        "[default]\npip_index_url = https://bob:s3cret@pypi.corp.example/simple\n"
        "private_mirrors = https://TOKEN@git.corp.example/, https://mirror.corp.example/\n",
    )
    cfg = Config.load(ini, env={})
    shown = cfg.values()
    assert shown["pip_index_url"] == "https://bob:***@pypi.corp.example/simple"
    assert shown["private_mirrors"] == ("https://***@git.corp.example/", "https://mirror.corp.example/")
    assert "s3cret" not in repr(cfg.explain())
    assert cfg.values(include_secrets=True)["pip_index_url"] == "https://bob:s3cret@pypi.corp.example/simple"
    assert cfg["pip_index_url"].endswith("s3cret@pypi.corp.example/simple")


def test_invalid_secret_value_is_masked_in_the_error(ini: Path) -> None:
    write(ini, "[default]\npip_index_url = htps://bob:s3cret@pypi.corp.example/simple\n")
    with pytest.raises(ConfigError) as err:
        Config.load(ini, env={})
    assert "s3cret" not in str(err.value) and "s3cret" not in repr(err.value.to_dict())
    assert "htps://***@pypi.corp.example/simple" in err.value.message


def test_unknown_key_lookup_in_code_is_a_coded_error() -> None:
    cfg = Config.defaults()
    with pytest.raises(ConfigUnknownKey) as err:
        cfg.get("network_mod")
    assert "network_mode" in err.value.details["suggestions"]
    assert "network_mode" in cfg and "nope" not in cfg


# --- each type's parsing ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,expected",
    [
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        ("on", True),
        ("1", True),
        ("false", False),
        ("False", False),
        ("no", False),
        ("OFF", False),
        ("0", False),
    ],
)
def test_bool_spellings(ini: Path, text: str, expected: bool) -> None:
    write(ini, f"[default]\nbypass_ssl = {text}\n")
    assert Config.load(ini, env={})["bypass_ssl"] is expected


@pytest.mark.parametrize(
    "key,text,expected",
    [
        ("cache_ttl", "0", 0),
        ("cache_ttl", " 3600 ", 3600),
        ("http_timeout", "2.5", 2.5),
        ("http_connect_timeout", "3", 3.0),
        ("db_mode", "remote", "remote"),
        ("share_option", "comfyworkflows", "comfyworkflows"),
        ("log_level", "WARNING", "warning"),
        ("git_exe", "/opt/git/bin/git", "/opt/git/bin/git"),
        ("python_executable", "", ""),
        ("downgrade_blacklist", "numpy, opencv-python,,pillow", ("numpy", "opencv-python", "pillow")),
        ("downgrade_blacklist", "", ()),
        ("channel_url", "file:///srv/channel", "file:///srv/channel"),
        ("pip_index_url", "", ""),
        ("pip_index_url", "https://pypi.corp.example/simple", "https://pypi.corp.example/simple"),
        (
            "allowed_channels",
            "https://a.example/ch, http://b.example/ch",
            ("https://a.example/ch", "http://b.example/ch"),
        ),
    ],
)
def test_typed_parsing(ini: Path, key: str, text: str, expected: object) -> None:
    write(ini, f"[{SETTINGS_BY_KEY[key].section}]\n{key} = {text}\n")
    cfg = Config.load(ini, env={})
    assert cfg[key] == expected
    assert type(cfg[key]) is type(expected)


def test_list_on_continuation_lines(ini: Path) -> None:
    write(
        ini,
        "[default]\nwheelhouse_dirs =\n    /srv/wheels\n    /mnt/usb/wheels, /opt/w\n"
        "private_mirrors = https://m1.example/\n  https://m2.example/\nuse_uv = true\n",
    )
    cfg = Config.load(ini, env={})
    assert cfg["wheelhouse_dirs"] == ("/srv/wheels", "/mnt/usb/wheels", "/opt/w")
    assert cfg["private_mirrors"] == ("https://m1.example/", "https://m2.example/")
    assert cfg["use_uv"] is True


def test_configparser_syntax_details(ini: Path) -> None:
    write(
        ini,
        "; comment\n[Default]\n  # indented comment\nNetwork_Mode: private\n"
        "cache_ttl = 5\ncache_ttl = 7\n\n[security]\naudit_logging=off\n",
    )
    cfg = Config.load(ini, env={})
    assert cfg["network_mode"] == "private"
    assert cfg["cache_ttl"] == 7, "last duplicate wins, as with configparser(strict=False)"
    assert cfg["audit_logging"] is False


@pytest.mark.parametrize(
    "key,text,allowed_fragment",
    [
        ("network_mode", "ofline", "public, private, offline"),
        ("security_level", "middle", "strong, normal, normal-, weak"),
        ("db_mode", "CACHE", "cache, local, remote"),  # classic never lower-cases db_mode
        ("bypass_ssl", "maybe", "true/false"),
        ("cache_ttl", "-1", ">= 0"),
        ("cache_ttl", "1.5", "whole number"),
        ("http_timeout", "0", ">= 0.1"),
        ("http_timeout", "nan", "number"),
        ("channel_url", "ftp://example.com/x", "http(s)://"),
        ("channel_url", "", "http(s)://"),
        ("registry_url", "https://", "http(s)://"),
        ("allowed_pip_sources", "https://ok.example/, not a url", "URLs"),
    ],
)
def test_invalid_value_names_key_value_allowed_file_and_line(
    ini: Path, key: str, text: str, allowed_fragment: str
) -> None:
    section = SETTINGS_BY_KEY[key].section
    write(ini, f"# header\n[{section}]\n{key} = {text}\n")
    with pytest.raises(ConfigError) as err:
        Config.load(ini, env={})
    exc = err.value
    assert exc.code == "config_invalid"
    assert key in exc.message and repr(text) in exc.message and f"{ini}:3" in exc.message
    assert allowed_fragment in exc.details["allowed"]
    assert allowed_fragment in exc.hint
    assert (exc.details["path"], exc.details["line"], exc.details["source"]) == (str(ini), 3, "file")


def test_invalid_choice_suggests_close_value(ini: Path) -> None:
    write(ini, "[default]\nnetwork_mode = ofline\n")
    with pytest.raises(ConfigError) as err:
        Config.load(ini, env={})
    assert err.value.details["suggestion"] == "offline"
    assert "Did you mean 'offline'?" in err.value.message


def test_invalid_env_value_names_the_variable(ini: Path) -> None:
    with pytest.raises(ConfigError) as err:
        Config.load(ini, env={"CM_SECURITY_LEVEL": "lax"})
    exc = err.value
    assert exc.code == "config_invalid"
    assert "CM_SECURITY_LEVEL='lax'" in exc.message
    assert "CM_SECURITY_LEVEL" in exc.hint and str(ini) in exc.hint
    assert exc.details["source"] == "env"


def test_invalid_cli_value_names_the_command_line(ini: Path) -> None:
    with pytest.raises(ConfigError) as err:
        Config.load(ini, env={}, cli={"cache_ttl": "soon"})
    assert "command line" in err.value.message and err.value.details["source"] == "cli"


def test_unknown_key_in_file_suggests_the_close_match(ini: Path) -> None:
    write(ini, "[default]\nnetwork_mode = public\nnetwrok_mode = offline\n")
    with pytest.raises(ConfigUnknownKey) as err:
        Config.load(ini, env={})
    exc = err.value
    assert exc.code == "config_unknown_key"
    assert exc.details["suggestions"][0] == "network_mode"
    assert exc.details["line"] == 3 and f"{ini}:3" in exc.message
    assert "Did you mean 'network_mode'" in exc.message
    assert str(ini) in exc.hint


def test_unknown_cli_key(ini: Path) -> None:
    with pytest.raises(ConfigUnknownKey) as err:
        Config.load(ini, env={}, cli={"securty_level": "weak"})
    assert err.value.details["suggestions"] == ["security_level"]
    assert err.value.details["source"] == "cli"


@pytest.mark.parametrize(
    "text,line",
    [
        ("network_mode = offline\n[default]\n", 1),  # before any section
        ("[default]\nnetwork_mode = public\nthis line is junk\n", 3),
        ("[default\nnetwork_mode = public\n", 1),
    ],
)
def test_syntax_errors_name_the_line(ini: Path, text: str, line: int) -> None:
    write(ini, text)
    with pytest.raises(ConfigError) as err:
        Config.load(ini, env={})
    assert err.value.code == "config_invalid"
    assert err.value.details["line"] == line and f"{ini}:{line}" in err.value.message


def test_unreadable_file(tmp_path: Path) -> None:
    folder = tmp_path / "config.ini"
    folder.mkdir()
    with pytest.raises(ConfigUnreadable) as err:
        Config.load(folder, env={})
    assert err.value.code == "config_unreadable" and str(folder) in err.value.message

    latin = tmp_path / "latin.ini"
    latin.write_bytes(b"[default]\n# caf\xe9\nnetwork_mode = public\n")
    with pytest.raises(ConfigUnreadable) as err:
        Config.load(latin, env={})
    assert err.value.details["line"] == 2 and "UTF-8" in err.value.hint


def test_non_strict_load_falls_back_and_keeps_the_problems(ini: Path) -> None:
    write(ini, "[default]\nnetwork_mode = ofline\ncache_ttl = 10\nbogus = 1\n")
    cfg = Config.load(ini, env={"CM_NETWORK_MODE": "nonsense", "CM_CACHE_TTL": "x"}, strict=False)
    assert (cfg["network_mode"], cfg.source("network_mode")) == ("public", "default")
    assert (cfg["cache_ttl"], cfg.source("cache_ttl")) == (10, "file")  # bad env value skipped
    codes = sorted(p.code for p in cfg.problems)
    assert codes == ["config_invalid", "config_invalid", "config_invalid", "config_unknown_key"]


# --- the classic manager's config.ini ------------------------------------------------------
CLASSIC_KEYS = {  # section 5.4 of reference/classic-api.md: key -> classic default
    "preview_method": None,
    "git_exe": "",
    "use_uv": False,
    "channel_url": DEFAULT_CHANNEL_URL,
    "share_option": "all",
    "bypass_ssl": False,
    "file_logging": True,
    "component_policy": "workflow",
    "update_policy": "stable-comfyui",
    "windows_selector_event_loop_policy": False,
    "model_download_by_agent": False,
    "downgrade_blacklist": (),
    "security_level": "normal",
    "always_lazy_install": False,
    "network_mode": "public",
    "db_mode": "cache",
    "allow_git_url_install": False,
    "allow_pip_install": False,
    "http_channel_enabled": False,
    "default_cache_as_channel_url": False,
}


def test_every_classic_key_is_declared_with_its_classic_default() -> None:
    classic = {s.key for s in SETTINGS if s.classic}
    assert classic == set(CLASSIC_KEYS)
    for key, default in CLASSIC_KEYS.items():
        if default is not None:  # preview_method's classic default is ComfyUI's live value
            assert SETTINGS_BY_KEY[key].default == default, key


def test_classic_config_keeps_its_meaning(ini: Path) -> None:
    # Written the way the classic manager writes it: configparser, [default] only, Python
    # bool spelling, security flags in [default], retired keys of older releases.
    parser = configparser.ConfigParser()
    parser["default"] = {
        "preview_method": "taesd",
        "badge_mode": "#ID Nickname",
        "git_exe": "",
        "use_uv": "True",
        "channel_url": "https://raw.githubusercontent.com/ltdrdata/ComfyUI-Manager/main",
        "share_option": "openart",
        "bypass_ssl": "False",
        "default_ui": "history",
        "component_policy": "mine",
        "update_policy": "nightly-comfyui",
        "double_click_policy": "copy-all",
        "windows_selector_event_loop_policy": "False",
        "model_download_by_agent": "True",
        "downgrade_blacklist": "numpy,pillow",
        "security_level": "Weak",
        "skip_migration_check": "True",
        "always_lazy_install": "False",
        "network_mode": "Offline",
        "db_mode": "local",
        "allow_git_url_install": "true",
        "allow_pip_install": "false",
        "http_channel_enabled": "True",
        "default_cache_as_channel_url": "True",
    }
    with ini.open("w") as fh:
        parser.write(fh)

    cfg = Config.load(ini, env={})
    assert cfg.problems == ()
    expected = {
        "preview_method": "taesd",
        "use_uv": True,
        "share_option": "openart",
        "bypass_ssl": False,
        "component_policy": "mine",
        "update_policy": "nightly-comfyui",
        "model_download_by_agent": True,
        "downgrade_blacklist": ("numpy", "pillow"),
        "security_level": "weak",
        "network_mode": "offline",
        "db_mode": "local",
        "allow_git_url_install": True,
        "allow_pip_install": False,
        "http_channel_enabled": True,
        "default_cache_as_channel_url": True,
        "git_exe": "",
    }
    for key, value in expected.items():
        assert cfg[key] == value, key
        assert cfg.source(key) == "file", key
    # Classic omits file_logging here; a missing key is its default (not the classic False).
    assert (cfg["file_logging"], cfg.source("file_logging")) == (True, "default")
    retired = " ".join(cfg.notes)
    assert all(key in retired for key in RETIRED_KEYS)


def test_security_key_in_its_own_section_beats_classic_placement(ini: Path) -> None:
    write(ini, "[security]\nallow_git_url_install = false\n[default]\nallow_git_url_install = true\n")
    cfg = Config.load(ini, env={})
    assert cfg["allow_git_url_install"] is False and cfg.origin("allow_git_url_install") == f"{ini}:2"


def test_settings_in_foreign_sections_are_ignored_with_a_note(ini: Path) -> None:
    write(ini, "[default]\nuse_uv = true\n[other-tool]\nnetwork_mode = offline\nanything = goes\n")
    cfg = Config.load(ini, env={})
    assert cfg["network_mode"] == "public"
    assert any("[other-tool]" in note for note in cfg.notes)


# --- saving --------------------------------------------------------------------------------
USER_FILE = (
    "# my notes about this machine\n"
    "[default]\n"
    "; keep the lab offline\n"
    "network_mode = offline\n"
    "Security_Level=strong\n"
    "badge_mode = #ID\n"
    "\n"
    "[my-tool]\n"
    "# a foreign tool's section\n"
    "colour = blue\n"
    "weird line kept: yes\n"
)


def test_save_changes_only_the_given_keys_and_keeps_everything_else(ini: Path) -> None:
    write(ini, USER_FILE)
    before_inode = ini.stat().st_ino
    cfg = Config.load(ini, env={})
    new = cfg.save({"security_level": "normal-", "cache_ttl": 600, "allow_pip_install": True})

    text = ini.read_text()
    assert text == (
        "# my notes about this machine\n"
        "[default]\n"
        "; keep the lab offline\n"
        "network_mode = offline\n"
        "Security_Level=normal-\n"
        "badge_mode = #ID\n"
        "cache_ttl = 600\n"
        "\n"
        "[my-tool]\n"
        "# a foreign tool's section\n"
        "colour = blue\n"
        "weird line kept: yes\n"
        "\n"
        "[security]\n"
        "allow_pip_install = true\n"
    )
    assert (new["security_level"], new["cache_ttl"], new["allow_pip_install"]) == ("normal-", 600, True)
    assert new.source("network_mode") == "file" and new["network_mode"] == "offline"
    # Atomic: a new inode was renamed into place and no temp file is left behind.
    assert ini.stat().st_ino != before_inode
    assert sorted(p.name for p in ini.parent.iterdir()) == ["config.ini"]
    # The original object is unchanged.
    assert cfg["security_level"] == "strong"


def test_save_rereads_the_file_first(ini: Path) -> None:
    write(ini, "[default]\nnetwork_mode = public\n")
    cfg = Config.load(ini, env={})
    write(ini, "[default]\nnetwork_mode = public\n# added by hand meanwhile\nuse_uv = true\n")
    new = cfg.save({"network_mode": "private"})
    assert ini.read_text() == "[default]\nnetwork_mode = private\n# added by hand meanwhile\nuse_uv = true\n"
    assert new["use_uv"] is True


def test_save_never_writes_defaults_or_env_values_into_the_file(ini: Path) -> None:
    write(ini, "[default]\nuse_uv = true\n")
    cfg = Config.load(ini, env={"CM_NETWORK_MODE": "offline"})
    new = cfg.save({"bypass_ssl": True})
    assert ini.read_text() == "[default]\nuse_uv = true\nbypass_ssl = true\n"
    assert new.source("network_mode") == "env"


def test_save_updates_classic_placement_in_place(ini: Path) -> None:
    write(ini, "[default]\nallow_git_url_install = false\nnetwork_mode = public\n")
    Config.load(ini, env={}).save({"allow_git_url_install": True})
    assert ini.read_text() == "[default]\nallow_git_url_install = true\nnetwork_mode = public\n"


def test_save_replaces_a_multiline_value_and_every_active_copy(ini: Path) -> None:
    write(
        ini,
        "[default]\nwheelhouse_dirs =\n    /a\n    /b\n# end\n[security]\nhttp_channel_enabled = false\n"
        "[default]\nhttp_channel_enabled = false\n",
    )
    Config.load(ini, env={}).save({"wheelhouse_dirs": ["/c"], "http_channel_enabled": "yes"})
    assert ini.read_text() == (
        "[default]\nwheelhouse_dirs = /c\n# end\n[security]\nhttp_channel_enabled = true\n"
        "[default]\nhttp_channel_enabled = true\n"
    )


def test_save_into_the_shipped_template_uncomments_the_key_line(ini: Path) -> None:
    original = SHIPPED_INI.read_text()
    write(ini, original)
    new = Config.load(ini, env={}).save({"network_mode": "offline", "allowed_channels": "file:///srv/ch"})
    text = ini.read_text()
    assert "\nnetwork_mode = offline\n" in text and ";network_mode = public" not in text
    assert "\nallowed_channels = file:///srv/ch\n" in text
    assert (
        text.replace("network_mode = offline", ";network_mode = public").replace(
            "allowed_channels = file:///srv/ch", ";allowed_channels ="
        )
        == original
    )
    assert (new["network_mode"], new.source("network_mode")) == ("offline", "file")


def test_save_creates_a_missing_file(tmp_path: Path) -> None:
    target = tmp_path / "user" / "__manager" / "config.ini"
    new = Config.load(target, env={}).save({"network_mode": "private", "log_level": "debug"})
    assert target.read_text() == "[default]\nnetwork_mode = private\n\n[security]\nlog_level = debug\n"
    assert new.source("log_level") == "file"


def test_save_keeps_crlf_and_bom(ini: Path) -> None:
    ini.write_bytes(b"\xef\xbb\xbf[default]\r\nnetwork_mode = public\r\n")
    Config.load(ini, env={}).save({"network_mode": "offline", "use_uv": True})
    assert ini.read_bytes() == b"\xef\xbb\xbf[default]\r\nnetwork_mode = offline\r\nuse_uv = true\r\n"


def test_save_keeps_file_permissions(ini: Path) -> None:
    write(ini, "[default]\npip_index_url = https://u:p@pypi.corp.example/simple\n")
    os.chmod(ini, 0o600)
    Config.load(ini, env={}).save({"use_uv": True})
    assert ini.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("value", ["offline\nsecurity_level = weak", "a\rb", "x\x00y"])
def test_save_refuses_line_breaks_and_nul(ini: Path, value: str) -> None:
    write(ini, USER_FILE)
    cfg = Config.load(ini, env={})
    with pytest.raises(ConfigError) as err:
        cfg.save({"git_exe": value})
    assert err.value.code == "config_invalid" and "line break or NUL" in err.value.message
    assert ini.read_text() == USER_FILE


@pytest.mark.parametrize(
    "changes,error",
    [
        ({"netwrk_mode": "offline"}, ConfigUnknownKey),
        ({"network_mode": "dark"}, ConfigError),
        ({"cache_ttl": True}, ConfigError),
        ({"wheelhouse_dirs": ["/a,b"]}, ConfigError),
    ],
)
def test_save_refuses_bad_changes_and_writes_nothing(ini: Path, changes: dict, error: type) -> None:
    write(ini, USER_FILE)
    cfg = Config.load(ini, env={})
    with pytest.raises(error):
        cfg.save(changes)
    assert ini.read_text() == USER_FILE
    assert sorted(p.name for p in ini.parent.iterdir()) == ["config.ini"]


def test_save_refuses_a_file_that_no_longer_parses(ini: Path) -> None:
    write(ini, "[default]\nnetwork_mode = public\n")
    cfg = Config.load(ini, env={})
    broken = "[default]\nnetwork_mode = public\n<<<<<<< merge conflict\n"
    write(ini, broken)
    with pytest.raises(ConfigError) as err:
        cfg.save({"use_uv": True})
    assert err.value.details["line"] == 3
    assert ini.read_text() == broken

    ini.write_bytes(b"[default]\n# \xff\n")
    with pytest.raises(ConfigUnreadable):
        cfg.save({"use_uv": True})
    assert ini.read_bytes() == b"[default]\n# \xff\n"


def test_save_refuses_when_the_result_would_not_load(ini: Path) -> None:
    write(ini, "[default]\nnetwork_mode = public\n")
    cfg = Config.load(ini, env={})
    edited = "[default]\nnetwork_mode = public\ncache_ttl = soon\n"
    write(ini, edited)  # someone broke another key meanwhile
    with pytest.raises(ConfigError) as err:
        cfg.save({"use_uv": True})
    assert err.value.details["key"] == "cache_ttl"
    assert ini.read_text() == edited
    # A lenient host can still save; the bad line is kept as the user wrote it.
    lenient = Config.load(ini, env={}, strict=False).save({"use_uv": True})
    assert ini.read_text() == edited + "use_uv = true\n"
    assert [p.details["key"] for p in lenient.problems] == ["cache_ttl"]


def test_save_without_a_path_is_refused() -> None:
    with pytest.raises(ConfigError):
        Config.defaults().save({"use_uv": True})


# --- location ------------------------------------------------------------------------------
def test_resolve_config_path(tmp_path: Path) -> None:
    layout = Layout.from_root(tmp_path / "ComfyUI")
    assert resolve_config_path(layout, {}) == tmp_path / "ComfyUI" / "user" / "__manager" / "config.ini"
    assert resolve_config_path(layout, {CONFIG_ENV: str(tmp_path / "env.ini")}) == tmp_path / "env.ini"
    assert (
        resolve_config_path(layout, {CONFIG_ENV: str(tmp_path / "env.ini")}, tmp_path / "cli.ini")
        == tmp_path / "cli.ini"
    )


# --- the table, the shipped config.ini and the docs agree ---------------------------------
def test_settings_table_is_consistent() -> None:
    envs = [s.env for s in SETTINGS]
    assert len(set(envs)) == len(envs) and CONFIG_ENV not in envs
    assert len(SETTINGS_BY_KEY) == len(SETTINGS)
    assert not set(RETIRED_KEYS) & set(SETTINGS_BY_KEY)
    for s in SETTINGS:
        assert s.env == "CM_" + s.key.upper()
        assert s.help.strip(), s.key
        # Every default survives a round trip through its file form.
        assert parse_text(s, format_value(s, s.default)) == s.default, s.key


def _shipped_template_lines() -> dict[str, tuple[str, str, list[str]]]:
    """key -> (section, value text, comment lines just above) for each ';key = value' line."""
    found: dict[str, tuple[str, str, list[str]]] = {}
    section = ""
    comments: list[str] = []
    for line in SHIPPED_INI.read_text().splitlines():
        header = re.match(r"^\[(.+)\]$", line)
        if header:
            section, comments = header.group(1), []
        elif line.startswith("#"):
            comments.append(line)
        elif line.startswith(";"):
            key, _, value = line[1:].partition("=")
            assert key.strip() not in found, f"{key.strip()} listed twice in config.ini"
            found[key.strip()] = (section, value.strip(), comments)
            comments = []
        else:
            assert not line.strip(), f"shipped config.ini must set nothing, found {line!r}"
            comments = []
    return found


def test_shipped_config_ini_documents_every_setting_and_nothing_else() -> None:
    listed = _shipped_template_lines()
    assert set(listed) == set(SETTINGS_BY_KEY), (
        f"missing: {sorted(set(SETTINGS_BY_KEY) - set(listed))}; "
        f"undeclared: {sorted(set(listed) - set(SETTINGS_BY_KEY))}"
    )
    for key, (section, value, comments) in listed.items():
        s = SETTINGS_BY_KEY[key]
        assert section == s.section, key
        assert value == format_value(s, s.default), key
        doc = " ".join(comments)
        assert len(comments) >= 2 and "Default:" in doc and s.env in doc, key
        for choice in s.choices:
            assert choice in doc, (key, choice)


def test_shipped_config_ini_loads_to_all_defaults() -> None:
    cfg = Config.load(SHIPPED_INI, env={})
    assert cfg.problems == () and cfg.notes == ()
    assert all(cfg.source(s.key) == "default" for s in SETTINGS)


def test_docs_table_lists_every_setting_and_nothing_else() -> None:
    rows: dict[str, list[str]] = {}
    text = DOCS.read_text()
    marker = "<!-- settings-table: checked by tests/test_config.py -->"
    assert marker in text
    table = text.split(marker, 1)[1].split("\n## ", 1)[0]
    for line in table.splitlines():
        match = re.match(r"^\| `([a-z_]+)` \|", line)
        if match:
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows[match.group(1)] = cells
    assert set(rows) == set(SETTINGS_BY_KEY), (
        f"missing from docs/config.md: {sorted(set(SETTINGS_BY_KEY) - set(rows))}; "
        f"not declared: {sorted(set(rows) - set(SETTINGS_BY_KEY))}"
    )
    for key, cells in rows.items():
        s = SETTINGS_BY_KEY[key]
        default = format_value(s, s.default)
        assert cells[1] == s.section and cells[2] == s.type, key
        assert cells[3] == (f"`{default}`" if default else "(empty)"), key
        assert cells[4] == f"`{s.env}`", key
        assert cells[5] == ("yes" if s.classic else ""), key
        for choice in s.choices:
            assert f"`{choice}`" in cells[6], (key, choice)


def test_docs_explain_location_and_precedence() -> None:
    text = DOCS.read_text()
    for needle in (
        "user/__manager/config.ini",
        CONFIG_ENV,
        "CM_NETWORK_MODE",
        "config_unknown_key",
        "config_invalid",
        "config_unreadable",
        *RETIRED_KEYS,
    ):
        assert needle in text, needle
