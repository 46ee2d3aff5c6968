"""Honest restore (issue 19, item 5): after the last step the tree is captured again and every pack and
package of the snapshot is reported installed / already present / failed (with the reason), the counts
tallied from that capture. A pinned commit gone from its source (history rewritten) is a failed entry:
the other packs are restored. Real git repositories, a real venv and wheelhouse, offline."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_snapshots_restore import ALLOW, World, build_world, make_state_a, make_state_b

from manager.snapshots import store_of
from manager.snapshots.capture import capture
from manager.snapshots.model import Snapshot
from manager.snapshots.plan import RestoreOptions
from manager.snapshots.restore import plan_restore, restore
from support.gitrepos import git
from support.ops_fixtures import write_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _own_caches(own_caches):
    return own_caches


@pytest.fixture
def offline_world(tmp_path, uv_bin):
    with contextlib.ExitStack() as stack:
        yield build_world(tmp_path, uv_bin, mode="offline", stack=stack)


def rewrite_history(repo: Path) -> None:
    """Replace every commit of ``repo`` by new ones (same files) and drop the old objects for good."""
    git(repo, "checkout", "-q", "--orphan", "rewritten")
    git(repo, "commit", "-q", "-m", "history rewritten")
    git(repo, "branch", "-D", "main")
    git(repo, "branch", "-m", "main")
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")


def independent_tally(snap: Snapshot, now: Snapshot) -> dict[str, int]:
    """What a fresh capture says, counted without the report's code: snapshot entries as they are now."""
    packs = {(p.key, p.enabled): p for p in now.packs}
    pips = {p.name: p.version for p in now.python}
    ok_packs = sum(
        1
        for w in snap.packs
        if (w.key, w.enabled) in packs
        and (w.kind != "git" or packs[(w.key, w.enabled)].commit == w.commit)
        and (w.kind != "cnr" or packs[(w.key, w.enabled)].version == w.version)
    )
    index = [p for p in snap.python if p.kind == "index"]
    ok_pips = sum(1 for p in index if pips.get(p.name) == p.version)
    return {"packs_ok": ok_packs, "packs_failed": len(snap.packs) - ok_packs, "pips_ok": ok_pips}


def check_counts(report: dict[str, Any], snap: Snapshot, now: Snapshot) -> None:
    tally = independent_tally(snap, now)
    packs = report["counts"]["packs"]
    assert packs["installed"] + packs["already_present"] == tally["packs_ok"]
    assert packs["failed"] == tally["packs_failed"]
    pkgs = report["counts"]["packages"]
    assert pkgs["installed"] + pkgs["already_present"] == tally["pips_ok"]
    assert report["counts"]["failed"] == packs["failed"] + pkgs["failed"]


def test_a_pinned_commit_gone_from_the_source_is_a_failed_entry_and_the_rest_is_restored(offline_world: World):
    w = offline_world
    make_state_a(w)
    snap = capture(w.manager)
    saved = store_of(w.manager).save(snap, "state-a")
    make_state_b(w)  # charlie uninstalled: the restore must install it at its pinned commit
    pinned = w.commits["charlie"][0]
    rewrite_history(w.src / "charlie")
    assert subprocess.run(["git", "-C", str(w.src / "charlie"), "cat-file", "-e", pinned]).returncode != 0

    plan = plan_restore(w.manager, snap, RestoreOptions(remove_extra_pips=True))
    assert [m.name for m in plan.left_out] == ["charlie"] and plan.left_out[0].what == "commit"
    assert not any(s.target == "charlie" for s in plan.steps)
    assert any(line.startswith("left out (will be reported failed): charlie") for line in plan.lines())

    result = restore(w.manager, snap, RestoreOptions(remove_extra_pips=True), where=saved.name, policy=ALLOW)
    doc = result.to_json()
    assert doc["ok"] is False and doc["partial"] is True and doc["failed"] is None  # not success, not silent
    report = doc["report"]
    by_name = {e["name"]: e for e in report["packs"]}
    charlie = by_name["charlie"]
    assert charlie["status"] == "failed" and charlie["reason"] == "commit_absent"
    assert pinned[:12] in charlie["message"] and charlie["verified"] is False
    # the independent packs were restored, their pinned commits verified on disk
    assert by_name["alpha"]["status"] == "installed" and by_name["alpha"]["verified"] is True
    assert by_name["bravo"]["status"] == "installed"  # enabled again
    assert by_name["reg-pack"]["status"] == "installed"
    assert by_name["delta-pack"]["status"] == "removed"
    assert (w.nodes / "alpha" / "nodes.py").read_text() == "V = 1\n" and not (w.nodes / "charlie").exists()
    pkgs = {e["name"]: e for e in report["packages"]}
    assert pkgs["beta"]["status"] == "installed" and pkgs["gamma"]["status"] == "installed"
    # the counts are those of a fresh capture
    now = capture(w.manager)
    check_counts(report, snap, now)
    assert report["counts"]["packs"]["failed"] == 1 and report["counts"]["failed"] == 1
    # restoring again: nothing left to do but the same failed pack, the rest already present
    again = restore(w.manager, snap, RestoreOptions(remove_extra_pips=True), policy=ALLOW).to_json()
    assert again["done"] == [] and again["partial"] is True
    statuses = {e["name"]: e["status"] for e in again["report"]["packs"]}
    assert statuses == {
        "alpha": "already_present",
        "bravo": "already_present",
        "charlie": "failed",
        "reg-pack": "already_present",
    }
    check_counts(again["report"], snap, capture(w.manager))


def test_a_full_restore_reports_every_entry_from_the_capture(offline_world: World):
    w = offline_world
    make_state_a(w)
    snap = capture(w.manager)
    make_state_b(w)
    result = restore(w.manager, snap, RestoreOptions(remove_extra_pips=True), policy=ALLOW).to_json()
    assert result["ok"] is True and result["partial"] is False
    report = result["report"]
    assert report["counts"]["failed"] == 0
    assert {e["name"]: e["status"] for e in report["packs"] if e["status"] != "removed"} == {
        "alpha": "installed",
        "bravo": "installed",
        "charlie": "installed",
        "reg-pack": "installed",
    }
    assert all(e["verified"] for e in report["packs"] if e["name"] in ("alpha", "bravo", "charlie"))
    check_counts(report, snap, capture(w.manager))


def test_the_cli_prints_the_counts_and_the_failed_pack_and_exits_partial(offline_world: World):
    w = offline_world
    make_state_a(w)
    store_of(w.manager).save(capture(w.manager), "state-a")
    make_state_b(w)
    rewrite_history(w.src / "charlie")
    channel = (w.root.parent / "channel").as_uri()
    write_config(w.root, network_mode="offline", channel_url=channel, python_executable=str(w.python))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_") and k != "COMFYUI_PATH"}
    for argv, exit_code in ((["snapshot", "restore", "state-a"], 3), (["restore-snapshot", "state-a"], 3)):
        out = subprocess.run(
            [sys.executable, str(REPO / "cm-cli.py"), "--comfyui", str(w.root), *argv],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert out.returncode == exit_code, out.stdout + out.stderr
        text = out.stdout + out.stderr
        assert "after the restore:" in text and "1 failed" in text
        assert "failed: pack charlie: commit_absent" in text
    out = subprocess.run(
        [sys.executable, str(REPO / "cm-cli.py"), "--comfyui", str(w.root), "--json", "snapshot", "restore", "state-a"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 3, out.stderr
    doc = json.loads(out.stdout)
    assert "charlie" in json.dumps(doc)
