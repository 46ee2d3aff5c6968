"""Issue 20's joint round trip on real parts: bundle -> import -> mirror -> fleet client.

Box A (online; its whole "internet" is loopback): channel files naming a git pack by its github URL,
the registry stand-in with a zip on a loopback "CDN", the pack's repository over smart HTTP
(``git http-backend``) reached through A's ``[mirrors] github`` rule, a PEP 503 index of wheels
built here, and a model in A's models folder. A has the git pack (installed through its mirror
rule: its origin is the mirror's URL) and the registry pack installed; the README's "Air-gapped
box" create line (``--installed --pack`` a second git pack to carry along, plus ``--with-models``
and ``--sign KEY`` with an ssh-keygen key made here) writes one signed bundle; every connect goes
to loopback (strace).

Box B (a fresh tree, ``network_mode = offline``, ``require_signed_bundles = true`` with the key in
its ``allowed_signers``), inside ``unshare -n`` under strace: the README's ``bundle verify`` and
``bundle import --apply`` lines (A's packs and packages restored), then the README "Fleet"
``mirror build`` line: not one inet connect.

The mirror folder is served by a real nginx with the README's server block. Box C (a second fresh
tree in private mode with the README's fleet config and channel line) installs the git pack, its
wheels (an indirect one included), the registry pack (and its requirement) and the model through
the mirror; every connect of cm-cli.py and its children goes to nginx's address (strace), and a
public URL is refused by the gate before any socket.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from test_admin_sequence import (
    clean_env,
    inet_connects,
    outside_loopback,
    require_netns_tools,
    run_offline,
    run_traced,
    walkthrough,
)

from support import tools
from support.bundles import online_config, serve_registry_pack
from support.fleet import (
    CM,
    MODEL_BYTES,
    PACK_URL,
    Nginx,
    assert_public_urls_refused,
    cli_traced,
    model_entry,
    readme_block,
    write_client,
)
from support.gitrepos import git, make_repo, serve_smart_http
from support.ops_fixtures import catalog_entry
from support.wheels import Pkg, build_wheels, installed_names, make_venv, serve_simple_index

REG = "reg-pack"
PACK = "fleet-pack"
CARRIED = "carried-pack"
MODEL = "fleet-model.safetensors"


def _tree(root: Path, lines: list[str], channels: str = "") -> Path:
    for sub in ("custom_nodes", "models/checkpoints", "user/__manager"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text("# ComfyUI stand-in\n")
    (root / "user" / "__manager" / "config.ini").write_text("\n".join(lines) + "\n")
    if channels:
        (root / "user" / "__manager" / "channels.list").write_text(channels)
    return root


def _online_world(tmp_path: Path, http_server) -> dict:
    """Loopback stand-ins for github, the channel, the registry (+ CDN) and PyPI."""
    sources = tmp_path / "github"
    upstream = make_repo(sources / "fleet-owner" / PACK, name=PACK)
    upstream.commit("requirements", {"requirements.txt": "Fleet_Lib>=1\n"})
    carried = make_repo(sources / "fleet-owner" / CARRIED, name=CARRIED)
    carried.commit("requirements", {"requirements.txt": "fleet-dep>=1\n"})
    for name in (PACK, CARRIED):
        serve_smart_http(http_server, sources, f"fleet-owner/{name}", prefix="/gh")
    entries = [catalog_entry(PACK, PACK_URL), catalog_entry(CARRIED, f"https://github.com/fleet-owner/{CARRIED}")]
    channel = {
        "custom-node-list.json": {"custom_nodes": entries},
        "extension-node-map.json": {PACK_URL: [["FleetNode"], {"title_aux": PACK}]},
        "model-list.json": {"models": [model_entry()]},
        "alter-list.json": {"items": []},
    }
    for name, body in channel.items():
        http_server.static(f"/channel/{name}", json.dumps(body), etag=f'"{name}-1"')
    http_server.static("/channel/github-stats.json", "{}", etag='"stats-1"')
    serve_registry_pack(http_server, tmp_path, REG, "fleet-dep>=1\n")
    wheels = build_wheels(tmp_path / "dist", [Pkg("Fleet_Lib", "1.0", ("fleet-dep>=1",)), Pkg("fleet-dep", "1.0")])
    return {
        "upstream": upstream,
        "carried": carried,
        "channel": http_server.url("/channel"),
        "index": serve_simple_index(http_server, wheels),
    }


def _readme_line(lines: list[str], words: str) -> str:
    found = [line for line in lines if words in line]
    assert len(found) == 1, (words, lines)
    return re.sub(r"^python(?=\s)", shlex.quote(sys.executable), found[0])


def test_bundle_import_mirror_and_a_fleet_client_round_trip(
    tmp_path: Path, http_server, git_bin: str, uv_bin: str, own_caches, socket_audit_log
) -> None:
    require_netns_tools()
    tools.require("ssh-keygen")
    world = _online_world(tmp_path, http_server)
    key = tmp_path / "keys" / "site"
    key.parent.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin@site", "-f", str(key)], check=True)
    signers = tmp_path / "keys" / "allowed_signers"
    signers.write_text(f'admin@site namespaces="offline-manager-bundle" {key.with_suffix(".pub").read_text()}')

    online_py = make_venv(tmp_path / "venv-a")
    online = _tree(
        tmp_path / "A" / "ComfyUI",
        [
            *online_config(world["channel"], http_server.url("/api"), world["index"], online_py),
            "[mirrors]",
            f"github = {http_server.url('/gh')}",
        ],
        f"default::{world['channel']}\n",
    )
    (online / "models" / "checkpoints" / MODEL).write_bytes(MODEL_BYTES)
    # A as a site box runs: the packs installed (the git pack through its [mirrors] rule, so its
    # origin is the mirror's URL), their packages in A's venv
    for args in (("install", PACK), ("install", f"{REG}@1.0.0")):
        out = subprocess.run(
            [sys.executable, str(CM), "--comfyui", str(online), *args], capture_output=True, text=True, timeout=600
        )
        assert out.returncode == 0, f"box A {args}: {out.stdout}\n{out.stderr}"
    assert git(online / "custom_nodes" / PACK, "remote", "get-url", "origin").startswith(http_server.url("/gh"))
    assert installed_names(online_py) == {"fleet-lib": "1.0", "fleet-dep": "1.0"}
    box_b = tmp_path / "B" / "ComfyUI"
    offline_py = make_venv(tmp_path / "venv-b")
    _tree(
        box_b,
        [
            "[default]",
            "network_mode = offline",
            f"channel_url = {(box_b / 'user' / '__manager' / 'local-channel').as_uri()}",
            f"python_executable = {offline_py}",
            f"bundle_allowed_signers = {signers}",
            "require_signed_bundles = true",
        ],
    )
    work = tmp_path / "work"
    work.mkdir()
    traces = tmp_path / "traces"
    traces.mkdir()
    env = clean_env(ONLINE=str(online), OFFLINE=str(box_b), BOX=str(box_b), CM=str(CM), PACK=CARRIED)

    # --- box A: the README's create line, the registry pack, the models, signed -------------------
    lines = walkthrough()
    create = _readme_line(lines, "bundle create") + f" --with-models --sign {shlex.quote(str(key))}"
    out = run_traced(create, work, env, traces / "create.strace")
    assert out.returncode == 0, out.stdout + out.stderr
    for item in (f"git {PACK}", f"git {CARRIED}", f"registry {REG}@1.0.0", "wheels:", f"model checkpoints/{MODEL}"):
        assert item in out.stderr, (item, out.stderr)
    connects = inet_connects(traces / "create.strace")
    assert connects and not outside_loopback(connects), connects
    bundle = work / "site.bundle.tar"
    assert bundle.is_file()

    # --- box B: verify, import (offline, signature required), mirror build -----------------------
    mirror = tmp_path / "srv" / "comfy-mirror"
    build = readme_block("## Fleet", "```bash").splitlines()
    build_line = _readme_line(build, "mirror build").replace("/srv/comfy-mirror", shlex.quote(str(mirror)))
    offline_lines = [_readme_line(lines, "bundle verify"), _readme_line(lines, "bundle import"), build_line]
    said: dict[str, str] = {}
    for number, line in enumerate(offline_lines, start=1):
        trace = traces / f"B-{number}.strace"
        out = run_offline(line, work, env, trace)
        said[line] = out.stdout + out.stderr
        assert out.returncode == 0, f"box B: {line}\n{out.stdout}\n{out.stderr}"
        assert not inet_connects(trace), f"box B opened inet sockets: {line}\n{inet_connects(trace)}"
    verify = said[offline_lines[0]]
    assert "admin@site" in verify, verify
    manager_b = box_b / "user" / "__manager"
    assert (manager_b / "model-store" / "checkpoints" / MODEL).read_bytes() == MODEL_BYTES
    # --apply restored A's packs and packages on B, offline, from the imported stores
    assert git(box_b / "custom_nodes" / PACK, "rev-parse", "HEAD") == world["upstream"].commits[-1]
    assert git(box_b / "custom_nodes" / PACK, "remote", "get-url", "origin") == PACK_URL  # the public URL
    assert "VERSION = '1.0.0'" in (box_b / "custom_nodes" / REG / "nodes.py").read_text()
    assert installed_names(offline_py) == {"fleet-lib": "1.0", "fleet-dep": "1.0"}
    assert "2 git repositories, 2 python projects" in said[build_line], said[build_line]
    assert sorted(p.name for p in (mirror / "git" / "github.com" / "fleet-owner").glob("*.git")) == [
        f"{CARRIED}.git",
        f"{PACK}.git",
    ]
    # the mirror's channel: A's catalog entries (public URLs, titles, node types), so the fleet's
    # panel and missing-node lookup see the packs as A's catalog describes them
    listed = json.loads((mirror / "channel" / "custom-node-list.json").read_text())["custom_nodes"]
    by_id = {e["id"]: e for e in listed}
    assert by_id[PACK]["files"] == [PACK_URL] and by_id[PACK]["description"] == f"{PACK} for tests", listed
    node_map = json.loads((mirror / "channel" / "extension-node-map.json").read_text())
    assert node_map[PACK_URL][0] == ["FleetNode"], node_map
    models = json.loads((mirror / "channel" / "model-list.json").read_text())["models"]
    assert [m["filename"] for m in models] == [MODEL], models  # the bundled model stays installable by name

    # --- nginx serves the folder; box C installs through it ---------------------------------------
    server = Nginx(mirror, tmp_path / "nginx").start()
    try:
        python_c = make_venv(tmp_path / "venv-c")
        client = write_client(tmp_path / "C" / "ComfyUI", server.url, python_c)
        installs = {
            "pack": ["install", PACK],
            "carried": ["install", CARRIED],
            "registry": ["install", f"{REG}@1.0.0"],
            "model": ["install-model", MODEL],
        }
        for name, args in installs.items():
            trace = traces / f"C-{name}.strace"
            out = cli_traced(client, args, trace)
            assert out.returncode == 0, f"box C {args}: {out.stdout}\n{out.stderr}"
            found = inet_connects(trace)
            assert found, f"{name}: no connect traced (the counter is blind?)"
            elsewhere = [c for c in found if 'inet_addr("127.0.0.1")' not in c or f"htons({server.port})" not in c]
            assert not elsewhere, f"box C {name} connected elsewhere than the mirror:\n" + "\n".join(elsewhere)
        pack = client / "custom_nodes" / PACK
        assert git(pack, "rev-parse", "HEAD") == world["upstream"].commits[-1]
        assert git(client / "custom_nodes" / CARRIED, "rev-parse", "HEAD") == world["carried"].commits[-1]
        assert "VERSION = '1.0.0'" in (client / "custom_nodes" / REG / "nodes.py").read_text()
        assert installed_names(python_c) == {"fleet-lib": "1.0", "fleet-dep": "1.0"}
        assert (client / "models" / "checkpoints" / MODEL).read_bytes() == MODEL_BYTES
        seen = "\n".join(server.requests())
        for path in (
            f"/git/github.com/fleet-owner/{PACK}/info/refs",
            "/simple/fleet-lib/",
            "/simple/fleet-dep/",
            f"/registry/archives/{REG}/1.0.0.zip",
            f"/models/checkpoints/{MODEL}",
        ):
            assert path in seen, f"{path} not in nginx's access log:\n{seen}"
        # a public URL is refused by box C's gate before a socket opens
        assert_public_urls_refused(client, socket_audit_log)
    finally:
        server.stop()
    for line, text in said.items():
        print(f"$ {line}\n{text}")
