"""cm-cli.py cleanup-cache on a real tree: orphaned and corrupt cache files, expired entries no
channel reads any more, old archives, old staging and trash entries go (bytes freed per area);
what a channel still reads, journals, and young entries stay; --dry-run deletes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from manager.context import Manager

REPO = Path(__file__).resolve().parents[1]
DAY = 86400.0


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "cm-cli.py"), "--comfyui", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def aged(path: Path, days: float) -> Path:
    t = time.time() - days * DAY
    os.utime(path, (t, t))
    return path


def build(root: Path) -> dict[str, Path]:
    for sub in ("custom_nodes", "models", "user/__manager"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    manager_dir = root / "user" / "__manager"
    (manager_dir / "channels.list").write_text("main::https://channel.example/db\n")
    (manager_dir / "config.ini").write_text(
        "[default]\nnetwork_mode = offline\nchannel_url = https://channel.example/db\nregistry_url = https://registry.example\n"
    )
    m = Manager.standalone(root, env={})
    old = time.time() - 90 * DAY
    used = m.channels.file_url(m.active_channel(), "custom-node-list.json")
    m.cache.put(used, b'{"custom_nodes": []}', fetched_at=old)  # expired, but the channel reads it
    m.cache.put("https://gone.example/db/custom-node-list.json", b'{"custom_nodes": [1]}', fetched_at=old)
    m.cache.put("https://young.example/db/model-list.json", b"{}", fetched_at=time.time())
    bad = m.cache.put("https://bad.example/db/alter-list.json", b"{}")
    Path(bad.path).write_bytes(b'{"x": 1}')  # tampered: sha256 no longer matches
    channels = m.cache.cache_dir
    (channels / "0123456789abcdef_orphan.json").write_bytes(b"{}")  # body without sidecar
    (channels / "fedcba9876543210_lost.json.meta.json").write_text("{}")  # sidecar without body
    assert m.registry.cache is not None
    m.registry.cache.put("https://registry.example/nodes/x/versions", b"[]", fetched_at=old)

    archives = root / "user" / "__manager" / "cache" / "archives"
    (archives / "cnr" / "pack").mkdir(parents=True)
    (archives / "url").mkdir(parents=True)
    old_zip = archives / "cnr" / "pack" / "1.0.0.zip"
    old_zip.write_bytes(b"z" * 1000)
    aged(old_zip, 40)
    new_zip = archives / "url" / "abc-pack.zip"
    new_zip.write_bytes(b"y" * 10)

    staging = root / "custom_nodes" / ".cm-staging.disabled"
    (staging / "pack-dead").mkdir(parents=True)
    (staging / "pack-dead" / "f.py").write_text("x" * 500)
    aged(staging / "pack-dead", 40)
    journal = staging / ".txn-abc.json"
    journal.write_text('{"moves": []}')
    aged(journal, 40)

    trash = root / "custom_nodes" / ".cm-trash.disabled"
    for name, days in (("old-entry", 40), ("new-entry", 1)):
        entry = trash / name
        (entry / "pack").mkdir(parents=True)
        (entry / "pack" / "a.py").write_text("t" * 300)
        (entry / "manifest.json").write_text(
            json.dumps({"id": name, "name": "pack", "original": "pack", "trashed_at": time.time() - days * DAY})
        )
    return {"used": Path(m.cache.paths(used)[0]), "old_zip": old_zip, "new_zip": new_zip, "journal": journal}


def test_dry_run_lists_then_cleanup_frees_per_area(tmp_path):
    root = tmp_path / "ComfyUI"
    paths = build(root)
    before = sorted(str(p) for p in root.rglob("*"))

    dry = cli(root, "--json", "cleanup-cache", "--older-than", "30", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)["data"]
    assert sorted(str(p) for p in root.rglob("*")) == before, "a dry run deletes nothing"
    removed = {(r["area"], Path(r["name"]).name) for r in report["removed"]}
    assert ("archives", "1.0.0.zip") in removed and ("staging", "pack-dead") in removed
    assert ("trash", "old-entry") in removed and ("trash", "new-entry") not in removed
    assert ("channels", "0123456789abcdef_orphan.json") in removed
    assert ("channels", "fedcba9876543210_lost.json.meta.json") in removed
    assert any(a == "channels" and n.endswith("custom-node-list.json") for a, n in removed)  # gone.example
    assert any(a == "channels" and n.endswith("alter-list.json") for a, n in removed)  # corrupt
    assert any(a == "registry" and n.endswith("versions") for a, n in removed)
    assert report["freed_bytes"]["archives"] == 1000 and report["freed_bytes"]["staging"] == 500
    assert report["freed_bytes"]["trash"] >= 300
    assert any(k["area"] == "channels" for k in report["kept"])  # expired but read by the channel
    assert any(k["area"] == "staging" and k["name"] == ".txn-abc.json" for k in report["kept"])

    real = cli(root, "cleanup-cache", "--older-than", "30")
    assert real.returncode == 0, real.stderr
    assert "cleanup-cache freed" in real.stderr
    assert "archives" in real.stdout and "FREED" in real.stdout
    assert paths["used"].exists() and paths["new_zip"].exists() and paths["journal"].exists()
    assert not paths["old_zip"].exists() and not paths["old_zip"].parent.exists()  # empty folder pruned
    assert not (root / "custom_nodes" / ".cm-staging.disabled" / "pack-dead").exists()
    trash = root / "custom_nodes" / ".cm-trash.disabled"
    assert sorted(p.name for p in trash.iterdir()) == ["new-entry"]
    channels = root / "user" / "__manager" / "cache" / "channels"
    assert not list(channels.glob("*orphan*")) and not list(channels.glob("*lost*"))
    assert len(list(channels.glob("*.meta.json"))) == 2  # the channel's file and the young one

    health = cli(root, "--json", "cache", "health")  # nothing broken left; the kept expired file warns
    data = json.loads(health.stdout)["data"]
    assert health.returncode == 3 and data["verdict"] == "warn", health.stderr
    assert data["problems"] == 0 and data["expired_files"] == 1


def test_bad_age_is_a_coded_error_naming_a_command_that_exists(tmp_path):
    root = tmp_path / "ComfyUI"
    build(root)
    for bad in ("-1", "soon", "inf"):
        out = cli(root, "cleanup-cache", "--older-than", bad)
        assert out.returncode == 1 and "[request_invalid]" in out.stderr, out.stderr
        assert "cm-cli.py cleanup-cache --older-than 30 --dry-run" in out.stderr
