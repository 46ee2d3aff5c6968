"""Inventory benchmarks: one scan of a synthetic ``custom_nodes/`` holding 200 packs.

The tree is built once per run (outside the timed region) by the test helper
``tests/support/gitrepos.py``: 80 real git clones copied with ``cp -r`` (some with packed refs,
a detached HEAD or a ``.git`` file), 60 registry packs (``.tracking`` + ``pyproject.toml``),
30 single files, 20 plain folders and 10 disabled variants.

Baselines, same run: for the scan, the plainest read of the same facts (list ``custom_nodes/``
and ``.disabled/``, lstat every entry, read each pack's ``.git/HEAD``, ``.tracking`` and
``pyproject.toml`` when present); for the scan with catalog matching, the scan without it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from manager.inventory import scan
from manager.layout import Layout

from .run import BenchContext, Benchmark, BenchSkip, Figure, median_time


def _tree(ctx: BenchContext) -> tuple[Any, Any]:
    """(TemporaryDirectory keeping the tree alive, Layout of the tree)."""
    if shutil.which("git") is None:
        raise BenchSkip("git is not installed")
    helpers = ctx.support("gitrepos")
    tmp = tempfile.TemporaryDirectory(prefix="cm-bench-inventory-")
    base = Path(tmp.name)
    helpers.build_200_pack_comfyui(base)
    return tmp, Layout.from_root(base / "ComfyUI")


def _raw_read(layout: Layout) -> int:
    """What any scan must read, the plain way: entries, their lstat, the files that say what a pack is."""
    found = 0
    for folder in (layout.custom_nodes, layout.disabled_dir):
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            entry.stat(follow_symlinks=False)
            found += 1
            if entry.is_dir(follow_symlinks=False):
                for marker in (".git/HEAD", ".tracking", "pyproject.toml"):
                    try:
                        with open(os.path.join(entry.path, marker), "rb") as fh:
                            fh.read()
                    except OSError:
                        pass
    return found


def scan_200(ctx: BenchContext) -> Figure:
    _tmp, layout = ctx.memo("inventory.tree", lambda: _tree(ctx))
    scan(layout)  # warm the OS cache: the figure is ours, not the disk's
    box: list[Any] = []
    seconds = median_time(lambda: box.append(scan(layout)), repeat=ctx.repeat)
    raw = median_time(lambda: _raw_read(layout), repeat=ctx.repeat)
    inv = box[-1]
    kinds: dict[str, int] = {}
    for p in inv.packs:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    note = (
        f"{len(inv.packs)} packs ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}), "
        f"{len(inv.conflicts)} conflicts"
    )
    print(f"inventory scan of {len(inv.packs)} packs: {seconds * 1000:.1f} ms")
    return Figure(seconds * 1000, note, baseline=raw * 1000)


def scan_200_with_catalog(ctx: BenchContext) -> Figure:
    from manager.catalog import Catalog, ChannelFiles
    from manager.catalog_parse import CHANNEL_FILES
    from manager.records import Channel

    folder = ctx.require_channel_db() / "default"
    _tmp, layout = ctx.memo("inventory.tree", lambda: _tree(ctx))
    files = {n: (folder / n).read_bytes() for n in CHANNEL_FILES if (folder / n).is_file()}
    catalog = ctx.memo(
        "inventory.catalog",
        lambda: Catalog.build([ChannelFiles(Channel("default", "https://example.invalid/"), files)]),
    )
    scan(layout, catalog=catalog)
    seconds = median_time(lambda: scan(layout, catalog=catalog), repeat=ctx.repeat)
    plain = median_time(lambda: scan(layout), repeat=ctx.repeat)
    print(f"inventory scan of 200 packs matched against {len(catalog.packs)} catalog packs: {seconds * 1000:.1f} ms")
    return Figure(seconds * 1000, f"catalog of {len(catalog.packs)} packs", baseline=plain * 1000)


BENCHMARKS = [
    Benchmark(
        "inventory.scan_200",
        "ms",
        scan_200,
        target=300.0,
        baseline="scandir + lstat + the marker files (.git/HEAD, .tracking, pyproject.toml) of the same tree",
        description="scan custom_nodes/ + .disabled/ with 200 packs (git, cnr, file, folder, disabled)",
    ),
    Benchmark(
        "inventory.scan_200_with_catalog",
        "ms",
        scan_200_with_catalog,
        target=300.0,
        baseline="the same scan without the catalog",
        description="the same scan with catalog matching against the real default channel",
    ),
]
