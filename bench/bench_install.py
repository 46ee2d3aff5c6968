"""Install benchmarks: our staged install vs the raw tool doing the same copy.

- ``install.git_local_ratio``: ``operations.install`` of a local git repository (resolve, stage,
  ``git clone`` through ``GitClient``, journalled rename) vs ``git clone --local`` of the same
  repository into the same folder.
- ``install.zip_local_ratio``: ``operations.install`` of a local zip (safe extraction in staging,
  rename) vs ``zipfile.ZipFile.extractall`` of the same zip.

The pack has 150 small files in a few folders and no requirements or install script, so the
figure is the engine's own overhead. Runs interleave ours and the baseline; medians.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from .run import BenchContext, Benchmark, BenchSkip, Figure, timed_ratio

_ENV = {
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@example.invalid",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@example.invalid",
}


def _pack_files() -> dict[str, str]:
    files = {
        "__init__.py": "NODE_CLASS_MAPPINGS = {}\n",
        "pyproject.toml": '[project]\nname = "bench-pack"\nversion = "1.0.0"\n',
    }
    for i in range(148):
        files[f"{['nodes', 'utils', 'web/js', 'data'][i % 4]}/file_{i}.py"] = f"X_{i} = {i}\n" * 40
    return files


def _setup(ctx: BenchContext) -> dict[str, Any]:
    if shutil.which("git") is None:
        raise BenchSkip("git is not installed")
    import os

    from manager.context import Manager
    from manager.operations import Ops

    tmp = tempfile.TemporaryDirectory(prefix="cm-bench-install-")
    base = Path(tmp.name)
    src = base / "src" / "bench-pack"
    for rel, text in _pack_files().items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    env = {**os.environ, **_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *args], cwd=src, env=env, check=True, capture_output=True, timeout=60)
    archive = base / "bench-pack.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel, text in _pack_files().items():
            zf.writestr(f"bench-pack/{rel}", text)
    root = base / "ComfyUI"
    (root / "custom_nodes").mkdir(parents=True)
    cfg = root / "user" / "__manager" / "config.ini"
    cfg.parent.mkdir(parents=True)
    cfg.write_text("[default]\nnetwork_mode = offline\n")
    manager = Manager.standalone(root, env={})
    return {"tmp": tmp, "src": src, "archive": archive, "root": root, "ops": Ops(manager), "counter": itertools.count()}


def _ours(state: dict[str, Any], spec: str) -> None:
    from manager.operations import Reporter
    from manager.operations.install import install
    from manager.records import PolicyDecision

    name = f"ours-{next(state['counter'])}"
    install(state["ops"], spec, Reporter(), name=name, policy=PolicyDecision.allow("install", "local_path"))


def git_local_ratio(ctx: BenchContext) -> Figure:
    state = ctx.memo("install.state", lambda: _setup(ctx))
    custom = state["root"] / "custom_nodes"

    def raw() -> None:
        dest = custom / f"raw-{next(state['counter'])}"
        subprocess.run(
            ["git", "clone", "-q", "--local", "--", str(state["src"]), str(dest)],
            check=True,
            capture_output=True,
            timeout=120,
        )

    _ours(state, str(state["src"]))  # warm: git --version detection, OS caches
    raw()
    ratio, ours, base = timed_ratio(lambda: _ours(state, str(state["src"])), raw, repeat=max(ctx.repeat, 7))
    print(
        f"install from local git repo: ours {ours * 1000:.1f} ms vs git clone --local {base * 1000:.1f} ms "
        f"(x{ratio:.2f})"
    )
    return Figure(ratio, f"ours {ours * 1000:.1f} ms, git clone --local {base * 1000:.1f} ms")


def zip_local_ratio(ctx: BenchContext) -> Figure:
    state = ctx.memo("install.state", lambda: _setup(ctx))
    custom = state["root"] / "custom_nodes"

    def raw() -> None:
        with zipfile.ZipFile(state["archive"]) as zf:
            zf.extractall(custom / f"raw-zip-{next(state['counter'])}")

    _ours(state, str(state["archive"]))
    raw()
    ratio, ours, base = timed_ratio(lambda: _ours(state, str(state["archive"])), raw, repeat=max(ctx.repeat, 7))
    print(f"install from local zip: ours {ours * 1000:.1f} ms vs plain unzip {base * 1000:.1f} ms (x{ratio:.2f})")
    return Figure(ratio, f"ours {ours * 1000:.1f} ms, zipfile.extractall {base * 1000:.1f} ms")


BENCHMARKS = [
    Benchmark(
        "install.git_local_ratio",
        "x",
        git_local_ratio,
        target=1.3,
        compare="<=",
        baseline="git clone --local of the same repository",
        description="staged install of a 150-file local git repo vs raw git clone --local",
    ),
    Benchmark(
        "install.zip_local_ratio",
        "x",
        zip_local_ratio,
        target=1.3,
        compare="<=",
        baseline="zipfile extractall of the same archive",
        description="staged install of a 150-file local zip vs plain unzip",
    ),
]
