"""Offline bundle benchmarks (issue 20): create and import of 20 git packs and 50 wheels, the
import beside a plain ``tar -x`` of the same file, and installing from the imported stores beside
raw ``git clone --local`` + ``uv pip install --no-index``.

Setup (untimed, once per run): 20 real git repositories (three commits each) whose bare copies sit
in the creator tree's git mirror under ``https://example.invalid/bench/<pack>`` (the lookup every
git source takes first), 50 real wheels behind a ``file://`` PEP 503 index (``pip_index_url``; a
local URL passes the offline gate), and a snapshot naming the 20 packs at their commits and the
50 packages pinned. The creator is offline: nothing leaves the machine.

- ``bundles.create_20_packs_50_wheels``: ``create_bundle`` of that snapshot (git bundles, ``pip
  download`` of the 50 wheels, channel files, manifest, tar), seconds.
- ``bundles.import_vs_tar``: ``import_bundle`` (what ``cm-cli.py bundle import`` runs) into a
  fresh offline tree (verify every checksum while writing each member into staging, journalled
  moves; the git bundles stay files, no git runs) beside ``tar -xf`` of the same file into an
  empty folder on the same filesystem. Target <= 2x.
- ``bundles.install_vs_raw``: the bundled snapshot restored offline on the imported tree (the
  ``snapshot_restore`` task: 20 packs cloned from the kept git bundles at their commits, the 50
  pinned packages from the wheelhouse through the dependency installer) beside 20 ``git clone
  --local`` of bare repositories made untimed from the same bundles + one ``uv pip install
  --no-index --find-links`` of the 50 pins into the same venv (emptied before each call). The
  warm run must leave no bare repository behind (the timed runs would reuse it). Target <= 1.3x.

Pairs are interleaved (``timed_pairs``): load from other processes lands on both halves. The
note gives the CPU-time ratio too: the restore makes its clones side by side, so its wall-clock
ratio is below its CPU ratio on a box with idle cores.

History (profiled): the first version missed both targets (import 43x: 40 git runs turning the
bundles into bare repositories; install 2.3-2.6x: six git runs per pack). Now the import runs
no git, and a restore runs one git per pack (a clone from the bundle, made ahead in a small pool);
the commit and requirements checks read the bundle header and the manifest. Fixed costs then
went from per move / per pack to per run: the import journals its planned moves in one write and
one fsync (was one per move: 12), and opens a plain tar as such (``r:*`` tried gzip, bz2 and xz
first); a restore probes ComfyUI's python once (capture, wheel check, pip step and report share
one installer, whose caches read each wheel's metadata once), reads the known-compromise list
and runs ``prepare_tree`` once, and starts git without a full fork of the Manager (setpriv, as
uv/pip). What remains above the raw side: Python's tar parsing and hashing (import); the plan,
the report's capture and the per-pack vetting (install). Fairness: the restore's clones run side
by side (up to 4) while the raw side clones one after another, so on a box with idle cores the
wall-clock ratio flatters us; the CPU ratio in the note does not, and is the figure to hold to
the target. On a box with load > 4 (other processes on 2 CPUs) both ratios swing 1.2x-16x from
run to run: compare medians of runs taken at a quiet moment, with ``uptime`` noted.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .run import BenchContext, Benchmark, BenchSkip, Figure, timed_pairs

N_PACKS = 20
N_WHEELS = 50
HOST = "example.invalid"


def _tree(root: Path, **settings: str) -> Path:
    for sub in ("custom_nodes", "models", "user/__manager"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text("# ComfyUI stand-in\n")
    lines = ["[default]"] + [f"{k} = {v}" for k, v in {"network_mode": "offline", **settings}.items()]
    (root / "user" / "__manager" / "config.ini").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _setup(ctx: BenchContext) -> dict[str, Any]:
    from manager.snapshots.model import PackState, PythonPackage, Snapshot
    from manager.snapshots.store import dump

    gitrepos = ctx.support("gitrepos")
    wheels = ctx.support("wheels")
    git = gitrepos.git
    if shutil.which("git") is None:
        raise BenchSkip("git is not installed")
    uv = wheels.find_uv()
    if uv is None:
        raise BenchSkip("uv is not installed (pip install uv)")
    tmp = tempfile.TemporaryDirectory(prefix="cm-bench-bundles-")
    base = Path(tmp.name)
    os.environ["UV_CACHE_DIR"] = str(base / "uv-cache")  # one warm cache for both sides
    wheelhouse = base / "dist"
    index = base / "simple"
    names = [f"benchwheel{i:02d}" for i in range(N_WHEELS)]
    for name in names:
        whl = wheels.build_wheel(wheelhouse, name, "1.0")
        (index / name).mkdir(parents=True)
        (index / name / "index.html").write_text(f'<a href="{Path(whl).as_uri()}">{Path(whl).name}</a>\n')
    creator = _tree(base / "creator" / "ComfyUI", pip_index_url=index.as_uri())
    packs = []
    for i in range(N_PACKS):
        name = f"bench-pack-{i:02d}"
        src = base / "src" / name
        src.mkdir(parents=True)
        git(src, "init", "-q", "-b", "main")
        for j in range(3):
            (src / f"nodes_{j}.py").write_text(f"# {name} revision {j}\n" * 400)
            git(src, "add", "-A")
            git(src, "commit", "-q", "-m", f"revision {j}")
        commit = git(src, "rev-parse", "HEAD").strip()
        mirror = creator / "user" / "__manager" / "git-mirror" / HOST / "bench" / f"{name}.git"
        mirror.parent.mkdir(parents=True, exist_ok=True)
        git(base, "clone", "-q", "--mirror", str(src), str(mirror))
        packs.append(
            PackState(name=name, kind="git", id=name, url=f"https://{HOST}/bench/{name}", commit=commit, branch="main")
        )
    snapshot = Snapshot(
        created_at="2026-12-01T00:00:00Z",
        packs=tuple(packs),
        python=tuple(PythonPackage(name=n, version="1.0") for n in names),
    )
    selection = base / "selection.json"
    selection.write_bytes(dump(snapshot))
    return {
        "tmp": tmp,
        "base": base,
        "uv": uv,
        "wheels": wheels,
        "names": names,
        "packs": [p.name for p in packs],
        "creator": creator,
        "selection": selection,
        "bundle": base / "site.bundle.tar",
        "serial": [0],
    }


def _create(s: dict[str, Any]) -> Any:
    from manager.bundles import Selection, create_bundle
    from manager.context import Manager

    manager = Manager.standalone(s["creator"], env={})
    return create_bundle(manager, Selection(snapshot=str(s["selection"])), s["bundle"])


def _made(ctx: BenchContext) -> dict[str, Any]:
    """The setup with its bundle written once (the create benchmark times its own runs)."""
    s: dict[str, Any] = ctx.memo("bundles.setup", lambda: _setup(ctx))
    if "result" not in s:
        s["result"] = _create(s)
        files = s["result"].files
        expected = N_PACKS + N_WHEELS + 6  # + the 5 channel files + the snapshot
        if files != expected:
            raise RuntimeError(f"the bundle holds {files} files, expected {expected}")
    return s


def _fresh(s: dict[str, Any], label: str, **settings: str) -> Path:
    s["serial"][0] += 1
    return _tree(s["base"] / f"{label}-{s['serial'][0]}" / "ComfyUI", **settings)


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def create_seconds(ctx: BenchContext) -> Figure:
    s = _made(ctx)
    r = s["result"]
    # the setup's own create is the first sample (create_bundle times itself); two more here
    seconds = statistics.median([r.seconds, _timed(lambda: _create(s)), _timed(lambda: _create(s))])
    note = f"{N_PACKS} git packs, {N_WHEELS} wheels; {r.files} files, {r.size / 1e6:.2f} MB"
    return Figure(seconds, note)


def import_vs_tar(ctx: BenchContext) -> Figure:
    from manager.bundles import import_bundle
    from manager.context import Manager

    s = _made(ctx)
    bundle = s["bundle"]
    slot: dict[str, Path] = {}

    def before() -> None:
        for key in ("box", "out"):
            old = slot.get(key)
            if old is not None:
                shutil.rmtree(old.parent if key == "box" else old, ignore_errors=True)
        slot["box"] = _fresh(s, "import")
        slot["out"] = s["base"] / f"tar-{s['serial'][0]}"
        slot["out"].mkdir()

    def ours() -> None:
        import_bundle(Manager.standalone(slot["box"], env={}), bundle)

    def plain_tar() -> None:
        subprocess.run(["tar", "-xf", str(bundle), "-C", str(slot["out"])], check=True)

    before()
    ours()  # warm: OS caches, git's first start
    got = timed_pairs(ours, plain_tar, repeat=max(5, ctx.repeat), before=before)
    size = bundle.stat().st_size / 1e6
    note = f"{size:.2f} MB, {N_PACKS} git bundles kept as files; {got.cpu_note()}"
    return Figure(got.fn * 1000, note, baseline=got.base * 1000)


def _empty_venv(s: dict[str, Any], python: Path) -> None:
    from manager.deps.backends.base import child_env

    subprocess.run(
        [s["uv"], "pip", "uninstall", "--python", str(python), *s["names"]],
        capture_output=True,
        check=False,
        env=child_env(),
    )


def install_vs_raw(ctx: BenchContext) -> Figure:
    from manager.bundles import import_bundle
    from manager.context import Manager
    from manager.deps.backends.base import child_env

    s = _made(ctx)
    venv = s["wheels"].make_venv(s["base"] / "venv")
    box = _fresh(s, "install", python_executable=str(venv))
    imported = import_bundle(Manager.standalone(box, env={}), s["bundle"])
    layout_dir = box / "user" / "__manager"
    bundles = [layout_dir / "git-mirror" / HOST / "bench" / f"{p}.bundle" for p in s["packs"]]
    # the raw side clones bare repositories (as the issue states it), made untimed from the same
    # imported bundles on the same filesystem; ours clones from the bundles as the import left them
    mirrors = [s["base"] / "raw-mirrors" / f"{p}.git" for p in s["packs"]]
    for bundle, mirror in zip(bundles, mirrors, strict=True):
        if not mirror.exists():
            subprocess.run(
                ["git", "clone", "-q", "--mirror", str(bundle), str(mirror)], check=True, capture_output=True
            )
    wheelhouse = layout_dir / "wheelhouse"
    raw_dest = s["base"] / "raw-custom-nodes"
    pins = [f"{n}==1.0" for n in s["names"]]

    def before() -> None:
        _empty_venv(s, venv)
        for p in s["packs"]:
            shutil.rmtree(box / "custom_nodes" / p, ignore_errors=True)
        shutil.rmtree(raw_dest, ignore_errors=True)
        raw_dest.mkdir()

    def ours() -> None:
        manager = Manager.standalone(box, env={})
        params = {"pip_non_url": True}  # as `bundle import --apply` restores (auto-snapshot included)
        planned = manager.plan("snapshot_restore", imported.snapshot, params, listen="127.0.0.1")
        (task,) = manager.submit([planned])
        try:
            if not manager.queue.run_until_idle(600):
                raise RuntimeError("the restore did not finish")
        finally:
            manager.queue.stop(timeout=30)
        record = manager.queue.get(task.id).to_dict()
        if record["state"] != "done":
            raise RuntimeError(f"restore {record['state']}: {record.get('error')}")

    def raw() -> None:
        for mirror in mirrors:
            subprocess.run(
                ["git", "clone", "-q", "--local", str(mirror), str(raw_dest / mirror.stem)],
                check=True,
                capture_output=True,
            )
        subprocess.run(
            [s["uv"], "pip", "install", "--python", str(venv), "--no-config", "--offline", "--no-index"]
            + ["--find-links", str(wheelhouse), *pins],
            check=True,
            capture_output=True,
            env=child_env(),
        )

    before()
    ours()  # warm, and a check that the restore installs everything
    missing = [p for p in s["packs"] if not (box / "custom_nodes" / p / ".git").exists()]
    if missing:
        raise RuntimeError(f"the restore left out {missing}")
    made = sorted((layout_dir / "git-mirror").rglob("*.git"))
    if made:  # the timed runs would start from a cache the first restore built: not what a user's first run does
        raise RuntimeError(f"the restore made bare repositories from the bundles: {made[:3]}")
    got = timed_pairs(ours, raw, repeat=max(5, ctx.repeat), before=before)
    note = f"{N_PACKS} packs + {N_WHEELS} wheels, offline; {got.cpu_note()}"
    return Figure(got.fn * 1000, note, baseline=got.base * 1000)


BENCHMARKS = [
    Benchmark(
        "bundles.create_20_packs_50_wheels",
        "s",
        create_seconds,
        description="create_bundle of a snapshot: 20 git packs (git bundles) and 50 wheels (pip download)",
    ),
    Benchmark(
        "bundles.import_vs_tar",
        "ms",
        import_vs_tar,
        target=2.0,
        compare="<=",
        target_on="ratio",
        baseline="tar -xf of the same file into an empty folder",
        description="import_bundle of 20 packs + 50 wheels into a fresh offline tree (verify, extract, git, moves)",
    ),
    Benchmark(
        "bundles.install_vs_raw",
        "ms",
        install_vs_raw,
        target=1.3,
        compare="<=",
        target_on="ratio",
        baseline="20 git clone --local of the imported mirrors + uv pip install --no-index --find-links, same venv",
        description="the bundled snapshot restored offline from the imported stores (snapshot_restore task)",
    ),
]
