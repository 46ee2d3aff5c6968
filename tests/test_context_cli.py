"""The Manager wiring and cm-cli, end to end on real trees, channels and servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from manager.context import Manager, build_network_policy
from manager.errors import CacheMissing, NetworkBlocked
from manager.network import NetworkMode

REPO = Path(__file__).resolve().parents[1]


def _write_config(root: Path, text: str) -> None:
    cfg = root / "user" / "__manager" / "config.ini"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(text, encoding="utf-8")


def test_private_policy_allows_only_what_the_admin_named(comfy_tree: Path):
    _write_config(
        comfy_tree,
        "[default]\nnetwork_mode = private\nprivate_mirrors = https://mirror.corp/\n"
        "pip_index_url = https://pypi.corp/simple\n",
    )
    m = Manager.standalone(comfy_tree, env={})
    policy = build_network_policy(m.config)
    assert policy.mode is NetworkMode.PRIVATE
    assert "https://pypi.corp/simple" in policy.allowed_prefixes
    # the shipped public defaults never become reachable by accident
    assert not any("raw.githubusercontent.com" in p or "api.comfy.org" in p for p in policy.allowed_prefixes)
    with pytest.raises(NetworkBlocked):
        m.gate.decide("https://raw.githubusercontent.com/ltdrdata/ComfyUI-Manager/main/x.json", "channel")
    assert m.gate.decide("https://mirror.corp/x.json", "channel") == "https://mirror.corp/x.json"


def test_offline_catalog_from_local_channel_makes_no_connects(comfy_tree, local_channel, socket_audit_log):
    _write_config(comfy_tree, f"[default]\nnetwork_mode = offline\nchannel_url = {local_channel.as_uri()}\n")
    m = Manager.standalone(comfy_tree, env={})
    view = m.catalog_view()
    assert len(view.catalog.packs) > 5000 and len(view.catalog.models) == 562
    assert set(view.sources.values()) == {"local"}
    assert m.catalog_view() is view, "kept in memory, not re-parsed per call"
    assert socket_audit_log.inet_connects() == []


def test_offline_default_channel_without_cache_is_a_clear_error(comfy_tree, socket_audit_log):
    _write_config(comfy_tree, "[default]\nnetwork_mode = offline\n")
    m = Manager.standalone(comfy_tree, env={})
    with pytest.raises(CacheMissing) as info:
        m.load_catalog()
    assert "update-cache" in info.value.hint
    assert socket_audit_log.inet_connects() == []


def test_public_channel_over_loopback_then_offline_serves_the_cache(comfy_tree, http_server, channel_db):
    for f in (channel_db / "default").glob("*.json"):
        http_server.static(f"/db/{f.name}", f.read_bytes(), etag=f'"{f.stat().st_size}"')
    _write_config(
        comfy_tree,
        f"[default]\nchannel_url = {http_server.url('/db')}\n"
        "http_channel_enabled = true\n[security]\nallow_remote_channel = true\n",
    )
    m = Manager.standalone(comfy_tree, env={})
    first = m.load_catalog()
    assert first.sources["custom-node-list.json"] == "fetched"
    offline = Manager.standalone(comfy_tree, env={"CM_NETWORK_MODE": "offline"})
    before = len(http_server.requests)
    view = offline.load_catalog()
    assert len(view.catalog.packs) == len(first.catalog.packs)
    assert len(http_server.requests) == before


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_")}
    return subprocess.run(
        [sys.executable, str(REPO / "cm-cli.py"), *args], capture_output=True, text=True, cwd=cwd, timeout=120, env=env
    )


def test_cli_demo_lists_the_demo_tree_offline(tmp_path: Path):
    out = _cli("--json", "demo", "--dir", str(tmp_path / "demo"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] is True
    ids = [p["id"] for p in doc["data"]["packs"]]
    assert "demo-mask-utils" in ids and len(ids) == 5
    root = tmp_path / "demo" / "ComfyUI"
    found = _cli("--comfyui", str(root), "--json", "node-type", "DemoMaskBlur", cwd=tmp_path)
    assert [p["id"] for p in json.loads(found.stdout)["data"]] == ["demo-mask-utils"]
    cfg = json.loads(_cli("--comfyui", str(root), "--json", "config", cwd=tmp_path).stdout)["data"]
    mode = next(s for s in cfg["settings"] if s["key"] == "network_mode")
    assert mode["value"] == "offline" and mode["source"] == "file"


def test_cli_errors_are_coded_in_both_renderings(tmp_path: Path):
    root = tmp_path / "ComfyUI"
    (root / "user" / "__manager").mkdir(parents=True)
    (root / "user" / "__manager" / "config.ini").write_text("[default]\nnetwork_mode = airgap\n")
    human = _cli("--comfyui", str(root), "show", cwd=tmp_path)
    assert human.returncode == 1 and "[config_invalid]" in human.stderr and "offline" in human.stderr
    machine = _cli("--comfyui", str(root), "--json", "show", cwd=tmp_path)
    doc = json.loads(machine.stdout)
    assert doc["ok"] is False and doc["error"]["code"] == "config_invalid" and doc["error"]["hint"]


def test_cli_operations_round_trip_on_the_demo_tree(tmp_path: Path):
    """install -> show installed -> disable -> enable -> snapshot -> uninstall -> restore, all offline."""
    assert _cli("demo", "--dir", str(tmp_path / "demo"), cwd=tmp_path).returncode == 0
    root = str(tmp_path / "demo" / "ComfyUI")
    custom = Path(root) / "custom_nodes"

    def ok(*args: str) -> dict:
        out = _cli("--comfyui", root, "--json", *args, cwd=tmp_path)
        assert out.returncode == 0, (args, out.stdout, out.stderr)
        doc = json.loads(out.stdout)
        assert doc["ok"] is True
        return doc["data"]

    tasks = ok("install", "demo-mask-utils")
    assert tasks[0]["state"] == "done" and tasks[0]["restart_required"] is True
    assert (custom / "demo-mask-utils" / "__init__.py").is_file()
    installed = ok("show", "installed")["packs"]
    assert [(p["name"], p["enabled"], p["catalog_id"]) for p in installed] == [
        ("demo-mask-utils", True, "demo-mask-utils")
    ]
    ok("disable", "demo-mask-utils")
    assert not (custom / "demo-mask-utils").exists() and any((custom / ".disabled").iterdir())
    ok("enable", "demo-mask-utils")
    assert (custom / "demo-mask-utils").is_dir()
    saved = ok("snapshot", "save", "before-removal")
    assert saved["name"] == "before-removal"
    ok("uninstall", "demo-mask-utils")
    assert not (custom / "demo-mask-utils").exists()
    diff = ok("snapshot", "diff", "before-removal")
    assert "demo-mask-utils" in json.dumps(diff)
    plan = ok("snapshot", "restore", "before-removal", "--dry-run")
    assert plan["steps"] and not (custom / "demo-mask-utils").exists(), "a dry run changes nothing"
    ok("snapshot", "restore", "before-removal")
    assert (custom / "demo-mask-utils" / "__init__.py").is_file()


def test_cli_refuses_a_remote_install_offline_with_its_code(tmp_path: Path):
    assert _cli("demo", "--dir", str(tmp_path / "demo"), cwd=tmp_path).returncode == 0
    root = str(tmp_path / "demo" / "ComfyUI")
    out = _cli(
        "--comfyui",
        root,
        "--json",
        "--set",
        "allow_git_url_install=true",
        "install",
        "https://github.com/example/some-pack",
        cwd=tmp_path,
    )
    doc = json.loads(out.stdout)
    assert out.returncode == 4 and doc["ok"] is False  # refused (manager/cli/exit_codes.py)
    assert doc["error"]["code"] in ("offline_mode", "security_denied"), doc
    assert doc["error"]["hint"]
    assert not any(p for p in (Path(root) / "custom_nodes").iterdir() if not p.name.startswith("."))
