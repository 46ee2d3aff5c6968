"""The fleet mirror's test parts: a box whose offline stores hold real things, and two real servers.

``fill_stores`` puts into a ComfyUI tree's stores (``manager/layout.py``) what a bundle import
would: a local channel naming a git pack by its public github URL, a bare clone of a real
repository in the git mirror, wheels built here in the wheelhouse, registry zips in the archive
cache and a model in the model store. ``Nginx`` runs the Debian nginx on 127.0.0.1 with a config
written here (pid, logs and temp paths in the test's folder); ``MirrorServe`` runs the real
``cm-cli.py mirror serve`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from manager.context import Manager
from manager.errors import NetworkBlocked
from manager.layout import Layout

from . import tools
from .gitrepos import RepoInfo, free_port, git, make_repo
from .ops_fixtures import build_zip, catalog_entry, cnr_files
from .socket_audit import SocketAudit
from .wheels import Pkg, build_wheels

REPO = Path(__file__).resolve().parents[2]
CM = REPO / "cm-cli.py"
PACK_URL = "https://github.com/fleet-owner/fleet-pack"
MODEL_URL = "https://huggingface.co/fleet-org/fleet-model/resolve/main/fleet-model.safetensors"
MODEL_BYTES = b"fleet-weights-" * 40_000
# in the channel's model list but not in the model store: only its public URL has it
MISSING_MODEL_URL = "https://huggingface.co/fleet-org/other/resolve/main/fleet-missing.safetensors"


@dataclass
class Stores:
    """What ``fill_stores`` put where (for the assertions)."""

    layout: Layout
    upstream: RepoInfo
    wheels: list[Path] = field(default_factory=list)
    zips: dict[str, Path] = field(default_factory=dict)
    model: Path | None = None


def model_entry(filename: str = "fleet-model.safetensors", url: str = MODEL_URL) -> dict[str, str]:
    return {
        "name": filename.split(".")[0].replace("-", " ").capitalize(),
        "type": "checkpoint",
        "base": "SD1.5",
        "save_path": "checkpoints",
        "filename": filename,
        "url": url,
        "description": "a model served by the fleet mirror",
        "reference": "https://huggingface.co/fleet-org/fleet-model",
        "size": str(len(MODEL_BYTES)),
    }


def fill_stores(root: Path, work: Path) -> Stores:
    """Fill the offline stores of the ComfyUI tree at ``root`` (sources made under ``work``)."""
    layout = Layout.from_root(root)
    upstream = make_repo(work / "upstream" / "fleet-pack", name="fleet-pack")
    upstream.commit("requirements", {"requirements.txt": "Fleet_Lib>=1\n"})
    bare = layout.git_mirror_dir / "github.com" / "fleet-owner" / "fleet-pack.git"
    bare.parent.mkdir(parents=True)
    git(work, "clone", "-q", "--bare", str(upstream.path), str(bare))
    channel = layout.local_channel_dir
    channel.mkdir(parents=True)
    pack = catalog_entry("fleet-pack", PACK_URL)
    docs = {
        "custom-node-list.json": {"custom_nodes": [pack]},
        "extension-node-map.json": {PACK_URL: [["FleetNode"], {"title_aux": "fleet-pack"}]},
        "model-list.json": {"models": [model_entry(), model_entry("fleet-missing.safetensors", MISSING_MODEL_URL)]},
        "alter-list.json": {"items": []},
    }
    for name, doc in docs.items():
        (channel / name).write_text(json.dumps(doc), encoding="utf-8")
    wheels = build_wheels(layout.wheelhouse_dir, [Pkg("Fleet_Lib", "1.0", ("fleet-dep>=1",)), Pkg("fleet-dep", "1.0")])
    zips = {}
    for version in ("1.0.0", "1.1.0"):
        zips[version] = build_zip(
            layout.cache_dir / "archives" / "cnr" / "reg-pack" / f"{version}.zip", cnr_files("reg-pack", version)
        )
    model = layout.model_store_dir / "checkpoints" / "fleet-model.safetensors"
    model.parent.mkdir(parents=True)
    model.write_bytes(MODEL_BYTES)
    return Stores(layout, upstream, wheels, zips, model)


def wait_http(url: str, proc: subprocess.Popen[str] | None = None, *, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered at {url} within {timeout}s")


# --- the servers ----------------------------------------------------------------------------------
README_HOST = "http://comfy-mirror.corp"


def readme_block(heading: str, fence: str) -> str:
    """The first ``fence`` code block after ``heading`` in README.md."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(heading)
    body = text[text.index(fence + "\n", start) + len(fence) + 1 :]
    return body[: body.index("```")]


def readme_server_block(port: int, root: Path) -> str:
    """The README's nginx server block, listening on 127.0.0.1:port and serving ``root``."""
    block = readme_block("## Fleet", "```nginx")
    block = re.sub(r"listen 80;", f"listen 127.0.0.1:{port};", block)
    block = re.sub(r"root /srv/comfy-mirror;", f"root {root};", block)
    assert f"127.0.0.1:{port}" in block and str(root) in block, block
    return block


def readme_client_config(url: str) -> str:
    """The README's fleet config.ini, pointed at ``url``."""
    text = readme_block("## Fleet", "```ini")
    assert README_HOST in text, text
    return text.replace(README_HOST, url)


class Nginx:
    """The Debian nginx serving ``root`` on 127.0.0.1, config and state under ``work``."""

    def __init__(self, root: Path, work: Path) -> None:
        self.binary = tools.require("nginx")
        self.root, self.work = root, work
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        w = self.work
        temps = "\n".join(
            f"    {kind}_temp_path {w / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the test's 0700 tmp folders
        return (
            f"{user}worker_processes 1;\ndaemon off;\npid {w / 'nginx.pid'};\nerror_log {w / 'error.log'} info;\n"
            "events { worker_connections 64; }\n"
            f"http {{\n    include /etc/nginx/mime.types;\n    default_type application/octet-stream;\n"
            f"    access_log {w / 'access.log'};\n{temps}\n" + readme_server_block(self.port, self.root) + "}\n"
        )

    def start(self) -> Nginx:
        self.work.mkdir(parents=True, exist_ok=True)
        conf = self.work / "nginx.conf"
        conf.write_text(self.config())
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.work), "-e", str(self.work / "error.log"), "-c", str(conf)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_http(self.url + "/", self.proc)
        return self

    def requests(self) -> list[str]:
        """The access log's request lines (``GET /path HTTP/1.1``)."""
        log = self.work / "access.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [line.split('"')[1] for line in lines if line.count('"') >= 2]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


class MirrorServe:
    """``cm-cli.py mirror serve ROOT --port N`` in a subprocess."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MirrorServe:
        self.proc = subprocess.Popen(
            [sys.executable, str(CM), "mirror", "serve", str(self.root), "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_http(self.url + "/", self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


# --- the clients -----------------------------------------------------------------------------------
def write_client(root: Path, url: str, python: Path) -> Path:
    """A fresh tree in private mode pointed at the mirror: the README's "Fleet" config and channel line."""
    for sub in ("custom_nodes", "models/checkpoints", "user/__manager"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text("# ComfyUI stand-in\n")
    manager = root / "user" / "__manager"
    (manager / "channels.list").write_text(f"default::{url}/channel\n")
    config = readme_client_config(url).replace("[default]\n", f"[default]\npython_executable = {python}\n", 1)
    (manager / "config.ini").write_text(config)
    return root


def cli_traced(root: Path, args: list[str], trace: Path) -> subprocess.CompletedProcess[str]:
    """``cm-cli.py --comfyui ROOT ARGS`` under ``strace -f -e trace=connect`` (log in ``trace``)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CM_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    return subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=connect",
            "-o",
            str(trace),
            sys.executable,
            str(CM),
            "--comfyui",
            str(root),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def inet_connects(trace: Path) -> list[str]:
    """The connect() lines to an AF_INET/AF_INET6 address in an strace log."""
    text = trace.read_text(encoding="utf-8", errors="replace") if trace.exists() else ""
    return [line for line in text.splitlines() if "connect(" in line and "AF_INET" in line]


def assert_public_urls_refused(root: Path, audit: SocketAudit) -> None:
    """The private-mode box at ``root`` refuses a public model, pip and git URL in its gate, naming
    private mode and the ``[mirrors]`` fix, before any socket opens."""
    gate = Manager.standalone(root, env={}).gate
    before = len(audit.inet_connects())
    for url, purpose in (
        ("https://huggingface.co/other/model/resolve/main/x.safetensors", "model"),
        ("https://files.pythonhosted.org/packages/x.whl", "pip"),
        ("https://gitlab.com/owner/pack", "git"),
    ):
        with pytest.raises(NetworkBlocked) as info:
            gate.decide(url, purpose)
        assert "private mode" in info.value.message and "[mirrors]" in info.value.hint
    assert len(audit.inet_connects()) == before
