"""Our share of ComfyUI's start, measured inside the real ComfyUI 0.8.0 (offline, on this CPU).

One host tree with this project installed as the README says, started ``STARTS`` times (the
first start compiles our modules; the later ones find their bytecode, as a user's usual start
does), and, in the same run, the same ComfyUI without our pack started as often: the baseline.
Figures: our import + route mount from our ready line (``[offline-manager] ... N ms of
ComfyUI's start``, timed from the first line of our ``__init__`` to the end of the mount right
before ComfyUI's ``add_routes``), and ComfyUI's own "Import times" and "Prestartup times" lines
for our folder (one decimal: 0.0 means under 0.05 s). ComfyUI runs in a network namespace with
only loopback: when this process is not in one, the measurement runs in a child under
``unshare -n`` and hands its figures back as JSON. Targets: ../shared/targets.md ("prestartup +
import: keep < 0.1 s") and issue 21 (import + mount <= 100 ms, ComfyUI's figure <= 0.05 s).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._realhost import run_namespaced, support
from .run import BenchContext, Benchmark, BenchSkip, Figure

STARTS = 3
IMPORT_TIMES = "Import times for custom nodes:"
PRESTARTUP_TIMES = "Prestartup times for custom nodes:"


def folder_figures(log: str, header: str, folder: str) -> list[float]:
    """Our folder's seconds in each of ComfyUI's ``header`` blocks of ``log`` (one per start)."""
    out = []
    for block in log.split(header)[1:]:
        for line in block.strip("\n").split("\n\n", 1)[0].splitlines():
            found = re.match(r"\s*([\d.]+) seconds", line)
            if found and line.rstrip().endswith("/" + folder):
                out.append(float(found.group(1)))
                break
    return out


def _starts(realhost: Any, workdir: Path, starts: int, *, ours: bool, config: dict[str, str]) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    host = realhost.start_comfyui(workdir, "0.8.0", install_ours=ours, config=config)
    try:
        walls = [host.started_in]
        for _ in range(starts - 1):
            host.restart()
            walls.append(host.started_in)
        log = host.log_text()
        connects = host.connects()
    finally:
        host.stop()
    return {
        "walls": walls,
        "ready": [realhost.ready_cost_ms(line) for line in realhost.READY_LINE.findall(log)],
        "cpu": [float(m) for m in re.findall(r"\(([\d.]+) ms CPU\)", log)],
        "imports": folder_figures(log, IMPORT_TIMES, realhost.FOLDER),
        "prestartups": folder_figures(log, PRESTARTUP_TIMES, realhost.FOLDER),
        "connects": len(connects),
    }


def measure(channel_db: Path | None, starts: int, workdir: Path) -> dict[str, Any]:
    """Start ComfyUI ``starts`` times without our pack, then ``starts`` times with it."""
    realhost = support()
    config = {"channel_url": (channel_db / "default").as_uri()} if channel_db else {}
    without = _starts(realhost, workdir / "without", starts, ours=False, config=config)
    with_ours = _starts(realhost, workdir / "with", starts, ours=True, config=config)
    return {"without": without, "with": with_ours, "load": os.getloadavg()[0]}


def _measure(ctx: BenchContext) -> dict[str, Any]:
    realhost = support()
    reason = realhost.unavailable("0.8.0")
    namespaced = reason is not None and "network namespace" in reason
    if reason and not namespaced:
        raise BenchSkip(f"real-host tier unavailable: {reason}")
    try:
        db: Path | None = ctx.require_channel_db()
    except BenchSkip:
        db = None
    starts = max(STARTS, min(ctx.repeat, 5))
    with tempfile.TemporaryDirectory(prefix="cm-bench-start-") as tmp:
        if not namespaced:
            return measure(db, starts, Path(tmp))
        out = Path(tmp) / "figures.json"
        return run_namespaced("bench.bench_start", [str(db or ""), str(starts), tmp, str(out)], out)


def _results(ctx: BenchContext) -> dict[str, Any]:
    return ctx.memo("start.results", lambda: _measure(ctx))


def import_mount(ctx: BenchContext) -> Figure:
    r = _results(ctx)
    ready = r["with"]["ready"]
    if len(ready) < 2:
        raise BenchSkip(f"ready lines of our pack: {ready}")
    later = ready[1:]
    cpu = r["with"]["cpu"]
    cpu_note = f" (CPU {', '.join(f'{v:.1f}' for v in cpu)} ms)" if len(cpu) == len(ready) else ""
    base = statistics.median(r["without"]["walls"]) * 1000
    return Figure(
        statistics.median(later),
        f"real ComfyUI 0.8.0, our ready line, median of {len(later)} starts with our bytecode cached "
        f"({', '.join(f'{v:.1f}' for v in later)} ms); first start (compiles our modules) {ready[0]:.1f} ms"
        f"{cpu_note}; "
        f"baseline: ComfyUI's start without our pack, spawn to /system_stats, median of "
        f"{len(r['without']['walls'])}; load {r['load']:.2f}",
        baseline=base,
    )


def _comfyui_figure(ctx: BenchContext, key: str, what: str) -> Figure:
    r = _results(ctx)
    figures = r["with"][key]
    if not figures:
        raise BenchSkip(f"no {what} line for our folder in ComfyUI's log")
    return Figure(
        statistics.median(figures) * 1000,
        f"ComfyUI's own {what} line for our folder (one decimal in seconds: 0 means < 50 ms), "
        f"median of {len(figures)} starts: {', '.join(f'{v:.1f} s' for v in figures)}",
    )


def comfyui_import(ctx: BenchContext) -> Figure:
    return _comfyui_figure(ctx, "imports", "Import times")


def comfyui_prestartup(ctx: BenchContext) -> Figure:
    return _comfyui_figure(ctx, "prestartups", "Prestartup times")


def whole_start(ctx: BenchContext) -> Figure:
    r = _results(ctx)
    ours = statistics.median(r["with"]["walls"]) * 1000
    base = statistics.median(r["without"]["walls"]) * 1000
    return Figure(
        ours,
        f"ComfyUI's whole start (spawn to /system_stats, polled every 0.2 s) with our pack vs without it, "
        f"medians of {len(r['with']['walls'])}; the difference is within the start's noise; "
        f"outside connects {r['with']['connects']}",
        baseline=base,
    )


BENCHMARKS = [
    Benchmark(
        "start.import_mount",
        "ms",
        import_mount,
        target=100.0,
        compare="<=",
        baseline="ComfyUI's start without our pack",
        description="our import + route mount in the real ComfyUI's start (ready line, bytecode cached)",
    ),
    Benchmark(
        "start.comfyui_import",
        "ms",
        comfyui_import,
        target=50.0,
        compare="<=",
        description="ComfyUI's own import-time figure for our pack",
    ),
    Benchmark(
        "start.comfyui_prestartup",
        "ms",
        comfyui_prestartup,
        target=50.0,
        compare="<=",
        description="ComfyUI's own prestartup-time figure for our pack",
    ),
    Benchmark(
        "start.whole_start",
        "ms",
        whole_start,
        baseline="ComfyUI's start without our pack",
        description="ComfyUI's whole start with our pack (information: ComfyUI's own noise dominates)",
    ),
]


if __name__ == "__main__":  # the child run inside ``unshare -n`` (see _measure)
    db_arg, starts_arg, work_arg, out_arg = sys.argv[1:5]
    figures = measure(Path(db_arg) if db_arg else None, int(starts_arg), Path(work_arg))
    Path(out_arg).write_text(json.dumps(figures))
    os._exit(0)
