"""Snapshot benchmarks on a synthetic ``custom_nodes/`` of 200 packs (git and registry mixed).

The tree is built once per run (untimed) by ``tests/support/gitrepos.py``: 80 real git clones,
60 registry packs, 30 single files, 20 plain folders, 10 disabled variants. ``save_200`` times a
whole ``snapshot save``: inventory scan, python packages of the ComfyUI python (one probe
subprocess), requirements graph, models, atomic write. ``noop_restore_200`` times a restore of
the snapshot just taken (capture again, diff, empty plan) and checks that it changed no file.

Baselines, same run: for the save, the inventory scan plus writing the same document as JSON
(what any snapshot must do); for the no-op restore, one capture (what a restore does first).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from .run import BenchContext, Benchmark, BenchSkip, Figure, median_time


def _world(ctx: BenchContext) -> tuple[Any, Any]:
    """(TemporaryDirectory keeping the tree alive, Manager of the tree)."""
    if shutil.which("git") is None:
        raise BenchSkip("git is not installed")
    from manager.context import Manager

    helpers = ctx.support("gitrepos")
    tmp = tempfile.TemporaryDirectory(prefix="cm-bench-snapshots-")
    base = Path(tmp.name)
    helpers.build_200_pack_comfyui(base)
    (base / "ComfyUI" / "models" / "checkpoints").mkdir(parents=True)
    (base / "ComfyUI" / "models" / "checkpoints" / "model.safetensors").write_bytes(b"\0" * 4096)
    manager = Manager.standalone(base / "ComfyUI", env={}, cli={"network_mode": "offline"})
    return tmp, manager


def save_200(ctx: BenchContext) -> Figure:
    from manager.snapshots import store_of
    from manager.snapshots.capture import capture

    _tmp, manager = ctx.memo("snapshots.world", lambda: _world(ctx))
    store = store_of(manager)
    box: list[Any] = []

    def once() -> None:
        snap = capture(manager)
        box.append((snap, store.save(snap)))

    once()  # warm the OS cache and the imports
    seconds = median_time(once, repeat=ctx.repeat)
    snap, saved = box[-1]
    floor = median_time(lambda: _scan_and_write(manager, snap), repeat=ctx.repeat)
    kinds: dict[str, int] = {}
    for p in snap.packs:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    note = (
        f"{len(snap.packs)} packs ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}), "
        f"{len(snap.python)} python packages, {saved.size // 1024} KiB"
    )
    print(f"snapshot save of {len(snap.packs)} packs: {seconds * 1000:.0f} ms ({note})")
    return Figure(seconds * 1000, note, baseline=floor * 1000)


def _scan_and_write(manager: Any, snap: Any) -> None:
    import json

    from manager.fsops import atomic_write_bytes
    from manager.inventory import scan

    scan(manager.layout)
    doc = json.dumps(snap.to_dict(), indent=2).encode()
    atomic_write_bytes(manager.layout.manager_dir / "bench-floor.json", doc)


def noop_restore_200(ctx: BenchContext) -> Figure:
    from manager.records import PolicyDecision
    from manager.snapshots import store_of
    from manager.snapshots.capture import capture
    from manager.snapshots.plan import RestoreOptions
    from manager.snapshots.restore import restore

    listing = ctx.support("treesum").listing
    _tmp, manager = ctx.memo("snapshots.world", lambda: _world(ctx))
    saved = store_of(manager).save(capture(manager))
    snap = store_of(manager).load(saved.name)
    root = manager.layout.comfyui_root
    before = listing(root)
    allow = PolicyDecision.allow("snapshot_restore", "", "bench")
    results: list[Any] = []
    seconds = median_time(
        lambda: results.append(restore(manager, snap, RestoreOptions(), policy=allow)), repeat=ctx.repeat
    )
    first_step = median_time(lambda: capture(manager), repeat=ctx.repeat)
    changed = listing(root) != before
    if changed or any(r.done for r in results):
        raise RuntimeError("a no-op restore changed the tree")
    print(f"no-op restore of {len(snap.packs)} packs: {seconds * 1000:.0f} ms, files changed: none")
    return Figure(
        seconds * 1000,
        f"{len(snap.packs)} packs, {len(snap.python)} python packages; no file changed",
        baseline=first_step * 1000,
    )


BENCHMARKS = [
    Benchmark(
        "snapshots.save_200",
        "ms",
        save_200,
        target=1000.0,
        baseline="inventory scan + the same document written as JSON (atomic)",
        description="capture + atomic save of a tree with 200 packs (git, registry, files, disabled)",
    ),
    Benchmark(
        "snapshots.noop_restore_200",
        "ms",
        noop_restore_200,
        target=2000.0,
        baseline="one capture of the same tree (a restore's first step)",
        description="restore of a snapshot equal to the tree: capture, diff, empty plan; no file changes",
    ),
]
