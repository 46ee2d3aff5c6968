"""The fleet round trip on real parts: a box's stores -> ``cm-cli.py mirror build DIR`` -> served by a
real **nginx** (the Debian package, started here on 127.0.0.1 with a config written here) and by
``cm-cli.py mirror serve`` -> a second, fresh ComfyUI tree in ``private`` mode whose only remote
settings are one ``[mirrors]`` map, ``channel_url`` and ``model_store``. Through the mirror it
installs a git pack (git over dumb HTTP, via the rewritten github URL), the pack's requirements
(uv against the PEP 503 index, an indirect one included), a model and a registry pack at a pinned
version; a public URL is refused by the gate. Every cm-cli.py line runs under ``strace -f`` and
every connect() of it and its children (git, uv) goes to 127.0.0.1 (the socket guard fails any
other in this process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import tools
from support.fleet import (
    CM,
    MODEL_BYTES,
    MirrorServe,
    Nginx,
    Stores,
    assert_public_urls_refused,
    cli_traced,
    fill_stores,
    inet_connects,
    write_client,
)
from support.gitrepos import git
from support.wheels import installed_names, make_venv


@pytest.mark.parametrize("server_kind", ["nginx", "mirror-serve"])
def test_a_private_box_installs_a_pack_its_wheels_a_model_and_a_registry_pack_through_the_mirror(
    server_kind: str, comfy_tree: Path, tmp_path: Path, git_bin: str, uv_bin: str, own_caches, socket_audit_log
) -> None:
    tools.require("strace")
    (comfy_tree / "main.py").write_text("# ComfyUI stand-in\n")
    stores: Stores = fill_stores(comfy_tree, tmp_path / "sources")
    mirror = tmp_path / "srv" / "comfy-mirror"
    build = subprocess.run(
        [sys.executable, str(CM), "--comfyui", str(comfy_tree), "mirror", "build", str(mirror)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "1 git repositories, 2 python projects" in build.stdout, build.stdout
    server = Nginx(mirror, tmp_path / "nginx") if server_kind == "nginx" else MirrorServe(mirror)
    server.start()
    try:
        python = make_venv(tmp_path / "client-venv")
        client = write_client(tmp_path / "client" / "ComfyUI", server.url, python)
        traces = tmp_path / "traces"
        traces.mkdir()
        lines = {
            "pack": ["install", "fleet-pack"],
            "model": ["install-model", "fleet-model.safetensors"],
            "registry": ["install", "reg-pack@1.0.0"],
        }
        connects: dict[str, list[str]] = {}
        for name, args in lines.items():
            out = cli_traced(client, args, traces / f"{name}.strace")
            assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}"
            connects[name] = inet_connects(traces / f"{name}.strace")
        # every connect of the CLI and its children (git, uv) went to the mirror on 127.0.0.1
        for name, found in connects.items():
            assert found, f"{name}: no connect traced (the counter is blind?)"
            outside = [c for c in found if 'inet_addr("127.0.0.1")' not in c or f"htons({server.port})" not in c]
            assert not outside, f"{name} connected elsewhere than the mirror:\n" + "\n".join(outside)
        # the effects on disk
        pack = client / "custom_nodes" / "fleet-pack"
        assert git(pack, "rev-parse", "HEAD") == stores.upstream.commits[-1]
        # the remote is the rewritten URL, as for any [mirrors] github rule (later fetches use it)
        assert git(pack, "remote", "get-url", "origin") == f"{server.url}/git/github.com/fleet-owner/fleet-pack"
        assert installed_names(python) == {"fleet-lib": "1.0", "fleet-dep": "1.0"}
        assert (client / "models" / "checkpoints" / "fleet-model.safetensors").read_bytes() == MODEL_BYTES
        reg = client / "custom_nodes" / "reg-pack"
        assert "VERSION = '1.0.0'" in (reg / "nodes.py").read_text()
        if isinstance(server, Nginx):  # the traffic went through nginx, each kind of request
            seen = "\n".join(server.requests())
            for path in (
                "/git/github.com/fleet-owner/fleet-pack/info/refs",
                "/simple/fleet-lib/",
                "/wheels/fleet_dep-1.0-py3-none-any.whl",
                "/models/checkpoints/fleet-model.safetensors",
                "/registry/archives/reg-pack/1.0.0.zip",
            ):
                assert path in seen, f"{path} not in nginx's access log:\n{seen}"
        # a public URL is refused by the gate before any socket
        assert_public_urls_refused(client, socket_audit_log)
        # a catalog model the mirror lacks: the store misses (404 from the mirror), then its public URL is refused
        refused = cli_traced(client, ["install-model", "fleet-missing.safetensors"], traces / "refused.strace")
        said = refused.stdout + refused.stderr
        assert refused.returncode == 4 and "network_blocked" in said and "huggingface.co" in said, said
        assert not [c for c in inet_connects(traces / "refused.strace") if 'inet_addr("127.0.0.1")' not in c]
        print(json.dumps({k: len(v) for k, v in connects.items()}))
    finally:
        server.stop()
