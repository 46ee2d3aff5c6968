"""doctor, finding ComfyUI from where cm-cli.py runs, old config locations and migrate (issue 18).

Real trees (the demo tree: real git packs, a file:// channel), the CLI as a subprocess with its
cwd inside ``custom_nodes/<pack>``, real config files at the classic's old locations, and the
route through the real aiohttp app.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from manager.config_share import migrate
from manager.context import Manager
from manager.doctor import FAIL, PASS, WARN, run_checks
from support.api_tree import api_app, demo_root, write_config  # noqa: F401 (api_app: a fixture)

REPO = Path(__file__).resolve().parents[1]
OLD = ("user", "default", "ComfyUI-Manager", "config.ini")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_") and k != "COMFYUI_PATH"}
    return subprocess.run(
        [sys.executable, str(REPO / "cm-cli.py"), *args], capture_output=True, text=True, cwd=cwd, timeout=180, env=env
    )


def _tree(tmp_path: Path, *, network_mode: str = "offline") -> Path:
    root = demo_root(tmp_path)
    (root / "main.py").write_text("# ComfyUI\n", encoding="utf-8")
    write_config(root, network_mode=network_mode)
    return root


def _pack_dir(root: Path) -> Path:
    """A pack folder to run the CLI from (requirements already installed here: packaging)."""
    pack = root / "custom_nodes" / "my-pack"
    if not pack.is_dir():
        pack.mkdir()
        (pack / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n", encoding="utf-8")
        (pack / "requirements.txt").write_text("packaging\n", encoding="utf-8")
    return pack


def test_cli_inside_custom_nodes_finds_the_root_and_its_offline_config(tmp_path: Path, socket_audit_log):
    root = _tree(tmp_path)
    out = _cli("--json", "config", cwd=_pack_dir(root))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)["data"]
    assert data["path"] == str(root / "user" / "__manager" / "config.ini")
    mode = next(s for s in data["settings"] if s["key"] == "network_mode")
    assert mode["value"] == "offline" and mode["source"] == "file"
    doctor = _cli("--json", "doctor", "--online", cwd=_pack_dir(root))
    report = json.loads(doctor.stdout)["data"]
    assert report["comfyui_root"] == str(root)
    by_id = {c["id"]: c for c in report["checks"]}
    for key in ("python", "disk", "memory", "network_mode", "channels", "cache", "git", "pip", "uv", "security"):
        assert key in by_id, key
    for key in ("ssl", "listener", "config", "import_failures", "wheelhouse"):
        assert key in by_id, key
    assert all(c["status"] in (PASS, WARN, FAIL) and c["title"] and c["detail"] for c in report["checks"])
    assert by_id["channel:demo"]["status"] == PASS and "local folder" in by_id["channel:demo"]["detail"]
    assert doctor.returncode == (1 if report["counts"]["fail"] else 0), doctor.stderr


def test_cli_without_a_comfyui_says_so_and_does_nothing(tmp_path: Path):
    nowhere = tmp_path / "empty"
    nowhere.mkdir()
    for args in (("doctor",), ("--json", "show", "installed")):
        out = _cli(*args, cwd=nowhere)
        assert out.returncode == 1
        text = out.stdout + out.stderr
        assert "comfyui_not_found" in text and "--comfyui" in text and str(nowhere) in text
        assert len(text) < 1200  # one error and its hint, no network noise
    assert list(nowhere.iterdir()) == []


def test_old_offline_file_wins_over_a_public_default_and_migrate_copies_it(tmp_path: Path):
    root = _tree(tmp_path, network_mode="public")
    cfg = root / "user" / "__manager" / "config.ini"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("network_mode = public\n", ""), encoding="utf-8")
    old = root.joinpath(*OLD)
    old.parent.mkdir(parents=True)
    old.write_text("[default]\nnetwork_mode = offline\ndb_mode = local\n", encoding="utf-8")

    out = _cli("--json", "config", cwd=_pack_dir(root))
    data = json.loads(out.stdout)["data"]
    mode = next(s for s in data["settings"] if s["key"] == "network_mode")
    assert mode["value"] == "offline" and mode["origin"] == f"{old}:2"  # the stricter mode wins
    conflict = next(p for p in data["problems"] if p["code"] == "config_conflict")
    assert "cm-cli.py migrate" in conflict["hint"] and conflict["details"]["stricter_wins"] == ["network_mode"]
    assert [f["path"] for f in data["old_files"]] == [str(old)]
    human = _cli("config", cwd=_pack_dir(root)).stdout
    assert f"config file: {cfg} (in effect)" in human and f"old config file: {old}" in human

    manager = Manager.standalone(root)
    report = run_checks(manager)
    assert next(c for c in report.checks if c.id == "config_old").status == WARN

    before = cfg.read_text(encoding="utf-8")
    moved = _cli("migrate", cwd=_pack_dir(root))
    assert moved.returncode == 0, moved.stderr
    backups = list(cfg.parent.glob("config.ini.bak-*"))
    assert len(backups) == 1 and backups[0].read_text(encoding="utf-8") == before
    text = cfg.read_text(encoding="utf-8")
    assert "network_mode = offline" in text and "db_mode = local" in text
    after = Manager.standalone(root)
    assert after.config["network_mode"] == "offline" and after.config.source("network_mode") == "file"
    assert after.config.origin("network_mode").startswith(str(cfg))
    assert not [p for p in after.config.problems if p.code == "config_conflict"]


def test_migrate_refuses_to_lower_security_unless_asked(tmp_path: Path):
    root = _tree(tmp_path)
    classic = root / "custom_nodes" / "ComfyUI-Manager"
    classic.mkdir()
    (classic / "config.ini").write_text(
        "[default]\nsecurity_level = weak\nnetwork_mode = public\ncache_ttl = 60\n", encoding="utf-8"
    )
    manager = Manager.standalone(root)
    assert manager.config["network_mode"] == "offline" and manager.config["security_level"] == "normal"
    result = migrate(manager.layout, manager.config)
    assert result.copied == {"cache_ttl": "60"}
    assert set(result.refused) == {"security_level", "network_mode"}
    assert "--allow-lower" in result.refused["security_level"]
    again = Manager.standalone(root)
    assert again.config["security_level"] == "normal" and again.config["cache_ttl"] == 60
    out = _cli("migrate", "--allow-lower", cwd=classic)
    assert out.returncode == 0, out.stderr
    assert Manager.standalone(root).config["security_level"] == "weak"


def test_doctor_offline_never_probes_remote_channels(tmp_path: Path, socket_audit_log):
    root = _tree(tmp_path)
    listed = root / "user" / "__manager" / "channels.list"
    listed.write_text(listed.read_text(encoding="utf-8") + "remote::https://example.invalid/channel\n")
    report = run_checks(Manager.standalone(root), online=True)
    assert socket_audit_log.inet_connects() == []
    remote = next(c for c in report.checks if c.id == "channel:remote")
    assert remote.status == PASS and "offline mode opens no socket" in remote.detail
    assert report.to_dict()["counts"]["fail"] == report.count(FAIL)


def test_doctor_fails_a_broken_channel_and_a_pack_that_failed_to_import(tmp_path: Path):
    from manager.import_failures import ImportFailure, ImportFailureReport, save_report

    root = _tree(tmp_path)
    listed = root / "user" / "__manager" / "channels.list"
    listed.write_text(listed.read_text(encoding="utf-8") + f"gone::{(tmp_path / 'gone').as_uri()}\n")
    manager = Manager.standalone(root)
    pack = _pack_dir(root)
    save_report(
        manager.layout,
        ImportFailureReport(
            (ImportFailure(pack.name, str(pack), "ModuleNotFoundError: x"),), recorded_at="now", available=True
        ),
    )
    report = run_checks(manager)
    by_id = {c.id: c for c in report.checks}
    assert by_id["channel:gone"].status == FAIL and by_id["channel:gone"].fix
    assert by_id["import_failures"].status == FAIL and f"cm-cli.py fix {pack.name}" in by_id["import_failures"].fix
    assert not report.ok
    out = _cli("doctor", cwd=pack)
    assert out.returncode == 1
    assert any(
        line.split()[:1] == ["FAIL"] and "Packs that failed to import" in line for line in out.stdout.splitlines()
    )
    assert out.stderr.splitlines()[-1].startswith("cm-cli.py doctor: failed (exit 1): ")


async def test_doctor_route_answers_the_report(aiohttp_client, api_app):  # noqa: F811
    app, _api, root = api_app()
    client = await aiohttp_client(app)
    resp = await client.get("/offline-manager/v1/doctor")
    assert resp.status == 200
    body = await resp.json()
    assert body["ok"] is True and body["data"]["comfyui_root"] == str(root)
    ids = [c["id"] for c in body["data"]["checks"]]
    assert "listener" in ids and "wheelhouse" in ids
    listener = next(c for c in body["data"]["checks"] if c["id"] == "listener")
    assert "127.0.0.1" in listener["detail"]
    families = ("github", "raw_github", "registry", "pypi", "huggingface", "channel", "default_channel")
    assert all(f"endpoint:{f}" in ids for f in families)
    assert [e["family"] for e in body["data"]["endpoints"]] == list(families)
    channel = next(c for c in body["data"]["checks"] if c["id"] == "endpoint:channel")
    assert (root.parent / "demo-channel").as_uri() in channel["detail"]
    bad = await client.get("/offline-manager/v1/doctor?online=maybe")
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "request_invalid"


def test_doctor_shows_the_effective_url_of_each_endpoint_family(tmp_path: Path, socket_audit_log):
    root = _tree(tmp_path, network_mode="private")
    config = root / "user" / "__manager" / "config.ini"
    mirror = (tmp_path / "gh-mirror").as_uri()
    config.write_text(
        config.read_text(encoding="utf-8") + f"[mirrors]\ngithub = {mirror}\n"
        "rewrites =\n    https://pypi.org/simple -> https://nexus.corp/repository/pypi/simple\n",
        encoding="utf-8",
    )
    by_id = {c.id: c for c in run_checks(Manager.standalone(root)).checks}
    github, pypi, hf = by_id["endpoint:github"], by_id["endpoint:pypi"], by_id["endpoint:huggingface"]
    assert github.detail.startswith(f"{mirror} (rewritten from https://github.com by github)")
    assert "works in every network mode" in github.detail
    assert pypi.detail.startswith("https://nexus.corp/repository/pypi/simple (rewritten from https://pypi.org/simple")
    assert "rewrites (https://pypi.org/simple)" in pypi.detail and "allowed in private mode" in pypi.detail
    assert hf.detail.startswith("https://huggingface.co (no [mirrors] rule)") and "refused in private mode" in hf.detail
    out = _cli("--comfyui", str(root), "doctor", cwd=tmp_path)
    row = next(line for line in out.stdout.splitlines() if "Endpoint: GitHub" in line)
    assert row.split()[0] == "pass" and mirror in row
    report = json.loads(_cli("--comfyui", str(root), "--json", "doctor", cwd=tmp_path).stdout)["data"]
    assert {e["family"]: e["effective"] for e in report["endpoints"]}["github"] == mirror
