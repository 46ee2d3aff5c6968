"""``cm-cli.py mirror build DIR`` and ``mirror serve DIR`` on real stores: the layout of every
section, a PEP 503 index pip and uv accept (normalised names, sha256 fragments that match), a
dumb-HTTP git clone through the served folder (both URL spellings, and through the Manager's
``[mirrors]`` rewrite in private mode), the registry client against the static registry
answers, an incremental rebuild that keeps unchanged files, a failed build that leaves the old
mirror as it was, refusals of unsafe targets, and the server's read-only, no-traversal rules."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from manager.cli.main import main
from manager.context import Manager
from manager.errors import NetworkBlocked
from manager.fleet.build import build_mirror
from manager.fleet.errors import MirrorBuildFailed, MirrorTargetInvalid
from manager.network import run_sync
from support.fleet import MODEL_BYTES, PACK_URL, MirrorServe, Stores, fill_stores
from support.gitrepos import git
from support.wheels import Pkg, build_wheels


@pytest.fixture
def box(comfy_tree: Path, tmp_path: Path, git_bin: str) -> Stores:
    (comfy_tree / "main.py").write_text("# ComfyUI stand-in\n")
    return fill_stores(comfy_tree, tmp_path / "sources")


def build(stores: Stores, dest: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    code = main(["--comfyui", str(stores.layout.comfyui_root), "--json", "mirror", "build", str(dest)])
    out = capsys.readouterr().out
    assert code == 0, out
    doc = json.loads(out)
    assert doc["ok"] is True, doc
    return doc["data"]


def listing(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its sha256 (links as ``-> target``)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


@pytest.fixture
def served(box: Stores, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    dest = tmp_path / "mirror"
    build(box, dest, capsys)
    server = MirrorServe(dest).start()
    try:
        yield dest, server
    finally:
        server.stop()


# --- layout -----------------------------------------------------------------------------------------
def test_build_lays_out_every_store_as_static_files(box: Stores, tmp_path: Path, capsys) -> None:
    dest = tmp_path / "mirror"
    report = build(box, dest, capsys)
    assert {s["name"]: s["files"] > 0 for s in report["sections"]} == {
        "channel": True,
        "git": True,
        "pypi": True,
        "registry": True,
        "models": True,
    }
    assert report["repositories"] == ["github.com/fleet-owner/fleet-pack"] and report["projects"] == 2
    channel = json.loads((dest / "channel" / "custom-node-list.json").read_text())
    assert channel["custom_nodes"][0]["reference"] == PACK_URL
    repo = dest / "git" / "github.com" / "fleet-owner" / "fleet-pack.git"
    refs = (repo / "info" / "refs").read_text()
    assert f"{box.upstream.commits[-1]}\trefs/heads/main" in refs and "refs/tags/v1.0.0" in refs
    assert os.readlink(repo.parent / "fleet-pack") == "fleet-pack.git"  # both spellings resolve
    assert not (repo / "hooks").exists()
    assert (dest / "models" / "checkpoints" / "fleet-model.safetensors").read_bytes() == MODEL_BYTES
    for version, zip_path in box.zips.items():
        assert (dest / "registry" / "archives" / "reg-pack" / f"{version}.zip").read_bytes() == zip_path.read_bytes()
    latest = json.loads((dest / "registry" / "nodes" / "reg-pack" / "install").read_text())
    assert (latest["version"], latest["downloadUrl"]) == ("1.1.0", "../../archives/reg-pack/1.1.0.zip")
    nodes = json.loads((dest / "registry" / "nodes" / "index.html").read_text())
    assert [n["id"] for n in nodes["nodes"]] == ["reg-pack"] and nodes["totalPages"] == 1
    index = (dest / "index.html").read_text()
    assert "models/checkpoints/fleet-model.safetensors</a> 546.9 KiB" in index
    assert "github.com/fleet-owner/fleet-pack" in index and "simple/" not in index.split("<h2>")[0]
    manifest = json.loads((dest / ".cm-mirror.json").read_text())
    assert {f["rel"] for f in manifest["files"]} >= {"index.html", "simple/fleet-lib/index.html"}
    assert not list(tmp_path.glob(".mirror.*")), "the staging folder is left behind"


def test_pep503_index_normalises_names_and_links_files_with_their_sha256(box: Stores, tmp_path: Path, capsys) -> None:
    dest = tmp_path / "mirror"
    build(box, dest, capsys)
    root = (dest / "simple" / "index.html").read_text()
    assert re.findall(r'href="([^"]+)"', root) == ["fleet-dep/", "fleet-lib/"]  # Fleet_Lib -> fleet-lib
    page = (dest / "simple" / "fleet-lib" / "index.html").read_text()
    hrefs = re.findall(r'href="([^"]+)"', page)
    assert hrefs and all(h.startswith("../../wheels/") for h in hrefs)
    for href in hrefs:
        rel, digest = href.split("#sha256=")
        target = (dest / "simple" / "fleet-lib" / rel).resolve()
        assert hashlib.sha256(target.read_bytes()).hexdigest() == digest
    assert target.name == "Fleet_Lib-1.0-py3-none-any.whl"
    flat = re.findall(r'href="([^"#]+)#sha256=', (dest / "wheels" / "index.html").read_text())
    assert sorted(flat) == sorted(p.name for p in box.wheels)


# --- incremental and atomic ---------------------------------------------------------------------------
def test_rebuild_keeps_unchanged_files_and_swaps_in_changes(box: Stores, tmp_path: Path, capsys) -> None:
    dest = tmp_path / "mirror"
    first = build(box, dest, capsys)
    assert first["kept"] == 0 and first["written"] > 10
    wheel = dest / "wheels" / "fleet_dep-1.0-py3-none-any.whl"
    inode = wheel.stat().st_ino
    again = build(box, dest, capsys)
    assert again["written"] == 0 and again["kept"] == first["written"], again
    assert wheel.stat().st_ino == inode  # the same file, not a copy
    # a new wheel and a new commit upstream (fetched into the git mirror): only those change
    build_wheels(box.layout.wheelhouse_dir, [Pkg("gamma-lib", "2.0")])
    box.upstream.commit("fourth", {"nodes.py": "VERSION = 4\n"})
    bare = box.layout.git_mirror_dir / "github.com" / "fleet-owner" / "fleet-pack.git"
    git(bare, "fetch", "-q", str(box.upstream.path), "+refs/heads/*:refs/heads/*")
    third = build(box, dest, capsys)
    assert 0 < third["written"] < 30 and third["kept"] > 0, third
    assert "gamma-lib/" in (dest / "simple" / "index.html").read_text()
    assert (
        box.upstream.commits[-1]
        in (dest / "git" / "github.com" / "fleet-owner" / "fleet-pack.git" / "info" / "refs").read_text()
    )
    # a removed store file leaves the mirror too
    (box.layout.wheelhouse_dir / "gamma_lib-2.0-py3-none-any.whl").unlink()
    build(box, dest, capsys)
    assert not (dest / "wheels" / "gamma_lib-2.0-py3-none-any.whl").exists()


def test_a_failed_build_leaves_the_old_mirror_as_it_was(box: Stores, tmp_path: Path, capsys) -> None:
    dest = tmp_path / "mirror"
    build(box, dest, capsys)
    before = listing(dest)
    build_wheels(box.layout.wheelhouse_dir, [Pkg("gamma-lib", "2.0")])
    with pytest.raises(MirrorBuildFailed) as info:
        build_mirror(box.layout, dest, git_exe="false")  # git update-server-info fails
    assert "fleet-pack.git" in info.value.message and info.value.code == "mirror_build_failed"
    assert listing(dest) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ComfyUI", "mirror", "sources"])


def test_unsafe_targets_are_refused_before_anything_is_written(box: Stores, tmp_path: Path, capsys) -> None:
    foreign = tmp_path / "www"
    foreign.mkdir()
    (foreign / "site.html").write_text("someone's site")
    code = main(["--comfyui", str(box.layout.comfyui_root), "mirror", "build", str(foreign)])
    err = capsys.readouterr().err
    assert code == 1 and "mirror_target_invalid" in err and "site.html" not in err
    assert [p.name for p in foreign.iterdir()] == ["site.html"]
    with pytest.raises(MirrorTargetInvalid) as info:
        build_mirror(box.layout, box.layout.manager_dir / "mirror")
    assert "overlaps" in info.value.message and not (box.layout.manager_dir / "mirror").exists()
    link = tmp_path / "link"
    link.symlink_to(foreign)
    with pytest.raises(MirrorTargetInvalid):
        build_mirror(box.layout, link)


# --- through HTTP: mirror serve ---------------------------------------------------------------------
def test_git_clones_over_dumb_http_with_both_spellings_and_through_the_mirror_map(
    served, box: Stores, tmp_path: Path, comfy_tree: Path
) -> None:
    dest, server = served
    base = f"{server.url}/git/github.com/fleet-owner/fleet-pack"
    for n, url in enumerate((base, base + ".git")):
        clone = tmp_path / f"clone-{n}"
        git(tmp_path, "clone", "-q", url, str(clone))
        assert git(clone, "rev-parse", "HEAD") == box.upstream.commits[-1]
        assert git(clone, "tag", "--list") == "v1.0.0\nv1.1.0"
    client = tmp_path / "client"
    (client / "user" / "__manager").mkdir(parents=True)
    (client / "user" / "__manager" / "config.ini").write_text(
        f"[default]\nnetwork_mode = private\n[mirrors]\ngithub = {server.url}/git/github.com\n"
    )
    m = Manager.standalone(client, env={})
    st = m.git.clone(PACK_URL, client / "custom_nodes" / "fleet-pack")
    assert st.commit == box.upstream.commits[-1]
    with pytest.raises(NetworkBlocked):
        m.git.clone("https://gitlab.com/fleet-owner/fleet-pack", client / "custom_nodes" / "other")


def test_a_kept_git_bundle_is_served_as_a_repository(box: Stores, tmp_path: Path, capsys) -> None:
    """A bundle import keeps git bundles as files; the build makes the repository dumb HTTP needs
    (in its scratch: the box's git mirror keeps the bundle as it is)."""
    bare = box.layout.git_mirror_dir / "github.com" / "fleet-owner" / "fleet-pack.git"
    bundle = bare.with_name("fleet-pack.bundle")
    git(bare, "bundle", "create", "-q", str(bundle), "--all")
    shutil.rmtree(bare)
    dest = tmp_path / "mirror"
    build(box, dest, capsys)
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["fleet-pack.bundle"]
    assert (
        box.upstream.commits[-1]
        in (dest / "git" / "github.com" / "fleet-owner" / "fleet-pack.git" / "info" / "refs").read_text()
    )
    assert not any(p.name.startswith(".unbundled") for p in tmp_path.iterdir())
    server = MirrorServe(dest).start()
    try:
        clone = tmp_path / "clone"
        git(tmp_path, "clone", "-q", f"{server.url}/git/github.com/fleet-owner/fleet-pack", str(clone))
        assert git(clone, "rev-parse", "HEAD") == box.upstream.commits[-1]
        assert git(clone, "tag", "--list") == "v1.0.0\nv1.1.0"
    finally:
        server.stop()


def test_registry_client_reads_the_static_registry(served, tmp_path: Path, box: Stores) -> None:
    _dest, server = served
    client = tmp_path / "client"
    (client / "user" / "__manager").mkdir(parents=True)
    (client / "user" / "__manager" / "config.ini").write_text(
        f"[default]\nnetwork_mode = private\n[mirrors]\nregistry = {server.url}/registry\n"
    )
    m = Manager.standalone(client, env={})
    listing_ = run_sync(m.registry.list_nodes(refresh="force"))
    assert [n.id for n in listing_.nodes] == ["reg-pack"] and listing_.nodes[0].latest_version == "1.1.0"
    assert [v.version for v in run_sync(m.registry.versions("reg-pack"))] == ["1.1.0", "1.0.0"]
    latest = run_sync(m.registry.install_info("reg-pack"))
    assert latest.version == "1.1.0"
    pinned = run_sync(m.registry.install_info("reg-pack", "1.0.0"))  # the path form answers it
    assert pinned.version == "1.0.0"
    assert pinned.download_url == "https://api.comfy.org/archives/reg-pack/1.0.0.zip"  # the gate rewrites it
    out = tmp_path / "reg.zip"
    run_sync(m.gate.download(pinned.download_url, out, purpose="registry"))
    assert out.read_bytes() == box.zips["1.0.0"].read_bytes()


def test_mirror_serve_is_read_only_and_stays_inside_its_folder(served, tmp_path: Path) -> None:
    dest, server = served
    (tmp_path / "secret.txt").write_text("secret")
    (dest / "models" / "escape").symlink_to(tmp_path / "secret.txt")
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/models/escape", "/models/%2e%2e/%2e%2e/secret.txt"):
        status, body, _ = get(server.url + path)
        assert status == 404 and b"secret" not in body, path
    status, body, headers = get(server.url + "/simple/fleet-lib/")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"sha256=" in body
    status, _, headers = get(server.url + "/channel/model-list.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    # a folder without the slash redirects (relative links then resolve), the query kept
    req = urllib.request.Request(server.url + "/registry/nodes?page=1&limit=100")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.url.endswith("/registry/nodes/?page=1&limit=100") and json.loads(resp.read())["nodes"]
    status, _, _ = get(server.url + "/git/")  # a folder without index.html: no listing
    assert status == 404
    req = urllib.request.Request(
        server.url + "/models/checkpoints/fleet-model.safetensors", headers={"Range": "bytes=10-19"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 206 and resp.read() == MODEL_BYTES[10:20]
    head = urllib.request.Request(server.url + "/wheels/fleet_dep-1.0-py3-none-any.whl", method="HEAD")
    with urllib.request.urlopen(head, timeout=10) as resp:
        assert resp.status == 200 and resp.read() == b"" and int(resp.headers["Content-Length"]) > 0
    for method in ("POST", "PUT", "DELETE"):
        req = urllib.request.Request(server.url + "/index.html", data=b"x", method=method)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=10)
        assert info.value.code == 405
