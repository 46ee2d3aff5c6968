"""Start a real ComfyUI with our extension installed the way the README says, and watch it.

``start_comfyui(tmp_path, "0.8.0")`` copies the unpacked host tree, installs this project into
``custom_nodes/offline-manager`` (the files of this checkout, as a ``git clone`` would give them,
then ``pip install -r requirements.txt`` with ComfyUI's python), writes our config, and starts
``python main.py --cpu --listen 127.0.0.1 --port <free>`` under ``strace -f`` so every
``connect()`` of the whole process tree is recorded. Ready when ``GET /system_stats`` answers.

The process must run in a network namespace with only loopback (third-party code may try the
internet); scripts/test.sh runs the whole suite inside ``unshare -n``, and ``isolation_problem()``
says why the tier cannot run anywhere else.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import realhost_env as envs

REPO_ROOT = envs.REPO_ROOT
FOLDER = "offline-manager"  # the folder name the README tells users to clone into
# The frontend's first-run templates dialog would cover the canvas (comfyui-host.md §6.4).
FIRST_RUN_FILES = {"user/default/comfy.settings.json": json.dumps({"Comfy.TutorialCompleted": True})}
READY_LINE = re.compile(r"\[offline-manager\] \S+ ready: .*")
READY_COST = re.compile(r"; ([\d.]+) ms of ComfyUI's start")


def ready_cost_ms(ready_line: str) -> float:
    """Our share of ComfyUI's start (import + mount) as our ready line reports it."""
    found = READY_COST.search(ready_line)
    if found is None:
        raise ValueError(f"no start cost in the ready line: {ready_line!r}")
    return float(found.group(1))


CONNECT = re.compile(
    r"connect\(\d+, \{sa_family=(AF_INET6?),[^}]*?(?:inet_addr\(\"([^\"]+)\"\)|inet_pton\(AF_INET6, \"([^\"]+)\")"
)


def isolation_problem() -> str | None:
    """Why this process cannot host the tier (None when it sits in a loopback-only namespace)."""
    if not shutil.which("strace"):
        return "strace is not installed (scripts/test.sh installs it)"
    try:
        names = [line.split(":", 1)[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]]
    except OSError as exc:
        return f"cannot read /proc/net/dev: {exc}"
    others = [n for n in names if n and n != "lo"]
    if others:
        return (
            "not inside a loopback-only network namespace (interfaces: "
            + ", ".join(others)
            + "); run ./scripts/test.sh, which runs the suite under `unshare -n`"
        )
    return None


def unavailable(version: str = "0.8.0", *, manager_package: bool = False) -> str | None:
    """Why the tier cannot run ``version`` here, or None."""
    found = envs.sources()
    if version not in found:
        return f"no source for ComfyUI {version} (no ../shared/hosts/, no $OFFLINE_MANAGER_HOSTS, no $COMFYUI_DIR)"
    if envs.host_python(version, manager_package=manager_package) is None:
        return (
            f"the environment for ComfyUI {version} was not built: run "
            "`.venv/bin/python -m support.realhost_env build` from tests/ (scripts/test.sh does)"
        )
    return isolation_problem()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def project_files() -> list[str]:
    """The files a ``git clone`` of this checkout would hold (tracked and new, not ignored)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    return [name for name in out.stdout.decode().split("\0") if name and (REPO_ROOT / name).is_file()]


def install_project(custom_nodes: Path, folder: str = FOLDER) -> Path:
    dest = custom_nodes / folder
    for name in project_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    return dest


def outside_loopback(address: str) -> bool:
    try:
        return not ipaddress.ip_address(address).is_loopback
    except ValueError:
        return True


@dataclass
class RealComfyUI:
    """One running ComfyUI (started by ``start_comfyui``)."""

    version: str
    root: Path
    port: int
    python: Path
    log_path: Path
    strace_path: Path
    args: tuple[str, ...]
    proc: subprocess.Popen | None = None
    started_in: float = 0.0
    artifacts: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def custom_nodes(self) -> Path:
        return self.root / "custom_nodes"

    @property
    def ours(self) -> Path:
        return self.custom_nodes / FOLDER

    @property
    def manager_dir(self) -> Path:
        return self.root / "user" / "__manager"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def connects(self) -> list[str]:
        """Every connect() of the process tree to an address outside loopback, as strace saw it."""
        if not self.strace_path.exists():
            return []
        out = []
        for line in self.strace_path.read_text(errors="replace").splitlines():
            found = CONNECT.search(line)
            if found and outside_loopback(found.group(2) or found.group(3) or ""):
                out.append(line.strip())
        return out

    def connect_calls(self) -> int:
        """How many connect() calls strace recorded at all (proves it was watching)."""
        if not self.strace_path.exists():
            return 0
        return sum(1 for line in self.strace_path.read_text(errors="replace").splitlines() if "connect(" in line)

    def request(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None, timeout: float = 30
    ) -> tuple[int, dict[str, str], bytes]:
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.url(path), data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def get_json(self, path: str) -> Any:
        status, _, body = self.request("GET", path)
        assert status == 200, f"GET {path}: {status} {body[:300]!r}"
        return json.loads(body)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 120) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not self.alive():
                raise HostDidNotStart(
                    self, f"ComfyUI {self.version} exited with {self.proc.returncode if self.proc else '?'}"
                )
            try:
                with urllib.request.urlopen(self.url("/system_stats"), timeout=2) as resp:
                    if resp.status == 200:
                        self.started_in = time.monotonic() - t0
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.2)
        raise HostDidNotStart(self, f"ComfyUI {self.version} did not answer /system_stats within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(15)

    def restart(self) -> None:
        self.stop()
        self.proc = _spawn(self)
        self.wait_ready()

    def import_seconds(self, folder: str = FOLDER) -> float | None:
        """Our folder's figure on ComfyUI's own "Import times for custom nodes" line."""
        return _times_line(self.log_text(), "Import times for custom nodes:", folder)

    def prestartup_seconds(self, folder: str = FOLDER) -> float | None:
        return _times_line(self.log_text(), "Prestartup times for custom nodes:", folder)

    def __enter__(self) -> RealComfyUI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HostDidNotStart(AssertionError):
    def __init__(self, host: RealComfyUI, message: str) -> None:
        tail = "\n".join(host.log_text().splitlines()[-40:])
        super().__init__(f"{message}\n--- last lines of its log ({host.log_path}) ---\n{tail}")
        self.host = host


def _times_line(log: str, header: str, folder: str) -> float | None:
    if header not in log:
        return None
    block = log.split(header, 1)[1]
    for line in block.splitlines()[1:40]:
        found = re.match(r"\s*([\d.]+) seconds(?: \([A-Z ]+\))?: (.+)$", line.strip())
        if not found:
            if line.strip():
                break
            continue
        if Path(found.group(2).strip()).name == folder:
            return float(found.group(1))
    return None


def _spawn(host: RealComfyUI) -> subprocess.Popen:
    argv = [
        "strace",
        "-f",
        "-qq",
        "--seccomp-bpf",
        "-e",
        "trace=connect",
        "-o",
        str(host.strace_path),
        str(host.python),
        "main.py",
        "--cpu",
        "--listen",
        "127.0.0.1",
        "--port",
        str(host.port),
        "--disable-auto-launch",
        *host.args,
    ]
    # the user's environment, not the test runner's (users keep bytecode caching on)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CM_", "PYTEST", "COV_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(host.extra.get("env", {}))
    env["PYTHONUNBUFFERED"] = "1"
    log = open(host.log_path, "ab")
    try:
        return subprocess.Popen(
            argv,
            cwd=host.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    finally:
        log.close()


def write_config(manager_dir: Path, settings: dict[str, str]) -> None:
    manager_dir.mkdir(parents=True, exist_ok=True)
    lines = ["[default]"] + [f"{k} = {v}" for k, v in settings.items()]
    (manager_dir / "config.ini").write_text("\n".join(lines) + "\n", encoding="utf-8")


def start_comfyui(
    workdir: Path,
    version: str = "0.8.0",
    *,
    config: dict[str, str] | None = None,
    args: Iterable[str] = (),
    extra_nodes: Iterable[Path] = (),
    manager_package: bool = False,
    install_ours: bool = True,
    patch: dict[str, tuple[str, str]] | None = None,
    env: dict[str, str] | None = None,
    files: dict[str, str] | None = None,
    wait: bool = True,
) -> RealComfyUI:
    """A fresh copy of ComfyUI ``version`` with us installed, started and (``wait``) ready.

    ``config``: our config.ini (default ``network_mode = offline``); ``extra_nodes``: folders
    copied into ``custom_nodes/`` beside us (the classic manager, a pack); ``patch``: edits to our
    installed copy, ``{relative file: (old text, new text)}`` (fault injection in the real host);
    ``manager_package``: the environment that also holds ``comfyui-manager==4.3``; ``files``:
    text files to write into the tree before the start (``{relative path: text}``).
    """
    reason = unavailable(version, manager_package=manager_package)
    if reason:
        raise RuntimeError(f"real-host tier cannot run: {reason}")
    template = envs.sources()[version].tree()
    root = workdir / f"ComfyUI-{version}"
    shutil.copytree(template, root, ignore=shutil.ignore_patterns(".complete", "__pycache__"))
    python = envs.host_python(version, manager_package=manager_package)
    assert python is not None
    if install_ours:
        ours = install_project(root / "custom_nodes")
        for rel, (old, new) in (patch or {}).items():
            text = (ours / rel).read_text(encoding="utf-8")
            assert old in text, f"patch target not found in {rel}: {old!r}"
            (ours / rel).write_text(text.replace(old, new, 1), encoding="utf-8")
        # the README's step: requirements into ComfyUI's python (already satisfied: no network)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-r",
                str(ours / "requirements.txt"),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    for node in extra_nodes:
        shutil.copytree(node, root / "custom_nodes" / node.name)
    for rel, text in {**FIRST_RUN_FILES, **(files or {})}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    settings = {"network_mode": "offline"}
    settings.update(config or {})
    write_config(root / "user" / "__manager", settings)
    host = RealComfyUI(
        version=version,
        root=root,
        port=free_port(),
        python=python,
        log_path=workdir / f"comfyui-{version}.log",
        strace_path=workdir / f"strace-{version}.txt",
        args=tuple(args),
        extra={"env": dict(env or {})},
    )
    host.proc = _spawn(host)
    if wait:
        try:
            host.wait_ready()
        except BaseException:
            host.stop()
            raise
    return host


def classic_manager_tree() -> Path | None:
    """The unpacked classic ComfyUI-Manager 3.41 (read-only template), or None."""
    source = envs.sources().get("classic-3.41")
    return source.tree() if source else None
