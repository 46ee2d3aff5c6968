"""The cache verbs of cm-cli.py run for real: --cache-only / update-cache against loopback channels
and a registry stand-in (exit codes for cron), cache status/health, export-deps to stdout, and
download-deps laying out a PEP 503 index that real pip installs from, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.fake_registry import FakeRegistry
from support.wheels import ConnectTrap, Pkg, build_wheels, make_venv, serve_simple_index

REPO = Path(__file__).resolve().parents[1]
FILES = ("custom-node-list.json", "extension-node-map.json", "model-list.json", "alter-list.json", "github-stats.json")


def cli(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "cm-cli.py"), "--comfyui", str(root), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def node_list(*ids: str) -> bytes:
    nodes = [
        {
            "id": i,
            "title": i,
            "author": "me",
            "reference": f"https://example.invalid/{i}",
            "files": [f"https://example.invalid/{i}"],
            "install_type": "git-clone",
            "description": "d",
        }
        for i in ids
    ]
    return json.dumps({"custom_nodes": nodes}).encode()


def serve_channel(srv, prefix: str, ids: tuple[str, ...], *, leave_out: tuple[str, ...] = ()) -> str:
    for name in FILES:
        if name in leave_out:
            continue
        body = node_list(*ids) if name == "custom-node-list.json" else b"{}"
        srv.static(f"{prefix}/{name}", body, etag=f'"{prefix}-{name}"')
    return srv.url(prefix)


def make_tree(root: Path, srv, channels: dict[str, str], *, mode: str = "public") -> Path:
    for sub in ("custom_nodes", "models", "user/__manager"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    manager = root / "user" / "__manager"
    (manager / "channels.list").write_text("".join(f"{n}::{u}\n" for n, u in channels.items()))
    first = next(iter(channels))
    (manager / "config.ini").write_text(
        f"[default]\nnetwork_mode = {mode}\nchannel_url = {channels[first]}\n"
        f"registry_url = {srv.url('/api')}\nhttp_channel_enabled = true\n[security]\nallow_remote_channel = true\n"
    )
    return root


@pytest.fixture
def online(tmp_path, http_server) -> Path:
    FakeRegistry(prefix="/api").install(http_server)
    a = serve_channel(http_server, "/a", ("pack-a1", "pack-a2"))
    b = serve_channel(http_server, "/b", ("pack-b1",))
    return make_tree(tmp_path / "ComfyUI", http_server, {"alpha": a, "beta": b})


def test_cache_only_fetches_every_channel_and_the_registry_then_ttl_then_force(online, http_server):
    out = cli(online, "--cache-only")
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("  ok ")]
    assert len(lines) == 11, out.stderr  # 2 channels x 5 files + the registry node list
    assert "update-cache ok: 11 of 11 file(s) in place (11 fetched)" in out.stderr
    assert all(http_server.count(f"/{c}/{f}") == 1 for c in "ab" for f in FILES)
    cache = online / "user" / "__manager" / "cache"
    assert len(list((cache / "channels").glob("*.meta.json"))) == 10
    assert len(list((cache / "registry").glob("*.meta.json"))) == 1

    again = cli(online, "--json", "update-cache", "--all-channels")  # within cache_ttl: no request
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)["data"]
    assert report["outcome"] == "ok" and {f["state"] for f in report["files"]} == {"fresh"}
    assert http_server.count("/a/custom-node-list.json") == 1

    forced = cli(online, "--cache-only", "--force-refresh", "update-cache")  # revalidates every file
    assert forced.returncode == 0, forced.stderr
    assert "10 revalidated" in forced.stderr and "1 fetched" in forced.stderr
    assert http_server.count("/a/custom-node-list.json") == 2

    status = cli(online, "--json", "cache", "status")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)["data"]
    assert {"timestamp", "cache_size_bytes", "expired_files", "total_nodes", "areas"} <= set(data)
    assert data["total_nodes"]["channel"] == 2 and data["total_nodes"]["registry"] > 0
    areas = {a["area"]: a for a in data["areas"]}
    assert areas["channels"]["file_count"] == 10 and areas["channels"]["expired"] == 0
    assert all(f["age_seconds"] is not None for f in areas["channels"]["files"])
    assert {"archives", "model_partials", "wheelhouse", "registry"} <= set(areas)
    health = cli(online, "cache", "health")
    assert health.returncode == 0 and "cache health ok" in health.stderr, health.stdout + health.stderr


def test_update_cache_exit_codes_partial_failed_and_offline(tmp_path, http_server):
    FakeRegistry(prefix="/api").install(http_server)
    a = serve_channel(http_server, "/a", ("p",), leave_out=("alter-list.json",))
    root = make_tree(tmp_path / "ComfyUI", http_server, {"alpha": a})
    out = cli(root, "update-cache")
    assert out.returncode == 3, out.stderr
    assert "FAILED  alpha/alter-list.json: [http_status]" in out.stderr
    assert "update-cache partial: 5 of 6 file(s) in place" in out.stderr

    dead = make_tree(tmp_path / "Dead", http_server, {"gone": http_server.url("/nothing-here")})
    (dead / "user" / "__manager" / "config.ini").write_text(
        f"[default]\nchannel_url = {http_server.url('/nothing-here')}\nregistry_url = {http_server.url('/none')}\n"
        "http_channel_enabled = true\n"
    )
    out = cli(dead, "update-cache")
    assert out.returncode == 1 and "update-cache failed: 0 of 6" in out.stderr, out.stderr

    out = cli(root, "--network-mode", "offline", "update-cache", "--no-registry")  # 5 cached, 1 never was
    assert out.returncode == 3, out.stderr
    empty = make_tree(tmp_path / "Empty", http_server, {"alpha": a}, mode="offline")
    out = cli(empty, "--cache-only")
    assert out.returncode == 4 and "network_mode is offline" in out.stderr, out.stderr  # refused
    out = cli(empty, "--cache-only", "show")
    assert out.returncode == 1 and "[request_invalid]" in out.stderr and "cm-cli.py --cache-only" in out.stderr


def test_export_deps_writes_stdout_by_default_and_a_file_with_o(tmp_path, http_server):
    root = make_tree(tmp_path / "ComfyUI", http_server, {"alpha": http_server.url("/a")}, mode="offline")
    pack = root / "custom_nodes" / "PackA"
    pack.mkdir()
    (pack / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (pack / "requirements.txt").write_text("alpha-lib>=1\nbeta_lib\n")
    out = cli(root, "export-deps")
    assert out.returncode == 0, out.stderr
    body = [line for line in out.stdout.splitlines() if not line.startswith("#")]
    assert body == ["alpha-lib>=1  # PackA", "beta_lib  # PackA"], out.stdout
    assert "export-deps: 2 requirement(s) from 1 pack(s) to stdout" in out.stderr
    target = tmp_path / "req.txt"
    out = cli(root, "export-deps", "-o", str(target))
    assert out.returncode == 0 and out.stdout == "" and "alpha-lib>=1  # PackA" in target.read_text()


def test_download_deps_index_layout_installs_with_pip_offline(tmp_path, http_server, uv_bin, own_caches, monkeypatch):
    dist = build_wheels(
        tmp_path / "dist",
        [Pkg("Foo_Bar.Baz", "1.0", ("helper-lib>=2",)), Pkg("helper-lib", "2.0"), Pkg("helper-lib", "1.0")],
    )
    index = serve_simple_index(http_server, dist)
    root = make_tree(tmp_path / "ComfyUI", http_server, {"alpha": http_server.url("/a")})
    with (root / "user" / "__manager" / "config.ini").open("a") as fh:
        fh.write(f"[default]\npip_index_url = {index}\n")
    req = tmp_path / "requirements-offline.txt"
    req.write_text("foo-bar-baz  # PackA\n")
    wheelhouse = tmp_path / "carry" / "wheelhouse"
    out = cli(root, "download-deps", str(req), "--dest", str(wheelhouse), "--index-layout")
    assert out.returncode == 0, out.stdout + out.stderr
    simple = wheelhouse / "simple"
    assert sorted(p.name for p in simple.iterdir() if p.is_dir()) == ["foo-bar-baz", "helper-lib"]
    page = (simple / "foo-bar-baz" / "index.html").read_text()
    assert 'href="Foo_Bar_Baz-1.0-py3-none-any.whl#sha256=' in page
    assert (simple / "foo-bar-baz" / "Foo_Bar_Baz-1.0-py3-none-any.whl").is_file()
    assert 'href="foo-bar-baz/"' in (simple / "index.html").read_text()

    # specs on the command line (the form the deps_missing_wheels hint prints) add to the same folder
    out = cli(root, "download-deps", "--dest", str(wheelhouse), "--index-layout", "helper-lib==1.0")
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(list((simple / "helper-lib").glob("*.whl"))) == 2

    trap = ConnectTrap()  # the air-gapped side: any request pip tries lands here and is counted
    try:
        for key, value in trap.proxy_env().items():
            monkeypatch.setenv(key, value)
        python = make_venv(tmp_path / "airgapped", with_pip=True, uv=uv_bin)
        url = simple.resolve().as_uri()
        got = tmp_path / "got"
        run = subprocess.run(
            [str(python), "-m", "pip", "download", "--no-cache-dir", "-d", str(got), "--index-url", url, "foo.bar_baz"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert sorted(p.name for p in got.iterdir()) == [
            "Foo_Bar_Baz-1.0-py3-none-any.whl",
            "helper_lib-2.0-py3-none-any.whl",
        ]
        run = subprocess.run(
            [str(python), "-m", "pip", "install", "--no-cache-dir", "--index-url", url, "Foo-Bar-Baz"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        check = subprocess.run(
            [str(python), "-c", "import foo_bar_baz, helper_lib; print(helper_lib.__version__)"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.stdout.strip() == "2.0", check.stderr
        assert trap.count == 0
    finally:
        trap.close()


def test_download_deps_names_a_missing_file_and_the_hint_parses(tmp_path, http_server):
    root = make_tree(tmp_path / "ComfyUI", http_server, {"alpha": http_server.url("/a")})
    out = cli(root, "download-deps", str(tmp_path / "nope.txt"))
    assert out.returncode == 1 and "[not_found]" in out.stderr and "export-deps -o" in out.stderr
    for line in ("download-deps --dest /tmp/wh 'beta>=5' zeta==1.2", "--cache-only update-cache", "cleanup-cache"):
        import shlex

        parsed = subprocess.run(
            [sys.executable, str(REPO / "cm-cli.py"), *shlex.split(line), "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert parsed.returncode == 0, (line, parsed.stderr)
