"""Real git repositories for tests, and two real git servers on 127.0.0.1.

``make_repo`` builds a pack-shaped repository (several commits on ``main``, tags ``v1.0.0`` and
``v1.1.0``, a ``dev`` branch); ``GitDaemon`` serves a folder with ``git daemon``;
``serve_smart_http`` mounts ``git http-backend`` (CGI) behind the aiohttp loopback server.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run git in ``cwd`` with a fixed identity; returns stdout; raises on failure."""
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env={**os.environ, **_ENV, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )
    except FileNotFoundError:
        raise RuntimeError(
            "git is not installed; install it with: apt-get install git (scripts/test.sh installs it)"
        ) from None
    if out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {out.stderr}")
    return out.stdout.strip()


@dataclass
class RepoInfo:
    path: Path
    commits: list[str] = field(default_factory=list)  # main history, oldest first
    tags: dict[str, str] = field(default_factory=dict)  # tag -> commit
    dev_commit: str = ""

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def commit(self, message: str, files: dict[str, str], branch: str = "main") -> str:
        """Add a commit on ``branch`` (checked out, then back to main); returns its sha."""
        if branch != "main":
            git(self.path, "checkout", "-q", branch)
        for rel, text in files.items():
            f = self.path / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(text)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", message)
        sha = git(self.path, "rev-parse", "HEAD")
        if branch != "main":
            git(self.path, "checkout", "-q", "main")
        else:
            self.commits.append(sha)
        return sha


def make_repo(path: Path, *, name: str = "example-pack", bare_copy: bool = False) -> RepoInfo:
    """A node-pack repository: 3 commits on main, tags v1.0.0 (1st) and v1.1.0 (2nd), branch dev."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    info = RepoInfo(path)
    info.commit(
        "first",
        {
            "__init__.py": "NODE_CLASS_MAPPINGS = {}\n",
            "nodes.py": "VERSION = 1\n",
            "pyproject.toml": f'[project]\nname = "{name}"\nversion = "1.0.0"\n',
        },
    )
    git(path, "tag", "-a", "v1.0.0", "-m", "v1.0.0")
    info.tags["v1.0.0"] = info.commits[-1]
    info.commit("second", {"nodes.py": "VERSION = 2\n", "requirements.txt": "packaging\n"})
    git(path, "tag", "v1.1.0")
    info.tags["v1.1.0"] = info.commits[-1]
    info.commit("third", {"nodes.py": "VERSION = 3\n"})
    git(path, "branch", "dev", info.commits[1])
    info.dev_commit = info.commit("dev work", {"dev.py": "DEV = True\n"}, branch="dev")
    return info


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GitDaemon:
    """``git daemon`` exporting every repository under ``base`` on 127.0.0.1 (read-only)."""

    def __init__(self, base: Path):
        self.base = base
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def url(self, repo_name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{repo_name}"

    def __enter__(self) -> GitDaemon:
        for _ in range(5):  # a free port may be taken between probe and bind
            self.port = free_port()
            self.proc = subprocess.Popen(
                [
                    "git",
                    "daemon",
                    "--reuseaddr",
                    f"--base-path={self.base}",
                    "--export-all",
                    "--listen=127.0.0.1",
                    f"--port={self.port}",
                    "--informative-errors",
                    str(self.base),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if self._wait_ready():
                return self
            self._stop()
        raise RuntimeError("git daemon did not start")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            # probe with a subprocess so the test's socket audit log stays about the code under test
            probe = subprocess.run(
                ["git", "ls-remote", self.url("__probe__")], capture_output=True, text=True, timeout=10
            )
            if "Connection refused" not in probe.stderr and "unable to connect" not in probe.stderr:
                return True
            time.sleep(0.05)
        return False

    def _stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def __exit__(self, *exc: object) -> None:
        self._stop()


def serve_smart_http(srv, base: Path, repo_name: str, prefix: str = "/git") -> str:
    """Mount ``git http-backend`` for ``base/repo_name`` on the loopback server; returns the clone URL."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        env = {
            **os.environ,
            "GIT_PROJECT_ROOT": str(base),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": request.path[len(prefix) :],
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
        }
        proc = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _err = await proc.communicate(body)
        head, _, payload = out.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        return web.Response(status=status, body=payload, headers=headers)

    root = f"{prefix}/{repo_name}"
    srv.route("GET", f"{root}/info/refs", handler)
    srv.route("POST", f"{root}/git-upload-pack", handler)
    srv.route("GET", f"{root}/HEAD", handler)
    return srv.url(root)


# --- a synthetic custom_nodes tree for inventory tests and the bench ----------------------------
@dataclass
class PackTree:
    custom_nodes: Path
    head: str  # commit of every git pack not made detached
    counts: dict[str, int] = field(default_factory=dict)  # kind -> number of packs (enabled + disabled)
    disabled: int = 0
    detached: list[str] = field(default_factory=list)  # entry names with a detached HEAD
    gitfile: list[str] = field(default_factory=list)  # entry names whose .git is a "gitdir:" file

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _set_remote(repo: Path, url: str) -> None:
    """Give a copied clone its own remote URL and pyproject name (as distinct packs have)."""
    cfg = repo / ".git" / "config"
    cfg.write_text(re.sub(r"(?m)^(\s*url\s*=).*$", rf"\1 {url}", cfg.read_text()))
    (repo / "pyproject.toml").write_text(f'[project]\nname = "{url.rsplit("/", 1)[-1]}"\nversion = "1.0.0"\n')


def _cnr_pack(folder: Path, pack_id: str, version: str, *, requirements: bool) -> None:
    folder.mkdir(parents=True)
    files = {
        "__init__.py": "NODE_CLASS_MAPPINGS = {}\n",
        "nodes.py": "X = 1\n",
        "pyproject.toml": (
            f'[project]\nname = "{pack_id}"\nversion = "{version}"\n'
            f'[project.urls]\nRepository = "https://github.com/example/{pack_id}"\n'
            f'[tool.comfy]\nPublisherId = "example"\nDisplayName = "{pack_id.title()}"\n'
        ),
    }
    if requirements:
        files["requirements.txt"] = "packaging\n"
    for rel, text in files.items():
        (folder / rel).write_text(text)
    (folder / ".tracking").write_text("\n".join(sorted(files)) + "\n")


def build_pack_tree(
    custom_nodes: Path,
    template: Path,
    *,
    n_git: int = 80,
    n_cnr: int = 60,
    n_file: int = 30,
    n_folder: int = 20,
    n_disabled: int = 10,
) -> PackTree:
    """``n_git + n_cnr + n_file + n_folder + n_disabled`` packs (200 by default), plus noise to skip.

    Git packs are ``cp -r`` copies of ``template`` (a real clone) with their own remote URL; some
    have packed refs, a detached HEAD or a ``.git`` file pointing elsewhere. Every fifth disabled
    pack is ``.disabled/cnr-<i>@0_9_0`` while ``cnr-<i>`` is enabled: deliberate conflicts.
    """
    custom_nodes.mkdir(parents=True, exist_ok=True)
    disabled_dir = custom_nodes / ".disabled"
    disabled_dir.mkdir(exist_ok=True)
    git(template, "pack-refs", "--all")
    tree = PackTree(custom_nodes, head=git(template, "rev-parse", "HEAD"))
    older = git(template, "rev-parse", "HEAD~1")
    side = custom_nodes.parent / "gitdirs"
    side.mkdir(exist_ok=True)
    for i in range(n_git):
        name = f"git-pack-{i}"
        dest = custom_nodes / name
        subprocess.run(["cp", "-r", str(template), str(dest)], check=True)
        _set_remote(dest, f"https://github.com/example/{name}")
        if i % 10 == 3:
            (dest / ".git" / "HEAD").write_text(older + "\n")
            tree.detached.append(name)
        elif i % 10 == 7:
            (dest / ".git").rename(side / name)
            (dest / ".git").write_text(f"gitdir: {side / name}\n")
            tree.gitfile.append(name)
        elif i % 10 == 5:  # a loose ref beside packed-refs
            ref = dest / ".git" / "refs" / "heads" / "main"
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(tree.head + "\n")
    for i in range(n_cnr):
        _cnr_pack(custom_nodes / f"cnr-{i}", f"cnr-{i}", f"1.{i}.0", requirements=i % 2 == 0)
    for i in range(n_file):
        (custom_nodes / f"single_{i}.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    for i in range(n_folder):
        folder = custom_nodes / f"plain-{i}"
        folder.mkdir()
        (folder / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
        if i % 4 == 0:
            (folder / "install.py").write_text("print('installing')\n")
    tree.counts = {"git": n_git, "cnr": n_cnr, "file": n_file, "folder": n_folder}
    # disabled variants: the registry naming, nightly, the old suffix (folder and file)
    for i in range(n_disabled):
        slot = i % 5
        if slot == 0:
            _cnr_pack(disabled_dir / f"cnr-{i}@0_9_0", f"cnr-{i}", "0.9.0", requirements=False)
            kind = "cnr"
        elif slot == 1:
            subprocess.run(["cp", "-r", str(template), str(disabled_dir / f"old-git-{i}@nightly")], check=True)
            _set_remote(disabled_dir / f"old-git-{i}@nightly", f"https://github.com/example/old-git-{i}")
            kind = "git"
        elif slot == 2:
            _cnr_pack(custom_nodes / f"legacy-{i}.disabled", f"legacy-{i}", "2.0.0", requirements=False)
            kind = "cnr"
        elif slot == 3:
            (custom_nodes / f"old_single_{i}.py.disabled").write_text("NODE_CLASS_MAPPINGS = {}\n")
            kind = "file"
        else:
            (disabled_dir / f"off_{i}.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
            kind = "file"
        tree.counts[kind] += 1
        tree.disabled += 1
    # noise the scan must skip
    for name in ("__pycache__", ".cm-staging.disabled", ".cm-trash.disabled", ".hidden-pack"):
        (custom_nodes / name).mkdir()
        (custom_nodes / name / "__init__.py").write_text("")
    (custom_nodes / "README.md").write_text("readme\n")
    (custom_nodes / "notes.txt").write_text("notes\n")
    (disabled_dir / ".DS_Store").write_text("")
    return tree


def build_200_pack_comfyui(base: Path) -> Path:
    """A ComfyUI root under ``base`` whose custom_nodes holds the 200-pack mix of
    ``build_pack_tree`` (cloned from one real upstream repository); used by the benchmarks."""
    upstream = make_repo(base / "upstream")
    template = base / "template"
    subprocess.run(["git", "clone", "-q", str(upstream.path), str(template)], check=True, timeout=60)
    tree = build_pack_tree(base / "ComfyUI" / "custom_nodes", template)
    if tree.total != 200:
        raise RuntimeError(f"expected 200 packs, built {tree.total}")
    return base / "ComfyUI"
