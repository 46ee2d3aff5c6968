"""The benchmark harness: ``python -m bench --json --only NAME`` as a user runs it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import compare as cmp
from bench.run import BenchContext, Benchmark, Figure, render_table, run_one, select, timed_pairs

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run_bench(*args: str, channel_db: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if channel_db is not None:
        env["CM_CHANNEL_DB"] = str(channel_db)
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_json_output_of_a_catalog_benchmark(channel_db: Path):
    proc = _run_bench("--json", "--only", "catalog.lookup_by_id", "--repeat", "2", channel_db=channel_db)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == 2 and doc["channel_db"] == str(channel_db)
    [result] = doc["results"]
    assert result["name"] == "catalog.lookup_by_id" and result["unit"] == "us"
    assert isinstance(result["figure"], float) and result["figure"] > 0 and math.isfinite(result["figure"])
    assert result["target"] == 1000.0 and result["compare"] == "<"
    assert result["status"] in ("pass", "fail") and result["passed"] is (result["status"] == "pass")
    assert set(result) >= {"name", "figure", "unit", "target", "compare", "status", "passed", "note"}
    assert set(result) >= {"baseline_figure", "ratio", "target_on", "noise_floor"}


def test_table_output_and_a_ratio_against_a_baseline(channel_db: Path):
    proc = _run_bench("--only", "catalog.cold_load_vs_json", "--repeat", "1", channel_db=channel_db)
    assert proc.returncode == 0, proc.stderr
    header, rule, row = proc.stdout.splitlines()
    assert header.split() == ["benchmark", "unit", "figure", "baseline", "ratio", "target", "result", "note"]
    name, unit, figure, baseline, ratio, target, status = row.split()[:7]
    assert name == "catalog.cold_load_vs_json" and unit == "x" and status == "info"
    assert (baseline, ratio, target) == ("-", "-", "-")  # a ratio figure of its own: no second baseline
    assert float(figure) > 1.0  # parsing + indexing costs more than json.loads alone


def test_unknown_only_is_an_error_listing_names():
    proc = _run_bench("--only", "no.such.benchmark")
    assert proc.returncode == 2
    assert "catalog.search" in proc.stderr


def test_benchmark_chatter_never_reaches_stdout(tmp_path: Path, capsys):
    def noisy(ctx: BenchContext) -> float:
        print("progress: 50%")
        return 2.0

    result = run_one(Benchmark("demo.noisy", "s", noisy, target=5.0), BenchContext(tmp_path, None))
    out, err = capsys.readouterr()
    assert result.status == "pass" and out == "" and "progress: 50%" in err


def test_statuses_and_selection(tmp_path: Path):
    slow = Benchmark("demo.slow", "ms", lambda ctx: Figure(50.0, "made up"), target=10.0)
    ctx = BenchContext(repo_root=tmp_path, channel_db=None)
    result = run_one(slow, ctx)
    assert (result.status, result.figure, result.note) == ("fail", 50.0, "made up")
    # no channel DB given: the copy shipped in tests/data/ (never a skip for want of ../shared)
    shipped = run_one(
        Benchmark("demo.db", "files", lambda c: float(len(list((c.require_channel_db() / "default").glob("*.json"))))),
        ctx,
    )
    assert (shipped.status, shipped.figure) == ("info", 6.0), shipped
    broken = run_one(Benchmark("demo.err", "s", lambda c: 1 / 0), ctx)
    assert broken.status == "error" and "ZeroDivisionError" in broken.note
    names = [Benchmark(n, "s", lambda c: 1.0) for n in ("catalog.a", "catalog.b", "other.a")]
    assert [b.name for b in select(names, ["catalog"])] == ["catalog.a", "catalog.b"]
    assert [b.name for b in select(names, ["*.a"])] == ["catalog.a", "other.a"]
    with pytest.raises(ValueError):
        Benchmark("demo.bad", "s", lambda c: 1.0, target=1.0, compare="~")


# --- figures beside their baselines ----------------------------------------------------------
def test_a_figure_with_its_baseline_is_judged_on_the_ratio(tmp_path: Path):
    ctx = BenchContext(tmp_path, None)
    fast = Benchmark(
        "demo.fast", "ms", lambda c: Figure(12.0, "n", baseline=10.0), target=1.3, compare="<=", target_on="ratio"
    )
    slow = Benchmark(
        "demo.slow", "ms", lambda c: Figure(30.0, baseline=10.0), target=1.3, compare="<=", target_on="ratio"
    )
    lost = Benchmark("demo.lost", "ms", lambda c: Figure(30.0), target=1.3, compare="<=", target_on="ratio")
    on_figure = Benchmark("demo.fig", "ms", lambda c: Figure(30.0, baseline=10.0), target=50.0, compare="<")
    got = {b.name: run_one(b, ctx) for b in (fast, slow, lost, on_figure)}
    assert (got["demo.fast"].status, got["demo.fast"].ratio, got["demo.fast"].baseline_figure) == ("pass", 1.2, 10.0)
    assert got["demo.slow"].status == "fail" and got["demo.slow"].judged == 3.0
    assert got["demo.lost"].status == "error" and "no baseline" in got["demo.lost"].note
    assert got["demo.fig"].status == "pass" and got["demo.fig"].ratio == 3.0 and got["demo.fig"].judged == 30.0
    table = render_table(list(got.values())).splitlines()
    row = next(line for line in table if line.startswith("demo.fast")).split()
    assert row[:8] == ["demo.fast", "ms", "12", "10", "1.20x", "<=", "1.3x", "pass"]
    with pytest.raises(ValueError):
        Benchmark("demo.bad", "ms", lambda c: 1.0, target_on="both")


def test_timed_pairs_interleaves_alternates_and_prepares_every_call():
    calls: list[str] = []

    def spin(side: str) -> None:
        calls.append(side)
        end = time.process_time() + (0.004 if side == "fn" else 0.001)
        while time.process_time() < end:  # CPU work: counted as CPU time whatever the machine's load
            pass

    got = timed_pairs(lambda: spin("fn"), lambda: spin("base"), repeat=4, before=lambda: calls.append("before"))
    assert calls == ["before", "base", "before", "fn", "before", "fn", "before", "base"] * 2
    assert got.fn_cpu > got.base_cpu >= 0.001 and got.fn >= got.fn_cpu * 0.5
    assert got.cpu_note().startswith("cpu ") and got.cpu_note().endswith("x")


# --- --compare -----------------------------------------------------------------------------------
def _entry(name: str, figure: float, **kw) -> dict:
    return {"name": name, "unit": kw.pop("unit", "ms"), "figure": figure, "compare": kw.pop("compare", "<"), **kw}


def test_compare_flags_slowdowns_beyond_threshold_and_floor():
    before = {
        e["name"]: e
        for e in (
            _entry("a.big", 100.0),
            _entry("a.tiny", 0.2),
            _entry("a.throughput", 1000.0, unit="req/s", compare=">="),
            _entry("a.ratio", 5.0, ratio=1.1, baseline_figure=4.5, target_on="ratio"),
            _entry("a.legacy", 1.1, unit="x"),  # a schema 1 ratio figure
            _entry("a.gone", 1.0),
        )
    }
    now = [
        _entry("a.big", 120.0),  # +20 %: slower
        _entry("a.tiny", 0.4),  # +100 % but 0.2 ms: noise
        _entry("a.throughput", 700.0, unit="req/s", compare=">="),  # fewer per second: slower
        _entry("a.ratio", 9.0, ratio=1.05, baseline_figure=8.6, target_on="ratio"),  # slower machine, same ratio
        _entry("a.legacy", 1.5, ratio=1.5, baseline_figure=2.0, target_on="ratio"),
        _entry("a.new", 3.0),
    ]
    got = {c.name: c for c in cmp.compare(before, now)}
    assert got["a.big"].verdict == "slower" and round(got["a.big"].change, 2) == 0.2
    assert got["a.tiny"].verdict == "same"
    assert got["a.throughput"].verdict == "slower"
    assert got["a.ratio"].verdict == "same" and got["a.ratio"].what == "ratio"
    assert got["a.legacy"].verdict == "slower" and (got["a.legacy"].before, got["a.legacy"].now) == (1.1, 1.5)
    assert got["a.new"].verdict == "new" and got["a.gone"].verdict == "gone"
    assert cmp.judge(100.0, 80.0, higher_is_better=False, threshold=0.15, floor=0.5) == "faster"
    assert cmp.judge(100.0, 110.0, higher_is_better=False, threshold=0.15, floor=0.5) == "same"
    text = cmp.render(list(got.values()))
    assert "SLOWER" in text and text.splitlines()[-1] == "3 slowdown(s) beyond the noise threshold"


def test_compare_two_saved_runs_from_the_command_line(tmp_path: Path):
    def save(path: Path, results: list[dict]) -> Path:
        path.write_text(json.dumps({"schema": 2, "python": "3", "channel_db": None, "results": results}))
        return path

    old = save(tmp_path / "old.json", [_entry("x.one", 10.0), _entry("x.two", 10.0)])
    new = save(tmp_path / "new.json", [_entry("x.one", 20.0), _entry("x.two", 10.2)])
    proc = _run_bench("--compare", str(old), "--current", str(new))
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[2:-1]}
    assert rows["x.one"][1:] == ["ms", "10", "20", "+100%", "SLOWER"]
    assert rows["x.two"][-1] == "same"
    assert _run_bench("--compare", str(old), "--current", str(new), "--strict").returncode == 1
    assert _run_bench("--compare", str(old), "--current", str(old), "--strict").returncode == 0
    doc = json.loads(_run_bench("--compare", str(old), "--current", str(new), "--json").stdout)
    assert [c["verdict"] for c in doc["comparison"]] == ["slower", "same"]
    (tmp_path / "junk.json").write_text("{not json")
    bad = _run_bench("--compare", str(tmp_path / "junk.json"), "--current", str(new))
    assert bad.returncode == 2 and "python -m bench --json > FILE" in bad.stderr
    assert _run_bench("--current", str(new)).returncode == 2  # --current needs --compare


def test_a_run_is_compared_with_a_saved_one(tmp_path: Path, channel_db: Path):
    args = ("--only", "catalog.lookup_by_id", "--repeat", "2")
    saved = _run_bench("--json", *args, channel_db=channel_db)
    assert saved.returncode == 0, saved.stderr
    path = tmp_path / "earlier.json"
    path.write_text(saved.stdout)
    proc = _run_bench(*args, "--compare", str(path), channel_db=channel_db)
    assert proc.returncode == 0, proc.stderr
    table, _, comparison = proc.stdout.partition(f"compared with {path}:")
    assert "catalog.lookup_by_id" in table
    row = next(line.split() for line in comparison.splitlines() if line.startswith("catalog.lookup_by_id"))
    before = json.loads(saved.stdout)["results"][0]["figure"]
    assert row[1] == "us" and row[2] == cmp._fmt(before)  # the saved figure, shown like the table's
    assert row[-1] in ("same", "faster", "SLOWER")
