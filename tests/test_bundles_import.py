"""The air-gap round trip with one bundle, on real parts.

Online: a ComfyUI tree in public mode whose whole "internet" is loopback: its channel files and
the registry stand-in (with a zip on a loopback "CDN") on an aiohttp server, the packs' git
repositories over smart HTTP (``git http-backend``), a PEP 503 index of wheels built here. Two git
packs and a registry pack are installed there; ``cm-cli.py bundle create --installed`` then runs
under strace and may connect to loopback only.

Offline: a fresh tree (``network_mode = offline``, an empty venv of its own) inside a network
namespace with only loopback (``unshare -n``) under ``strace``: ``bundle import FILE --apply``
verifies, fills the stores and restores the bundled snapshot: every pack at the online commit
(upstream has moved on since), the registry pack at its version, every package at the online
version (the index has newer ones): and not one connect() to an inet address at all. Then
``install`` of a bundled pack by id works offline from the bundle's channel and git mirror.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from test_admin_sequence import (
    CM,
    clean_env,
    cli,
    inet_connects,
    outside_loopback,
    require_netns_tools,
    run_offline,
    run_traced,
    serve_channel,
)

from support.bundles import online_config, serve_registry_pack
from support.gitrepos import git, make_repo, serve_smart_http
from support.ops_fixtures import catalog_entry
from support.wheels import Pkg, build_wheels, installed_names, make_venv, serve_simple_index

REG = "reg-pack"


def _tree(root: Path, lines: list[str]) -> Path:
    for sub in ("custom_nodes", "models", "user/__manager"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text("# ComfyUI stand-in\n")
    (root / "user" / "__manager" / "config.ini").write_text("\n".join(lines) + "\n")
    return root


def _online_world(tmp_path: Path, http_server) -> dict:
    sources = tmp_path / "git"
    repos = {}
    for pack_id, req in (("pack-a", "alpha-lib>=1\n"), ("pack-b", "beta-lib\n")):
        info = make_repo(sources / pack_id, name=pack_id)
        info.commit("requirements", {"requirements.txt": req})
        repos[pack_id] = info
    urls = {p: serve_smart_http(http_server, sources, p) for p in repos}
    channel = serve_channel(http_server, [catalog_entry(p, u) for p, u in urls.items()])
    serve_registry_pack(http_server, tmp_path, REG, "alpha-lib\n")
    dist = tmp_path / "dist"
    wheels = build_wheels(
        dist, [Pkg("alpha-lib", "1.0"), Pkg("beta-lib", "1.0", ("delta-lib>=1",)), Pkg("delta-lib", "1.0")]
    )
    index = serve_simple_index(http_server, wheels)
    return {"repos": repos, "urls": urls, "channel": channel, "index": index, "dist": dist, "wheels": wheels}


def test_bundle_round_trip_online_create_offline_import_apply(
    tmp_path, http_server, git_bin, uv_bin, own_caches
) -> None:
    require_netns_tools()
    world = _online_world(tmp_path, http_server)
    online_py = make_venv(tmp_path / "online-venv")
    offline_py = make_venv(tmp_path / "offline-venv")
    online = _tree(
        tmp_path / "online" / "ComfyUI",
        online_config(world["channel"], http_server.url("/api"), world["index"], online_py),
    )
    (online / "user" / "__manager" / "channels.list").write_text(f"default::{world['channel']}\n")
    offline = _tree(
        tmp_path / "offline" / "ComfyUI",
        [
            "[default]",
            "network_mode = offline",
            f"python_executable = {offline_py}",
            # the channel a bundle import writes (its channels.list line names the same folder)
            f"channel_url = {(tmp_path / 'offline' / 'ComfyUI' / 'user' / '__manager' / 'local-channel').as_uri()}",
        ],
    )
    env = clean_env()
    for args in (("install", "pack-a", "pack-b"), ("install", f"{REG}@1.0.0")):
        out = cli(online, *args, env=env)
        assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}"
    assert installed_names(online_py) == {"alpha-lib": "1.0", "beta-lib": "1.0", "delta-lib": "1.0"}
    commits = {p: git(online / "custom_nodes" / p, "rev-parse", "HEAD") for p in world["repos"]}

    work = tmp_path / "work"
    work.mkdir()
    traces = tmp_path / "traces"
    traces.mkdir()
    create = f"{shlex.quote(sys.executable)} {CM} --comfyui {online} bundle create --installed -o site.bundle.tar"
    out = run_traced(create, work, env, traces / "create.strace")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "bundle " in out.stdout and "3 pack(s)" in out.stdout, out.stdout + out.stderr
    for item in ("git pack-a", "git pack-b", f"registry {REG}@1.0.0", "wheels:"):
        assert item in out.stderr, out.stderr  # progress per item
    connects = inet_connects(traces / "create.strace")
    assert connects and not outside_loopback(connects), connects

    # the world moves on: upstream commits, newer wheels on the index
    for info in world["repos"].values():
        info.commit("later", {"nodes.py": "VERSION = 99\n"})
    later = build_wheels(world["dist"], [Pkg("alpha-lib", "2.0"), Pkg("beta-lib", "1.5", ("delta-lib>=1",))])
    serve_simple_index(http_server, world["wheels"] + later)

    bundle = work / "site.bundle.tar"
    line = f"{shlex.quote(sys.executable)} {CM} --comfyui {offline} bundle import {bundle} --apply"
    out = run_offline(line, work, env, traces / "import.strace")
    print(out.stdout, out.stderr)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "bundle import:" in out.stdout and "restored" in out.stdout, out.stdout
    assert not inet_connects(traces / "import.strace"), "the offline import opened inet sockets"

    nodes = offline / "custom_nodes"
    for pack_id, commit in commits.items():
        assert git(nodes / pack_id, "rev-parse", "HEAD") == commit, pack_id
        assert git(nodes / pack_id, "remote", "get-url", "origin") == world["urls"][pack_id]  # the public URL kept
    assert 'version = "1.0.0"' in (nodes / REG / "pyproject.toml").read_text()
    assert installed_names(offline_py) == {"alpha-lib": "1.0", "beta-lib": "1.0", "delta-lib": "1.0"}
    manager_dir = offline / "user" / "__manager"
    assert f"bundle::{(manager_dir / 'local-channel').as_uri()}" in (manager_dir / "channels.list").read_text()
    assert len(list((manager_dir / "bundles").glob("*.json"))) == 1
    # the restore cloned from the git bundles as imported: commits from their headers, requirements from the
    # manifest, no bare repository made
    assert sorted(p.name for p in (manager_dir / "git-mirror").rglob("*.bundle")) == ["pack-a.bundle", "pack-b.bundle"]
    assert not list((manager_dir / "git-mirror").rglob("*.git"))

    # the bundle's channel and git mirror serve an install by id, offline: pack-a moved aside, back by id
    out = run_offline(
        f"{shlex.quote(sys.executable)} {CM} --comfyui {offline} uninstall pack-a && "
        f"{shlex.quote(sys.executable)} {CM} --comfyui {offline} install pack-a",
        work,
        env,
        traces / "install.strace",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (nodes / "pack-a" / "__init__.py").is_file()
    assert not inet_connects(traces / "install.strace")
    # doctor reports the bundle's coverage
    out = run_offline(
        f"{shlex.quote(sys.executable)} {CM} --comfyui {offline} doctor", work, env, traces / "doctor.strace"
    )
    assert re.search(
        r"^pass +Offline bundles +1 bundle\(s\) imported .*cover 3 of 3 installed pack", out.stdout, re.M
    ), out.stdout
