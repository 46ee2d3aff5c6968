"""Repeated [default]/[security] sections and keys (issue 17, finding 3): reported with the
lines and the fix, never a failed load, and never a lower security setting."""

from __future__ import annotations

from pathlib import Path

from manager.config import Config


def _load(tmp_path: Path, text: str) -> tuple[Config, Path]:
    path = tmp_path / "config.ini"
    path.write_text(text, "utf-8")
    return Config.load(path, env={}), path


def test_the_safer_value_wins_whatever_the_order(tmp_path: Path) -> None:
    for first, second in (("normal", "weak"), ("weak", "normal")):
        cfg, path = _load(tmp_path, f"[default]\nsecurity_level = {first}\n[default]\nsecurity_level = {second}\n")
        assert cfg["security_level"] == "normal"
        codes = [p.code for p in cfg.problems]
        assert codes == ["config_invalid", "config_invalid"], cfg.problems
        section, key = cfg.problems
        assert "[default] appears 2 times (lines 1, 3)" in section.message and "line 3" in section.hint
        assert "security_level is set 2 times" in key.message and key.details["lines"] == [2, 4]
        assert str(path) in key.hint


def test_lists_keep_only_what_every_line_lists_and_flags_stay_off(tmp_path: Path) -> None:
    cfg, _ = _load(
        tmp_path,
        "[default]\nnetwork_mode = offline\nnetwork_mode = public\n[security]\n"
        "allowed_hosts = a.example, b.example\nallowed_hosts = b.example, evil.example\n"
        "allow_pip_install = false\nallow_pip_install = true\naudit_logging = false\naudit_logging = true\n",
    )
    assert cfg["network_mode"] == "offline"
    assert cfg["allowed_hosts"] == ("b.example",)
    assert cfg["allow_pip_install"] is False
    assert cfg["audit_logging"] is True


def test_a_line_only_under_a_repeated_header_cannot_loosen(tmp_path: Path) -> None:
    cfg, _ = _load(tmp_path, "[security]\n[default]\n[security]\nallow_remote_channel = true\nallowed_hosts = x\n")
    assert cfg["allow_remote_channel"] is False and cfg["allowed_hosts"] == ()
    assert any("would loosen security" in p.message for p in cfg.problems), cfg.problems
    cfg, _ = _load(tmp_path, "[default]\n[default]\nsecurity_level = strong\n")
    assert cfg["security_level"] == "strong"  # tightening from a repeat is kept


def test_other_keys_keep_the_classic_rule_and_are_still_reported(tmp_path: Path) -> None:
    cfg, _ = _load(tmp_path, "[default]\ncache_ttl = 5\ncache_ttl = 7\n")
    assert cfg["cache_ttl"] == 7
    (problem,) = cfg.problems
    assert "the last one (line 3) is used" in problem.message


def test_a_clean_file_has_no_problems_and_saving_unifies_repeats(tmp_path: Path) -> None:
    cfg, path = _load(tmp_path, "[default]\nsecurity_level = normal\n[security]\n")
    assert cfg.problems == ()
    cfg, path = _load(tmp_path, "[default]\ndb_mode = cache\ndb_mode = local\n")
    saved = cfg.save({"db_mode": "remote"})
    assert path.read_text("utf-8") == "[default]\ndb_mode = remote\ndb_mode = remote\n"
    assert saved["db_mode"] == "remote" and "they agree" in saved.problems[0].message
