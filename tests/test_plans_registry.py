"""Plans of registry (cnr) packs list their Python package changes (issue 19, item 1).

The requirements.txt of a registry pack is read from its archive: from the registry archive
cache, or, in public/private mode, fetched into that cache first (a plan fills the cache, never
the tree); the requirements are then resolved with the installer's dry run like a git pack's.
Offline, an archive the cache lacks is never fetched: the plan says so and resolves nothing.

Real parts: the registry stand-in and the zip host on 127.0.0.1, a real venv, wheels built here
and published as a PEP 503 index on the same loopback server, the real uv dry run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from manager.kinds.planner import preview_plan
from manager.operations.sources import cnr_archive_path
from support.fake_registry import FakeRegistry, make_node, make_version
from support.ops_fixtures import build_zip, cnr_files, make_env
from support.treesum import changes, listing
from support.wheels import build_wheel, installed_names, make_venv, serve_simple_index

NODE = "reg-plan-pack"
REQS = {"1.0.0": "cm-reg-lib==2.0\n", "1.1.0": "cm-reg-lib==1.0\ncm-reg-new==1.0\n"}


@pytest.fixture
def world(tmp_path: Path, http_server: Any, monkeypatch: pytest.MonkeyPatch, uv_bin: str) -> Any:
    uv = uv_bin
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    base = http_server.url("/cdn")
    versions = [
        make_version(NODE, "pub", v, created_at=f"2026-0{i + 1}-01T00:00:00Z", download_base=base)
        for i, v in enumerate(("1.1.0", "1.0.0"))
    ]
    zips: dict[str, bytes] = {}
    for v, reqs in REQS.items():
        files = cnr_files(NODE, v, extra={"requirements.txt": reqs})
        zips[v] = build_zip(tmp_path / "zips" / f"{v}.zip", files).read_bytes()
        http_server.static(f"/cdn/pub/{NODE}/{v}/node.zip", zips[v], content_type="application/zip")
    node = make_node(
        NODE,
        name="Registry Plan Pack",
        publisher_id="pub",
        publisher_name="Pub",
        repository=f"https://github.com/example/{NODE}",
        versions=versions,
    )
    FakeRegistry([node], {NODE: versions}, prefix="/api").install(http_server)
    wheels = [
        build_wheel(tmp_path / "wheels", name, version)
        for name, version in (("cm-reg-lib", "1.0"), ("cm-reg-lib", "2.0"), ("cm-reg-new", "1.0"))
    ]
    index = serve_simple_index(http_server, wheels)
    python = make_venv(tmp_path / "venv", uv=uv)
    env = make_env(
        tmp_path,
        mode="public",
        registry_url=http_server.url("/api"),
        python=str(python),
        deps=False,
        python_executable=str(python),
        pip_index_url=index,
    )
    try:
        yield env, python, http_server, zips, tmp_path / "wheels", uv
    finally:
        env.close()


def _plan(env: Any, kind: str, target: str, **params: Any) -> dict[str, Any]:
    return preview_plan(env.manager, env.manager.plan(kind, target, params, listen="127.0.0.1"))


def _names(plan: dict[str, Any], change: str) -> list[tuple[str, str, str]]:
    return [(p["name"], p["from"], p["to"]) for p in plan["python"][change]]


def test_registry_install_and_update_plans_resolve_the_archive_requirements(world: Any) -> None:
    env, python, srv, _zips, wheels, uv = world
    m = env.manager
    tree = listing(env.custom_nodes)
    packages = installed_names(python)

    plan = _plan(env, "install", f"{NODE}@1.0.0")
    assert plan["ok"] is True, plan["blockers"]
    assert plan["packs"]["added"][0]["name"] == NODE and plan["packs"]["added"][0]["source"] == "cnr"
    assert _names(plan, "added") == [("cm-reg-lib", "", "2.0")], plan
    assert "cm-reg-lib==2.0" in plan["with_deps"]["requirements"]
    assert not any("not resolved" in n for n in plan["notes"]), plan["notes"]
    # the archive was fetched into the registry archive cache, nothing into the tree or the venv
    assert cnr_archive_path_of(env, "1.0.0").is_file()
    assert srv.count(f"/cdn/pub/{NODE}/1.0.0/node.zip") == 1
    assert listing(env.custom_nodes) == tree, changes(tree, listing(env.custom_nodes))
    assert installed_names(python) == packages

    # a second plan reads the cached archive: no second download
    again = _plan(env, "install", f"{NODE}@1.0.0", skip_deps=True)
    assert again["python"]["added"] == [] and [p["name"] for p in again["with_deps"]["python"]] == ["cm-reg-lib"]
    assert srv.count(f"/cdn/pub/{NODE}/1.0.0/node.zip") == 1

    # install 1.0.0 (its package by hand: this Manager runs no dependency step), then plan the update
    task = env.run("install", f"{NODE}@1.0.0")
    assert task.state.value == "done", task.error
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--python",
            str(python),
            "--no-config",
            "--offline",
            "--no-index",
            "--find-links",
            str(wheels),
            "cm-reg-lib==2.0",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    tree = listing(env.custom_nodes)
    packages = installed_names(python)
    update = _plan(env, "update", NODE)
    assert update["ok"] is True, update["blockers"]
    assert update["packs"]["changed"][0]["from"] == "1.0.0" and update["packs"]["changed"][0]["to"] == "1.1.0"
    assert _names(update, "downgraded") == [("cm-reg-lib", "2.0", "1.0")], update
    assert _names(update, "added") == [("cm-reg-new", "", "1.0")], update
    switch = _plan(env, "switch_version", NODE, version="1.1.0")
    assert _names(switch, "downgraded") == [("cm-reg-lib", "2.0", "1.0")], switch
    assert listing(env.custom_nodes) == tree and installed_names(python) == packages
    assert cnr_archive_path_of(env, "1.1.0").is_file()
    assert not m.queue.pending()


def cnr_archive_path_of(env: Any, version: str) -> Path:
    from manager.operations import Ops

    return cnr_archive_path(Ops(env.manager), NODE, version)


def test_offline_reads_a_cached_archive_and_never_fetches_one(
    world: Any, tmp_path: Path, socket_audit_log: Any
) -> None:
    env, python, srv, zips, wheels, _uv = world
    # an offline box: the wheelhouse holds the wheels, the archive cache holds 1.1.0 only
    offline = make_env(
        tmp_path / "off",
        mode="offline",
        python=str(python),
        deps=False,
        python_executable=str(python),
        wheelhouse_dirs=str(wheels),
    )
    try:
        cached = cnr_archive_path_of(offline, "1.1.0")
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(zips["1.1.0"])
        socket_audit_log.reset()
        hits = srv.count(f"/cdn/pub/{NODE}/1.0.0/node.zip")

        plan = _plan(offline, "install", f"{NODE}@1.1.0")
        assert plan["ok"] is True, plan["blockers"]
        assert _names(plan, "added") == [("cm-reg-lib", "", "1.0"), ("cm-reg-new", "", "1.0")], plan

        absent = _plan(offline, "install", f"{NODE}@1.0.0")  # not cached: refused, nothing fetched
        assert absent["python"]["added"] == []
        said = " ".join([*absent["notes"], *(b.get("message", "") for b in absent["blockers"])])
        assert "offline" in said and "cache" in said, absent
        assert not cnr_archive_path_of(offline, "1.0.0").exists()
        assert socket_audit_log.inet_connects() == []
        assert srv.count(f"/cdn/pub/{NODE}/1.0.0/node.zip") == hits
    finally:
        offline.close()
