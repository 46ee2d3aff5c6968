"""Fault injection: run an operation in a child process, SIGKILL it at a named point, then
check that a fresh Manager finds the tree consistent.

The child (``python -m support.faults <config.json>``) builds a Manager on the given ComfyUI
tree and runs one scenario:

- ``install``: queue an install task; the kill comes from a *stage point* (the N-th progress
  event of a stage, optionally one whose line contains a text) or an *audit point* (a
  ``sys.addaudithook`` event such as the ``os.rename`` that moves the pack into place).
- ``cache-loop`` / ``snapshot-loop``: write channel-cache entries / snapshot files in a loop; the
  kill comes from an audit point or from the parent at a random moment (``kill_after``).

The child is its own session leader and kills its whole process group (``os.killpg``), so a
running ``git`` or install subprocess dies with it, as on a power cut. Before dying it writes
the point it reached to a status file, so the parent knows the kill landed where it should.

``check_tree``/``assert_tree_consistent`` then look at the tree as a fresh Manager would: no
half-installed pack (every new entry of ``custom_nodes/`` equals what a complete install
produces), nothing in staging counted as a pack, every cache sidecar verifies, every snapshot
parses, and the operations lock can be taken at once. ``run_install`` is "the next operation".
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS_DIR = REPO_ROOT / "tests"
LISTING_SKIP = (".git", "__pycache__")


# --- kill points ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class KillPoint:
    """Where the child kills itself.

    Stage point: ``stage`` set; fires on the ``occurrence``-th progress event of that stage (only
    counting events whose line contains ``line_contains`` when given). Audit point: ``audit`` set
    (an audit event name); fires on the ``occurrence``-th time the event's path argument (``arg`` index) sits
    directly in the layout folder named by ``in_dir`` (a ``Layout`` attribute) and its name starts with
    ``prefix`` / ends with ``suffix``. Hidden names only match when ``prefix`` asks for them.
    Audit hooks run *before* the operation, so the kill lands just before that call.
    """

    name: str
    stage: str = ""
    occurrence: int = 1
    line_contains: str = ""
    audit: str = ""
    arg: int = 1
    in_dir: str = ""
    prefix: str = ""
    suffix: str = ""


POINTS: dict[str, KillPoint] = {
    p.name: p
    for p in (
        # the staging folder exists and the fetch has just begun
        KillPoint("after-staging", stage="clone"),
        # git is transferring objects into the staging folder
        KillPoint("clone", stage="clone", line_contains="Receiving objects", occurrence=2),
        # the dependency installer (a real subprocess) is half-way through
        KillPoint("deps", stage="deps", occurrence=3),
        # install.py is running
        KillPoint("install-script", stage="install-script", occurrence=2),
        # journal written, the pack's rename into custom_nodes/ about to happen
        KillPoint("rename", audit="os.rename", arg=1, in_dir="custom_nodes"),
        # the pack is in place, the journal not yet removed (the next operation rolls it back)
        KillPoint("rename-done", audit="os.remove", arg=0, in_dir="staging_dir", prefix=".txn-"),
        # the new cache body is staged, its sidecar (the commit point) is about to be written
        # (4th sidecar: the loop rotates 3 URLs, so a good older pair of this URL exists)
        KillPoint("cache-write", audit="os.rename", arg=1, in_dir="cache_channels", suffix=".meta.json", occurrence=4),
        # a snapshot temp file is complete and about to replace the stored snapshot
        KillPoint("snapshot-write", audit="os.rename", arg=1, in_dir="snapshots_dir", suffix=".json"),
        # a bundle import moved every store entry in (journalled); its manifest, the commit point, is next
        KillPoint("bundle-import", audit="os.rename", arg=1, in_dir="manager_dir", prefix="bundles"),
        # a bundle import's first store entry (the git mirror folder) is about to move in
        KillPoint("bundle-import-first", audit="os.rename", arg=1, in_dir="manager_dir", prefix="git-mirror"),
    )
}


# --- a dependency step that behaves like an installer ---------------------------------------------
_DEPS_SCRIPT = r"""
import os, sys, time
target, parts = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.join(target, "site-deps"), exist_ok=True)
for i in range(parts):
    with open(os.path.join(target, "site-deps", f"part{i}.py"), "w") as fh:
        fh.write(f"PART = {i}\n" * 200)
    print(f"installing part {i + 1}/{parts}", flush=True)
    time.sleep(0.03)
with open(os.path.join(target, "site-deps", "COMPLETE"), "w") as fh:
    fh.write("ok\n")
print("deps done", flush=True)
"""


@dataclass
class SlowDeps:
    """A deps step that runs a real subprocess writing files into the staged pack, line by line.

    It stands in for pip/uv (covered by the deps suite) so a kill lands mid-install in a process
    of its own; its output is deterministic, so a reference install produces the same files.
    """

    parts: int = 8
    calls: list[str] = field(default_factory=list)

    def __call__(self, pack_dir: Path, pack_name: str, progress: Any) -> dict[str, Any]:
        self.calls.append(pack_name)
        proc = subprocess.Popen(
            [sys.executable, "-c", _DEPS_SCRIPT, str(pack_dir), str(self.parts)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            progress(line.rstrip())
        if proc.wait() != 0:
            from manager.deps.errors import DepsInstallFailed

            raise DepsInstallFailed(f"fake installer failed for {pack_name}")
        return {"parts": self.parts}


def build_manager(root: str | os.PathLike[str], *, deps: str = "slow") -> Any:
    """A Manager on ``root`` with the operation runners (``deps``: slow | none | real)."""
    from manager.context import Manager

    manager = Manager.standalone(root, env={})
    manager.deps_step = {"slow": SlowDeps(), "none": _no_deps, "real": None}[deps]  # None: the real installer
    return manager


def _no_deps(pack_dir: Path, pack_name: str, progress: Any) -> dict[str, Any]:
    return {}


def run_install(
    root: str | os.PathLike[str],
    spec: str,
    params: Mapping[str, Any] | None = None,
    *,
    deps: str = "slow",
    timeout: float = 120.0,
) -> Any:
    """Run one install in this process through a fresh Manager's queue; returns the final task."""
    from manager.tasks import TaskSpec

    manager = build_manager(root, deps=deps)
    queue = manager.queue
    try:
        task = queue.enqueue(TaskSpec("install", spec, dict(params or {})))
        assert queue.run_until_idle(timeout=timeout), "install did not finish in time"
        return queue.get(task.id)
    finally:
        queue.stop(timeout=10)


# --- the parent side --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaultRun:
    """What happened to one child: killed where intended, or finished (with its final state)."""

    scenario: str
    point: str
    returncode: int | None
    reached: bool
    status: Mapping[str, Any]
    seconds: float
    output: str

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    def describe(self) -> str:
        return (
            f"{self.scenario} at {self.point}: rc={self.returncode} reached={self.reached} "
            f"status={dict(self.status)} after {self.seconds:.2f}s; output tail:\n{self.output[-2000:]}"
        )


def run_and_kill(
    root: str | os.PathLike[str],
    scenario: str,
    *,
    point: str | KillPoint | None = None,
    kill_after: float | tuple[float, float] | None = None,
    spec: str = "",
    params: Mapping[str, Any] | None = None,
    deps: str = "slow",
    seed: int | None = None,
    timeout: float = 90.0,
    require_kill: bool = True,
) -> FaultRun:
    """Start the child on ``root`` and let it die at ``point`` (or kill it after ``kill_after``
    seconds, a number or a (min, max) range drawn with ``seed``, counted from its first write).

    With ``require_kill`` (default) an ``AssertionError`` says so when the child was not killed at
    the point: a fault test must never pass because the fault did not happen.
    """
    kp = POINTS[point] if isinstance(point, str) else point
    workdir = Path(root).parent / f".fault-{os.getpid()}-{time.monotonic_ns()}"
    workdir.mkdir()
    status_file = workdir / "status.json"
    ready_file = workdir / "ready"
    config = {
        "root": str(root),
        "scenario": scenario,
        "point": asdict(kp) if kp else None,
        "spec": spec,
        "params": dict(params or {}),
        "deps": deps,
        "status": str(status_file),
        "ready": str(ready_file),
    }
    cfg_path = workdir / "config.json"
    cfg_path.write_text(json.dumps(config), encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(TESTS_DIR)]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "support.faults", str(cfg_path)],
        cwd=str(workdir),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        if kill_after is not None:
            rng = random.Random(seed)
            delay = kill_after if isinstance(kill_after, (int, float)) else rng.uniform(*kill_after)
            deadline = time.monotonic() + timeout
            while not ready_file.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(delay)
            if proc.poll() is None:
                status_file.write_text(json.dumps({"reached": f"random kill after {delay:.3f}s"}))
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(
            f"fault child ({scenario}) hung for {timeout}s:\n{out.decode(errors='replace')[-2000:]}"
        ) from None
    status: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        status = json.loads(status_file.read_text(encoding="utf-8"))
    run = FaultRun(
        scenario,
        kp.name if kp else f"random({kill_after})",
        proc.returncode,
        "reached" in status,
        status,
        time.monotonic() - started,
        out.decode("utf-8", "replace"),
    )
    with contextlib.suppress(OSError):
        for f in workdir.iterdir():
            f.unlink()
        workdir.rmdir()
    if require_kill:
        assert run.killed and run.reached, "the fault did not happen as planned: " + run.describe()
    return run


# --- the checker -----------------------------------------------------------------------------------
def pack_listings(layout: Any) -> dict[str, dict[str, str]]:
    """Every entry of ``custom_nodes/`` and ``custom_nodes/.disabled/`` (hidden ones excluded) ->
    its checksum listing (``.git`` internals left out: two clones never pack alike) plus, for a
    git checkout, ``@commit``."""
    from manager.inventory import read_git_meta
    from support.treesum import _fingerprint, listing

    out: dict[str, dict[str, str]] = {}
    for base, prefix in ((layout.custom_nodes, ""), (layout.disabled_dir, ".disabled/")):
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.name == "__pycache__":
                continue
            if entry.is_dir(follow_symlinks=False):
                item = listing(entry.path, skip=LISTING_SKIP)
                if os.path.exists(os.path.join(entry.path, ".git")):
                    try:
                        item["@commit"] = read_git_meta(entry.path).commit
                    except (OSError, ValueError) as exc:
                        item["@commit"] = f"unreadable: {exc}"
            else:
                item = {"": _fingerprint(entry.path, entry.stat(follow_symlinks=False))}
            out[prefix + entry.name] = item
    return out


@dataclass
class TreeReport:
    """What ``check_tree`` found: ``problems`` fail the check, ``notes`` are expected debris."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    packs: dict[str, str] = field(default_factory=dict)  # entry -> "before" | "complete"

    def __bool__(self) -> bool:
        return not self.problems


def check_tree(
    layout: Any, *, before: Mapping[str, Mapping[str, str]], expected: Mapping[str, Mapping[str, str]]
) -> TreeReport:
    """Look at the tree as a fresh Manager would (see the module docstring).

    ``before``: ``pack_listings`` taken before the operation; ``expected``: the listings of the
    entries a complete operation produces. Every entry now present must equal its ``before`` or
    its ``expected`` listing; every ``before`` entry must still be there.
    """
    from manager.context import Manager
    from manager.fsops import file_lock
    from manager.layout import STAGING_DIRNAME, TRASH_DIRNAME

    rep = TreeReport()
    now = pack_listings(layout)
    for name, items in now.items():
        if name in before and dict(before[name]) == items:
            rep.packs[name] = "before"
        elif name in expected and dict(expected[name]) == items:
            rep.packs[name] = "complete"
        else:
            ref = expected.get(name) or before.get(name) or {}
            missing = sorted(set(ref) - set(items))[:8]
            extra = sorted(set(items) - set(ref))[:8]
            changed = sorted(k for k in set(ref) & set(items) if ref[k] != items[k])[:8]
            rep.problems.append(
                f"half-installed or altered pack {name!r}: missing {missing}, extra {extra}, changed {changed}"
            )
    for name in before:
        if name not in now:
            rep.problems.append(f"pack {name!r} that existed before is gone")

    # a fresh Manager's inventory: nothing from staging or trash counted as a pack
    manager = Manager.standalone(layout.comfyui_root, env={})
    inv = manager.inventory(with_catalog=False)
    for pack in inv.packs:
        parts = Path(pack.path).parts
        if STAGING_DIRNAME in parts or TRASH_DIRNAME in parts:
            rep.problems.append(f"inventory counts a working folder as a pack: {pack.path}")
    listed = {p.name if p.enabled else ".disabled/" + p.name for p in inv.packs}
    for name in now:
        if name not in listed and not name.startswith(".disabled/"):
            rep.notes.append(f"{name} is not listed by the inventory")
    with contextlib.suppress(FileNotFoundError):
        leftovers = sorted(p.name for p in layout.staging_dir.iterdir())
        if leftovers:
            rep.notes.append(f"staging leftovers (cleaned by the next operation): {leftovers}")

    rep.problems += _cache_problems(layout, manager)
    rep.problems += _snapshot_problems(layout)
    try:
        with file_lock(layout.locks_dir / "operations.lock", timeout=0):
            pass
    except Exception as exc:  # LockBusy or an OS error: both block the next operation
        rep.problems.append(f"the operations lock cannot be taken at once: {exc}")
    return rep


def _cache_problems(layout: Any, manager: Any) -> list[str]:
    from manager.channel_cache import SIDECAR_SUFFIX, ChannelCache

    problems: list[str] = []
    folders = {p.parent for p in layout.cache_dir.rglob("*" + SIDECAR_SUFFIX)} if layout.cache_dir.is_dir() else set()
    folders |= {f for f in (layout.cache_dir / "channels", layout.cache_dir / "registry") if f.is_dir()}
    for folder in sorted(folders):
        for row in ChannelCache(folder, manager.gate).health():
            if row["state"] == "corrupt":
                problems.append(f"corrupt cache file {folder.name}/{row['file']}: {row['problem']}")
    return problems


def _snapshot_problems(layout: Any) -> list[str]:
    problems: list[str] = []
    folder = layout.snapshots_dir
    if not folder.is_dir():
        return problems
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() != ".json":
            continue
        try:
            doc = json.loads(path.read_bytes())
            if not isinstance(doc, dict):
                raise ValueError(f"top level is {type(doc).__name__}")
        except ValueError as exc:
            problems.append(f"corrupt snapshot {path.name}: {exc}")
            continue
        try:
            from manager.snapshots.store import read_snapshot_file
        except ImportError:
            continue
        try:
            read_snapshot_file(path)
        except Exception as exc:  # SnapshotInvalid: parses as JSON but is not a snapshot
            problems.append(f"snapshot {path.name} does not load: {exc}")
    return problems


def assert_tree_consistent(
    layout: Any,
    *,
    before: Mapping[str, Mapping[str, str]] | None = None,
    expected: Mapping[str, Mapping[str, str]] | None = None,
) -> TreeReport:
    """``check_tree`` that fails with every problem listed; returns the report."""
    rep = check_tree(layout, before=before or {}, expected=expected or {})
    assert not rep.problems, (
        "tree is not consistent:\n  "
        + "\n  ".join(rep.problems)
        + ("\nnotes:\n  " + "\n  ".join(rep.notes) if rep.notes else "")
    )
    return rep


# --- the child side -----------------------------------------------------------------------------------
def _die(status_file: str, what: str) -> None:
    with open(status_file, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"reached": what}))
        fh.flush()
        os.fsync(fh.fileno())
    os.killpg(0, signal.SIGKILL)


def _audit_hook(kp: KillPoint, folder: Path, status_file: str) -> Any:
    folder = Path(os.path.realpath(folder))
    seen = [0]

    def hook(event: str, args: tuple) -> None:
        if event != kp.audit or len(args) <= kp.arg:
            return
        raw = args[kp.arg]
        if isinstance(raw, int) or raw is None:
            return
        path = Path(os.path.realpath(os.fsdecode(raw)))
        name = path.name
        if path.parent != folder or not name.startswith(kp.prefix) or not name.endswith(kp.suffix):
            return
        if name.startswith(".") and not kp.prefix.startswith("."):
            return  # temp files of atomic writes, unless asked for
        seen[0] += 1
        if seen[0] >= kp.occurrence:
            _die(status_file, f"{kp.name}: {event} {name} #{seen[0]}")

    return hook


def _folder(layout: Any, in_dir: str) -> Path:
    if in_dir == "cache_channels":
        return layout.cache_dir / "channels"
    return Path(getattr(layout, in_dir))


def _child_install(cfg: Mapping[str, Any], kp: KillPoint | None) -> dict[str, Any]:
    from manager.tasks import TaskSpec

    manager = build_manager(cfg["root"], deps=cfg["deps"])
    queue = manager.queue
    seen = [0]

    def on_event(event: Any) -> None:
        if kp is None or not kp.stage or event.name != "progress" or event.data.get("stage") != kp.stage:
            return
        if kp.line_contains and kp.line_contains not in (event.data.get("line") or ""):
            return
        seen[0] += 1
        if seen[0] >= kp.occurrence:
            _die(cfg["status"], f"{kp.name}: stage {kp.stage} #{seen[0]}")

    queue.subscribe(on_event)
    if kp is not None and kp.audit:
        sys.addaudithook(_audit_hook(kp, _folder(manager.layout, kp.in_dir), cfg["status"]))
    Path(cfg["ready"]).touch()
    task = queue.enqueue(TaskSpec("install", cfg["spec"], cfg["params"]))
    queue.run_until_idle(timeout=120)
    final = queue.get(task.id)
    return {"state": final.state.value, "error": dict(final.error or {}), "stages": list(seen)}


def _child_cache_loop(cfg: Mapping[str, Any], kp: KillPoint | None) -> dict[str, Any]:
    from manager.channel_cache import ChannelCache
    from manager.context import Manager

    manager = Manager.standalone(cfg["root"], env={})
    cache = ChannelCache(manager.layout.cache_dir / "channels", manager.gate)
    if kp is not None and kp.audit:
        sys.addaudithook(_audit_hook(kp, _folder(manager.layout, kp.in_dir), cfg["status"]))
    rounds = int(cfg["params"].get("rounds", 10_000))
    for i in range(rounds):
        url = f"https://channel.invalid/ch{i % 3}/custom-node-list.json"
        body = json.dumps({"custom_nodes": [{"id": f"p{j}", "title": f"round {i}"} for j in range(4000 + i % 7)]})
        cache.put(url, body.encode())
        if i == 0:
            Path(cfg["ready"]).touch()
    return {"rounds": rounds}


def _child_snapshot_loop(cfg: Mapping[str, Any], kp: KillPoint | None) -> dict[str, Any]:
    from manager.context import Manager
    from manager.snapshots.model import Snapshot
    from manager.snapshots.store import SnapshotStore

    manager = Manager.standalone(cfg["root"], env={})
    store = SnapshotStore(manager.layout.snapshots_dir)
    if kp is not None and kp.audit:
        sys.addaudithook(_audit_hook(kp, _folder(manager.layout, kp.in_dir), cfg["status"]))
    rounds = int(cfg["params"].get("rounds", 10_000))
    for i in range(rounds):
        snap = Snapshot(
            created_at="2026-01-01T00:00:00Z",
            reason="manual",
            notes=tuple(f"round {i} note {j}" for j in range(20_000)),
        )
        store.save(snap, f"fault-{i % 3}", overwrite=True)
        if i == 0:
            Path(cfg["ready"]).touch()
    return {"rounds": rounds}


def _child_bundle_import(cfg: Mapping[str, Any], kp: KillPoint | None) -> dict[str, Any]:
    """Queue one ``bundle_import`` of the bundle file ``spec`` (the task runs under the lock)."""
    from manager.tasks import TaskSpec

    manager = build_manager(cfg["root"], deps=cfg["deps"])
    if kp is not None and kp.audit:
        sys.addaudithook(_audit_hook(kp, _folder(manager.layout, kp.in_dir), cfg["status"]))
    Path(cfg["ready"]).touch()
    queue = manager.queue
    task = queue.enqueue(TaskSpec("bundle_import", cfg["spec"], cfg["params"]))
    queue.run_until_idle(timeout=120)
    final = queue.get(task.id)
    return {"state": final.state.value, "error": dict(final.error or {})}


_SCENARIOS = {
    "install": _child_install,
    "cache-loop": _child_cache_loop,
    "snapshot-loop": _child_snapshot_loop,
    "bundle-import": _child_bundle_import,
}


def _child_main(argv: list[str]) -> int:
    cfg = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    kp = KillPoint(**cfg["point"]) if cfg.get("point") else None
    result = _SCENARIOS[cfg["scenario"]](cfg, kp)
    Path(cfg["status"]).write_text(json.dumps({"finished": result}), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
