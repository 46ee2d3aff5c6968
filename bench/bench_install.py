"""Install benchmarks: our staged install vs the raw tool doing the same copy.

- ``install.git_local_ratio``: ``operations.install`` of a local git repository (resolve, stage,
  ``git clone`` through ``GitClient``, inspection, journalled rename) vs ``git clone --local`` of
  the same repository.
- ``install.zip_local_ratio``: ``operations.install`` of a local zip (checks of every member,
  extraction into staging with the inspection for native libraries/pickles/executables done in
  the same pass, journalled rename into ``custom_nodes/``) vs ``zipfile.ZipFile.extractall`` of
  the same zip (no checks).

Fair by construction: the same archive or repository, and both sides write into the same
``custom_nodes/`` folder of the same filesystem (ours through its staging folder inside it), a
fresh destination each time. The pack has 150 small files in a few folders and no requirements
or install script, so the figure is the engine's own overhead. Runs interleave ours and the
baseline (alternating which goes first); the figure is the baseline's median plus the median of
the paired differences.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from .run import BenchContext, Benchmark, BenchSkip, Figure, timed_pairs

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
    got = timed_pairs(lambda: _ours(state, str(state["src"])), raw, repeat=max(4 * ctx.repeat, 21))
    return Figure(got.fn * 1000, f"150 files; {got.cpu_note()}", baseline=got.base * 1000)


def zip_local_ratio(ctx: BenchContext) -> Figure:
    state = ctx.memo("install.state", lambda: _setup(ctx))
    custom = state["root"] / "custom_nodes"

    def raw() -> None:
        with zipfile.ZipFile(state["archive"]) as zf:
            zf.extractall(custom / f"raw-zip-{next(state['counter'])}")

    _ours(state, str(state["archive"]))
    raw()
    got = timed_pairs(lambda: _ours(state, str(state["archive"])), raw, repeat=max(4 * ctx.repeat, 21))
    return Figure(got.fn * 1000, f"150 files, deflated; {got.cpu_note()}", baseline=got.base * 1000)


BENCHMARKS = [
    Benchmark(
        "install.git_local_ratio",
        "ms",
        git_local_ratio,
        target=1.3,
        compare="<=",
        target_on="ratio",
        baseline="git clone --local of the same repository into the same custom_nodes/",
        description="staged install of a 150-file local git repo vs raw git clone --local",
    ),
    Benchmark(
        "install.zip_local_ratio",
        "ms",
        zip_local_ratio,
        target=1.3,
        compare="<=",
        target_on="ratio",
        baseline="zipfile.ZipFile.extractall of the same archive into the same custom_nodes/",
        description="staged install of a 150-file local zip vs plain zipfile extractall",
    ),
]
