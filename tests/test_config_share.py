"""config.ini shared with another manager: read it, write our own file on top, never its keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from manager import config_share
from manager.config import Config
from manager.errors import ConfigUnknownKey
from manager.layout import Layout

# What the classic ComfyUI-Manager 3.41 and the packaged 4.3 write when they bootstrap the file
# (configparser's format, their own key names and value spellings).
CLASSIC_FILE = """[default]
preview_method = none
git_exe =
use_uv = False
channel_url = https://raw.githubusercontent.com/ltdrdata/ComfyUI-Manager/main
share_option = all
bypass_ssl = False
file_logging = True
component_policy = workflow
update_policy = stable-comfyui
windows_selector_event_loop_policy = False
model_download_by_agent = False
downgrade_blacklist =
security_level = normal
always_lazy_install = False
network_mode = public
db_mode = cache
allow_git_url_install = False
allow_pip_install = False

"""
PACKAGED_EXTRA = "use_unified_resolver = False\nverbose = False\nallow_flagged_nodepack_install = False\n"


def _tree(tmp_path: Path, text: str = CLASSIC_FILE, *, classic: bool = True) -> Layout:
    layout = Layout.from_root(tmp_path / "ComfyUI")
    layout.manager_dir.mkdir(parents=True)
    layout.config_file.write_text(text, encoding="utf-8")
    if classic:
        glob_dir = layout.custom_nodes / "ComfyUI-Manager" / "glob"
        glob_dir.mkdir(parents=True)
        (glob_dir / "manager_server.py").write_text("")
        (glob_dir / "manager_core.py").write_text("")
    else:
        layout.custom_nodes.mkdir(parents=True)
    return layout


def test_beside_the_classic_changes_go_to_our_file_and_config_ini_stays_byte_for_byte(tmp_path: Path) -> None:
    layout = _tree(tmp_path)
    before = layout.config_file.read_bytes()
    cfg = config_share.load_config(layout, layout.config_file, env={})
    assert cfg.path == layout.manager_dir / "offline-manager.ini" and cfg.under == layout.config_file
    assert cfg["network_mode"] == "public" and cfg.origin("network_mode") == f"{layout.config_file}:16"
    saved = cfg.save({"network_mode": "offline", "db_mode": "local", "cache_ttl": 60})
    assert layout.config_file.read_bytes() == before
    assert (saved["network_mode"], saved["db_mode"], saved["cache_ttl"]) == ("offline", "local", 60)
    assert saved.origin("network_mode").startswith(str(layout.manager_dir / "offline-manager.ini"))
    assert saved["security_level"] == "normal" and saved.source("security_level") == "file"
    assert any("never written here" in n for n in saved.notes)
    again = config_share.load_config(layout, layout.config_file, env={})
    assert again["network_mode"] == "offline"  # what we saved is what we read next time


def test_our_file_stays_the_one_we_write_after_the_other_manager_is_gone(tmp_path: Path) -> None:
    layout = _tree(tmp_path)
    config_share.load_config(layout, layout.config_file, env={}).save({"network_mode": "offline"})
    for path in (layout.custom_nodes / "ComfyUI-Manager").rglob("*.py"):
        path.unlink()
    assert config_share.other_managers(layout) == []
    cfg = config_share.load_config(layout, layout.config_file, env={})
    assert cfg.path == config_share.own_file(layout) and cfg["network_mode"] == "offline"


def test_alone_config_ini_is_read_and_written_as_before(tmp_path: Path) -> None:
    layout = _tree(tmp_path, classic=False)
    cfg = config_share.load_config(layout, layout.config_file, env={})
    assert cfg.path == layout.config_file and cfg.under is None
    cfg.save({"network_mode": "offline"})
    assert "network_mode = offline" in layout.config_file.read_text()
    assert not config_share.own_file(layout).exists()


def test_a_disabled_classic_does_not_count(tmp_path: Path) -> None:
    layout = _tree(tmp_path)
    (layout.custom_nodes / "ComfyUI-Manager").rename(layout.custom_nodes / "ComfyUI-Manager.disabled")
    assert config_share.classic_folders(layout) == []


def test_the_packaged_managers_own_keys_are_accepted_and_its_odd_values_never_stop_us(tmp_path: Path) -> None:
    text = CLASSIC_FILE.replace("network_mode = public", "network_mode = personal_cloud") + PACKAGED_EXTRA
    layout = _tree(tmp_path, text)
    cfg = config_share.load_config(layout, layout.config_file, env={})
    assert cfg["network_mode"] == "public" and cfg.source("network_mode") == "default"
    assert [p.details["key"] for p in cfg.problems] == ["network_mode"]
    assert sum("is not a setting of this Manager" in n for n in cfg.notes) == 3
    # our own file stays strict: a key we do not know there is an error, not a note
    config_share.own_file(layout).write_text("[default]\nno_such_key = 1\n", encoding="utf-8")
    with pytest.raises(ConfigUnknownKey):
        config_share.load_config(layout, layout.config_file, env={})


def test_an_explicit_config_file_is_used_alone(tmp_path: Path) -> None:
    layout = _tree(tmp_path)
    mine = tmp_path / "mine.ini"
    cfg = config_share.load_config(layout, mine, env={})
    assert cfg.path == mine and cfg.under is None


def test_the_environment_still_wins_over_both_files(tmp_path: Path) -> None:
    layout = _tree(tmp_path)
    config_share.own_file(layout).write_text("[default]\nnetwork_mode = private\n", encoding="utf-8")
    cfg = Config.load(config_share.own_file(layout), env={"CM_NETWORK_MODE": "offline"}, under=layout.config_file)
    assert (cfg["network_mode"], cfg.source("network_mode")) == ("offline", "env")
