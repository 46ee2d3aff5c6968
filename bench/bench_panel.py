"""Panel benchmarks, measured in headless chromium with the page's ``performance.now()``.

The real ComfyUI frontend (comfyui-frontend-package) is served by the stand-in host with our
extension loaded like ComfyUI does, over the real default channel (5,896 packs) as a file://
channel in offline mode. Targets from targets.md: click on our entry until the pack list shows
rows <= 200 ms (the classic manager: ~0.8 s); a search keystroke until the filtered rows are in
the DOM and laid out <= 16 ms (one frame; classic: 20-44 ms).
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from .run import BenchContext, Benchmark, BenchSkip, Figure, percentile

CHROMIUM = os.environ.get("CM_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOT_LOOPBACK = re.compile(r"^(https?|wss?)://(?!(127\.0\.0\.1|localhost|\[::1\])[:/])")
PRELOAD_SETTING = "OfflineManager.PreloadList"
PRELOADED = """() => performance.getEntriesByType('resource').some(
    (e) => e.name.includes('/offline-manager/v1/packs') && e.name.includes('mode=local') && e.responseEnd > 0)"""
QUERIES = ("impact pack", "controlnet", "video helper suite", "upscale", "kijai wan")

# Installed before the click: t0 when our entry is clicked, t1 when a pack row is in the DOM and
# laid out, t2 at the next frame (painted).
OPEN_PROBE = """() => {
    window.__open = {};
    document.addEventListener('click', (e) => {
        if (e.target.closest && e.target.closest('.offline-manager-entry')) window.__open.t0 = performance.now();
    }, true);
    const mo = new MutationObserver(() => {
        if (window.__open.t1 || !document.querySelector('.om-pack-row:not([hidden])')) return;
        document.querySelector('.om-pack-list').offsetHeight;          // force layout
        window.__open.t1 = performance.now();
        requestAnimationFrame(() => setTimeout(() => { window.__open.t2 = performance.now(); }, 0));
        mo.disconnect();
    });
    mo.observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['hidden'] });
}"""

# Per keystroke: t0 at keydown (capture), t1 once the rows for the new query are in the DOM and
# laid out (the view stamps data-query synchronously after rendering), t2 when the next frame
# (the first one with the new rows) starts, t3 once that frame is done (painted).
KEY_PROBE = """() => {
    window.__keys = [];
    const input = document.querySelector('[data-testid=pack-search]');
    const view = document.querySelector('.om-nodes');
    let cur = null;
    input.addEventListener('keydown', () => { cur = { t0: performance.now() }; window.__keys.push(cur); }, true);
    new MutationObserver(() => {
        if (!cur || cur.t1) return;
        document.querySelector('.om-pack-list').offsetHeight;          // force layout of the new rows
        const k = cur;
        k.t1 = performance.now();
        k.rows = Number(view.dataset.rows);
        requestAnimationFrame(() => { k.t2 = performance.now(); setTimeout(() => { k.t3 = performance.now(); }, 0); });
    }).observe(view, { attributes: true, attributeFilter: ['data-query'] });
}"""


def timed_open(page: Any, *, preload: bool) -> dict[str, float]:
    """Click our entry in a booted page; t0/t1/t2 of OPEN_PROBE. With ``preload`` the page first
    idles until the background preload of the list (cached copy) arrived, as it does for a user."""
    if preload:
        page.wait_for_function(PRELOADED, timeout=60_000, polling=100)
    page.evaluate(OPEN_PROBE)
    page.click(".offline-manager-entry")
    page.wait_for_function("window.__open.t2 !== undefined", timeout=60_000)
    return page.evaluate("window.__open")


def timed_keystrokes(page: Any, queries: tuple[str, ...] = QUERIES) -> list[dict[str, float]]:
    """Type each of ``queries`` into the open panel's search; KEY_PROBE's t0/t1/t2/t3 per keystroke."""
    page.evaluate(KEY_PROBE)
    out: list[dict[str, float]] = []
    for query in queries:
        page.fill("[data-testid=pack-search]", "")
        page.wait_for_timeout(50)
        page.evaluate("window.__keys = []")
        page.keyboard.type(query, delay=60)
        page.wait_for_function(
            f"window.__keys.length === {len(query)} && window.__keys.every(k => k.t3)", timeout=30_000
        )
        out += page.evaluate("window.__keys")
    return out


def js_heap_mb(context: Any, page: Any) -> float:
    """The page's live JS heap after a full garbage collection (Chromium's own figure)."""
    cdp = context.new_cdp_session(page)
    try:
        cdp.send("HeapProfiler.collectGarbage")
        return float(cdp.send("Runtime.getHeapUsage")["usedSize"]) / 1e6
    finally:
        cdp.detach()


class PanelRig:
    """A stand-in ComfyUI over a channel (the real DB by default) plus a chromium, for one run."""

    def __init__(self, ctx: BenchContext, channel: Path | None = None) -> None:
        db = channel or ctx.require_channel_db() / "default"
        if not Path(CHROMIUM).exists():
            raise BenchSkip(f"chromium not found at {CHROMIUM}")
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            raise BenchSkip("the Python playwright package is not installed") from None
        sys.path.insert(0, str(ctx.repo_root / "tests"))
        from support.standin_host import StandInComfy, find_frontend_static

        if find_frontend_static() is None:
            raise BenchSkip("comfyui-frontend-package is not installed")
        self.tmp = Path(tempfile.mkdtemp(prefix="cm-bench-panel-"))
        root = self.tmp / "ComfyUI"
        for sub in ("custom_nodes", "models/checkpoints", "user/__manager"):
            (root / sub).mkdir(parents=True)
        (root / "user/__manager/config.ini").write_text(
            f"[default]\nnetwork_mode = offline\nchannel_url = {db.as_uri()}\n", encoding="utf-8"
        )
        self.host = StandInComfy(root).start()
        self._pw = sync_playwright().start()
        self.context = self._pw.chromium.launch_persistent_context(
            str(self.tmp / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        self.context.route(NOT_LOOPBACK, lambda route: route.abort())
        self.page = self.context.new_page()

    def boot(self) -> None:
        """Load the frontend fresh (a new panel) and wait for our entry."""
        self.page.goto(self.host.url("/"))
        self.page.wait_for_selector(".offline-manager-entry", timeout=60_000)
        self.page.wait_for_timeout(300)  # let the frontend settle after boot

    def open_once(self, *, preload: bool) -> dict[str, float]:
        """One first open in a fresh page; with ``preload`` the page first idles until the
        background preload of the list (cached copy) has arrived, as it does for a user."""
        self.host.settings[PRELOAD_SETTING] = preload
        self.boot()
        return timed_open(self.page, preload=preload)

    def keystrokes(self) -> list[dict[str, float]]:
        return timed_keystrokes(self.page)

    def close(self) -> None:
        try:
            self.context.close()
            self._pw.stop()
        finally:
            self.host.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)


def _measure(ctx: BenchContext, channel: Path | None = None) -> dict[str, Any]:
    rig = PanelRig(ctx, channel)
    try:
        cold = rig.open_once(preload=False)  # the server's first list request loads the catalog
        plain = [rig.open_once(preload=False) for _ in range(max(3, ctx.repeat))]
        rig.host.settings[PRELOAD_SETTING] = True
        rig.boot()
        heap_before = js_heap_mb(rig.context, rig.page)
        warm = [timed_open(rig.page, preload=True)]
        warm += [rig.open_once(preload=True) for _ in range(max(3, ctx.repeat) - 1)]
        rig.page.focus("[data-testid=pack-search]")
        keys = rig.keystrokes()
        rig.page.wait_for_timeout(500)  # the search index's idle warm-up is done
        heap = js_heap_mb(rig.context, rig.page)
    finally:
        rig.close()
    return {"cold": cold, "plain": plain, "warm": warm, "keys": keys, "heap": heap, "heap_before": heap_before}


def _results(ctx: BenchContext) -> dict[str, Any]:
    return ctx.memo("panel.results", lambda: _measure(ctx))


def _results_59k(ctx: BenchContext) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        big = ctx.support("catalog_x10").channel_x10(ctx.require_channel_db())
        return _measure(ctx, Path(big))

    return ctx.memo("panel.results_59k", run)


def open_to_rows(ctx: BenchContext) -> Figure:
    r = _results(ctx)
    rows = [w["t1"] - w["t0"] for w in r["warm"]]
    painted = [w["t2"] - w["t0"] for w in r["warm"]]
    return Figure(
        statistics.median(rows),
        f"median of {len(rows)} fresh page loads with the list preloaded in the background; painted "
        f"{statistics.median(painted):.0f} ms",
    )


def open_to_rows_no_preload(ctx: BenchContext) -> Figure:
    r = _results(ctx)
    rows = [w["t1"] - w["t0"] for w in r["plain"]]
    cold = r["cold"]
    return Figure(
        statistics.median(rows),
        f"median of {len(rows)} fresh page loads, list fetched on click (3.3 MB), server catalog warm; "
        f"very first open after server start (catalog build) {cold['t1'] - cold['t0']:.0f} ms",
    )


def search_keystroke(ctx: BenchContext) -> Figure:
    keys = _results(ctx)["keys"]
    dom = sorted(k["t1"] - k["t0"] for k in keys)
    painted = sorted(k["t2"] - k["t0"] for k in keys)
    p95 = percentile(dom, 0.95)
    return Figure(
        statistics.median(dom),
        f"{len(dom)} keystrokes over 5.9k packs; p95 {p95:.1f} ms, max {dom[-1]:.1f} ms; "
        f"to next frame median {statistics.median(painted):.1f} ms",
    )


# Why p95 is not held to one frame: a one-char query reads the idle-built char index (59k: ~12 ms
# to the next frame), but the second char refines a result holding nearly every pack, one
# substring search each (59k: 25-110 ms measured for "im", "co", "up"); a bigram index would
# remove that floor at ~10-20 MB of page memory at 59k.
P95_FLOOR = "floor: the second keystroke scans nearly every pack's text"


def search_keystroke_p95(ctx: BenchContext) -> Figure:
    dom = sorted(k["t1"] - k["t0"] for k in _results(ctx)["keys"])
    return Figure(
        percentile(dom, 0.95),
        f"{len(dom)} keystrokes over 5.9k packs; median {statistics.median(dom):.1f} ms; {P95_FLOOR}",
    )


def heap(ctx: BenchContext) -> Figure:
    r = _results(ctx)
    return Figure(
        r["heap"],
        f"whole page after open and search, 5.9k packs; the panel's share {r['heap'] - r['heap_before']:.1f} MB",
    )


def open_to_rows_59k(ctx: BenchContext) -> Figure:
    r = _results_59k(ctx)
    rows = [w["t1"] - w["t0"] for w in r["warm"]]
    painted = [w["t2"] - w["t0"] for w in r["warm"]]
    plain = [w["t1"] - w["t0"] for w in r["plain"]]
    return Figure(
        statistics.median(rows),
        f"59k packs, median of {len(rows)} opens with the preload; painted {statistics.median(painted):.0f} ms; "
        f"without preload {statistics.median(plain):.0f} ms",
    )


def open_ratio(ctx: BenchContext) -> Figure:
    small = statistics.median(w["t2"] - w["t0"] for w in _results(ctx)["plain"])
    big = statistics.median(w["t2"] - w["t0"] for w in _results_59k(ctx)["plain"])
    return Figure(
        big / small,
        f"open to painted rows without preload (the list fetched on click): 59k {big:.0f} ms / 5.9k {small:.0f} ms",
    )


def frame_spans(keys: list[dict[str, float]]) -> tuple[list[float], str]:
    """Milliseconds from each keydown to the start of the next frame showing the new rows, sorted,
    and the note on the rest (p95, rows laid out, that frame painted); both panel benches use it."""
    frame = sorted(k["t2"] - k["t0"] for k in keys)
    dom = [k["t1"] - k["t0"] for k in keys]
    painted = [k["t3"] - k["t0"] for k in keys]
    note = (
        f"p95 {percentile(frame, 0.95):.1f} ms; rows laid out median {statistics.median(dom):.1f} ms; "
        f"that frame painted median {statistics.median(painted):.1f} ms"
    )
    return frame, note


def search_keystroke_59k(ctx: BenchContext) -> Figure:
    frame, rest = frame_spans(_results_59k(ctx)["keys"])
    return Figure(
        statistics.median(frame),
        f"{len(frame)} keystrokes over 59k packs, keydown to the start of the next frame, the first with the "
        f"new rows; {rest}",
    )


def search_keystroke_59k_p95(ctx: BenchContext) -> Figure:
    frame = sorted(k["t2"] - k["t0"] for k in _results_59k(ctx)["keys"])
    return Figure(
        percentile(frame, 0.95),
        f"{len(frame)} keystrokes over 59k packs, keydown to the next frame; median {statistics.median(frame):.1f} ms; "
        f"{P95_FLOOR}",
    )


def heap_59k(ctx: BenchContext) -> Figure:
    r = _results_59k(ctx)
    return Figure(
        r["heap"],
        f"whole page after open and search, 59k packs; the panel's share {r['heap'] - r['heap_before']:.1f} MB",
    )


BENCHMARKS = [
    Benchmark(
        "panel.open_to_rows",
        "ms",
        open_to_rows,
        target=200.0,
        compare="<=",
        description="click on the ComfyUI entry until the pack list shows rows (real frontend, real DB)",
    ),
    Benchmark(
        "panel.open_to_rows_no_preload",
        "ms",
        open_to_rows_no_preload,
        description="same with the background preload turned off (informational)",
    ),
    Benchmark(
        "panel.search_keystroke",
        "ms",
        search_keystroke,
        target=16.0,
        compare="<=",
        description="search keystroke until the filtered rows are in the DOM and laid out (5.9k packs)",
    ),
    Benchmark(
        "panel.search_keystroke_p95",
        "ms",
        search_keystroke_p95,
        description="p95 of the same keystrokes, 5.9k packs (informational: the 16 ms target judges the median)",
    ),
]
BENCHMARKS += [
    Benchmark("panel.js_heap", "MB", heap, description="JS heap of the page with the panel open, 5.9k packs"),
    Benchmark(
        "panel.open_to_rows_59k",
        "ms",
        open_to_rows_59k,
        description="click to rows at 59k packs with the preload (informational; judged by the ratio)",
    ),
    Benchmark(
        "panel.open_59k_vs_5.9k",
        "x",
        open_ratio,
        target=10.0,
        compare="<=",
        baseline="the same open at 5.9k packs, same run",
        description="panel open (list fetched on click) grows no worse than linearly with the catalog",
    ),
    Benchmark(
        "panel.search_keystroke_59k",
        "ms",
        search_keystroke_59k,
        target=16.0,
        compare="<=",
        description="search keystroke to the next frame with the filtered rows, 59k packs",
    ),
    Benchmark(
        "panel.search_keystroke_59k_p95",
        "ms",
        search_keystroke_59k_p95,
        description="p95 of the same keystrokes, 59k packs (informational: the 16 ms target judges the median)",
    ),
    Benchmark("panel.js_heap_59k", "MB", heap_59k, description="JS heap of the page with the panel open, 59k packs"),
]
