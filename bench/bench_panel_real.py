"""The panel as users feel it: in the page the real ComfyUI 0.8.0 serves (its pinned frontend).

The same probes as bench_panel.py (click on our entry until a pack row is in the DOM and laid
out; each search keystroke until the filtered rows are), over the real channel DB as a
file:// channel, offline, plus our share of ComfyUI's start from our ready line. ComfyUI runs
in a network namespace with only loopback: when this process is not already in one, the
measurement runs in a child under ``unshare -n`` and hands its figures back as JSON.
Targets: ../shared/targets.md ("where we stand"): click to rows <= 100 ms, keystroke <= 16 ms.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._realhost import run_namespaced, support
from .bench_panel import (
    CHROMIUM,
    FLAGS,
    NOT_LOOPBACK,
    PRELOAD_SETTING,
    frame_spans,
    js_heap_mb,
    timed_keystrokes,
    timed_open,
)
from .run import BenchContext, Benchmark, BenchSkip, Figure

SETTINGS_FILE = "user/default/comfy.settings.json"
QUERIES = ("impact", "video", "lora")  # issue 21: what users type first


def measure(channel_db: Path, repeat: int, workdir: Path) -> dict[str, Any]:
    """Start the real ComfyUI, open the panel ``repeat`` times per mode, type the queries."""
    realhost = support()
    from playwright.sync_api import sync_playwright

    host = realhost.start_comfyui(workdir, "0.8.0", config={"channel_url": (channel_db / "default").as_uri()})
    settings_path = host.root / SETTINGS_FILE
    base_settings = json.loads(settings_path.read_text(encoding="utf-8"))
    try:
        ready = realhost.READY_LINE.findall(host.log_text())
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(workdir / "profile"),
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS,
                viewport={"width": 1400, "height": 900},
            )
            context.route(NOT_LOOPBACK, lambda route: route.abort())
            page = context.new_page()

            def open_once(preload: bool) -> dict[str, float]:
                settings_path.write_text(json.dumps({**base_settings, PRELOAD_SETTING: preload}), encoding="utf-8")
                page.goto(host.url("/"))
                page.wait_for_selector(".offline-manager-entry", timeout=60_000)
                page.wait_for_timeout(300)
                return timed_open(page, preload=preload)

            cold = open_once(False)
            plain = [open_once(False) for _ in range(repeat)]
            warm = [open_once(True) for _ in range(repeat)]
            page.focus("[data-testid=pack-search]")
            keys = timed_keystrokes(page, QUERIES)
            page.wait_for_timeout(500)
            heap = js_heap_mb(context, page)
            context.close()
        return {
            "cold": cold,
            "plain": plain,
            "warm": warm,
            "keys": keys,
            "heap": heap,
            "ready": ready,
            "connects": host.connects(),
        }
    finally:
        host.stop()


def _measure(ctx: BenchContext) -> dict[str, Any]:
    realhost = support()
    if not Path(CHROMIUM).exists():
        raise BenchSkip(f"chromium not found at {CHROMIUM}")
    reason = realhost.unavailable("0.8.0")
    namespaced = reason is not None and "network namespace" in reason
    if reason and not namespaced:
        raise BenchSkip(f"real-host tier unavailable: {reason}")
    db = ctx.require_channel_db()
    repeat = max(3, ctx.repeat)
    with tempfile.TemporaryDirectory(prefix="cm-bench-real-") as tmp:
        if not namespaced:
            return measure(db, repeat, Path(tmp))
        out = Path(tmp) / "figures.json"
        return run_namespaced("bench.bench_panel_real", [str(db), str(repeat), tmp, str(out)], out)


def _results(ctx: BenchContext) -> dict[str, Any]:
    return ctx.memo("panel_real.results", lambda: _measure(ctx))


def _spans(loads: list[dict[str, float]], mark: str) -> list[float]:
    """Milliseconds from each load's click (``t0``) to its ``mark``."""
    return [w[mark] - w["t0"] for w in loads]


def open_to_rows(ctx: BenchContext) -> Figure:
    r = _results(ctx)
    rows, plain = _spans(r["warm"], "t1"), _spans(r["plain"], "t1")
    return Figure(
        statistics.median(rows),
        f"real ComfyUI 0.8.0 page, median of {len(rows)} loads with the background preload; without "
        f"preload {statistics.median(plain):.0f} ms; very first open {r['cold']['t1'] - r['cold']['t0']:.0f} ms",
    )


def open_painted(ctx: BenchContext) -> Figure:
    r = _results(ctx)
    painted, plain = _spans(r["warm"], "t2"), _spans(r["plain"], "t2")
    return Figure(
        statistics.median(painted),
        f"click to the frame after the rows (painted), median of {len(painted)} loads with the preload; "
        f"without preload {statistics.median(plain):.0f} ms",
    )


def search_keystroke(ctx: BenchContext) -> Figure:
    frame, rest = frame_spans(_results(ctx)["keys"])
    return Figure(
        statistics.median(frame),
        f"real ComfyUI 0.8.0 page, {len(frame)} keystrokes of {', '.join(QUERIES)}: keydown to the start of the "
        f"next frame, the first with the new rows; {rest}",
    )


def heap(ctx: BenchContext) -> Figure:
    return Figure(_results(ctx)["heap"], "real ComfyUI 0.8.0 page (its frontend included) with the panel open")


def start_cost(ctx: BenchContext) -> Figure:
    r = _results(ctx)
    lines = r["ready"]
    if not lines:
        raise BenchSkip("no ready line in the real host's log")
    ms = support().ready_cost_ms(lines[-1])
    return Figure(ms, f"first start after install (compiles our modules); outside connects {len(r['connects'])}")


BENCHMARKS = [
    Benchmark(
        "panel_real.open_to_rows",
        "ms",
        open_to_rows,
        target=100.0,
        compare="<=",
        description="click on our entry in the real ComfyUI page until the pack list shows rows",
    ),
    Benchmark(
        "panel_real.open_painted",
        "ms",
        open_painted,
        target=100.0,
        compare="<=",
        description="click on our entry in the real ComfyUI page until the rows are painted",
    ),
    Benchmark(
        "panel_real.search_keystroke",
        "ms",
        search_keystroke,
        target=16.0,
        compare="<=",
        description="search keystroke in the real ComfyUI page to the next frame with the filtered rows",
    ),
    Benchmark("panel_real.js_heap", "MB", heap, description="JS heap of the real ComfyUI page, panel open"),
    Benchmark(
        "panel_real.start_cost",
        "ms",
        start_cost,
        target=200.0,
        compare="<=",
        description="our import + mount in the real ComfyUI's start, from our ready line (first start)",
    ),
]


if __name__ == "__main__":  # the child run inside ``unshare -n`` (see _measure)
    db_arg, repeat_arg, work_arg, out_arg = sys.argv[1:5]
    figures = measure(Path(db_arg), int(repeat_arg), Path(work_arg))
    Path(out_arg).write_text(json.dumps(figures))
    os._exit(0)
